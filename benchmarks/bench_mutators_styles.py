"""Valid-program rate of the embedded SmolLM2 model per prompt style, on circle packing.

For each style (``chat``, ``body``, ``body_chat``, ``region``, ``lines`` with
and without the parent shown; ``body`` and ``body_chat`` crossover) it writes ``--children`` children of the four seed
programs with the ``hf`` backend on CPU, runs every child that the operator
produced in the ``process`` sandbox (the rlimits and deadline of the engine;
these are a language model's programs) and prints, per style: children,
programs produced, programs that parse, valid programs (scored ok), valid
programs that differ from every seed's score, valid programs that score above
their (first) parent, the mutator statuses, tokens and seconds per child.
Styles ending in ``+insp`` show the other seed programs, with their scores, as
inspirations (``inspirations=3``).

    .venv/bin/python -m benchmarks.bench_mutators_styles --children 32
"""

from __future__ import annotations

import argparse
import collections
import time

from elm.sandbox import EnvironmentSpec, SandboxLimits
from elm.types import EvalRequest, Parent
from elm.workers import syntax_error
from mutators import CrossoverMutator, RewriteMutator
from mutators.backends import build_backend

# style -> (operator class, its arguments, sampling overrides). ``lines`` uses its default config's
# settings (conf/mutator/smollm2.yaml: one line, 48 tokens, temperature 0.5).
STYLES = {
    "chat": (RewriteMutator, {"style": "chat"}, {}),
    "body": (RewriteMutator, {"style": "body"}, {}),
    "body_chat": (RewriteMutator, {"style": "body_chat"}, {}),
    "region": (RewriteMutator, {"style": "region"}, {}),
    "lines": (RewriteMutator, {"style": "lines"}, {"max_new_tokens": 48, "temperature": 0.5}),
    "lines+parent": (RewriteMutator, {"style": "lines", "show_parent": True},
                     {"max_new_tokens": 48, "temperature": 0.5}),
    # the same styles showing three other scored programs (inspirations, lowest score first)
    "chat+insp": (RewriteMutator, {"style": "chat", "inspirations": 3}, {}),
    "body+insp": (RewriteMutator, {"style": "body", "inspirations": 3}, {}),
    "body_chat+insp": (RewriteMutator, {"style": "body_chat", "inspirations": 3}, {}),
    "crossover-body": (CrossoverMutator, {"style": "body"}, {}),
    "crossover-body_chat": (CrossoverMutator, {"style": "body_chat"}, {}),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--children", type=int, default=32, help="children per style")
    ap.add_argument("--batch", type=int, default=16, help="children per mutate() call")
    ap.add_argument("--styles", default=",".join(STYLES), help="comma-separated subset of " + ",".join(STYLES))
    ap.add_argument("--max-new-tokens", type=int, default=384)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from sandbox import make_sandbox

    spec = EnvironmentSpec(target="environments.circle_packing.CirclePacking", kwargs={"n": 26})
    env = spec.build()
    task = env.task()
    seeds = list(env.seed_programs())
    fitness = [env.evaluate_local(s).fitness for s in seeds]
    seed_scores = {round(f, 9) for f in fitness}
    backend = build_backend({"kind": "hf", "model": "smollm2", "eos_tokens": ["<|endoftext|>"]})
    sandbox = make_sandbox("process", env=spec, limits=SandboxLimits(timeout_s=10.0), workers=2)
    sampling = {"max_new_tokens": args.max_new_tokens, "temperature": args.temperature}
    print(f"SmolLM2-135M-Instruct on CPU, {args.children} children per style, temperature {args.temperature}, "
          f"max_new_tokens {args.max_new_tokens}")
    print(f"{'style':<16}{'children':>9}{'program':>9}{'parses':>8}{'valid':>7}{'new score':>10}"
          f"{'> parent':>9}{'tok out/child':>14}{'s/child':>9}  statuses")
    try:
        for style in args.styles.split(","):
            cls, kwargs, overrides = STYLES[style]
            mutator = cls(backend=backend, sampling={**sampling, **overrides}, **kwargs)
            k = mutator.parents_per_child
            def scored(i: int, j: int) -> Parent:
                s = (i + j) % len(seeds)
                return Parent(id=10 * i + j, source=seeds[s], fitness=fitness[s], descriptor=(0, 0))

            groups = [[scored(i, j) for j in range(k)] for i in range(args.children)]
            # inspirations: the seeds that are not the child's parents, lowest score first
            shown = [sorted((scored(i, j) for j in range(k, len(seeds))), key=lambda p: p.fitness)
                     for i in range(args.children)]
            start = time.perf_counter()
            proposals = []
            for b in range(0, len(groups), args.batch):
                extra = {"inspirations": shown[b:b + args.batch]} if mutator.inspirations else {}
                proposals += mutator.mutate(parents=groups[b:b + args.batch], task=task, seed=args.seed + b, **extra)
            elapsed = time.perf_counter() - start
            statuses = collections.Counter(p.status for p in proposals)
            programs = [(g, p) for g, p in zip(groups, proposals) if p.status == "ok" and p.source]
            parsing = [(g, p) for g, p in programs if syntax_error(p.source) is None]
            results = sandbox.evaluate([EvalRequest(id=i, source=p.source) for i, (_, p) in enumerate(parsing)])
            valid = [(g, r) for (g, _), r in zip(parsing, results) if r.ok]
            new = [r for _, r in valid if round(r.fitness, 9) not in seed_scores]
            better = [r for g, r in valid if r.fitness > g[0].fitness + 1e-9]
            errors = collections.Counter((r.error or "").strip().splitlines()[-1][:60] for r in results if not r.ok)
            n = len(proposals)
            tokens = sum(p.tokens_out for p in proposals) / n
            print(f"{style:<16}{n:>9}{len(programs) / n:>9.1%}{len(parsing) / n:>8.1%}{len(valid) / n:>7.1%}"
                  f"{len(new) / n:>10.1%}{len(better) / n:>9.1%}{tokens:>14.0f}{elapsed / n:>9.2f}  "
                  f"{dict((str(k.value if hasattr(k, 'value') else k), v) for k, v in statuses.items())}",
                  flush=True)
            for err, count in errors.most_common(3):
                print(f"{'':<16}  {count} x {err}")
    finally:
        sandbox.close()


if __name__ == "__main__":
    main()
