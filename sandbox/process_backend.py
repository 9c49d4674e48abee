"""``sandbox=process``: the fork server as a plain host subprocess. UNSAFE, for trusted programs only."""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile

from elm.sandbox import EnvironmentSpec, SandboxLimits

from ._pool import FORKSERVER, ForkServerPool, Slot, thread_env

log = logging.getLogger("sandbox")

#: host environment variables passed to the fork server (everything else, API keys included, is dropped)
_PASS_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "PYTHONUSERBASE", "VIRTUAL_ENV")


def package_roots(names) -> list[str]:
    """Directories to put on PYTHONPATH so that the top-level packages ``names`` import as on the host."""
    roots: list[str] = []
    for name in names:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            continue
        locations = list(spec.submodule_search_locations or []) or ([spec.origin] if spec.origin else [])
        for loc in locations:
            if not loc or not os.path.exists(loc):
                continue
            root = os.path.dirname(os.path.abspath(loc))
            if root not in roots:
                roots.append(root)
    return roots


class ProcessSandbox(ForkServerPool):
    """K fork servers run directly on the host with rlimits. NOT an isolation boundary.

    Candidates run as the host user and can read every file that user can read,
    use the network, signal the fork server and, as root, ignore RLIMIT_NPROC.
    Use it only for trusted programs (tests, hand-written seeds) or on machines
    without gVisor.
    """

    backend = "process"
    unsafe = True

    def __init__(
        self,
        *,
        env: EnvironmentSpec,
        limits: SandboxLimits,
        workers: int = 2,
        runtime_dir: str | None = None,
    ) -> None:
        super().__init__(env=env, limits=limits, workers=workers, runtime_dir=runtime_dir)
        log.warning(
            "sandbox=process gives candidates full access to this machine; use only for trusted "
            "programs or machines without gVisor"
        )
        if runtime_dir:
            os.makedirs(runtime_dir, exist_ok=True)
        self._workdir = tempfile.mkdtemp(prefix="elm-process-", dir=runtime_dir or None)
        # Candidates' cwd and TMPDIR; the fork server empties it after every candidate.
        self._scratch = os.path.join(self._workdir, "scratch")
        os.makedirs(self._scratch)
        top = env.target.split(".", 1)[0]
        roots = package_roots(["elm", top])
        extra = os.environ.get("PYTHONPATH", "")
        self._pythonpath = os.pathsep.join(roots + ([extra] if extra else []))
        try:
            self._start_all()
        except BaseException:
            self.close()
            raise

    def _spawn(self, slot: Slot) -> None:
        env = {k: os.environ[k] for k in _PASS_ENV if k in os.environ}
        env.update(thread_env())
        env.update({"PYTHONPATH": self._pythonpath, "TMPDIR": self._scratch})
        slot.log_path = os.path.join(self._workdir, f"slot-{slot.index}-{slot.generation}.log")
        with open(slot.log_path, "ab") as logf:
            slot.proc = subprocess.Popen(
                [sys.executable, "-P", "-u", FORKSERVER],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=logf,
                cwd=self._scratch, env=env, bufsize=0, close_fds=True, start_new_session=True,
            )

    def _server_config(self) -> dict:
        cfg = super()._server_config()
        cfg["scratch_dirs"] = [self._scratch]
        return cfg

    def _teardown(self, proc, handle) -> None:
        if proc is None:
            return
        try:
            proc.stdin.close()  # EOF: the server exits after its current candidate
        except OSError:
            pass
        try:
            proc.wait(0.5)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # its session: the server (candidates die with it)
        except OSError:
            pass
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            log.error("process sandbox: fork server %d did not exit", proc.pid)
        try:
            proc.stdout.close()
        except OSError:
            pass

    def _after_close(self) -> None:
        shutil.rmtree(getattr(self, "_workdir", ""), ignore_errors=True)
