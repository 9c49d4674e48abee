"""An evaluator worker killed with -9 leaves nothing running: its watchdog cleans up at once.

The owner runs in a subprocess and is SIGKILLed while a runaway candidate
burns CPU (and, for the process backend, after the candidate left an escaped
``setsid()`` process behind). Its watchdog (``sandbox.janitor.Watchdog``) must
remove the sandboxes, processes, state directories and cgroups within a few
seconds, with no successor and no later run. If the watchdog is killed too, the
successor (a new sandbox object on the same runtime root, as a restarted
evaluator would build it) does it: its janitor must remove the dead owner's
leftovers and leave live owners alone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from elm.types import EvalStatus

from .conftest import make, prog, run1

REPO = Path(__file__).resolve().parents[2]
OK = prog("def main():\n    return 2.25\n")


def _runsc_list(state: str) -> list[str]:
    out = subprocess.run(["runsc", "--root", state, "list", "--quiet"], capture_output=True, text=True)
    return out.stdout.split()


def _owner(backend: str, root: Path, program: str) -> tuple[subprocess.Popen, dict]:
    """Start an owner process whose 2-slot worker is stuck in a runaway ``program``; return it and its state."""
    script = textwrap.dedent(f"""
        import json, sys, threading, time
        sys.path.insert(0, {str(REPO)!r})
        from elm.sandbox import EnvironmentSpec, SandboxLimits
        from elm.types import EvalRequest
        from sandbox import make_sandbox
        sb = make_sandbox({backend!r}, env=EnvironmentSpec("tests.sandbox.toy_env.ToyEnv"),
                          limits=SandboxLimits(timeout_s=120, cpu_s=240), workers=2, runtime_dir={str(root)!r})
        state = {{"dir": getattr(sb, "_dir", None), "servers": [s.proc.pid for s in sb._slots],
                  "zygotes": [s.info["zygote_pid"] for s in sb._slots],
                  "cgroups": [s.handle if isinstance(s.handle, str) else None for s in sb._slots],
                  "ids": [getattr(s.handle, "id", None) for s in sb._slots], "watchdog": sb._watchdog.pid}}
        threading.Thread(target=sb.evaluate, args=([EvalRequest(1, {program!r})],), daemon=True).start()
        time.sleep(1.0)
        print(json.dumps(state), flush=True)
        time.sleep(300)
    """)
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=str(REPO))
    line = owner.stdout.readline()
    if not line:
        owner.kill()
        pytest.fail("the owner did not start its worker")
    import json

    return owner, json.loads(line)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


@pytest.mark.gvisor
def test_gvisor_worker_and_watchdog_killed_with_minus_9(tmp_path, caplog):
    from sandbox import janitor
    from sandbox.janitor import _processes_using

    root = tmp_path / "root"
    owner, state = _owner("gvisor", root, prog("""
        def main():
            while True:
                pass
    """))
    d = state["dir"]
    try:
        assert len(_runsc_list(os.path.join(d, "state"))) == 2
        assert janitor(str(root)) == 0  # a live owner's sandboxes are never touched
        assert len(_runsc_list(os.path.join(d, "state"))) == 2
    finally:
        os.kill(state["watchdog"], signal.SIGKILL)  # no watchdog: the successor's janitor must do it
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    # Without a janitor the runaway keeps burning CPU in a sandbox nobody owns.
    cpu = f"/sys/fs/cgroup/cpuacct/{state['ids'][0]}/cpuacct.usage"
    if os.path.exists(cpu):
        used = int(Path(cpu).read_text())
        time.sleep(0.5)
        assert int(Path(cpu).read_text()) - used > 0.1e9
    assert _processes_using(d)
    successor = make("gvisor", str(root), workers=1)  # the restarted worker: its janitor runs first
    try:
        assert not os.path.exists(d)
        assert _processes_using(d) == []
        for sid in state["ids"]:
            assert list(Path("/sys/fs/cgroup").glob(f"*/{sid}")) == []
        assert os.listdir(root) == [os.path.basename(successor._dir)]
        assert run1(successor, OK).status is EvalStatus.OK
    finally:
        successor.close()
    assert os.listdir(root) == []


def test_process_worker_and_watchdog_killed_with_minus_9(tmp_path):
    marker = tmp_path / "escaped.pid"
    owner, state = _owner("process", tmp_path / "root", prog(f"""
        import os, time
        def main():
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    with open({str(marker)!r}, "w") as f:
                        f.write(str(os.getpid()))
                    while True:
                        time.sleep(0.01)
                os._exit(0)
            while True:
                pass
    """))
    escaped = int(marker.read_text())
    os.kill(state["watchdog"], signal.SIGKILL)  # no watchdog: the successor's janitor must do it
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    # The fork servers notice that their parent is gone and take their zygotes and children along.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(p) for p in state["servers"] + state["zygotes"]):
        time.sleep(0.05)
    assert not any(_alive(p) for p in state["servers"] + state["zygotes"])
    cgroups = [c for c in state["cgroups"] if c]
    if not cgroups:
        pytest.skip("no pids cgroup here (not root?): an escaped process has nothing to find it by")
    assert _alive(escaped)  # setsid() took it out of every process group; it sits in its slot's cgroup
    successor = make("process", str(tmp_path / "root2"), workers=1)  # the restarted worker
    try:
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and _alive(escaped):
            time.sleep(0.02)
        assert not _alive(escaped)
        assert [c for c in cgroups if os.path.exists(c)] == []
        assert run1(successor, OK).status is EvalStatus.OK
    finally:
        successor.close()


#: "within a few seconds": runsc delete of two sandboxes takes ~1-2 s; a loaded machine gets more
WATCHDOG_BOUND_S = 15.0


def _wait_until(condition, bound: float) -> float:
    """Seconds until ``condition()`` held; fails after ``bound``."""
    t0 = time.monotonic()
    while not condition():
        if time.monotonic() - t0 > bound:
            pytest.fail(f"not done within {bound:g} s")
        time.sleep(0.05)
    return time.monotonic() - t0


@pytest.mark.gvisor
def test_gvisor_owner_killed_with_minus_9_leaves_nothing_running(tmp_path):
    """No successor, no later run: the watchdog removes the sandboxes of the dead owner by itself."""
    from sandbox.janitor import _processes_using

    root = tmp_path / "root"
    owner, state = _owner("gvisor", root, prog("""
        def main():
            while True:
                pass
    """))
    d = state["dir"]
    assert len(_runsc_list(os.path.join(d, "state"))) == 2
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    took = _wait_until(lambda: not _alive(state["watchdog"]), WATCHDOG_BOUND_S)
    assert _processes_using(d) == []  # runsc sandboxes, gofers, exec clients
    assert not os.path.exists(d)
    for sid in state["ids"]:
        assert list(Path("/sys/fs/cgroup").glob(f"*/{sid}")) == []
    print(f"watchdog done {took:.2f} s after the owner's death")


def test_process_owner_killed_with_minus_9_leaves_nothing_running(tmp_path):
    marker = tmp_path / "escaped.pid"
    owner, state = _owner("process", tmp_path / "root", prog(f"""
        import os, time
        def main():
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    with open({str(marker)!r}, "w") as f:
                        f.write(str(os.getpid()))
                    while True:
                        time.sleep(0.01)
                os._exit(0)
            while True:
                pass
    """))
    escaped = int(marker.read_text())
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    _wait_until(lambda: not _alive(state["watchdog"]), WATCHDOG_BOUND_S)
    assert not any(_alive(p) for p in state["servers"] + state["zygotes"])
    cgroups = [c for c in state["cgroups"] if c]
    if cgroups:  # root: the escaped process sat in its slot's cgroup, which the watchdog emptied
        assert not _alive(escaped)
        assert [c for c in cgroups if os.path.exists(c)] == []
    else:
        os.kill(escaped, signal.SIGKILL)  # not root: nothing can find it (docs/sandbox.md)
    assert list((tmp_path / "root").iterdir()) == []  # the scratch directory is gone too


def test_close_stops_the_watchdog(sandbox_root):
    box = make("process", sandbox_root, workers=1)
    watchdog = box._watchdog.proc
    assert watchdog.poll() is None
    box.close()
    assert watchdog.poll() is not None
