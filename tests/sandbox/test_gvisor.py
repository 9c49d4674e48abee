"""gVisor-only: unprivileged candidates, escaped processes, sandbox loss, cgroup backstops, recycling, close."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import threading
import time

import pytest

from elm.types import EvalRequest, EvalStatus

from .conftest import LIMITS, make, prog, run1

pytestmark = pytest.mark.gvisor

OK = prog("def main():\n    return 2.25\n")

COUNT_PROCS = prog("""
    import os
    def main():
        # Live processes of the candidate uid other than this one (leftovers of earlier candidates)
        # times 1000, plus all live processes: init, the fork server, its zygote, the scorer, the
        # spare child (once forked) and this candidate.
        me, mine, total = os.getpid(), 0, 0
        for p in os.listdir("/proc"):
            if not p.isdigit():
                continue
            try:
                with open(f"/proc/{p}/status") as f:
                    fields = dict(line.split(":", 1) for line in f if ":" in line)
            except OSError:
                continue
            if fields["State"].split()[0] in ("Z", "X"):
                continue
            total += 1
            if int(p) != me and int(fields["Uid"].split()[0]) == os.getuid():
                mine += 1
        return mine * 1000 + total
""")


def assert_nothing_left(box) -> None:
    """No candidate process survives inside, and only the server's own helpers run beside it."""
    res = run1(box, COUNT_PROCS)
    assert res.status is EvalStatus.OK, res.error
    leftovers, total = divmod(int(res.fitness), 1000)
    assert leftovers == 0
    assert total <= 6


def test_candidate_runs_unprivileged(gsb):
    res = run1(gsb, prog("""
        import os
        def main():
            return os.getuid() * 1000 + os.geteuid() % 1000 + 0.5 * (os.getgid() == 65534)
    """))
    assert res.status is EvalStatus.OK, res.error
    assert res.fitness == 65534 * 1000 + 65534 % 1000 + 0.5


def test_filesystem_is_read_only_and_tmp_is_bounded(gsb):
    res = run1(gsb, prog("""
        import errno
        def main():
            codes = []
            for path in ["/usr/evil", "/harness/evil", "/evil"]:
                try:
                    open(path, "w").close()
                    codes.append(0)
                except OSError as exc:
                    codes.append(exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM))
            try:
                with open("/tmp/big", "wb") as f:
                    chunk = b"x" * (1 << 20)
                    for _ in range(100):   # 100 MiB into a 32 MiB tmpfs
                        f.write(chunk)
                codes.append(0)
            except OSError as exc:
                codes.append(exc.errno == errno.ENOSPC)
            return sum(codes)
    """))
    assert res.status is EvalStatus.OK, res.error
    assert res.fitness == 4


def test_escaped_process_after_return_is_killed(gsb):
    res = run1(gsb, prog("""
        import os, time
        def main():
            if os.fork() == 0:
                os.setsid()
                while True:
                    time.sleep(0.01)
            return 1
    """))
    assert res.status is EvalStatus.OK
    assert_nothing_left(gsb)


def test_hostname_is_sandboxed(gsb):
    res = run1(gsb, prog("""
        import socket
        def main():
            return float(socket.gethostname() == "sandbox")
    """))
    assert res.fitness == 1.0


def test_dead_sandbox_is_sandbox_lost_and_replaced(gsb):
    """The sentry dies under a candidate (here: SIGKILLed from the host) -> sandbox_lost, then a fresh one."""
    import json as _json

    assert run1(gsb, OK).status is EvalStatus.OK  # the slot is up (not being recycled)
    slot = gsb._slots[0]
    generation = slot.generation
    h = slot.handle
    state = _json.loads(subprocess.run([h.runsc, "--root", h.state_dir, "state", h.id],
                                       capture_output=True, text=True, check=True).stdout)
    threading.Timer(0.4, os.kill, args=(state["pid"], signal.SIGKILL)).start()
    res = run1(gsb, prog("""
        import time
        def main():
            time.sleep(0.9)
            return 1
    """))
    assert res.status is EvalStatus.SANDBOX_LOST
    assert "replaced" in res.error
    if slot.pending is not None:  # the replacement starts in the background
        slot.pending.result()
    assert slot.generation == generation + 1
    assert run1(gsb, OK).status is EvalStatus.OK


def test_files_do_not_survive_between_candidates(gsb):
    write = prog("""
        import os
        def main():
            for d in ["/tmp", "/dev/shm"]:
                if os.access(d, os.W_OK):
                    os.makedirs(d + "/secret/deep", exist_ok=True)
                    with open(d + "/secret/deep/x", "w") as f:
                        f.write("left behind")
                    os.chmod(d + "/secret", 0o700)
            return 1
    """)
    from sandbox.gvisor_backend import python_binds

    # mount points of read-only binds under /tmp (a venv in /tmp/...) stay, nothing else
    kept = {b.split("/")[2] for b in python_binds() if b.startswith("/tmp/")}
    read = prog(f"""
        import os
        def main():
            names = [n for d in ["/tmp", "/dev/shm"] if os.path.isdir(d) for n in os.listdir(d)]
            print(names)
            return len([n for n in names if n not in {kept!r}])
    """)
    res = gsb.evaluate([EvalRequest(1, write), EvalRequest(2, read)])
    assert res[0].status is EvalStatus.OK, res[0].error
    assert res[1].status is EvalStatus.OK, res[1].error
    assert res[1].fitness == 0, res[1].stdout_tail


def test_thread_bomb_is_contained(gsb):
    res = run1(gsb, prog("""
        import threading
        def spin():
            while True:
                pass
        def main():
            while True:
                threading.Thread(target=spin, daemon=True).start()
    """))
    assert res.status in (EvalStatus.TIMEOUT, EvalStatus.ERROR), res
    assert_nothing_left(gsb)


def test_cgroup_memory_backstop_loses_only_that_candidate(sandbox_root):
    """A candidate under its RLIMIT_AS but over the sandbox's cgroup: that sandbox goes, a fresh one serves."""
    limits = dataclasses.replace(LIMITS, memory_mb=3072, sandbox_memory_mb=300, timeout_s=5.0)
    box = make("gvisor", sandbox_root, limits=limits, workers=1)
    try:
        res = box.evaluate([
            EvalRequest(1, prog("""
                def main():
                    x = b"\\x01" * (900 << 20)
                    return len(x)
            """)),
            EvalRequest(2, OK),
        ])
    finally:
        box.close()
    # the host guard normally stops the sandbox first (memory); else the cgroup OOM kill wins (lost)
    assert res[0].status in (EvalStatus.MEMORY, EvalStatus.SANDBOX_LOST), res[0]
    assert "sandbox replaced" in res[0].error or "replaced" in res[0].error
    assert res[1].status is EvalStatus.OK


def test_recycle_after(sandbox_root):
    limits = dataclasses.replace(LIMITS, recycle_after=2)
    box = make("gvisor", sandbox_root, limits=limits, workers=1)
    try:
        slot = box._slots[0]
        gens = []
        for i in range(5):
            assert run1(box, OK, rid=i).status is EvalStatus.OK
            if slot.pending is not None:  # the replacement starts in the background
                slot.pending.result()
            gens.append(slot.generation)
    finally:
        box.close()
    # a fresh sandbox replaces the old one right after the 2nd, 4th... candidate
    assert gens == [1, 2, 2, 3, 3]


def test_close_is_fast_and_clean(sandbox_root):
    from sandbox.janitor import _processes_using

    box = make("gvisor", sandbox_root, workers=2)
    run1(box, OK)
    d = box._dir
    ids = [s.handle.id for s in box._slots]
    t0 = time.monotonic()
    box.close()
    assert time.monotonic() - t0 < 2.0
    assert not os.path.exists(d)
    assert _processes_using(d) == []
    for sid in ids:
        assert not os.path.exists(f"/sys/fs/cgroup/memory/{sid}")
