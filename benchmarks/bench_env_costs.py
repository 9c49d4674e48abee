"""Cost of one evaluation of each built-in environment's seeds, on one core. Prints, asserts nothing.

For every ``conf/env/*.yaml`` (as configured there) and each of its seed
programs: median CPU milliseconds of ``execute`` (running the program) and of
``score`` (verification and fitness), measured in this process without a
sandbox (``bench_sandbox`` measures what the sandbox adds). CPU time
(``time.process_time``) is robust to other load on the machine. Run from the
repository root::

    python -m benchmarks.bench_env_costs [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from elm.config import CONF_DIR, compose  # noqa: E402
from elm.environment import roundtrip_json  # noqa: E402
from elm.sandbox import EnvironmentSpec  # noqa: E402


def cpu_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; CPU ms per call, median of {args.repeat}")
    print(f"{'environment':16s} {'seed':>4s} {'execute ms':>11s} {'score ms':>9s} {'evals/s':>8s} {'fitness':>10s}")
    for path in sorted((CONF_DIR / "env").glob("*.yaml")):
        env = EnvironmentSpec.from_config(compose([f"env={path.stem}"])["env"]).build()
        for k, source in enumerate(env.seed_programs()):
            output = roundtrip_json(env.execute(source))
            fitness = env.score(output).fitness
            run_ms = cpu_ms(lambda: roundtrip_json(env.execute(source)), args.repeat)  # noqa: B023 (called here)
            score_ms = cpu_ms(lambda: env.score(output), args.repeat)  # noqa: B023 (called here)
            print(f"{path.stem:16s} {k:4d} {run_ms:11.1f} {score_ms:9.1f} {1e3 / (run_ms + score_ms):8.1f} "
                  f"{fitness:10.4g}")


if __name__ == "__main__":
    main()
