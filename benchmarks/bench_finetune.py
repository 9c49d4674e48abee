"""Paired benchmark: SmolLM2's ``lines`` operator untuned vs. fine-tuned on a run's own successes.

1. **Data**: a run of the default model mixed with the AST baseline (``mutator=smollm2_gp`` at
   equal weights, circle packing, ``sandbox=process``), or an existing run (``--data-run``).
2. **Export**: its successful children as ``rewrite/lines`` pairs, the baseline's one-line
   successes re-expressed in that format (``--reexpress smollm2``).
3. **Train**: a LoRA adapter on CPU, bounded by ``--train-steps`` and ``--train-seconds``, with
   ``--threads`` torch threads; cost per step and per example from its ``elm_adapter.json``.
4. **Paired runs**: ``mutator=smollm2`` (the model alone) with the same environment, seeds
   (``--seeds``, each a pair) and budget, without and with ``mutator.backend.adapter``, on circle
   packing and on an environment the adapter was not trained on (``--transfer-env``, default bin
   packing). Per run: the model's children, valid rate, insertion rate, new-cell rate,
   distinct-program rate (distinct programs the operator built / children) and the share of
   children whose new line is copied verbatim from a training completion.

    .venv/bin/python -m benchmarks.bench_finetune --out /tmp/bench_finetune
    .venv/bin/python -m benchmarks.bench_finetune --data-run outputs/DATE/TIME --train-seconds 300

Prints a Markdown table and writes ``results.json`` under ``--out``. Run by hand (never imported
by tests); figures in docs/mutators.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from benchmarks._runs import run_cli


def _model_rates(run_dir: Path, training: set[str]) -> dict:
    """The rates of the run's one model operator (every mutator but the seeds)."""
    from elm.stats import mutator_stats
    from elm.store import RunStore

    with RunStore.open(run_dir) as store:
        (stats,) = [s for s in mutator_stats(store) if s.mutator != "seed"]
        mutator = stats.mutator
        programs, copied, versions = set(), 0, set()
        for rec in store.iter_evaluations(mutator=mutator):
            meta = rec.info.get("mutation") or {}
            versions.add(meta.get("model_version"))
            if rec.source is not None and rec.mutation_status == "ok":
                programs.add(rec.program_key or rec.source)
            line = str(meta.get("completion", "")).split("\n", 1)[0].strip()
            copied += bool(line) and line in training
        best = max((r.fitness for r in store.iter_evaluations(status="ok") if r.fitness is not None), default=None)
    n = stats.proposals or 1
    return {"children": stats.proposals, "valid": stats.valid / n, "inserted": stats.inserted / n,
            "new_cells": stats.new_cells / n, "distinct": len(programs) / n, "copied": copied / n,
            "inserted_count": stats.inserted, "valid_count": stats.valid, "best_fitness": best,
            "model_s_per_child": stats.model_s / n, "versions": sorted(str(v) for v in versions)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_finetune"))
    ap.add_argument("--data-run", type=Path, default=None, help="reuse this run as the training data")
    ap.add_argument("--data-seconds", type=float, default=420.0)
    ap.add_argument("--train-steps", type=int, default=300)
    ap.add_argument("--train-seconds", type=float, default=300.0)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seeds", default="1,2,3", help="comma-separated run seeds of the paired runs")
    ap.add_argument("--evaluations", type=int, default=100, help="budget of each paired run (seeds included)")
    ap.add_argument("--eval-seconds", type=float, default=420.0, help="wall-clock bound of each paired run")
    ap.add_argument("--transfer-env", default="bin_packing")
    ap.add_argument("--transfer-evaluations", type=int, default=64)
    ap.add_argument("--run-batch", type=int, default=16, help="children per batch in the paired runs")
    ap.add_argument("--reexpress", default="smollm2",
                    help="write the other operators' successes in this operator's format ('' for none: a data run "
                         "of the model alone)")
    ap.add_argument("--adapter", type=Path, default=None, help="skip training: use this adapter")
    ap.add_argument("--tuned-set", action="append", default=[], metavar="OVERRIDE",
                    help="an extra override for the tuned runs only, e.g. mutator.sampling.temperature=0.8")
    ap.add_argument("--only", default=None,
                    help="comma-separated paired runs to do, e.g. circle_packing/tuned (default: all four)")
    args = ap.parse_args(argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {"args": {k: str(v) for k, v in vars(args).items()}}

    data = args.data_run.resolve() if args.data_run else out / "data"
    if args.data_run is None:
        secs = run_cli(data, ["mutator=smollm2_gp", "mutator.components.smollm2.weight=0.5",
                           "mutator.components.gp.weight=0.5", "sandbox=process", "seed=0",
                           f"budget.wall_seconds={args.data_seconds}"], out / "data.log")
        results["data_run_s"] = secs
    from elm.finetune import export_examples

    pairs = out / "pairs.jsonl"
    summary = export_examples(data, pairs, reexpress=[args.reexpress] if args.reexpress else [])
    results["export"] = {"rows": summary.rows, "successes": summary.successes, "by_operator": summary.by_operator,
                         "unexpressed": summary.unexpressed, "repeated": summary.repeated}
    print(f"export: {results['export']}", flush=True)
    training = {json.loads(line)["completion"].strip() for line in open(pairs)}

    if args.adapter is None:
        from mutators.finetune.train import TrainConfig, train

        adapter = out / f"adapter-{int(time.time())}"
        result = train(data=pairs, model="smollm2", out=adapter,
                       config=TrainConfig(max_steps=args.train_steps, max_seconds=args.train_seconds,
                                          batch_size=args.batch_size, lr=args.lr, threads=args.threads, seed=0))
        results["train"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in result.__dict__.items()}
    else:
        adapter = args.adapter.resolve()
        results["train"] = json.loads((adapter / "elm_adapter.json").read_text())["result"]
    print(f"train: {results['train']}", flush=True)

    results["paired"] = {}
    only = set(args.only.split(",")) if args.only else None
    seeds = [int(x) for x in args.seeds.split(",")]
    for env, budget in (("circle_packing", args.evaluations), (args.transfer_env, args.transfer_evaluations)):
        for seed in seeds:
            for label, extra in (("untuned", []), ("tuned", [f"mutator.backend.adapter={adapter}", *args.tuned_set])):
                if only is not None and f"{env}/{label}" not in only:
                    continue
                name = f"{env}-{label}-s{seed}"
                run_dir = out / name
                secs = run_cli(run_dir, [f"env={env}", "mutator=smollm2", "sandbox=process", f"seed={seed}",
                                         f"budget.evaluations={budget}", f"budget.wall_seconds={args.eval_seconds}",
                                         f"loop.batch_size={args.run_batch}", f"mutator.backend.threads={args.threads}",
                                         *extra], out / f"{name}.log")
                rates = _model_rates(run_dir, training)
                rates["run_s"] = secs
                results["paired"][f"{env}/{label}/{seed}"] = rates
                print(f"{env} {label} seed {seed}: {rates}", flush=True)
                (out / "results.json").write_text(json.dumps(results, indent=1))

    print("\n| environment | model | seed | children | valid | inserted | new cells | distinct | copied | best |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for key, r in results["paired"].items():
        env, label, seed = key.split("/")
        best = "–" if r["best_fitness"] is None else f"{r['best_fitness']:.3f}"
        print(f"| {env} | {label} | {seed} | {r['children']} | {r['valid']:.1%} | {r['inserted']:.1%} "
              f"| {r['new_cells']:.1%} | {r['distinct']:.1%} | {r['copied']:.1%} | {best} |")
    # per environment and model: the median over seeds (and its range) and the rate pooled over all children
    print("\n| environment | model | children | valid: median [min..max] (pooled) | inserted | new cells | distinct |")
    print("|---|---|---|---|---|---|---|")
    groups: dict[tuple[str, str], list[dict]] = {}
    for key, r in results["paired"].items():
        env, label, _ = key.split("/")
        groups.setdefault((env, label), []).append(r)
    for (env, label), rs in groups.items():
        n = sum(r["children"] for r in rs)
        cells = []
        for rate in ("valid", "inserted", "new_cells", "distinct"):
            values = sorted(r[rate] for r in rs)
            pooled = sum(r[rate] * r["children"] for r in rs) / max(n, 1)
            cells.append(f"{statistics.median(values):.1%} [{values[0]:.1%}..{values[-1]:.1%}] ({pooled:.1%})")
        print(f"| {env} | {label} | {n} | " + " | ".join(cells) + " |")
    t = results["train"]
    print(f"\ntraining: {t['steps']} steps, {t['examples_seen']} examples in {t['seconds']:.0f} s: "
          f"{t['seconds_per_step']:.2f} s/step, {t['seconds_per_example']:.3f} s/example ({args.threads} threads)")


if __name__ == "__main__":
    main()
