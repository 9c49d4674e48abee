"""What several benchmarks share: one ``run_elm.py`` run in a process of its own."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_cli(run_dir: Path, overrides: list[str], log: Path) -> float:
    """One ``run_elm.py`` run in its own process (its own Ray); returns its wall time in seconds.

    Its output goes to ``log``; a failed run stops the benchmark naming the log.
    """
    start = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.run([sys.executable, str(ROOT / "run_elm.py"), *overrides, "loop.progress=false",
                               f"hydra.run.dir={run_dir}"], cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise SystemExit(f"run {run_dir} failed (exit {proc.returncode}); see {log}")
    return time.perf_counter() - start
