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

    def evaluate_local(self, source: str, *, seed: int = 0, timeout_s: float | None = None) -> Evaluation:
        """Evaluate ``source`` without a sandbox, the way the sandbox does: same result, no isolation.

        ``execute`` runs in a forked child process (randomness seeded as in the sandbox,
        from ``seed``, the run seed: see :func:`seed_randomness`), its output crosses a pipe as
        JSON, and ``score`` runs here, in a process the program never ran in: a program
        that patches ``math.fsum``, numpy or ``json.loads`` at import time changes only
        the child. For checking an environment while writing it; never use it on
        programs written by a model (the child has this process's rights).

        Raises InvalidProgram as ``execute``/``score`` do, :class:`ProgramError` when the
        program raised, exited or was killed (its traceback tail in the message), and
        TimeoutError after ``timeout_s`` seconds (None: no limit). POSIX only (fork).
        """
        output = run_in_child(self, source, seed=seed, timeout_s=timeout_s)
        return validate_evaluation(self.score(output), self.descriptor_space)

    def evaluate_in_process(self, source: str, *, seed: int = 0) -> Evaluation:
        """Execute and score ``source`` in this very process: fast, but the program can patch the scoring.

        For trusted programs only (tests of an environment's own seeds, profiling). A
        program that patches ``math.fsum`` or ``json.loads`` at import time changes this
        process's ``score``; :meth:`evaluate_local` is the faithful check.
        """
        from elm.types import candidate_seed

        preload_modules(self)
        seed_randomness(candidate_seed(seed, source))
        output = roundtrip_json(self.execute(source))
        return validate_evaluation(self.score(output), self.descriptor_space)


class ProgramError(RuntimeError):
    """The program raised, exited or was killed in :meth:`Environment.evaluate_local` (traceback in the message)."""


def seed_randomness(seed: int) -> None:
    """Seed what an unseeded program draws from: Python's ``random`` and numpy's global RNG.

    Called in every candidate's process right before ``execute``, with
    ``elm.types.candidate_seed(run seed, source)``. numpy's legacy global RNG
    (``np.random.random``, ``np.random.seed``-style calls) takes ``seed % 2**32`` and is
    seeded only when numpy is already imported (the default ``preload``); a program
    that imports numpy itself in an environment that does not preload it, ``os.urandom``,
    ``secrets``, ``random.SystemRandom`` and ``np.random.default_rng()`` without a seed
    stay nondeterministic (docs/environments.md).
    """
    import random
    import sys

    random.seed(seed)
    # Only if already imported (see preload_modules): importing numpy.random here would cost
    # every candidate ~100 ms.
    legacy = sys.modules.get("numpy.random")
    if legacy is not None and hasattr(legacy, "seed"):
        legacy.seed(seed % (1 << 32))


def preload_modules(env: Environment) -> None:
    """Import ``env.preload`` (as every fork server does once, before any candidate).

    With numpy among them, ``numpy.random`` too: numpy imports it lazily, and a global
    RNG created inside a candidate would be seeded from OS entropy, not by
    :func:`seed_randomness`.
    """
    import importlib
    import sys

    for module in getattr(env, "preload", ()) or ():
        importlib.import_module(module)
    if "numpy" in sys.modules:
        importlib.import_module("numpy.random")


def run_in_child(env: Environment, source: str, *, seed: int = 0, timeout_s: float | None = None) -> Any:
    """Run ``env.execute(source)`` in a forked child; return its output after a JSON round trip.

    The child seeds its randomness like a sandbox candidate, converts the output with
    :func:`to_jsonable` and writes one JSON line (what happened) plus the JSON output to
    a pipe. Errors: see :meth:`Environment.evaluate_local`.
    """
    import json
    import os
    import select
    import signal
    import time
    import traceback

    from elm.types import candidate_seed

    preload_modules(env)  # as the fork server does: numpy's global RNG is then seeded in the child
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # ---------------------------------------------------------------- the child
        code = 0
        try:
            os.close(read_fd)
            payload = b""
            try:
                seed_randomness(candidate_seed(seed, source))
                payload = json.dumps(to_jsonable(env.execute(source))).encode("utf-8")
                header = {"kind": "ok"}
            except InvalidProgram as exc:
                header = {"kind": "invalid", "message": str(exc) or "invalid program"}
            except SystemExit as exc:
                header = {"kind": "error", "error": f"program exited with code {exc.code} before returning"}
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                header = {"kind": "error", "error": "".join(traceback.format_exception(exc))[-4000:]}
            data = json.dumps(header).encode("utf-8") + b"\n" + payload
            view = memoryview(data)
            while view:
                view = view[os.write(write_fd, view):]
        except BaseException:  # noqa: BLE001 - the parent sees a broken answer
            code = 70
        finally:
            os._exit(code)
    os.close(write_fd)
    chunks: list[bytes] = []
    deadline = None if timeout_s is None else time.monotonic() + float(timeout_s)
    try:
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([read_fd], [], [], wait)[0]:
                os.kill(pid, signal.SIGKILL)
                raise TimeoutError(f"program did not finish within {timeout_s:g} s (killed)")
            chunk = os.read(read_fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_fd)
        _, status = os.waitpid(pid, 0)
    line, newline, payload = b"".join(chunks).partition(b"\n")
    if not newline:
        if os.WIFSIGNALED(status):
            raise ProgramError(f"program was killed by signal {signal.Signals(os.WTERMSIG(status)).name}")
        raise ProgramError(f"program exited with code {os.waitstatus_to_exitcode(status)} before returning")
    header = json.loads(line)
    if header["kind"] == "invalid":
        raise InvalidProgram(header["message"])
    if header["kind"] == "error":
        raise ProgramError(header["error"])
    return json.loads(payload)


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
