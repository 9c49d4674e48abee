"""``sandbox=gvisor`` (default): fork servers inside warm gVisor sandboxes.

Each of the K slots is one ``runsc`` sandbox (created through the ``gvisor``
package with a patched OCI spec, see :class:`_LimitedSandbox`) running one fork
server started by a raw ``runsc exec``. ``gvisor.Sandbox.exec`` is deliberately
not used: it leaks the caller's stdin into the sandbox, loses stdout and the
exit code on failure, and its timeout kills only the client.
"""

from __future__ import annotations

import ast
import compileall
import importlib.util
import json
import logging
import os
import secrets
import shutil
import subprocess
import sys

from elm.sandbox import EnvironmentSpec, SandboxLimits, SandboxUnavailable
from elm.types import EvalStatus

from ._pool import ForkServerPool, Slot, SlotLost, thread_env
from .confine import CANDIDATE_NAMESPACES
from .janitor import CGROUP_ROOT, DEFAULT_ROOT, Watchdog, janitor, owner_tag
from .reaper import ensure_reaper

log = logging.getLogger("sandbox")

#: unprivileged uid/gid candidates run as inside the sandbox (``nobody``)
CANDIDATE_UID = 65534
#: unprivileged uid/gid of the persistent scorer: not the candidates' uid, so that a candidate can
#: neither signal nor ptrace it (any uid works inside: the sandbox has no /etc/passwd)
SCORER_UID = 65533
#: where the staged harness (elm, sandbox, the environment's package) appears inside
HARNESS_MOUNT = "/harness"
#: in-sandbox capabilities of init and the fork server (gVisor-internal, not host capabilities):
#: drop candidates to ``nobody`` (SETUID/SETGID), kill whatever they leave behind (KILL), wipe
#: the files they leave in /tmp (DAC_OVERRIDE/FOWNER) and mount gVisor's own pids cgroup controller
#: (SYS_ADMIN). Candidates lose all of them at setuid().
SERVER_CAPS = ["CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SYS_ADMIN"]
#: host tasks (threads) one live in-sandbox process may cost on the ptrace platform (measured 5-11
#: for sleeping processes, ~13 for a fork bomb spinning at its cap)
HOST_TASKS_PER_PROCESS = 16
#: host tasks of an idle sandbox with a numpy fork server, its zygote, scorer and spare child
#: (measured 83-89 idle, up to ~112 right after a candidate)
HOST_TASKS_IDLE = 100
#: recycle a sandbox whose cgroup usage (pids or memory) ends a candidate above this share of its limit
#: (under ptrace the sentry never gives back the host threads its stub processes accumulate)
HEALTH_FRACTION = 0.5
#: while a candidate runs, the host stops the sandbox above these shares of its cgroup limits
GUARD_PIDS_FRACTION = 0.8
GUARD_MEMORY_FRACTION = 0.9
SYSTEM_DIRS = ("/usr", "/bin", "/lib", "/lib64")

NOT_FOUND = (
    "runsc (gVisor) not found: install it with `apt-get install runsc` as root (Debian/Ubuntu), "
    "or choose sandbox=process (unsafe: candidates then run directly on this machine). "
    "If runsc is installed outside PATH, set RUNSC_PATH=/path/to/runsc. See docs/sandbox.md."
)
NOT_ROOT = (
    "the gvisor sandbox backend must run as root (uid 0), but this process runs as uid {uid}: "
    "rootless runsc applies no cgroup limits (no per-sandbox memory or pids backstop) and needs "
    "newuidmap/newgidmap (`apt-get install uidmap` plus /etc/subuid entries). Run the evaluators as "
    "root (e.g. in a container or with sudo), or choose sandbox=process (unsafe). See docs/sandbox.md."
)

# PID 1 of every sandbox: reaps orphans (a `sleep infinity` init leaves every killed
# candidate as a zombie). Runs with -I -S: no site, no environment, nothing imported.
# Its stdio are host files (runsc's stderr log), and gVisor lets any process in the
# sandbox reopen another's fds through /proc/1/fd when the file's mode allows: so the
# first thing it does is point them at the sandbox's /dev/null.
INIT_CODE = (
    "import os, signal\n"
    "null = os.open('/dev/null', os.O_RDWR)\n"
    "for fd in (0, 1, 2):\n"
    "    os.dup2(null, fd)\n"
    "os.close(null)\n"
    "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})\n"
    "while True:\n"
    "    try:\n"
    "        while os.waitpid(-1, os.WNOHANG)[0] > 0:\n"
    "            pass\n"
    "    except ChildProcessError:\n"
    "        pass\n"
    "    signal.sigtimedwait({signal.SIGCHLD}, 1.0)\n"
)


def task_cap(limits: SandboxLimits) -> int:
    """Tasks (processes + threads) a candidate may have: ``nproc``, capped so the host pids cgroup holds.

    gVisor does not enforce RLIMIT_NPROC, and every live process inside costs
    ~5-13 host tasks (ptrace stubs, sentry threads) against the sandbox's host
    pids cgroup, which kills the whole sandbox when full. The fork server
    puts every child into an in-sandbox pids cgroup (gVisor's own cgroupfs)
    with pids.max = this value, so fork() fails with EAGAIN beyond it.
    """
    room = (limits.sandbox_pids - HOST_TASKS_IDLE) // HOST_TASKS_PER_PROCESS
    return max(2, min(limits.nproc, room))


def _runsc_path() -> str | None:
    path = os.environ.get("RUNSC_PATH") or shutil.which("runsc")
    if path and os.path.isfile(path) and os.access(path, os.X_OK):
        return path
    return None


def check_gvisor() -> None:
    """Raise :class:`SandboxUnavailable`, saying how to fix it, unless the gVisor backend can run here."""
    runsc = _runsc_path()
    if runsc is None:
        raise SandboxUnavailable(NOT_FOUND)
    if os.geteuid() != 0:
        raise SandboxUnavailable(NOT_ROOT.format(uid=os.geteuid()))
    try:
        import gvisor.sandbox  # noqa: F401
    except ImportError as exc:
        raise SandboxUnavailable(
            f"the `gvisor` Python package is not importable ({exc}): pip install 'gvisor>=2026.10.22.0', "
            "or choose sandbox=process (unsafe)"
        ) from None
    try:
        out = subprocess.run([runsc, "--version"], stdin=subprocess.DEVNULL, capture_output=True,
                             text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as exc:
        raise SandboxUnavailable(f"`{runsc} --version` failed to run: {exc}") from None
    if out.returncode != 0:
        raise SandboxUnavailable(f"`{runsc} --version` failed (exit {out.returncode}): {out.stderr.strip()[-500:]}")


# ----------------------------------------------------------------------------- staging


def _under(path: str, roots) -> bool:
    real = os.path.realpath(path)
    for root in roots:
        root_real = os.path.realpath(root)
        if real == root_real or real.startswith(root_real.rstrip("/") + "/"):
            return True
    return False


def python_binds() -> list[str]:
    """Host directories bound read-only (each at its own path) so the sandbox can run our Python.

    ``sys.base_prefix`` (the interpreter, e.g. a pyenv build under /root) and
    ``sys.prefix`` (the venv with numpy etc.), unless they already live under
    the system directories that are always bound.
    """
    binds: list[str] = []
    for prefix in (sys.base_prefix, sys.prefix):
        prefix = os.path.abspath(prefix)
        if _under(prefix, SYSTEM_DIRS) or any(_under(prefix, [b]) for b in binds):
            continue
        binds.append(prefix)
    exe_dir = os.path.dirname(os.path.abspath(sys.executable))
    if not _under(exe_dir, list(SYSTEM_DIRS) + binds):
        binds.append(exe_dir)
    return binds


_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".git", ".pytest_cache", ".mypy_cache",
                                 ".ruff_cache", "*.egg-info")


def _package_locations(name: str) -> list[str] | None:
    """The files or directories of the top-level module or package ``name`` on this machine's sys.path
    (None when it is not importable here). Nothing is imported."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    locations = list(spec.submodule_search_locations or []) or ([spec.origin] if spec.origin else [])
    return [loc for loc in locations if loc and os.path.exists(loc)]


def _module_files(locations: list[str], module: str) -> list[tuple[str, str]]:
    """``(source file, dotted name)`` of what importing the dotted ``module`` runs inside its
    top-level package (each package's ``__init__.py`` on the way, then the module), found on disk
    from the package's ``locations``; a name that does not resolve (an attribute imported by
    name) ends the walk."""
    parts = module.split(".")
    files: list[tuple[str, str]] = []
    for loc in locations:
        if not os.path.isdir(loc):
            if len(parts) == 1 and loc.endswith(".py"):
                files.append((loc, module))
            continue
        path = loc
        files.append((os.path.join(loc, "__init__.py"), parts[0]))
        for k, part in enumerate(parts[1:], start=2):
            path = os.path.join(path, part)
            if os.path.isdir(path):
                files.append((os.path.join(path, "__init__.py"), ".".join(parts[:k])))
            elif os.path.isfile(path + ".py"):
                files.append((path + ".py", ".".join(parts[:k])))
                break
            else:
                break
    return [(f, name) for f, name in files if os.path.isfile(f)]


def _imports(path: str, module: str) -> set[str]:
    """Dotted names the module at ``path`` (named ``module``) may import: absolute imports, relative
    ones resolved, and ``from x import y`` also as ``x.y`` (y may be a submodule)."""
    try:
        with open(path, "rb") as f:
            tree = ast.parse(f.read(), path)
    except (OSError, SyntaxError, ValueError):
        return set()  # it fails the same way on the host; nothing to follow
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: max(0, len(package.split(".")) - node.level + 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target:
                names.add(target)
                names.update(f"{target}.{a.name}" for a in node.names if a.name != "*")
    return names


#: packages of the harness itself: their imports are the project's installed dependencies
#: (tests/test_layers.py keeps it so), so they are staged but their imports are not followed
_HARNESS_PACKAGES = ("elm", "sandbox")


def stage_harness(dest: str, names, visible_roots, *, follow=()) -> list[str]:
    """Copy the top-level packages ``names``, and those the modules ``follow`` import, that the
    sandbox cannot see into ``dest``.

    A package that lives under one of ``visible_roots`` (installed in the venv) is used in place.
    The imports of the dotted modules ``follow`` (the environment's module) are followed, module
    by module and transitively, through every staged package (read from the source, not
    executed), so an environment whose module imports another package of the user's project or
    of an editable checkout (``from environments.circle_packing import CirclePacking``) finds it
    inside too; an imported name not importable on the host either (an optional dependency) is
    skipped. ``names`` must all be importable. Returns the names that were staged, in order.
    """
    os.makedirs(dest, exist_ok=True)
    staged: list[str] = []
    checked: dict[str, list[str] | None] = {}  # top-level name -> its locations if staged, else None

    def stage(name: str, required: bool) -> list[str] | None:
        if name in checked:
            return checked[name]
        checked[name] = None
        locations = _package_locations(name)
        if locations is None and required:
            raise ValueError(
                f"cannot find the package {name!r} on this machine's sys.path; it must be importable "
                "here so that it can be staged into the sandbox (run from the project directory or "
                "pip install it)"
            )
        if not locations:
            if required:
                raise ValueError(f"package {name!r} has no files on disk to stage into the sandbox")
            return None
        if all(_under(loc, visible_roots) for loc in locations):
            return None
        for loc in locations:
            if os.path.isdir(loc):
                shutil.copytree(loc, os.path.join(dest, name), symlinks=True, ignore=_IGNORE,
                                dirs_exist_ok=True)
            else:
                shutil.copy2(loc, os.path.join(dest, os.path.basename(loc)))
        staged.append(name)
        checked[name] = locations
        return locations

    for name in dict.fromkeys(names):
        stage(name, required=True)
    todo, seen = list(follow), set(follow)
    while todo:
        module = todo.pop()
        top = module.split(".", 1)[0]
        if top in sys.stdlib_module_names or top in _HARNESS_PACKAGES:
            continue
        locations = stage(top, required=False)
        if locations is None:  # visible in place, or not importable: installed packages bring their own
            continue
        for path, name in _module_files(locations, module):
            for imported in _imports(path, name):
                if imported not in seen:
                    seen.add(imported)
                    todo.append(imported)
    compileall.compile_dir(dest, quiet=2, workers=1)
    # Readable by the unprivileged candidate uid (lazy imports happen in the candidate).
    for dirpath, _dirnames, filenames in os.walk(dest):
        os.chmod(dirpath, 0o755)
        for fn in filenames:
            p = os.path.join(dirpath, fn)
            if not os.path.islink(p):
                os.chmod(p, 0o755 if os.access(p, os.X_OK) else 0o644)
    return staged


# ----------------------------------------------------------------------------- runsc sandbox


def _make_sandbox_class():
    from gvisor.sandbox import Sandbox as _GSandbox

    class _LimitedSandbox(_GSandbox):
        """``gvisor.Sandbox`` whose OCI spec gets limits, a sized /tmp, a reaping init and our binds."""

        def __init__(self, *, patch, **kwargs) -> None:
            self._patch = patch
            super().__init__(**kwargs)

        def _create_bundle(self) -> str:
            bundle = super()._create_bundle()
            path = os.path.join(bundle, "config.json")
            with open(path) as f:
                spec = json.load(f)
            self._patch(spec)
            with open(path, "w") as f:
                json.dump(spec, f, indent=2)
            return bundle

        @property
        def state_dir(self) -> str:
            return self._state_dir

        @property
        def runsc(self) -> str:
            return self._runsc_path

    return _LimitedSandbox


class GVisorSandbox(ForkServerPool):
    """K warm gVisor sandboxes, each running a fork server; see docs/sandbox.md.

    ``runtime_dir`` is the *root* under which this object creates its own
    directory ``<pid>-<start>-<random>/`` (runsc state, bundles, staged harness,
    logs); it defaults to ``/tmp/elm-sandbox``. :func:`sandbox.janitor` runs on
    that root at construction to remove sandboxes left by dead owners.
    """

    backend = "gvisor"
    unsafe = False

    @classmethod
    def check_available(cls) -> None:
        check_gvisor()

    def __init__(
        self,
        *,
        env: EnvironmentSpec,
        limits: SandboxLimits,
        workers: int = 2,
        runtime_dir: str | None = None,
    ) -> None:
        super().__init__(env=env, limits=limits, workers=workers, runtime_dir=runtime_dir)
        check_gvisor()
        if task_cap(limits) < limits.nproc:
            log.warning(
                "gvisor sandbox: nproc=%d is capped at %d tasks per candidate, because each task costs up to "
                "%d host tasks and sandbox_pids=%d must also hold the idle sandbox (~%d); set "
                "sandbox_pids >= %d to allow nproc=%d (fork bombs then take longer to stop), or lower nproc",
                limits.nproc, task_cap(limits), HOST_TASKS_PER_PROCESS, limits.sandbox_pids, HOST_TASKS_IDLE,
                HOST_TASKS_IDLE + HOST_TASKS_PER_PROCESS * limits.nproc, limits.nproc,
            )
        self._root = os.path.abspath(runtime_dir or DEFAULT_ROOT)
        os.makedirs(self._root, mode=0o700, exist_ok=True)
        try:
            n = janitor(self._root)
            if n:
                log.warning("gvisor sandbox: removed %d sandbox(es) leaked by dead processes under %s", n, self._root)
        except Exception as exc:  # noqa: BLE001
            log.warning("gvisor sandbox: janitor failed under %s: %s", self._root, exc)
        self._tag = f"{owner_tag()}-{secrets.token_hex(4)}"
        self._dir = os.path.join(self._root, self._tag)
        os.makedirs(self._dir, mode=0o700)
        # Removes this object's sandboxes if its process dies without close() (kill -9).
        self._watchdog = Watchdog(owner_dir=self._dir, cgroup_prefix=f"elm-{self._tag}-")
        self._sandbox_cls = _make_sandbox_class()
        self._reaper = ensure_reaper()
        try:
            self._python = os.path.abspath(sys.executable)
            self._binds = python_binds()
            visible = list(SYSTEM_DIRS) + self._binds
            harness = os.path.join(self._dir, "harness")
            top = env.target.split(".", 1)[0]
            self._staged = stage_harness(harness, ["elm", "sandbox", top], visible,
                                         follow=[env.target.rpartition(".")[0]])
            self._harness = harness
            if "sandbox" in self._staged:
                self._forkserver = f"{HARNESS_MOUNT}/sandbox/forkserver.py"
            else:
                self._forkserver = os.path.join(os.path.dirname(os.path.abspath(__file__)), "forkserver.py")
            self._start_all()
        except BaseException:
            self.close()
            raise

    # -- OCI spec

    def _patch_spec(self, spec: dict) -> None:
        lim = self.limits
        spec["hostname"] = "sandbox"
        proc = spec["process"]
        proc["args"] = [self._python, "-I", "-S", "-c", INIT_CODE]
        proc["env"] = ["PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/tmp", "LANG=C.UTF-8"]
        proc["cwd"] = "/tmp"
        proc["noNewPrivileges"] = True
        proc["capabilities"] = {k: list(SERVER_CAPS) for k in ("bounding", "effective", "permitted")}
        mounts = [m for m in spec["mounts"] if m.get("destination") != "/tmp"]
        # Order matters: /tmp first, so that a venv under /tmp is bound on top of it.
        mounts.append({
            "destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
            "options": ["rw", "nosuid", "nodev", f"size={lim.tmpfs_mb}m", "mode=1777"],
        })
        for path in self._binds:
            mounts.append({"destination": path, "type": "bind", "source": path,
                           "options": ["rbind", "ro", "nosuid", "nodev"]})
        mounts.append({"destination": HARNESS_MOUNT, "type": "bind", "source": self._harness,
                       "options": ["rbind", "ro", "nosuid", "nodev"]})
        spec["mounts"] = mounts
        mem = lim.sandbox_memory_mb << 20
        spec.setdefault("linux", {})["resources"] = {
            "memory": {"limit": mem, "swap": mem},
            "pids": {"limit": lim.sandbox_pids},
        }

    # -- hooks

    @property
    def max_procs(self) -> int:
        """Tasks (processes + threads) a candidate may have: see :func:`task_cap`."""
        return task_cap(self.limits)

    def _server_config(self, slot: Slot) -> dict:
        cfg = super()._server_config(slot)
        cfg["pidns"] = True
        cfg["unshare"] = CANDIDATE_NAMESPACES
        cfg["unshare_required"] = True
        cfg["drop_uid"] = CANDIDATE_UID
        cfg["scorer_uid"] = SCORER_UID
        cfg["max_procs"] = self.max_procs
        cfg["pids_cgroup"] = True
        cfg["scratch_dirs"] = ["/tmp", "/dev/shm"]
        cfg["keep"] = list(self._binds) + [HARNESS_MOUNT]
        return cfg

    def _cgroup_usage(self, slot: Slot) -> dict[str, tuple[int, int]]:
        """{"pids"|"memory": (used, limit)} from the sandbox's host cgroups (v1 or v2); {} if unreadable."""
        sid = getattr(slot.handle, "id", None)
        out: dict[str, tuple[int, int]] = {}
        if not sid:
            return out
        checks = (
            ("pids", ("pids/{}/pids.current", "{}/pids.current"), self.limits.sandbox_pids),
            ("memory", ("memory/{}/memory.usage_in_bytes", "{}/memory.current"),
             self.limits.sandbox_memory_mb << 20),
        )
        for name, paths, limit in checks:
            for rel in paths:
                try:
                    with open(os.path.join(CGROUP_ROOT, rel.format(sid))) as f:
                        out[name] = (int(f.read().split()[0]), limit)
                    break
                except (OSError, ValueError, IndexError):
                    continue
        return out

    def _health_problem(self, slot: Slot) -> str | None:
        """Host-side look at the sandbox's cgroups after a candidate: past HEALTH_FRACTION -> recycle."""
        for name, (used, limit) in self._cgroup_usage(slot).items():
            if used > HEALTH_FRACTION * limit:
                return f"cgroup {name} usage {used} is above {HEALTH_FRACTION:.0%} of its limit {limit}"
        return None

    def _guard(self, slot: Slot):
        """While a candidate runs: stop the sandbox *before* a cgroup backstop kills it.

        The in-sandbox fork server can be starved by a fork bomb long enough for
        the sentry's host threads to reach the pids limit; the host is not. Near a
        backstop the host replaces the sandbox and reports the candidate's fault
        (``error`` for tasks, ``memory`` for memory) instead of ``sandbox_lost``.
        """

        def check() -> None:
            usage = self._cgroup_usage(slot)
            used, limit = usage.get("pids", (0, 1))
            if used > GUARD_PIDS_FRACTION * limit:
                raise SlotLost(
                    f"program made the sandbox use {used} of its {limit} host tasks (fork bomb?); killed",
                    status=EvalStatus.ERROR,
                )
            used, limit = usage.get("memory", (0, 1))
            if used > GUARD_MEMORY_FRACTION * limit:
                raise SlotLost(
                    f"program made the sandbox use {used >> 20} MiB of its {limit >> 20} MiB memory backstop; killed",
                    status=EvalStatus.MEMORY,
                )

        return check

    def _load_error_hint(self) -> str:
        return (
            f"\n(Inside the gVisor sandbox only the Python runtime {self._binds} and the staged packages "
            f"{self._staged} (at {HARNESS_MOUNT}) are visible, besides /usr, /bin, /lib. Modules the "
            "environment imports must be installed in this venv or importable on the host when the sandbox "
            "starts: the packages its module imports are staged too.)"
        )

    def _spawn(self, slot: Slot) -> None:
        sid = f"elm-{self._tag}-{slot.index}-{slot.generation}"
        try:
            sandbox = self._sandbox_cls(
                patch=self._patch_spec, runtime_dir=self._dir, sandbox_id=sid, network="none",
            )
        except Exception as exc:  # noqa: BLE001 (gvisor.Error, OSError)
            raise SandboxUnavailable(f"gvisor sandbox: could not create sandbox {sid}: {exc}") from None
        slot.handle = sandbox
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp",
               "LANG": "C.UTF-8", "PYTHONPATH": HARNESS_MOUNT, "PYTHONNOUSERSITE": "1"}
        env.update(thread_env())
        cmd = [sandbox.runsc, "--root", sandbox.state_dir, "exec", "--cwd", "/tmp"]
        for k, v in env.items():
            cmd += ["--env", f"{k}={v}"]
        cmd += [sid, self._python, "-P", "-u", self._forkserver]
        slot.log_path = os.path.join(self._dir, f"slot-{slot.index}-{slot.generation}.log")
        # O_APPEND: gVisor writes a regular-file stdio at offset 0 otherwise (infra.md A1).
        with open(slot.log_path, "ab") as logf:
            slot.proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=logf,
                bufsize=0, close_fds=True, start_new_session=True,
            )

    def _teardown(self, proc, handle) -> None:
        self._reaper.burst()
        if proc is not None:
            try:
                proc.stdin.close()
            except OSError:
                pass
            try:
                proc.kill()
                proc.wait(10)
            except Exception:  # noqa: BLE001
                pass
            try:
                proc.stdout.close()
            except OSError:
                pass
        if handle is not None:
            try:
                handle.close()  # runsc kill SIGKILL + delete --force + remove the bundle
            except Exception as exc:  # noqa: BLE001
                log.error("gvisor sandbox: closing %s failed: %s", getattr(handle, "id", "?"), exc)
        self._reaper.burst(2.0)

    def _after_close(self) -> None:
        d = getattr(self, "_dir", None)
        if d and os.path.isdir(d):
            state = os.path.join(d, "state")
            runsc = _runsc_path()
            leftover: list[str] = []
            if runsc and os.path.isdir(state):
                try:
                    out = subprocess.run([runsc, "--root", state, "list", "--quiet"], stdin=subprocess.DEVNULL,
                                         capture_output=True, text=True, timeout=30)
                    leftover = out.stdout.split()
                except (OSError, subprocess.SubprocessError):
                    pass
            if leftover:
                from .janitor import clean_owner_dir

                log.warning("gvisor sandbox: %d sandbox(es) still listed at close; deleting", len(leftover))
                self._reaper.burst()
                clean_owner_dir(d)
            else:
                shutil.rmtree(d, ignore_errors=True)
        watchdog = getattr(self, "_watchdog", None)
        if watchdog is not None:
            watchdog.close()

