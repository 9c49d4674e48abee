"""The Environment interface: what a fitness domain provides to the engine.

An environment is split in two halves on purpose:

* :meth:`Environment.execute` runs *inside the sandbox*, in a forked child
  process that also runs the untrusted candidate program. It executes the
  program and returns its raw, JSON-serialisable output (e.g. circle centres).
* :meth:`Environment.score` runs in a fresh child of the sandbox's clean fork
  server and turns that raw output into fitness and descriptor. Because the
  candidate never shares a process with ``score``, it cannot patch the
  scoring code (monkey-patching ``score`` from the program has no effect).

Both must be deterministic for a given program. An environment is rebuilt
inside the sandbox from its config (``_target_`` plus keyword arguments), so
its constructor must take only plain, JSON-serialisable keyword arguments.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from elm.types import DescriptorSpace, Evaluation, TaskContext


class InvalidProgram(Exception):
    """Raised by ``execute`` or ``score`` when a program ran but its output is unacceptable.

    The message is the reason stored with status ``invalid`` (e.g.
    ``"circles 3 and 7 overlap"``). Any other exception is recorded as status
    ``error`` with its traceback tail.
    """


class Environment(ABC):
    """A fitness domain: seed programs, a descriptor space, execution and scoring.

    Subclasses set ``name`` and ``entry_point`` and implement the four abstract
    members. ``preload`` lists modules the sandbox's fork server imports once,
    so that each candidate starts with them warm. ``qd_offset`` is a fitness no
    valid program scores below: the QD score sums ``fitness - qd_offset`` over
    the elites, so with a negative fitness (a cost, an error) set it below the
    worst score, or the QD score falls as coverage grows (``qd.qd_offset``
    overrides it for one run).
    """

    name: ClassVar[str] = "environment"
    entry_point: ClassVar[str] = "main"
    preload: ClassVar[tuple[str, ...]] = ("numpy",)
    qd_offset: ClassVar[float] = 0.0

    @property
    @abstractmethod
    def descriptor_space(self) -> DescriptorSpace:
        """Names, bounds and default bins of the behaviour descriptors."""

    @abstractmethod
    def seed_programs(self) -> Sequence[str]:
        """Python sources of the initial population; each must evaluate ``ok``."""

    @abstractmethod
    def execute(self, source: str) -> Any:
        """Run ``source`` (untrusted) and return its JSON-serialisable raw output.

        Called inside the sandbox in the candidate's own process. Typical body:
        ``fn = load_entry_point(source, self.entry_point); return to_jsonable(fn())``.
        """

    @abstractmethod
    def score(self, output: Any) -> Evaluation:
        """Verify ``output`` and return fitness and descriptor (raise InvalidProgram if invalid)."""

    def task(self) -> TaskContext:
        """Natural-language context for language-model mutators (override to improve prompts)."""
        return TaskContext(
            name=self.name,
            description=(self.__doc__ or self.name).strip().splitlines()[0],
            entry_point=self.entry_point,
        )

    def evaluate_local(self, source: str) -> Evaluation:
        """Execute and score ``source`` in this process, without any sandbox.

        For checking an environment while writing it; never use it on programs
        written by a model. Validates the evaluation exactly as the engine does.
        """
        output = roundtrip_json(self.execute(source))
        return validate_evaluation(self.score(output), self.descriptor_space)


def load_entry_point(source: str, entry_point: str, *, filename: str = "<program>") -> Callable:
    """Execute program ``source`` in a fresh namespace and return its ``entry_point`` callable.

    Raises InvalidProgram when the program defines no such callable; syntax and
    runtime errors propagate unchanged (the sandbox records them as ``error``).
    """
    namespace: dict[str, Any] = {"__name__": "__program__"}
    exec(compile(source, filename, "exec"), namespace)
    fn = namespace.get(entry_point)
    if not callable(fn):
        raise InvalidProgram(f"program does not define a function named {entry_point!r}")
    return fn


def roundtrip_json(value: Any) -> Any:
    """Convert numpy arrays/scalars to plain lists/floats, as crossing the sandbox boundary does."""
    import json

    return json.loads(json.dumps(to_jsonable(value)))


def to_jsonable(value: Any) -> Any:
    """Recursively convert numpy arrays, numpy scalars and tuples to JSON-able Python data."""
    if hasattr(value, "tolist") and callable(value.tolist):
        return to_jsonable(value.tolist())  # recurse: arrays may hold NaN/inf
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        # JSON has no NaN/inf; keep them recognisable so score() can reject them.
        return repr(value)
    return value


def validate_evaluation(evaluation: Any, space: DescriptorSpace) -> Evaluation:
    """Check what ``score`` returned: finite fitness, one finite float per descriptor dim.

    Raises InvalidProgram naming the problem, so a faulty environment shows up
    as a per-candidate status rather than a crash of the run.
    """
    if not isinstance(evaluation, Evaluation):
        raise InvalidProgram(
            f"score() must return elm.Evaluation, got {type(evaluation).__name__}"
        )
    try:
        fitness = float(evaluation.fitness)
    except (TypeError, ValueError):
        raise InvalidProgram(f"fitness {evaluation.fitness!r} is not a number") from None
    if not math.isfinite(fitness):
        raise InvalidProgram(f"fitness is not finite ({fitness})")
    try:
        descriptor = tuple(float(v) for v in evaluation.descriptor)
    except (TypeError, ValueError):
        raise InvalidProgram(f"descriptor {evaluation.descriptor!r} is not a sequence of numbers") from None
    if len(descriptor) != space.dims:
        raise InvalidProgram(
            f"descriptor has {len(descriptor)} values but the environment declares "
            f"{space.dims} ({list(space.names)})"
        )
    bad = [n for n, v in zip(space.names, descriptor) if not math.isfinite(v)]
    if bad:
        raise InvalidProgram(f"descriptor values not finite for {bad}")
    return Evaluation(fitness=fitness, descriptor=descriptor, info=dict(evaluation.info))
