"""Driver throughput: an instant mutator and a no-op evaluation pushed through the full Ray pipeline.

Everything real except the work itself: Ray actors, ObjectRef forwarding,
archive insertion, the SQLite store (one transaction per batch) and metrics.
Prints evaluations/s and ms/evaluation (wall, actor start-up included) per
configuration, and the driver's own CPU time per evaluation (over the whole run, and
``marginal``: the difference between a run of the full budget and one of a fifth of it, per
evaluation, which cancels the fixed costs of a run such as imports and actor start-up): on a 2-core
machine the actors compete with the driver for the same cores, so the
driver's CPU cost is its ceiling once evaluators run on other machines.

With duplicate detection on, each child's canonical key is computed in the mutator actor (1.5-3 ms
for a 40-line program): on 2 cores that makes the actors, not the driver, the bound, and the driver
then wakes for every batch (a cold start each time: the same work costs it ~1.3x). So the rows with
duplicate detection run on ``quoted`` children (the parent's text as one string constant: the same
size to store and ship, a key of ~0.05 ms), which measures the driver's own ceiling; one row keeps
``code`` children (the parent's code itself) to show the actor-bound case. Asserts nothing.

    python -m benchmarks.bench_pipeline [--evaluations 20000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluations", type=int, default=20000)
    args = parser.parse_args()

    import ray

    from elm.config import compose
    from elm.runner import run

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=256 << 20)
    settings = [  # (batch size, in flight, mutator actors, evaluator actors, search machinery, children)
        (16, 4, 1, 1, "plain", "code"),
        (64, 8, 2, 2, "plain", "code"),
        (64, 8, 2, 2, "dedup", "quoted"),
        (64, 8, 2, 2, "search", "quoted"),
        (64, 8, 2, 2, "search", "code"),
        (256, 8, 2, 2, "plain", "code"),
        (256, 8, 2, 2, "search", "quoted"),
        (512, 8, 2, 2, "plain", "code"),
    ]
    # "plain": one operator (the defaults); "dedup": the same with duplicate detection on
    # (search.dedup=true); "search": duplicate detection on, two lanes, one with two
    # variants, the bandit choosing among the three operators, four islands with migration and resets
    search = ["search.dedup=true", "search.bandit.enabled=true", "search.islands.count=4",
              "search.islands.migration_interval=500", "search.islands.reset_interval=2000"]
    def instant(children: str) -> dict:
        return {"_target_": "benchmarks._instant.InstantMutator", "quoted": children == "quoted"}

    def mixture(children: str) -> dict:
        return {"_target_": "mutators.mixture.MixtureMutator", "components": {
            "a": {**instant(children), "weight": 0.5, "variants": {"x": {}, "y": {}}},
            "b": {**instant(children), "weight": 0.5}}}
    print(f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'batch':>6} {'in-flight':>9} {'mut':>4} {'eval':>4} {'search':>7} {'children':>8} {'evals':>7} "
          f"{'evals/s':>9} {'ms/eval':>9} {'driver CPU ms':>14} {'marginal ms':>11} {'steady ev/s':>13} "
          f"{'steady ms/ev':>13}")
    # a warm-up run: the first run of the process pays its imports, which would count against one setting
    with tempfile.TemporaryDirectory() as tmp:
        warm = compose(["sandbox._target_=benchmarks._instant.NoopSandbox", "loop.progress=false",
                        "loop.export_elites=false", "budget.evaluations=500", "budget.wall_seconds=null",
                        *search])
        warm["mutator"] = mixture("quoted")
        run(warm, run_dir=f"{tmp}/run", progress=False)
    for batch, in_flight, n_mut, n_eval, kind, children in settings:
        measured = {}
        for n in (args.evaluations // 5, args.evaluations):
            cfg = compose([
                "sandbox._target_=benchmarks._instant.NoopSandbox", "loop.progress=false",
                "loop.export_elites=false", f"budget.evaluations={n}", "budget.wall_seconds=null",
                f"loop.batch_size={batch}", f"loop.max_in_flight={in_flight}",
                f"ray.mutator_actors={n_mut}", f"ray.evaluator_actors={n_eval}", "ray.evaluator_num_cpus=0",
                *(search if kind == "search" else []), *(["search.dedup=true"] if kind == "dedup" else []),
            ])
            cfg["mutator"] = mixture(children) if kind == "search" else instant(children)
            with tempfile.TemporaryDirectory() as tmp:
                start, cpu = time.perf_counter(), time.process_time()
                summary = run(cfg, run_dir=f"{tmp}/run", progress=False)
                elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
                from elm.store import RunStore

                with RunStore.open(f"{tmp}/run") as store:
                    m = store.metrics()
                # Steady state: from the first absorbed child batch to the last (no start-up/shutdown).
                steady = (m[-1]["evaluations"] - m[1]["evaluations"]) / max(m[-1]["time"] - m[1]["time"], 1e-9)
            measured[n] = (summary.evaluations, elapsed, cpu, steady)
        (n_small, _, cpu_small, _), (n_all, elapsed, cpu, steady) = measured[args.evaluations // 5], \
            measured[args.evaluations]
        # What one more evaluation costs the driver: the difference of two runs that differ only in
        # their budget, so that the run's fixed costs (imports, actor start-up, the final summary) cancel.
        marginal = (cpu - cpu_small) / max(n_all - n_small, 1)
        rate = n_all / elapsed  # actor start-up is part of `run`; the steady rate is from the store's clock
        print(f"{batch:>6} {in_flight:>9} {n_mut:>4} {n_eval:>4} {kind:>7} {children:>8} {n_all:>7} {rate:>9.0f} "
              f"{1000 / rate:>9.4f} {1000 * cpu / n_all:>14.4f} {1000 * marginal:>11.4f} {steady:>13.0f} "
              f"{1000 / steady:>13.4f}", flush=True)
    ray.shutdown()


if __name__ == "__main__":
    main()
