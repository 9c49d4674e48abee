"""Soak: thousands of mixed candidates, a share of them hostile, through one evaluator worker.

The command-line front of :mod:`sandbox.soak` (which describes the figures). Run by hand
(~15 min for 10,000 on 2 cores)::

    python benchmarks/soak_sandbox.py [--n 10000] [--hostile 0.25] [--workers 2]

Exits 1 when an acceptance figure fails (hung, escapes, unexpected or mismatches > 0, or the
soaked worker below 90 % of both its start throughput and a fresh worker's).
``tests/sandbox/test_soak.py`` runs a short one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sandbox.soak import _ms, run_soak  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--hostile", type=float, default=0.25, help="share of hostile candidates")
    ap.add_argument("--workers", type=int, default=2, help="slots of the one worker")
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--calibration", type=int, default=300, help="benign candidates per throughput measurement")
    ap.add_argument("--timeout", type=float, default=1.0, help="timeout_s per candidate")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rep = run_soak(n=args.n, hostile=args.hostile, workers=args.workers, batch=args.batch,
                   calibration=args.calibration, timeout_s=args.timeout, seed=args.seed)
    print()
    print(f"candidates {rep.candidates}, hostile {rep.hostile} ({rep.hostile / rep.candidates:.1%}), "
          f"wall {rep.wall_s:.0f} s, sandboxes replaced {rep.replaced}")
    print(f"hung {rep.hung}; late (> timeout + 1 s) {rep.late}; max round trip {rep.max_total_s:.2f} s")
    print(f"escapes {sum(rep.escapes.values())} {rep.escapes or ''}")
    print(f"unexpected statuses {sum(rep.unexpected.values())} {rep.unexpected or ''}; benign not ok {rep.benign_bad}")
    print(f"determinism: {rep.mismatches} mismatches in {rep.witnessed} witness evaluations")
    print(f"benign throughput start {rep.throughput_start:.1f}/s, end {rep.throughput_end:.1f}/s "
          f"({rep.throughput_ratio:.0%}); sandbox CPU per benign candidate {_ms(rep.cpu_ms_start)} -> "
          f"{_ms(rep.cpu_ms_end)}; 1-min load average {rep.load_start:.1f} -> {rep.load_end:.1f}")
    if rep.control:
        print(f"at the end, interleaved (same load): soaked worker {rep.control[0]:.1f}/s, a fresh worker "
              f"{rep.control[1]:.1f}/s ({rep.control_ratio:.0%})")
    print("statuses by kind:")
    for name, c in sorted(rep.by_kind.items()):
        print(f"  {name:<24}" + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))
    print("PASS" if rep.passed else "FAIL")
    return 0 if rep.passed else 1


if __name__ == "__main__":
    sys.exit(main())
