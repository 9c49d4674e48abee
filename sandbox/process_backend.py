"""``sandbox=process``: the fork server as a plain host subprocess. UNSAFE, for trusted programs only.

It keeps the gVisor backend's per-candidate limits where the OS allows:
rlimits (address space, CPU, file size, core; ``RLIMIT_NPROC`` too, which Linux
ignores for root), the wall-clock deadline, the output cap, the scratch
directory scrub, and a task cap. The task cap is kernel-enforced when this
process may create a host pids cgroup (root, with the pids controller
available): each slot gets ``elm-<owner>-<slot>-<generation>`` with
``pids.max`` = ``nproc``, and fork() beyond it fails with EAGAIN. Otherwise
the fork server counts the candidate's processes every 20 ms and kills it at
the cap.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from elm.sandbox import EnvironmentSpec, SandboxLimits

from ._pool import FORKSERVER, ForkServerPool, Slot, thread_env
from .confine import CANDIDATE_NAMESPACES
from .janitor import CGROUP_ROOT, Watchdog, owner_tag, remove_dead_cgroups

log = logging.getLogger("sandbox")

#: state one candidate can leave for the next that this backend does not isolate (docs/sandbox.md,
#: "What a candidate can leave behind"); logged at construction
NOT_ISOLATED = (
    "kernel keyrings of the host user",
    "files outside the scratch directory (/dev/shm, $HOME, anything the user may write)",
    "signals and ptrace between processes of the host user, the next candidate's waiting spare included",
    "host sysctls and cgroup files (when the evaluator runs as root)",
    "processes that escaped with setsid() when there is no pids cgroup (not root)",
)
#: isolated only with per-candidate namespaces, which need root on the host
NEEDS_NAMESPACES = (
    "SysV IPC and POSIX message queues",
    "abstract Unix sockets and loopback ports (the host's network is shared)",
    "the hostname",
)

#: host environment variables passed to the fork server (everything else, API keys included, is dropped)
_PASS_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "PYTHONUSERBASE", "VIRTUAL_ENV")


def pids_cgroup_parent() -> str | None:
    """Where this process may create a pids cgroup (cgroup v1 ``pids`` or a v2 root delegating it), or None."""
    if os.geteuid() != 0:
        return None
    v1 = os.path.join(CGROUP_ROOT, "pids")
    if os.path.isfile(os.path.join(v1, "cgroup.procs")) and os.access(v1, os.W_OK):
        return v1
    try:
        with open(os.path.join(CGROUP_ROOT, "cgroup.subtree_control")) as f:
            if "pids" in f.read().split() and os.access(CGROUP_ROOT, os.W_OK):
                return CGROUP_ROOT
    except OSError:
        pass
    return None


def _remove_cgroup(path: str) -> None:
    """Kill what is left in a slot's pids cgroup (escaped candidates have no parent-death signal), rmdir it."""
    for _ in range(50):
        try:
            with open(os.path.join(path, "cgroup.procs")) as f:
                pids = [int(x) for x in f.read().split()]
        except FileNotFoundError:
            return
        except (OSError, ValueError):
            pids = []
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.02)
    log.warning("process sandbox: pids cgroup %s still busy; the janitor removes it later", path)


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
    isolation_gaps = NOT_ISOLATED + tuple(f"{gap} (unless root)" for gap in NEEDS_NAMESPACES)

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
        # Candidates' cwd and TMPDIR, one per slot and sandbox (see _scratch_dir); the fork server
        # empties it after every candidate.
        self._scratch: dict[int, str] = {}
        # A host pids cgroup per slot for the task cap (named like the gVisor backend's, so that
        # the janitor removes those of a killed owner).
        self._cgroup_parent = pids_cgroup_parent()
        self._tag = f"{owner_tag()}-{secrets.token_hex(4)}"
        if self._cgroup_parent:
            remove_dead_cgroups()
        # Removes this object's cgroups (and what runs in them) if its process dies without close().
        self._watchdog = Watchdog(owner_dir=self._workdir, cgroup_prefix=f"elm-{self._tag}-")
        top = env.target.split(".", 1)[0]
        roots = package_roots(["elm", "sandbox", top])  # the fork server imports sandbox.* and elm
        extra = os.environ.get("PYTHONPATH", "")
        self._pythonpath = os.pathsep.join(roots + ([extra] if extra else []))
        try:
            self._start_all()
        except BaseException:
            self.close()
            raise
        namespaces = all(slot.info.get("namespaces") for slot in self._slots)
        log.warning(
            "sandbox=process cannot isolate one candidate from the next: %s; per-candidate IPC, network and UTS "
            "namespaces: %s (see docs/sandbox.md, 'What a candidate can leave behind')",
            "; ".join(NOT_ISOLATED + (() if namespaces else NEEDS_NAMESPACES)),
            "yes" if namespaces else "no (not root): candidates share the host's",
        )

    def _scratch_dir(self, slot: Slot) -> str:
        """A fresh scratch directory for this slot's new fork server, the previous one removed.

        One per slot: a slot's scrub after its candidate must not delete the files of a candidate
        running in another slot meanwhile. One per sandbox: a slot is replaced when its scrub could
        not empty the directory, and its successor must not inherit what was left there.
        """
        old = self._scratch.get(slot.index)
        if old:
            shutil.rmtree(old, ignore_errors=True)  # what cannot go stays in the workdir, unused
        path = os.path.join(self._workdir, f"scratch-{slot.index}-{slot.generation}")
        os.makedirs(path)
        self._scratch[slot.index] = path
        return path

    def _spawn(self, slot: Slot) -> None:
        slot.handle = None
        scratch = self._scratch_dir(slot)
        if self._cgroup_parent:
            path = os.path.join(self._cgroup_parent, f"elm-{self._tag}-{slot.index}-{slot.generation}")
            try:
                os.mkdir(path)
                slot.handle = path
            except OSError as exc:
                log.warning("process sandbox: cannot create the pids cgroup %s (%s); the fork server "
                            "counts processes instead", path, exc)
        env = {k: os.environ[k] for k in _PASS_ENV if k in os.environ}
        env.update(thread_env())
        env.update({"PYTHONPATH": self._pythonpath, "TMPDIR": scratch})
        slot.log_path = os.path.join(self._workdir, f"slot-{slot.index}-{slot.generation}.log")
        with open(slot.log_path, "ab") as logf:
            slot.proc = subprocess.Popen(
                [sys.executable, "-P", "-u", FORKSERVER],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=logf,
                cwd=scratch, env=env, bufsize=0, close_fds=True, start_new_session=True,
            )

    def _server_config(self, slot: Slot) -> dict:
        cfg = super()._server_config(slot)
        cfg["scratch_dirs"] = [self._scratch[slot.index]]
        # Best effort: only root can unshare on the host; otherwise candidates share the host's
        # IPC and network namespaces (the run log says so, see _limitations).
        cfg["unshare"] = CANDIDATE_NAMESPACES
        cfg["unshare_required"] = False
        if slot.handle:
            cfg["pids_cgroup_path"] = slot.handle
        return cfg

    def _teardown(self, proc, handle) -> None:
        if proc is not None:
            try:
                proc.stdin.close()  # EOF: the server exits after its current candidate
            except OSError:
                pass
            try:
                proc.wait(0.5)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # its session: the server and its zygote
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
        if handle:
            _remove_cgroup(handle)

    def _after_close(self) -> None:
        shutil.rmtree(getattr(self, "_workdir", ""), ignore_errors=True)
        watchdog = getattr(self, "_watchdog", None)
        if watchdog is not None:
            watchdog.close()
