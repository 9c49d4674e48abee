"""Language-model mutator throughput: the hf backend at several batch sizes, and the engine's
mutator path against a bare ``model.generate`` loop on the same prompts and settings.

1. ``hf`` backend, SmolLM2-135M on CPU (or ``--model``), batches of 1, 8 and 32
   prompts of the default operator (``lines`` style on the circle-packing seeds, its
   stop at the line's end, temperature 0.5): generated tokens/s and children/s.
2. Engine vs bare: the same batches through the whole engine path, a Ray actor
   hosting :class:`elm.workers.MutatorWorker` with the default SmolLM2
   operator (prompt building, generation, parsing, syntax check, Ray transfer),
   against a bare loop calling ``model.generate(do_sample=True, ...)`` with the
   same prompts, temperature, top-p/top-k, token limit and stop string (``stop_strings``)
   in this process, with torch on the same number of threads as the actor's backend. The
   two alternate round by round (the machine may be shared), and the ratio of
   their generated-tokens/s is reported per round and as the median. Goal >= 0.9.
   (The backend samples with a Gumbel-max logits processor instead of
   ``do_sample=True``'s sort + multinomial: the same distribution, cheaper on a CPU.)
3. With ``--vllm`` on a CUDA machine: the vLLM backend against raw ``vllm.LLM.generate``.

    .venv/bin/python -m benchmarks.bench_mutators [--rounds 3] [--batch 8] [--tokens 48]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def _prompts(n: int):
    import numpy as np

    from environments.circle_packing import CirclePacking
    from mutators import prompts as P

    env = CirclePacking()
    seeds = env.seed_programs()
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):  # the default operator's prompts: one assignment line's new right-hand side
        entry = P.find_entry(seeds[i % len(seeds)], "pack")
        line, head = P.choose_assignment(entry, rng)
        out.append(P.lines_prompt(entry, "pack", line, head))
    return env, seeds, out


def backend_throughput(args) -> None:
    from mutators.backends import Sampling, build_backend

    backend = build_backend({"kind": "hf", "model": args.model, "eos_tokens": ["<|endoftext|>"], "max_batch": 64})
    _, _, prompts = _prompts(32)
    from mutators.lm import _LINE_STOPS

    # the default operator's settings: one line (stop at its end), temperature 0.5
    sampling = Sampling(max_new_tokens=args.tokens, temperature=0.5, stop=_LINE_STOPS)
    backend.generate(prompts[:2], sampling=sampling, seed=0)  # warm-up
    print(f"\n1. hf backend, {args.model} on {backend.device}, max_new_tokens {args.tokens}, "
          f"torch threads {__import__('torch').get_num_threads()}")
    print(f"{'batch':>6}{'children':>10}{'tokens out':>12}{'seconds':>9}{'tokens/s':>10}{'children/s':>12}")
    for batch in (1, 8, 32):
        n = max(batch, args.min_children)
        start = time.perf_counter()
        tokens = 0
        for k in range(0, n, batch):
            tokens += sum(c.tokens_out for c in backend.generate(prompts[k % 32:k % 32 + batch] or prompts[:batch],
                                                                   sampling=sampling, seed=k))
        elapsed = time.perf_counter() - start
        print(f"{batch:>6}{n:>10}{tokens:>12}{elapsed:>9.2f}{tokens / elapsed:>10.1f}{n / elapsed:>12.2f}")


def engine_vs_bare(args) -> None:
    import ray
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from elm.config import compose
    from elm.types import Parent
    from elm.workers import MutatorWorker
    from mutators.backends.smollm2 import smollm2_checkpoint

    env, seeds, _ = _prompts(1)
    cfg = compose(["mutator=smollm2", f"mutator.sampling.max_new_tokens={args.tokens}",
                   f"mutator.backend.max_batch={args.batch}",
                   *([f"mutator.sampling.temperature={args.temperature}"] if args.temperature >= 0 else [])
                   ])["mutator"]
    temperature = cfg["sampling"]["temperature"]
    sample = dict(do_sample=True, temperature=temperature, top_p=0.95, top_k=50) if temperature > 0 else \
        dict(do_sample=False)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        worker = ray.remote(MutatorWorker).options(num_cpus=0).remote(cfg, env.task())
        groups = [[Parent(id=i, source=seeds[i % 4], fitness=0.0, descriptor=(0.0, 0.0))] for i in range(args.batch)]
        ray.get(worker.mutate.remote(groups[:2], 0))  # warm-up (loads the model)
        path = smollm2_checkpoint()
        tok = AutoTokenizer.from_pretrained(path)
        tok.padding_side = "left"
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        torch.set_num_threads(len(os.sched_getaffinity(0)))
        # the exact prompts the operator builds for these parents and seeds
        from mutators.lm import RewriteMutator

        op = RewriteMutator.__new__(RewriteMutator)
        op.style, op.parents_per_child, op.max_region_lines = "lines", 1, cfg["max_region_lines"]
        op.instruction, op.body_lines, op.show_parent = "", 1, cfg["show_parent"]
        print(f"\n2. engine (Ray actor + operator + parsing) vs bare model.generate, batch {args.batch}, "
              f"max_new_tokens {args.tokens}, SmolLM2 on CPU")
        mode = "greedy: both sides generate the same tokens" if temperature == 0 else "sampled"
        print(f"temperature {temperature} ({mode})")
        print(f"{'round':>6}{'engine tok/s':>14}{'bare tok/s':>12}{'engine child/s':>16}{'bare child/s':>14}"
              f"{'tok/s ratio':>13}{'time ratio':>12}")
        time_ratios = []
        ratios = []
        import numpy as np

        for r in range(args.rounds):
            seed = 1000 + r
            start = time.perf_counter()
            proposals = ray.get(worker.mutate.remote(groups, seed))
            e_s = time.perf_counter() - start
            e_tokens = sum(p.tokens_out for p in proposals)
            rng = np.random.default_rng(seed)
            plans = [op._plan(g, env.task(), rng) for g in groups]
            prompts = [plan.prompt for plan in plans]
            stops = sorted({s for plan in plans for s in (plan.stops or ())} - {"<|endoftext|>", "<|im_end|>"})
            start = time.perf_counter()
            enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.inference_mode():
                out = model.generate(**enc, max_new_tokens=args.tokens, **sample,
                                     pad_token_id=tok.pad_token_id, eos_token_id=[0, 2],
                                     stop_strings=stops or None, tokenizer=tok)
            new = out[:, enc["input_ids"].shape[1]:]
            b_tokens = int(((new != tok.pad_token_id) & (new != 0)).sum()) + int((new == 0).any(dim=1).sum())
            texts = tok.batch_decode(new, skip_special_tokens=True)
            b_s = time.perf_counter() - start
            del texts
            e_rate, b_rate = e_tokens / e_s, b_tokens / b_s
            ratios.append(e_rate / b_rate)
            time_ratios.append(b_s / e_s)  # same batch: bare seconds / engine seconds
            print(f"{r:>6}{e_rate:>14.1f}{b_rate:>12.1f}{len(groups) / e_s:>16.2f}{len(groups) / b_s:>14.2f}"
                  f"{ratios[-1]:>13.2f}{time_ratios[-1]:>12.2f}")
        print(f"median engine/bare tokens-per-second ratio: {statistics.median(ratios):.2f}; "
              f"median bare/engine seconds per batch: {statistics.median(time_ratios):.2f} (goal >= 0.9)")
    finally:
        ray.shutdown()


def vllm_vs_raw(args) -> None:
    import vllm

    from mutators.backends import Sampling, build_backend

    _, _, prompts = _prompts(args.batch)
    b = build_backend({"kind": "vllm", "model": args.vllm})
    sampling = Sampling(max_new_tokens=args.tokens, temperature=0.8)
    b.generate(prompts[:2], sampling=sampling, seed=0)
    params = vllm.SamplingParams(temperature=0.8, top_p=0.95, top_k=50, max_tokens=args.tokens, seed=1)
    ratios = []
    for r in range(args.rounds):
        start = time.perf_counter()
        e_tokens = sum(c.tokens_out for c in b.generate(prompts, sampling=sampling, seed=r))
        e_s = time.perf_counter() - start
        start = time.perf_counter()
        outs = b.llm.generate(prompts, params, use_tqdm=False)
        r_s = time.perf_counter() - start
        r_tokens = sum(len(o.outputs[0].token_ids) for o in outs)
        ratios.append((e_tokens / e_s) / (r_tokens / r_s))
        print(f"round {r}: backend {e_tokens / e_s:.0f} tok/s, raw vLLM {r_tokens / r_s:.0f} tok/s, "
              f"ratio {ratios[-1]:.2f}")
    print(f"median vLLM backend/raw ratio: {statistics.median(ratios):.2f} (goal >= 0.9)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--tokens", type=int, default=48, help="max_new_tokens (the default operator's: 48)")
    ap.add_argument("--batch", type=int, default=8, help="batch size of the engine-vs-bare comparison")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--temperature", type=float, default=0.0,
                    help="engine-vs-bare sampling temperature (0: greedy, both sides do identical work; "
                         "negative: the operator's own, 0.5)")
    ap.add_argument("--min-children", type=int, default=8, help="children measured per batch size (at least one batch)")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: throughput,engine")
    ap.add_argument("--vllm", default=None, help="also compare the vLLM backend with raw vLLM for this model (GPU)")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    if "throughput" not in skip:
        backend_throughput(args)
    if "engine" not in skip:
        engine_vs_bare(args)
    if args.vllm:
        vllm_vs_raw(args)


if __name__ == "__main__":
    main()
