"""Does in-run fine-tuning starve evaluation? Evaluations per second with ``finetune`` off and on.

The same run (``mutator=smollm2_gp``: the AST baseline and a ``lines`` language-model lane,
circle packing, ``sandbox=process``, seed 0) for ``--seconds`` of wall time per condition, each in
its own process and Ray instance:

- ``off``: no training;
- ``on``: in-run fine-tuning with the defaults (1 thread, niceness 10, duty cycle 0.5);
- ``nopause``: the same rounds without the guards (duty cycle 1, niceness 0).

Training rounds come every ``--every`` examples (the baseline's one-line successes re-expressed in
the model's format, and the model's own), bounded by ``--max-steps``. The model is a tiny Llama
built locally (``--model tiny``; ``--width``/``--layers`` make its training costlier) or the
embedded SmolLM2 (``--model smollm2``). Per condition: evaluations per second (all children, from
the store, over the run's wall time), the model lane's children and their versions, training
rounds, steps, the seconds the rounds took and the share of the wall time they were running, and
the load average before and after.

    .venv/bin/python -m benchmarks.bench_intrain --out /tmp/bench_intrain --seconds 90
    .venv/bin/python -m benchmarks.bench_intrain --model smollm2 --seconds 300 --every 8 --max-steps 4

Prints a Markdown table and writes ``results.json`` under ``--out``. Run by hand (never imported
by tests); figures in docs/mutators.md.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from benchmarks._runs import run_cli

CONDITIONS = {
    "off": ["finetune.enabled=false"],
    "on": ["finetune.enabled=true"],
    "nopause": ["finetune.enabled=true", "finetune.duty_cycle=1", "finetune.nice=0"],
}


def _tiny(path: Path, width: int, layers: int) -> Path:
    """A tiny Llama with the real GPT-2 vocabulary (``mutators.standins.llama``, widened)."""
    import torch
    import transformers as tf

    from mutators import standins

    if (path / "config.json").is_file():
        return path
    torch.manual_seed(0)
    config = tf.LlamaConfig(vocab_size=50257, hidden_size=width, intermediate_size=2 * width,
                            num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                            max_position_embeddings=1024, bos_token_id=50256, eos_token_id=50256,
                            tie_word_embeddings=True, initializer_range=0.5)
    tf.LlamaForCausalLM(config).save_pretrained(path)
    standins.gpt2_tokenizer().save_pretrained(path)
    return path




def _measure(run_dir: Path) -> dict:
    from elm.stats import mutator_stats
    from elm.store import RunStore

    with RunStore.open(run_dir) as store:
        wall = store.run_wall_s()
        evaluations = store.count_budgeted() - store.count(mutator="seed")
        rounds = store.adapters()
        versions = {s.model_version: {"children": s.proposals, "valid": s.valid, "inserted": s.inserted}
                    for s in mutator_stats(store, by_version=True) if s.mutator == "smollm2"}
        gp = [s for s in mutator_stats(store) if s.mutator == "gp"]
    training_s = sum(r["seconds"] or 0.0 for r in rounds)
    steps = sum(int((r["info"].get("result") or {}).get("steps") or 0) for r in rounds)
    paused = sum(float((r["info"].get("result") or {}).get("paused_s") or 0.0) for r in rounds)
    return {"wall_s": wall, "evaluations": evaluations, "evals_per_s": evaluations / wall if wall else 0.0,
            "gp_children": gp[0].proposals if gp else 0, "model_versions": versions,
            "rounds": [(r["id"], r["status"], r["examples"]) for r in rounds], "steps": steps,
            "training_s": training_s, "paused_s": paused, "training_share": training_s / wall if wall else 0.0}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_intrain"))
    parser.add_argument("--seconds", type=float, default=90.0, help="wall-clock budget of each run")
    parser.add_argument("--model", default="tiny", help="tiny, smollm2, or a checkpoint directory")
    parser.add_argument("--width", type=int, default=256, help="tiny model: hidden size")
    parser.add_argument("--layers", type=int, default=4, help="tiny model: layers")
    parser.add_argument("--every", type=int, default=4, help="finetune.every_examples")
    parser.add_argument("--max-steps", type=int, default=10, help="finetune.max_steps per round")
    parser.add_argument("--weight", type=float, default=0.5, help="the model lane's share of the children")
    parser.add_argument("--batch", type=int, default=2, help="finetune.trainer.batch_size (examples per step)")
    parser.add_argument("--conditions", default="off,on,nopause,off,on,nopause",
                        help="run in this order (repeat names to interleave repetitions: the load changes)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    model = args.model
    if model == "tiny":
        model = str(_tiny(args.out / f"tiny-{args.width}x{args.layers}", args.width, args.layers))
    common = ["env=circle_packing", "mutator=smollm2_gp", "sandbox=process", f"seed={args.seed}",
              f"mutator.components.smollm2.weight={args.weight}", f"mutator.components.gp.weight={1 - args.weight}",
              f"mutator.components.smollm2.backend.model={model}", "budget.evaluations=1000000",
              f"budget.wall_seconds={args.seconds}", f"finetune.every_examples={args.every}",
              f"finetune.max_steps={args.max_steps}", f"+finetune.trainer.batch_size={args.batch}", "ray.num_cpus=2"]
    results = {}
    for k, name in enumerate(args.conditions.split(",")):
        key = f"{k}-{name}"
        run_dir = args.out / key
        if run_dir.exists():
            raise SystemExit(f"{run_dir} exists: choose a new --out")
        load_before = os.getloadavg()
        elapsed = run_cli(run_dir, [*common, *CONDITIONS[name]], args.out / f"{key}.log")
        results[key] = {**_measure(run_dir), "process_s": elapsed, "load_before": load_before,
                        "load_after": os.getloadavg()}
        print(key, json.dumps(results[key]), flush=True)
    (args.out / "results.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                      "results": results}, indent=1))
    print("\n| condition | wall s | evaluations | evaluations/s | model children (versions) | rounds | steps "
          "| training s (share of wall) | load 1-min before / after |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        versions = ", ".join(f"{v}: {c['children']}" for v, c in r["model_versions"].items())
        print(f"| {name} | {r['wall_s']:.0f} | {r['evaluations']} | {r['evals_per_s']:.2f} | {versions} | "
              f"{len(r['rounds'])} | {r['steps']} | {r['training_s']:.0f} ({100 * r['training_share']:.0f} %) | "
              f"{r['load_before'][0]:.1f} / {r['load_after'][0]:.1f} |")


if __name__ == "__main__":
    main()
