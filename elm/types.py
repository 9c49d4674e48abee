"""Value objects shared by every part of the engine.

All of them are frozen dataclasses holding plain Python data (str, int, float,
tuples, JSON-serialisable mappings), so they cross Ray and process boundaries
cheaply and persist to the run store as JSON without pickling.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class EvalStatus(str, Enum):
    """Outcome of one evaluation, as stored in ``evaluations.status``.

    ``OK`` is the only status whose fitness and descriptor are meaningful. The
    others say why a candidate produced no usable score; none of them is ever an
    exception in the engine.
    """

    OK = "ok"
    INVALID = "invalid"  # ran, but the environment rejected its output (reason in ``error``)
    ERROR = "error"  # raised an exception (type and traceback tail in ``error``)
    TIMEOUT = "timeout"  # passed its wall-clock or CPU deadline and was killed
    MEMORY = "memory"  # hit its address-space limit
    OUTPUT_LIMIT = "output_limit"  # wrote more than the stdout/stderr cap
    SANDBOX_LOST = "sandbox_lost"  # the sandbox died under it (replaced afterwards)
    SYNTAX_ERROR = "syntax_error"  # did not parse; never sent to a sandbox
    OUT_OF_BOUNDS = "out_of_bounds"  # descriptor outside bounds under the ``reject`` policy
    LOST = "lost"  # its evaluator worker died and it could not be re-run
    DUPLICATE = "duplicate"  # the same program (canonical form) was already evaluated: not run again

    def __str__(self) -> str:  # so f-strings print "ok", not "EvalStatus.OK"
        return self.value


class MutationStatus(str, Enum):
    """Outcome of writing one child, as stored in ``evaluations.mutation_status``.

    ``OK`` children go on to a sandbox; for every other status the mutator
    produced no program to run (``NO_OP`` children are the parent unchanged),
    and the status is also the evaluation's ``status``.
    """

    OK = "ok"  # a new program; still checked by the engine's ast.parse (SYNTAX_ERROR)
    NO_OP = "no_op"  # the child reproduces its parent
    MALFORMED = "malformed"  # no usable diff / code block / body, or cut at max_new_tokens mid-edit
    CONTEXT_NOT_FOUND = "context_not_found"  # (diff) a hunk's context is not in the parent
    EMPTY_MIDDLE = "empty_middle"  # (FIM) the model wrote nothing for the hole
    PROMPT_TOO_LONG = "prompt_too_long"  # the prompt (even windowed) leaves no room in the model's context
    MODEL_ERROR = "model_error"  # the model backend failed for this child (e.g. HTTP retries exhausted)
    SYNTAX_ERROR = "syntax_error"  # the child does not parse (set by the engine, never sandboxed)
    MUTATOR_ERROR = "mutator_error"  # the mutator raised for the whole batch (set by the engine)

    def __str__(self) -> str:
        return self.value


#: ``Proposal.mutator`` / ``evaluations.mutator`` of the environment's seed programs.
SEED_MUTATOR = "seed"


class AdapterStatus(str, Enum):
    """Outcome of one in-run fine-tuning round, as stored in ``adapters.status``."""

    TRAINING = "training"  # started; a round still in this state when the run was killed did not finish
    OK = "ok"  # trained and loaded by the lane's mutator actors: its children record its version
    FAILED = "failed"  # export or training raised (``error``); the run goes on with the last good adapter
    LOAD_FAILED = "load_failed"  # trained, but a mutator actor could not load it; the last good one stays
    ABANDONED = "abandoned"  # the run stopped before the round finished

    def __str__(self) -> str:
        return self.value


class AddStatus(str, Enum):
    """Result of offering one evaluated program to the archive (pyribs' 0/1/2)."""

    NOT_ADDED = "not_added"
    IMPROVED = "improved"
    NEW_CELL = "new_cell"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class DescriptorSpace:
    """Behaviour space of an environment: one entry per descriptor dimension.

    ``lower``/``upper`` are inclusive bounds; ``bins`` is the default number of
    grid cells along each dimension (a grid archive may override it).
    """

    names: tuple[str, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    bins: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(str(n) for n in self.names))
        object.__setattr__(self, "lower", tuple(float(v) for v in self.lower))
        object.__setattr__(self, "upper", tuple(float(v) for v in self.upper))
        object.__setattr__(self, "bins", tuple(int(v) for v in self.bins))
        d = len(self.names)
        if d == 0:
            raise ValueError("DescriptorSpace needs at least one dimension; got names=()")
        for label, seq in (("lower", self.lower), ("upper", self.upper), ("bins", self.bins)):
            if len(seq) != d:
                raise ValueError(
                    f"DescriptorSpace.{label} has {len(seq)} entries but names has {d} "
                    f"({list(self.names)}); give one {label} value per descriptor"
                )
        for name, lo, hi, b in zip(self.names, self.lower, self.upper, self.bins):
            if not (math.isfinite(lo) and math.isfinite(hi)):
                raise ValueError(f"descriptor {name!r}: bounds must be finite, got [{lo}, {hi}]")
            if not lo < hi:
                raise ValueError(
                    f"descriptor {name!r}: lower bound {lo} must be below upper bound {hi}"
                )
            if b < 1:
                raise ValueError(f"descriptor {name!r}: bins must be >= 1, got {b}")

    @property
    def dims(self) -> int:
        return len(self.names)

    def to_dict(self) -> dict[str, list]:
        return {
            "names": list(self.names),
            "lower": list(self.lower),
            "upper": list(self.upper),
            "bins": list(self.bins),
        }


@dataclass(frozen=True)
class Evaluation:
    """What an environment's ``score`` returns for a valid program.

    ``descriptor`` has one float per dimension of the descriptor space; ``info``
    is free-form JSON-serialisable detail kept in the run store.
    """

    fitness: float
    descriptor: tuple[float, ...]
    info: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskContext:
    """What a mutator may know about the environment when it writes children.

    ``entry_point`` is the function a program must define (e.g. ``"pack"``) and
    ``signature`` its ``def`` line; ``description`` is a short natural-language
    statement of the task, used by language-model prompts.
    """

    name: str
    description: str
    entry_point: str
    signature: str = ""
    api_doc: str = ""


@dataclass(frozen=True)
class Parent:
    """An archive elite offered to a mutator as a parent."""

    id: int
    source: str
    fitness: float
    descriptor: tuple[float, ...]
    generation: int = 0


@dataclass(frozen=True)
class Proposal:
    """One child program written by a mutator, with per-child metadata.

    ``source`` is None when the mutator could not produce a program (``status``
    says why, e.g. ``MALFORMED`` or ``CONTEXT_NOT_FOUND``). ``status`` is
    ``MutationStatus.OK`` for a usable child; ``SYNTAX_ERROR`` is set by the
    engine's ``ast.parse`` check before sandboxing. A status given as its string
    value (``"ok"``) is converted; an unknown one raises ``ValueError``.
    """

    source: str | None
    parent_ids: tuple[int, ...]
    mutator: str
    status: MutationStatus = MutationStatus.OK
    tokens_in: int = 0
    tokens_out: int = 0
    model_seconds: float = 0.0
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.status, MutationStatus):
            try:
                object.__setattr__(self, "status", MutationStatus(self.status))
            except ValueError:
                raise ValueError(
                    f"Proposal.status {self.status!r} is not a mutation status; use one of "
                    f"{[s.value for s in MutationStatus]} (elm.types.MutationStatus)"
                ) from None

    @property
    def usable(self) -> bool:
        """True when the child is a program to evaluate (status OK and a source)."""
        return self.status is MutationStatus.OK and self.source is not None


@dataclass(frozen=True)
class EvalRequest:
    """A program to evaluate in a sandbox. ``id`` is the run-wide evaluation id.

    ``seed`` is the run seed: the candidate's randomness (Python's ``random``, numpy's
    global RNG) is seeded with :func:`candidate_seed` of it and the source, so the same
    program in the same run sees the same random numbers in any slot or sandbox.
    """

    id: int
    source: str
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise TypeError(f"EvalRequest.seed must be an int (the run seed), got {self.seed!r}")


def candidate_seed(run_seed: int, source: str) -> int:
    """The seed a program's randomness gets: 64 bits of BLAKE2b over the run seed and the source.

    Returns an int in [0, 2**64). Used by the sandboxes and by ``Environment.evaluate_local``;
    numpy's legacy global RNG takes it modulo 2**32.
    """
    import hashlib

    digest = hashlib.blake2b(f"{int(run_seed)}\0{source}".encode("utf-8", "surrogatepass"), digest_size=8)
    return int.from_bytes(digest.digest(), "big")


@dataclass(frozen=True)
class EvalResult:
    """Structured result of one evaluation; produced for every request.

    Times are seconds: ``run_s`` executing the program, ``score_s`` scoring its
    output, ``total_s`` the whole sandbox round trip. ``error`` holds the reason
    or traceback tail (at most a few KiB) for non-OK statuses.
    """

    id: int
    status: EvalStatus
    fitness: float | None = None
    descriptor: tuple[float, ...] | None = None
    info: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None
    stdout_tail: str = ""
    output_truncated: bool = False
    run_s: float = 0.0
    score_s: float = 0.0
    total_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status is EvalStatus.OK


@dataclass(frozen=True)
class Elite:
    """The best program found so far in one archive cell.

    ``cell`` is the flat cell index; ``id`` is the evaluation id that produced
    the program (stable across resumes); ``created_at`` is a UNIX timestamp.
    """

    id: int
    cell: int
    source: str
    fitness: float
    descriptor: tuple[float, ...]
    parent_ids: tuple[int, ...] = ()
    mutator: str = ""
    generation: int = 0
    created_at: float = 0.0
