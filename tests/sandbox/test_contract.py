"""The Sandbox contract, checked on both backends with real programs."""

from __future__ import annotations

import dataclasses
import os
import time

import pytest

from elm.types import EvalRequest, EvalStatus

from .conftest import BACKENDS, LIMITS, make, prog, run1

OK = prog("""
    def main():
        return 2.25
""")

LOOP = prog("""
    def main():
        while True:
            pass
""")


def test_ok_result(sb):
    res = run1(sb, OK, rid=7)
    assert res.id == 7
    assert res.status is EvalStatus.OK, res.error
    assert res.fitness == 2.25
    assert res.descriptor == (0.25,)
    assert res.info == {"value": 2.25}
    assert res.error is None
    assert res.run_s > 0 and res.score_s > 0 and res.total_s >= res.run_s


def test_exception_is_error_with_traceback_tail(sb):
    res = run1(sb, prog("""
        def helper():
            raise ValueError("boom " * 3)
        def main():
            return helper()
    """))
    assert res.status is EvalStatus.ERROR
    assert "ValueError: boom" in res.error
    assert "Traceback" in res.error and "helper" in res.error
    assert len(res.error) < 5000


def test_huge_exception_message_is_truncated(sb):
    res = run1(sb, prog("""
        def main():
            raise RuntimeError("x" * 1_000_000)
    """))
    assert res.status is EvalStatus.ERROR
    assert "RuntimeError" in res.error
    assert len(res.error) < 5000


def test_syntax_error_is_error(sb):
    res = run1(sb, "def main(:\n    return 1\n")
    assert res.status is EvalStatus.ERROR
    assert "SyntaxError" in res.error


@pytest.mark.parametrize("source, needle", [
    (prog("""
        def main():
            return "abc"
    """), "must return a number"),
    (prog("""
        def not_main():
            return 1
    """), "does not define a function named 'main'"),
    (prog("""
        from elm.environment import InvalidProgram
        def main():
            raise InvalidProgram("circles 3 and 7 overlap")
    """), "circles 3 and 7 overlap"),
    (prog("""
        def main():
            return object()
    """), "not JSON-serialisable"),
])
def test_invalid(sb, source, needle):
    res = run1(sb, source)
    assert res.status is EvalStatus.INVALID
    assert needle in res.error


def test_infinite_loop_times_out_and_slot_survives(sb):
    t0 = time.monotonic()
    res = run1(sb, LOOP)
    assert res.status is EvalStatus.TIMEOUT
    assert res.total_s < LIMITS.timeout_s + 1.0
    assert time.monotonic() - t0 < LIMITS.timeout_s + 1.0
    # every slot still serves afterwards
    after = sb.evaluate([EvalRequest(i, OK) for i in range(4)])
    assert [r.status for r in after] == [EvalStatus.OK] * 4


def test_two_loops_run_in_parallel(sb):
    t0 = time.monotonic()
    res = sb.evaluate([EvalRequest(1, LOOP), EvalRequest(2, LOOP)])
    assert [r.status for r in res] == [EvalStatus.TIMEOUT] * 2
    assert time.monotonic() - t0 < 2 * LIMITS.timeout_s + 0.5  # 2 workers: not serialised


def test_stdout_tail_is_kept(sb):
    res = run1(sb, prog("""
        import sys
        def main():
            print("hello from the candidate")
            print("and stderr", file=sys.stderr)
            return 1
    """))
    assert res.status is EvalStatus.OK
    assert "hello from the candidate" in res.stdout_tail
    assert "and stderr" in res.stdout_tail
    assert res.output_truncated is False


def test_killed_by_signal_is_error(sb):
    res = run1(sb, prog("""
        import os, signal
        def main():
            os.kill(os.getpid(), signal.SIGSEGV)
    """))
    assert res.status is EvalStatus.ERROR
    assert "SIGSEGV" in res.error


@pytest.mark.parametrize("backend", BACKENDS)
def test_cpu_limit_is_timeout(backend, sandbox_root):
    """RLIMIT_CPU (SIGXCPU / SIGKILL at the hard limit) maps onto timeout, before the wall deadline."""
    # a generous wall deadline, so the CPU limit wins even on a loaded machine (~2 s when idle)
    limits = dataclasses.replace(LIMITS, timeout_s=30.0, cpu_s=1)
    box = make(backend, sandbox_root, limits=limits, workers=1)
    try:
        res = run1(box, prog("""
            import signal
            def main():
                signal.signal(signal.SIGXCPU, signal.SIG_IGN)  # the hard limit still kills it
                while True:
                    pass
        """))
    finally:
        box.close()
    assert res.status is EvalStatus.TIMEOUT
    assert "CPU-time limit" in res.error
    assert res.total_s < 30


def test_batch_order_is_preserved(sb):
    programs = {
        10: (OK, EvalStatus.OK),
        11: (prog("def main():\n    raise KeyError(1)\n"), EvalStatus.ERROR),
        12: (prog("def main():\n    return 'x'\n"), EvalStatus.INVALID),
        13: (prog("def main():\n    return 0.5\n"), EvalStatus.OK),
        14: (prog("def main():\n    return bytearray(4 << 30)\n"), EvalStatus.MEMORY),
        15: (prog("def main():\n    return float('inf')\n"), EvalStatus.INVALID),
        16: (prog("import os\ndef main():\n    os._exit(0)\n"), EvalStatus.ERROR),
        17: (prog("def main():\n    return 3.75\n"), EvalStatus.OK),
        18: (prog("def main():\n    import time; time.sleep(0.2); return 4.0\n"), EvalStatus.OK),
        19: (prog("def main():\n    return 5\n"), EvalStatus.OK),
    }
    reqs = [EvalRequest(i, src) for i, (src, _) in programs.items()]
    res = sb.evaluate(reqs)
    assert [r.id for r in res] == list(programs)
    assert [r.status for r in res] == [st for _, st in programs.values()]
    assert [r.fitness for r in res if r.ok] == [2.25, 0.5, 3.75, 4.0, 5.0]


def test_empty_batch(sb):
    assert sb.evaluate([]) == []


def test_numpy_and_lazy_stdlib_imports_work(sb):
    res = run1(sb, prog("""
        import numpy as np
        import fractions, decimal, statistics
        def main():
            return float(np.arange(10).sum()) + float(fractions.Fraction(1, 4))
    """))
    assert res.status is EvalStatus.OK, res.error
    assert res.fitness == 45.25


def test_tmp_is_writable(sb):
    res = run1(sb, prog("""
        import tempfile, os
        def main():
            with tempfile.NamedTemporaryFile("w", delete=False) as f:
                f.write("hello")
            with open(f.name) as g:
                n = len(g.read())
            os.unlink(f.name)
            return n
    """))
    assert res.status is EvalStatus.OK, res.error
    assert res.fitness == 5


def test_threads_left_running_do_not_block(sb):
    res = run1(sb, prog("""
        import threading
        def spin():
            while True:
                pass
        def main():
            threading.Thread(target=spin, daemon=False).start()
            return 1.0
    """))
    assert res.status is EvalStatus.OK
    assert res.total_s < LIMITS.timeout_s


def test_escaped_process_is_killed(sb):
    """A setsid() grandchild that outlives the candidate is killed by the server's clean-up."""
    res = run1(sb, prog("""
        import os, time
        def main():
            r, w = os.pipe()
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    os.write(w, str(os.getpid()).encode())
                    while True:
                        time.sleep(0.01)
                os._exit(0)
            pid = int(os.read(r, 32))
            return pid
    """))
    assert res.status is EvalStatus.OK, res.error
    if sb.backend == "process":  # host pid: it must be gone (or a reaped zombie)
        pid = int(res.fitness)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except FileNotFoundError:
                break
            if state == "Z":
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"escaped process {pid} still running")
    assert run1(sb, OK).status is EvalStatus.OK


def test_candidate_killing_its_server(sb):
    """process: the server dies -> sandbox_lost, replaced; gvisor: the candidate (nobody) may not."""
    res = run1(sb, prog("""
        import os, signal, time
        def main():
            try:
                os.kill(os.getppid(), signal.SIGKILL)
            except PermissionError:
                return -1
            time.sleep(0.5)
            return 1
    """))
    if sb.backend == "process":
        assert res.status is EvalStatus.SANDBOX_LOST
    else:
        assert res.status is EvalStatus.OK and res.fitness == -1
    assert [r.status for r in sb.evaluate([EvalRequest(i, OK) for i in range(3)])] == [EvalStatus.OK] * 3


def test_environment_kwargs_reach_the_sandbox(sandbox_root):
    from elm.sandbox import EnvironmentSpec

    box = make("process", sandbox_root, env=EnvironmentSpec("tests.sandbox.toy_env.ToyEnv", {"scale": 3.0}),
               workers=1)
    try:
        assert run1(box, OK).fitness == 6.75
    finally:
        box.close()


def test_closed_sandbox_refuses_work(sandbox_root):
    box = make("process", sandbox_root, workers=1)
    box.close()
    box.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        box.evaluate([EvalRequest(1, OK)])


def test_process_backend_is_marked_unsafe(sb):
    assert sb.unsafe is (sb.backend == "process")
    assert os.path.exists("/proc/self")  # sanity: Linux
