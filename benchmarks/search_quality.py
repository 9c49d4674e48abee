"""Search quality: how good a program each configuration finds per evaluation and per second.

A fixed protocol of configurations x environments x seeds, each run at the same evaluation budget,
read back from the run stores at fixed checkpoints: best fitness, coverage and QD score, the wall
time when the checkpoint was reached, evaluations per second, per-mutator rates. Prints the median
and the spread (min..max) over seeds per checkpoint, and an ablation table (each feature on/off in
the same benchmark run); writes ``runs.csv`` (one row per run and checkpoint), ``summary.csv`` and a
PNG of the curves with min..max bands per environment. Asserts nothing. Figures: docs/search.md.

    python -m benchmarks.search_quality --quick                      # a few minutes: CI-sized smoke
    python -m benchmarks.search_quality --envs circle_packing --seeds 5 --budget 3000 \\
        --configs gp,smollm2_gp,no_lanes,dedup,bandit,islands --out artifacts/search

Runs go one after another in this process (one Ray instance), so their wall times are comparable
side by side; quote the machine's load (printed at the start and the end).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

_GP_VARIANTS = ["mutator=smollm2_gp", "~mutator.components.smollm2", "mutator.components.gp.weight=1.0",
                "+mutator.components.gp.variants={fine:{constant_sigma:0.02},mid:{constant_sigma:0.1},"
                "coarse:{constant_sigma:0.3}}"]
#: name -> overrides on top of the environment's; "default" is the shipped default configuration
CONFIGS: dict[str, list[str]] = {
    "gp": ["mutator=gp"],  # GP at its defaults: with the grow edit since 2026-12-07 (gp_g0 is GP before)
    "default": [],  # the shipped default (GP alone since this benchmark's 3,000-evaluation runs)
    # the embedded language model mixed with GP, each in its own lane (the default before)
    "smollm2_gp": ["mutator=smollm2_gp"],
    # the same mutators mixed inside one actor, every program evaluated (before lanes and dedup)
    "baseline_default": ["mutator=smollm2_gp", "search.lanes=false", "search.dedup=false"],
    "no_lanes": ["mutator=smollm2_gp", "search.lanes=false"],
    "no_dedup": ["search.dedup=false"],
    "dedup": ["search.dedup=true"],
    "gp_dedup": ["mutator=gp", "search.dedup=true"],
    "bandit": ["mutator=smollm2_gp", "search.bandit.enabled=true"],
    "no_bandit": ["mutator=smollm2_gp", "search.bandit.enabled=false"],
    "islands": ["search.islands.count=4", "search.islands.migration_interval=250",
                "search.islands.reset_interval=1000"],
    "no_islands": ["search.islands.count=1"],
    "gp_dedup_off": ["mutator=gp", "search.dedup=false"],
    # the baseline as three operators (fine, default and coarse constant steps) in one lane, shares
    # fixed (equal) or chosen by the bandit
    "gp_variants": _GP_VARIANTS,
    "gp_variants_bandit": [*_GP_VARIANTS, "search.bandit.enabled=true"],
    "gp_islands": ["mutator=gp", "search.islands.count=4", "search.islands.migration_interval=250",
                   "search.islands.reset_interval=1000"],
    # parent selection (qd.selection): ELM's curiosity scores, or tournaments of 2 or 4 elites
    "gp_curiosity": ["mutator=gp", "qd.selection=curiosity"],
    "gp_tournament2": ["mutator=gp", "qd.selection=tournament", "+qd.selection_args.size=2"],
    "gp_tournament4": ["mutator=gp", "qd.selection=tournament", "+qd.selection_args.size=4"],
    # GP with homologous crossover in a second lane (conf/mutator/gp_with_crossover.yaml, 0.8 / 0.2)
    "gp_crossover": ["mutator=gp_with_crossover"],
    "gp_crossover_curiosity": ["mutator=gp_with_crossover", "qd.selection=curiosity"],
    "gp_crossover_bandit": ["mutator=gp_with_crossover", "search.bandit.enabled=true"],
    # crossover as an edit kind of the GP operator (one lane: seeded runs stay reproducible)
    "gp_xo2": ["mutator=gp", "mutator.p_crossover=0.2"],
    "gp_xo4": ["mutator=gp", "mutator.p_crossover=0.4"],
    # GP's own settings: one edit per child, a larger or smaller constant step, small batches
    "gp_e1": ["mutator=gp", "mutator.max_edits=1"],
    "gp_s03": ["mutator=gp", "mutator.constant_sigma=0.3"],
    "gp_s003": ["mutator=gp", "mutator.constant_sigma=0.03"],
    "gp_b4": ["mutator=gp", "loop.batch_size=4", "loop.max_in_flight=2"],
    "gp_s03_e1": ["mutator=gp", "mutator.constant_sigma=0.3", "mutator.max_edits=1"],
    "gp_s03_xo4": ["mutator=gp", "mutator.constant_sigma=0.3", "mutator.p_crossover=0.4"],
    "gp_e1_xo4": ["mutator=gp", "mutator.max_edits=1", "mutator.p_crossover=0.4"],
    "gp_s03_e1_xo4": ["mutator=gp", "mutator.constant_sigma=0.3", "mutator.max_edits=1", "mutator.p_crossover=0.4"],
    # GP's grow edit (a terminal becomes a small expression) at three weights (the other four sum to 1);
    # 0.5 is the default, so gp_g5 is gp; gp_g0 is GP as every table before the grow edit measured it
    "gp_g0": ["mutator=gp", "mutator.p_grow=0"],
    "gp_g2": ["mutator=gp", "mutator.p_grow=0.2"],
    "gp_g5": ["mutator=gp", "mutator.p_grow=0.5"],
    "gp_s03_xo4_g5": ["mutator=gp", "mutator.constant_sigma=0.3", "mutator.p_crossover=0.4", "mutator.p_grow=0.5"],
    # frontier parent selection (qd.selection=frontier): elites next to empty cells drawn more often
    "gp_frontier": ["mutator=gp", "qd.selection=frontier", "+qd.selection_args.weight=3.0"],
    "gp_frontier1": ["mutator=gp", "qd.selection=frontier", "+qd.selection_args.weight=1.0"],
    "gp_s03_xo4_g5_frontier": ["mutator=gp", "mutator.constant_sigma=0.3", "mutator.p_crossover=0.4",
                               "mutator.p_grow=0.5", "qd.selection=frontier", "+qd.selection_args.weight=3.0"],
    "gp_s03_xo4_g5_frontier1": ["mutator=gp", "mutator.constant_sigma=0.3", "mutator.p_crossover=0.4",
                                "mutator.p_grow=0.5", "qd.selection=frontier", "+qd.selection_args.weight=1.0"],
    "gp_s03_xo4_g5_frontier10": ["mutator=gp", "mutator.constant_sigma=0.3", "mutator.p_crossover=0.4",
                                 "mutator.p_grow=0.5", "qd.selection=frontier", "+qd.selection_args.weight=10.0"],
    # the default configuration as the issue that asked for this benchmark found it: SmolLM2 + GP
    # mixed inside one actor, every program evaluated, and the default run's 450 s wall-clock bound
    "old_default": ["mutator=smollm2_gp", "search.lanes=false", "search.dedup=false", "budget.wall_seconds=450"],
}
#: environment -> (overrides, checkpoints as fractions of the budget)
ENVS: dict[str, list[str]] = {
    "circle_packing": ["env=circle_packing"],
    "bin_packing": ["env=bin_packing"],
    "sodarace": ["env=sodarace"],
}
CHECKPOINTS = (0.1, 0.25, 0.5, 0.75, 1.0)


@dataclass(frozen=True)
class Point:
    env: str
    config: str
    seed: int
    evaluations: int
    best: float | None
    coverage: float
    qd_score: float
    wall_s: float


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def _curve(db: Path) -> list[dict]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT evaluations, wall_s, max_fitness, coverage, qd_score "
                                              "FROM metrics ORDER BY evaluations")]
    finally:
        conn.close()


def _rates(db: Path) -> dict[str, dict]:
    from elm.stats import mutator_stats

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {s.mutator: {"children": s.proposals, "valid": s.valid_rate, "inserted": s.insertion_rate,
                            "duplicates": s.duplicates, "model_s": s.model_s} for s in mutator_stats(conn)}
    finally:
        conn.close()


def _finished(db: Path, budget: int) -> bool:
    """Whether the stored run reached ``budget`` evaluations or ended at its own wall-clock or token bound
    (a benchmark killed mid-run did neither: its session has no end reason, or "interrupted")."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        (n,) = conn.execute("SELECT COUNT(*) FROM evaluations WHERE status != 'duplicate'").fetchone()
        row = conn.execute("SELECT end_reason FROM sessions ORDER BY id DESC LIMIT 1").fetchone()
        return n >= budget or (row is not None and row[0] in ("wall-clock budget", "token budget"))
    except sqlite3.Error:
        return False
    finally:
        conn.close()


def _best_at_time(curve: list[dict], wall_s: float) -> float | None:
    """Best fitness of the last snapshot at or before ``wall_s`` seconds into the run."""
    best = None
    for row in curve:
        if (row["wall_s"] or 0.0) <= wall_s:
            best = row["max_fitness"]
    return best


def print_equal_time(details: dict[str, dict], against: str = "gp") -> None:
    """Each configuration's final best against ``against``'s best at the same wall-clock time (same seed)."""
    lines = []
    for key, info in sorted(details.items()):
        env, config, seed = key.split("/")
        other = details.get(f"{env}/{against}/{seed}")
        if config == against or other is None or not info["curve"]:
            continue
        end = info["curve"][-1]
        theirs = _best_at_time(other["curve"], end["wall_s"] or 0.0)
        lines.append((env, config, seed, end["evaluations"], end["wall_s"], end["max_fitness"], theirs))
    if lines:
        print(f"\nat equal wall-clock time: each run's final best vs {against}'s best at the same time (same seed)")
        print(f"{'env':<15}{'config':<20}{'seed':>5}{'evals':>7}{'wall s':>8}{'best':>10}{against + ' then':>12}")
        for env, config, seed, n, wall, best, theirs in lines:
            t = "n/a" if theirs is None else f"{theirs:.5g}"
            print(f"{env:<15}{config:<20}{seed:>5}{n:>7}{wall:>8.0f}{best:>10.5g}{t:>12}")


def print_final(details: dict[str, dict], pairs: tuple[tuple[str, str], ...] = (("default", "old_default"),)) -> None:
    """Each configuration's state where its runs ended (a run with a wall-clock bound may stop short of the
    budget, so it has no row at the last checkpoint), and QD ratios of the given (config, against) pairs."""
    finals: dict[tuple[str, str], list[dict]] = {}
    for key, info in sorted(details.items()):
        env, config, _ = key.split("/")
        if info["curve"]:
            finals.setdefault((env, config), []).append(info["curve"][-1])
    if not finals:
        return
    print("\nwhere the runs ended (medians [min..max] over seeds)")
    print(f"{'env':<15}{'config':<20}{'evaluations':>24}{'best':>30}{'QD score':>30}")
    medians = {}
    for (env, config), ends in sorted(finals.items()):
        cols = []
        for name in ("evaluations", "max_fitness", "qd_score"):
            med, lo, hi = _spread([e[name] for e in ends if e[name] is not None] or [math.nan])
            cols.append(f"{med:.6g} [{lo:.6g}..{hi:.6g}]")
            medians[(env, config, name)] = med
        print(f"{env:<15}{config:<20}{cols[0]:>24}{cols[1]:>30}{cols[2]:>30}")
    for env in sorted({e for e, _ in finals}):
        for config, against in pairs:
            a, b = medians.get((env, config, "qd_score")), medians.get((env, against, "qd_score"))
            if a is not None and b:
                print(f"{env}: QD score of {config} / {against} where they ended: {a / b:.2f}x")


def _at(curve: list[dict], evaluations: int) -> dict | None:
    """The last snapshot at or before ``evaluations``."""
    best = None
    for row in curve:
        if row["evaluations"] <= evaluations:
            best = row
    return best


def run_one(env: str, config: str, seed: int, budget: int, sandbox: str, extra: list[str],
            out: Path) -> tuple[list[Point], dict]:
    from elm.config import compose
    from elm.runner import run

    # the configuration's own overrides come after the protocol's, so that one may set a wall-clock bound
    overrides = [*ENVS[env], f"seed={seed}", f"budget.evaluations={budget}", "budget.wall_seconds=null",
                 f"sandbox={sandbox}", "loop.progress=false", "loop.export_elites=false", *CONFIGS[config], *extra]
    run_dir = out / "runs" / f"{env}-{config}-{seed}"
    if (run_dir / "run.db").exists() and not _finished(run_dir / "run.db", budget):
        print(f"  {run_dir.name}: an unfinished run from an earlier benchmark; running it again", flush=True)
        shutil.rmtree(run_dir)
    if (run_dir / "run.db").exists():  # a finished benchmark run is reused: delete it to run again
        summary = None
    else:
        start = time.perf_counter()
        summary = run(compose(overrides), run_dir=run_dir, progress=False)
        print(f"  {env} {config} seed {seed}: best {summary.max_fitness:.6g} coverage {summary.coverage:.4f} "
              f"QD {summary.qd_score:.6g} in {time.perf_counter() - start:.0f} s (load {_load()})", flush=True)
    curve = _curve(run_dir / "run.db")
    points = []
    reached = curve[-1]["evaluations"] if curve else 0
    for frac in CHECKPOINTS:
        n = int(round(budget * frac))
        row = _at(curve, n)
        if row is None or n > reached:  # a run stopped by a wall-clock bound has no later checkpoints
            continue
        points.append(Point(env, config, seed, n, row["max_fitness"], row["coverage"], row["qd_score"], row["wall_s"]))
    final = curve[-1] if curve else {}
    extra_info = {"evals_per_s": final.get("evaluations", 0) / max(final.get("wall_s") or 1e-9, 1e-9),
                  "rates": _rates(run_dir / "run.db"), "curve": curve}
    return points, extra_info


def _spread(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def summarise(points: list[Point]) -> list[dict]:
    rows = []
    keys = sorted({(p.env, p.config, p.evaluations) for p in points})
    for env, config, n in keys:
        ps = [p for p in points if (p.env, p.config, p.evaluations) == (env, config, n)]
        best = [p.best for p in ps if p.best is not None]
        row = {"env": env, "config": config, "evaluations": n, "seeds": len(ps)}
        for name, values in (("best", best), ("coverage", [p.coverage for p in ps]),
                             ("qd_score", [p.qd_score for p in ps]), ("wall_s", [p.wall_s for p in ps])):
            if values:
                med, lo, hi = _spread(values)
                row.update({f"{name}_median": med, f"{name}_min": lo, f"{name}_max": hi})
        rows.append(row)
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"\n{'env':<15}{'config':<18}{'evals':>7}{'n':>3}  {'best median [min..max]':<34}"
          f"{'coverage':<10}{'QD score median [min..max]':<36}{'wall s':>8}")
    for r in rows:
        best = (f"{r['best_median']:.5g} [{r['best_min']:.5g}..{r['best_max']:.5g}]"
                if "best_median" in r else "n/a")
        qd = f"{r['qd_score_median']:.5g} [{r['qd_score_min']:.5g}..{r['qd_score_max']:.5g}]"
        print(f"{r['env']:<15}{r['config']:<18}{r['evaluations']:>7}{r['seeds']:>3}  {best:<34}"
              f"{r['coverage_median']:<10.4f}{qd:<36}{r['wall_s_median']:>8.0f}")


def print_ablation(rows: list[dict], budget: int) -> None:
    """Each feature on vs off, at the final checkpoint, from the runs of this benchmark."""
    final = {(r["env"], r["config"]): r for r in rows if r["evaluations"] == budget}
    pairs = [("lanes", "smollm2_gp", "no_lanes"), ("dedup", "dedup", "default"), ("bandit", "bandit", "no_bandit"),
             ("islands", "islands", "no_islands"), ("lanes + dedup vs before", "smollm2_gp", "baseline_default"),
             ("SmolLM2 + GP vs GP alone", "smollm2_gp", "gp"), ("dedup (GP)", "gp_dedup", "gp_dedup_off"),
             ("variants (GP)", "gp_variants", "gp"), ("bandit (GP variants)", "gp_variants_bandit", "gp_variants"),
             ("islands (GP)", "gp_islands", "gp"), ("crossover (GP)", "gp_crossover", "gp"),
             ("curiosity (GP)", "gp_curiosity", "gp"), ("tournament 2 (GP)", "gp_tournament2", "gp"),
             ("tournament 4 (GP)", "gp_tournament4", "gp"),
             ("curiosity (GP + crossover)", "gp_crossover_curiosity", "gp_crossover"),
             ("bandit (GP + crossover)", "gp_crossover_bandit", "gp_crossover"),
             ("crossover edit 0.2 (GP)", "gp_xo2", "gp"), ("crossover edit 0.4 (GP)", "gp_xo4", "gp"),
             ("one edit (GP)", "gp_e1", "gp"), ("step 0.3 (GP)", "gp_s03", "gp"), ("step 0.03 (GP)", "gp_s003", "gp"),
             ("batch 4 (GP)", "gp_b4", "gp"), ("crossover edit (GP step 0.3)", "gp_s03_xo4", "gp_s03"),
             ("crossover edit (GP, 1 edit)", "gp_e1_xo4", "gp_e1"),
             ("grow edit 0.2 (GP)", "gp_g2", "gp_g0"), ("grow edit 0.5 (GP)", "gp_g5", "gp_g0"),
             ("grow edit (GP s0.3 + xo 0.4)", "gp_s03_xo4_g5", "gp_s03_xo4"),
             ("frontier 3 (GP)", "gp_frontier", "gp"), ("frontier 1 (GP)", "gp_frontier1", "gp"),
             ("frontier 3 (GP s0.3 xo0.4 g0.5)", "gp_s03_xo4_g5_frontier", "gp_s03_xo4_g5"),
             ("frontier 1 (GP s0.3 xo0.4 g0.5)", "gp_s03_xo4_g5_frontier1", "gp_s03_xo4_g5"),
             ("frontier 10 (GP s0.3 xo0.4 g0.5)", "gp_s03_xo4_g5_frontier10", "gp_s03_xo4_g5")]
    lines = []
    for env in sorted({e for e, _ in final}):
        for feature, on, off in pairs:
            a, b = final.get((env, on)), final.get((env, off))
            if not a or not b or "best_median" not in a or "best_median" not in b:
                continue
            lines.append(f"{env:<15}{feature:<30}{a['best_median']:>10.5g}{b['best_median']:>10.5g}"
                         f"{a['qd_score_median']:>12.5g}{b['qd_score_median']:>12.5g}"
                         f"{a['qd_score_median'] / b['qd_score_median'] if b['qd_score_median'] else math.nan:>8.2f}"
                         f"{a['wall_s_median']:>9.0f}{b['wall_s_median']:>9.0f}")
    if lines:
        print(f"\nablation at {budget} evaluations (medians over seeds; on / off)")
        print(f"{'env':<15}{'feature':<30}{'best on':>10}{'best off':>10}{'QD on':>12}{'QD off':>12}{'QD x':>8}"
              f"{'wall on':>9}{'wall off':>9}")
        print("\n".join(lines))


def plot(points: list[Point], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for env in sorted({p.env for p in points}):
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for config in sorted({p.config for p in points if p.env == env}):
            ps = [p for p in points if p.env == env and p.config == config]
            xs = sorted({p.evaluations for p in ps})
            for ax, attr in zip(axes, ("best", "qd_score")):
                stats = [_spread([getattr(p, attr) for p in ps if p.evaluations == x and getattr(p, attr) is not None])
                         for x in xs]
                ax.plot(xs, [s[0] for s in stats], label=config)
                ax.fill_between(xs, [s[1] for s in stats], [s[2] for s in stats], alpha=0.2)
        for ax, title in zip(axes, ("best fitness", "QD score")):
            ax.set_xlabel("evaluations")
            ax.set_title(f"{env}: {title} (median, min..max over seeds)")
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / f"{env}.png", dpi=110)
        plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", default="circle_packing")
    parser.add_argument("--configs", default="gp,smollm2_gp,baseline_default")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--budget", type=int, default=3000)
    parser.add_argument("--sandbox", default="gvisor", choices=["gvisor", "process"])
    parser.add_argument("--out", default=None, help="directory for runs/, CSVs and PNGs (default: a temporary one)")
    parser.add_argument("--quick", action="store_true", help="2 seeds x 300 evaluations x gp/smollm2_gp")
    parser.add_argument("--set", action="append", default=[], help="an extra override for every run")
    parser.add_argument("--define", action="append", default=[], metavar="NAME=OVERRIDE[;OVERRIDE...]",
                        help="an ad-hoc configuration, e.g. 'gp_t2=mutator=gp;qd.selection=tournament'")
    args = parser.parse_args(argv)
    for definition in args.define:
        name, _, overrides = definition.partition("=")
        CONFIGS[name] = [o for o in overrides.split(";") if o]
    if args.quick:
        args.seeds, args.budget, args.configs = 2, 300, "gp,smollm2_gp"
    envs = [e for e in args.envs.split(",") if e]
    configs = [c for c in args.configs.split(",") if c]
    unknown = [e for e in envs if e not in ENVS] + [c for c in configs if c not in CONFIGS]
    if unknown:
        print(f"unknown environment/config {unknown}; environments {sorted(ENVS)}, configs {sorted(CONFIGS)}",
              file=sys.stderr)
        return 2
    # compose every configuration before the first run: a bad override would otherwise stop the
    # benchmark only when that configuration's turn comes, possibly an hour in
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from elm.config import ConfigError, compose, load_config

    for env in envs:
        for config in configs:
            try:
                load_config(compose([*ENVS[env], *CONFIGS[config], *args.set]))
            except (HydraException, OmegaConfBaseException, ConfigError) as exc:
                print(f"configuration {config!r} on {env!r} does not compose: {type(exc).__name__}: {exc}",
                      file=sys.stderr)
                return 2
    out = Path(args.out or tempfile.mkdtemp(prefix="search-quality-"))
    out.mkdir(parents=True, exist_ok=True)

    import ray

    ray.init(address="local", include_dashboard=False, log_to_driver=False, object_store_memory=256 << 20)
    print(f"search quality: {envs} x {configs} x {args.seeds} seeds x {args.budget} evaluations, sandbox "
          f"{args.sandbox}, into {out} (load {_load()})", flush=True)
    points: list[Point] = []
    details: dict[str, dict] = {}
    try:
        for env in envs:
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                for config in configs:  # configs interleaved per seed: load drifts hit all alike
                    pts, info = run_one(env, config, seed, args.budget, args.sandbox, args.set, out)
                    points += pts
                    details[f"{env}/{config}/{seed}"] = info
    finally:
        ray.shutdown()
    with open(out / "runs.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["env", "config", "seed", "evaluations", "best", "coverage", "qd_score", "wall_s"])
        for p in points:
            writer.writerow([p.env, p.config, p.seed, p.evaluations, p.best, p.coverage, p.qd_score, p.wall_s])
    rows = summarise(points)
    with open(out / "summary.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=sorted({k for r in rows for k in r}, key=lambda k: (k != "env", k)))
        writer.writeheader()
        writer.writerows(rows)
    (out / "details.json").write_text(json.dumps({k: {n: v for n, v in info.items() if n != "curve"}
                                                   for k, info in details.items()}, indent=1, default=str))
    print_table(rows)
    print_ablation(rows, args.budget)
    # against GP alone where it ran, else against the shipped default (GP alone since docs/search.md's "The default")
    print_equal_time(details, against="gp" if any(k.split("/")[1] == "gp" for k in details) else "default")
    print_final(details)
    print("\nper-mutator rates (children, valid, inserted, duplicates), evaluations/s:")
    for key, info in details.items():
        rates = ", ".join(f"{m} {r['children']} {r['valid']:.0%} {r['inserted']:.0%} {r['duplicates']}"
                          for m, r in info["rates"].items())
        print(f"  {key:<40} {info['evals_per_s']:6.2f}/s  {rates}")
    try:
        plot(points, out)
    except ImportError:
        print("(matplotlib missing: no PNG)")
    print(f"\nwritten: {out}/runs.csv, summary.csv, details.json, *.png (load {_load()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
