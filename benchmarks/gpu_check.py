"""One-shot check of the seed-model mutators at their real sizes on a GPU (issue 14).

For each seed architecture at its real size, a random-weight model is built from its config
with the real tokenizer (``mutators/standins.py``; SantaCoder's vocabulary is the
stand-in carrying its five real special tokens), saved, and loaded back through the ``hf``
backend as a checkpoint would be, with the backend settings of its ``conf/mutator/*.yaml``
(``batching``, ``trust_remote_code``) on CUDA in bf16:

==========================  ====================  =================================  ==========
seed model                  architecture          size (layers x width, heads)       operators
==========================  ====================  =================================  ==========
diff-codegen-350m           CodeGen               20 x 1024, 16 heads (~350M)         diff
FIM-NeoX-1.3B               GPT-NeoX              24 x 2048, 16 heads (~1.4B)         FIM SPM, PSM
SantaCoder                  GPTBigCode, MQA       24 x 2048, 16 heads, 1 kv (~1.1B)   FIM PSM, SPM
Refact-1.6B (stand-in)      remote-code Falcon,   32 x 2048, 32 heads, 1 kv (~1.5B)   FIM SPM, PSM
                            ALiBi + MQA
==========================  ====================  =================================  ==========

Each operator (the real :class:`~mutators.lm.DiffMutator` / :class:`~mutators.lm.FIMMutator`,
its prompts and stop strings, on the circle-packing seed programs) writes batches of 1, 8, 32
and 64 children: generated tokens/s, children/s, peak GPU memory and the children's statuses
(random weights write noise, so most are ``malformed``: the check is about the path, not the
quality). The same prompts then go through a bare ``model.generate(do_sample=True, ...)`` loop
with the same sampling settings, token limit and stop strings, padded into one call per batch;
``ratio`` is the mutator path's tokens/s over the bare loop's (goal >= 0.9). The two alternate
``--rounds`` times and the medians are reported. Every model gets an equal share of
``--budget-s`` (default 420 s, so the whole run, model builds included, stays under 8 minutes);
batches left when its share is spent are recorded as skipped.

Writes ``gpu_check.json`` and ``gpu_check.log`` into ``--out``. Needs torch and transformers
only (no Ray, no Hydra, no downloads); the JSON lists which of those heavy modules got imported.

    python -m benchmarks.gpu_check --out $OUT                 # H200/H100: at most ~8 minutes
    python -m benchmarks.gpu_check --tiny --device cpu --out /tmp/x   # the test suite's run: seconds
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: kind -> (conf/mutator option, real-size config fields, operators as (label, FIMMutator order or None))
MODELS = {
    "codegen": ("diff_codegen_350m", dict(n_embd=1024, n_layer=20, n_head=16, rotary_dim=32),
                [("diff", None)]),
    "neox": ("fim_neox_1b3", dict(hidden_size=2048, num_hidden_layers=24, num_attention_heads=16,
                                  intermediate_size=8192), [("FIM SPM", None), ("FIM PSM", "psm")]),
    "santacoder": ("santacoder", dict(n_embd=2048, n_layer=24, n_head=16, n_inner=8192),
                   [("FIM PSM", None), ("FIM SPM", "spm")]),
    "refact": ("refact_1b6", dict(hidden_size=2048, num_hidden_layers=32, num_attention_heads=32),
               [("FIM SPM", None), ("FIM PSM", "psm")]),
}
HEAVY = ("ray", "hydra", "omegaconf", "vllm")


class Log:
    def __init__(self, path: Path) -> None:
        self.file = path.open("w", encoding="utf-8")

    def __call__(self, *parts) -> None:
        line = " ".join(str(p) for p in parts)
        print(line, flush=True)
        self.file.write(line + "\n")
        self.file.flush()


def _yaml_node(option: str) -> dict:
    """The mutator option's own keys (backend, sampling, format) read from conf/mutator/<option>.yaml."""
    import yaml

    node = yaml.safe_load((ROOT / "conf" / "mutator" / f"{option}.yaml").read_text())
    node.pop("defaults", None)
    return node


def _seed_parents():
    from environments.circle_packing import CirclePacking

    env = CirclePacking()
    return list(env.seed_programs()), env.task()


def _sync(torch, device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _engine(op, groups, task, seed, torch, device):
    _sync(torch, device)
    start = time.perf_counter()
    proposals = op.mutate(parents=groups, task=task, seed=seed)
    _sync(torch, device)
    seconds = time.perf_counter() - start
    tokens = sum(p.tokens_out for p in proposals)
    return {"seconds": seconds, "tokens_out": tokens, "tokens_per_s": tokens / seconds,
            "children_per_s": len(proposals) / seconds, "statuses": dict(Counter(p.status.value for p in proposals))}


def _prompts(op, groups, task, seed):
    """The prompts ``op.mutate(..., seed=seed)`` sends (same draws, same windowing)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    plans = op._guard([op._plan(list(g), task, rng) for g in groups], groups)
    stops = op._stops()
    return [p.prompt for p in plans if p.prompt is not None], stops


def _bare(backend, prompts, stops, sampling, torch, device):
    """A plain ``model.generate(do_sample=True)`` over the same prompts, one padded call."""
    tok, model = backend.tokenizer, backend.model
    _sync(torch, device)
    start = time.perf_counter()
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(backend.device)
    kwargs = dict(max_new_tokens=sampling.max_new_tokens, do_sample=sampling.temperature > 0,
                  eos_token_id=list(backend.eos_ids), pad_token_id=tok.pad_token_id)
    if sampling.temperature > 0:
        kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k)
    if stops:
        kwargs.update(stop_strings=list(stops), tokenizer=tok)
    with torch.inference_mode():
        out = model.generate(**enc, **kwargs)
    _sync(torch, device)
    seconds = time.perf_counter() - start
    eos = set(backend.eos_ids)
    tokens = 0
    for row in out[:, enc["input_ids"].shape[1]:].tolist():
        end = next((i + 1 for i, t in enumerate(row) if t in eos), None)
        if end is None:
            while row and row[-1] == tok.pad_token_id:
                row = row[:-1]
            end = len(row)
        tokens += end
    return {"seconds": seconds, "tokens_out": tokens, "tokens_per_s": tokens / seconds,
            "children_per_s": len(prompts) / seconds}


def _median_run(runs: list[dict]) -> dict:
    out = dict(runs[len(runs) // 2])
    for key in ("seconds", "tokens_per_s", "children_per_s"):
        out[key] = statistics.median(r[key] for r in runs)
    return out


def check_model(kind: str, args, work: Path, log: Log, deadline: float) -> dict:
    import torch

    from mutators import DiffMutator, FIMMutator
    from mutators import standins as tiny
    from mutators.backends import build_backend, release_backend

    option, real, operators = MODELS[kind]
    node = _yaml_node(option)
    start = time.perf_counter()
    path = tiny.build(kind, work, seed=0, overrides={} if args.tiny else real, device=args.device,
                      dtype="float32" if args.tiny else "bfloat16")
    build_s = time.perf_counter() - start
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()
    cfg = {k: v for k, v in node["backend"].items() if k not in ("model", "max_batch")}
    cfg.update(model=str(path), device=args.device, dtype="float32" if args.tiny else "bfloat16",
               max_batch=max(args.batches))
    backend = build_backend(cfg)
    params = sum(p.numel() for p in backend.model.parameters())
    result = {"option": option, "params": params, "build_s": round(build_s, 1),
              "load_s": round(backend.load_seconds, 1), "context_length": backend.context_length,
              "batching": backend.batching, "dtype": str(next(backend.model.parameters()).dtype),
              "model_class": type(backend.model).__name__, "operators": []}
    log(f"\n{kind} ({option}): {result['model_class']}, {params / 1e6:.0f}M parameters, {result['dtype']}, "
        f"context {backend.context_length}, batching {backend.batching}; built in {build_s:.1f}s, "
        f"loaded in {backend.load_seconds:.1f}s")
    seeds, task = _seed_parents()
    from elm.types import Parent

    sampling = {**node.get("sampling", {}), "max_new_tokens": args.tokens}
    try:
        for label, order in operators:
            if option.startswith("diff"):
                op = DiffMutator(backend=backend, sampling=sampling)
            else:
                op = FIMMutator(backend=backend, format=node["format"], order=order, sampling=sampling,
                                expected_ids=None)
            def groups(n: int) -> list[list[Parent]]:
                return [[Parent(id=i, source=seeds[i % len(seeds)], fitness=0.0, descriptor=(0.0, 0.0))]
                        for i in range(n)]
            op.mutate(parents=groups(2), task=task, seed=12345)  # warm-up (kernels, caches)
            warm, stops = _prompts(op, groups(2), task, seed=12345)
            if warm:  # the bare loop's stop-string tables are built once per tokenizer and stop set
                _bare(backend, warm, stops, op.sampling, torch, args.device)
            for batch in args.batches:
                if time.perf_counter() > deadline:
                    result["operators"].append({"operator": label, "batch": batch, "skipped": "time budget spent"})
                    log(f"  {label:8s} batch {batch:3d}: skipped (time budget spent)")
                    continue
                if args.device.startswith("cuda"):
                    torch.cuda.reset_peak_memory_stats()
                prompts, stops = _prompts(op, groups(batch), task, seed=batch)
                engine, bare = [], []
                for _ in range(args.rounds):  # alternate: the machine's state drifts over time
                    engine.append(_engine(op, groups(batch), task, batch, torch, args.device))
                    bare.append(_bare(backend, prompts, stops, op.sampling, torch, args.device) if prompts else None)
                    if time.perf_counter() > deadline:
                        break  # one round is a figure; more would eat the next model's share
                e = _median_run(engine)
                b = _median_run(bare) if bare[0] else None
                row = {"operator": label, "format": getattr(getattr(op, "format", None), "name", "diff"),
                       "batch": batch, "rounds": len(engine), "engine": e, "bare": b,
                       "ratio": round(e["tokens_per_s"] / b["tokens_per_s"], 3) if b and b["tokens_per_s"] else None,
                       "prompt_tokens_max": max((backend.prompt_tokens(p) for p in prompts), default=0),
                       "peak_gpu_mib": (round(torch.cuda.max_memory_allocated() / 2**20)
                                        if args.device.startswith("cuda") else None)}
                result["operators"].append(row)
                log(f"  {label:8s} batch {batch:3d}: {e['tokens_per_s']:9.1f} tok/s "
                    f"{e['children_per_s']:7.2f} children/s"
                    f" | bare {b['tokens_per_s'] if b else float('nan'):9.1f} tok/s | ratio {row['ratio']}"
                    f" | peak {row['peak_gpu_mib']} MiB | prompts <= {row['prompt_tokens_max']} tok | {e['statuses']}")
            op.close()
    finally:
        release_backend(backend)
        shutil.rmtree(path, ignore_errors=True)
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="gpu_check_out", help="directory for gpu_check.json and gpu_check.log")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="tiny models (the test suite's run on CPU)")
    ap.add_argument("--batches", type=int, nargs="+", default=None, help="default 1 8 32 64 (tiny: 1 2)")
    ap.add_argument("--tokens", type=int, default=None, help="max_new_tokens (default 64; tiny: 6)")
    ap.add_argument("--rounds", type=int, default=None, help="engine/bare alternations (default 2; tiny: 1)")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--budget-s", type=float, default=None,
                    help="skip the batches left after this many seconds (default 420; tiny: no limit)")
    args = ap.parse_args(argv)
    args.batches = args.batches or ([1, 2] if args.tiny else [1, 8, 32, 64])
    args.tokens = args.tokens or (6 if args.tiny else 64)
    args.rounds = args.rounds or (1 if args.tiny else 2)
    args.budget_s = args.budget_s or (float("inf") if args.tiny else 420.0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = Log(out / "gpu_check.log")
    t0 = time.perf_counter()
    import torch
    import transformers

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        log(f"--device {args.device}: torch {torch.__version__} sees no CUDA device; use --device cpu (with --tiny)")
        return 2
    if args.device == "cpu":
        torch.set_num_threads(min(4, torch.get_num_threads()))
    report = {"argv": sys.argv[1:], "tiny": args.tiny, "device": args.device,
              "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None,
              "torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version(),
              "batches": args.batches, "max_new_tokens": args.tokens, "rounds": args.rounds, "models": {}}
    log(f"gpu_check: {report['gpu'] or args.device}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}, "
        f"batches {args.batches}, max_new_tokens {args.tokens}, rounds {args.rounds}")
    status = 0
    with tempfile.TemporaryDirectory(prefix="elm-gpu-check-") as d:
        for k, kind in enumerate(args.models):
            # each model gets an equal share of the time left, so a slow one cannot starve the next
            left = t0 + args.budget_s - time.perf_counter()
            deadline = time.perf_counter() + left / (len(args.models) - k)
            try:
                report["models"][kind] = check_model(kind, args, Path(d), log, deadline)
            except Exception as exc:  # noqa: BLE001 -- one architecture failing must not hide the others' figures
                import traceback

                report["models"][kind] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
                log(f"\n{kind}: FAILED {type(exc).__name__}: {exc}")
                status = 1
            json.dump(report, (out / "gpu_check.json").open("w"), indent=1)  # partial results survive a kill
    report["heavy_modules_imported"] = sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)
    report["total_s"] = round(time.perf_counter() - t0, 1)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1))
    log(f"\nheavy modules imported: {report['heavy_modules_imported'] or 'none'}; total {report['total_s']} s")
    return status


if __name__ == "__main__":
    sys.exit(main())
