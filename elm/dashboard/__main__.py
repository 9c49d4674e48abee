"""``python -m elm.dashboard <run dir> [<run dir> ...] [--port N] [--export DIR]``.

Serves the live dashboard over the runs (on 127.0.0.1 unless ``--host`` says
otherwise), or with ``--export DIR`` writes the static report and PNG figures and exits.
A run directory is the one a run printed (holding ``run.db``); a sweep directory
(``multirun/<date>/<time>``) stands for every run below it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from elm.dashboard import MISSING_HINT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m elm.dashboard",
        description="Live dashboard (or, with --export, a static report) of ELM runs.")
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR",
                        help="run directories (holding run.db), or sweep directories holding runs")
    parser.add_argument("--port", type=int, default=8050, help="port to serve on (0: any free port; default 8050)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only; use an SSH tunnel "
                             "rather than exposing the dashboard, which shows every program)")
    parser.add_argument("--refresh", type=float, default=5.0, metavar="SECONDS",
                        help="how often open pages poll the stores for new evaluations (0: never; default 5)")
    parser.add_argument("--export", type=Path, metavar="DIR",
                        help="write report.html and PNG figures to DIR instead of serving")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be in 0..65535, got {args.port}")

    try:
        from elm.analysis import find_runs  # noqa: F401  (pandas)
        from elm.dashboard.app import open_runs, serve
    except ImportError as exc:
        print(f"error: {exc.name or exc} is not installed; {MISSING_HINT}", file=sys.stderr)
        return 2
    from elm.store import StoreError

    try:
        runs = open_runs(args.runs)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.export is not None:
            from elm.dashboard.report import export_report

            written = export_report(runs, out_dir=args.export)
            for path in written:
                print(path)
            return 0
        try:
            serve(runs, host=args.host, port=args.port, refresh_s=args.refresh,
                  announce=lambda msg: print(msg, flush=True))
        except OSError as exc:  # e.g. the port is taken
            print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}; "
                  "choose another --port (0 picks a free one)", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            return 0
        return 0
    finally:
        for run in runs:
            run.close()


if __name__ == "__main__":
    sys.exit(main())
