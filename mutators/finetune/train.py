"""Fine-tune a mutator's model on exported pairs (:mod:`elm.finetune`): LoRA adapters, or full weights.

:func:`train` reads a JSON Lines dataset (``datasets.load_dataset("json", ...)``), tokenises each
row the way the hf backend feeds the model (the prompt's tokens, then the completion's, no special
tokens added; a chat row's messages through the model's chat template, then its prefill), and
minimises the loss on the completion tokens only. It stops at ``max_steps`` optimizer steps or
after ``max_seconds`` of training, whichever comes first, and saves:

- LoRA (``method="lora"``, PEFT): ``adapter_config.json`` + ``adapter_model.safetensors``, loaded
  with ``mutator.backend.adapter=DIR``;
- full fine-tuning (``method="full"``, for tiny models): a whole checkpoint with its tokenizer,
  loaded with ``mutator.backend.model=DIR``;

and in both cases ``elm_adapter.json``: the version (recorded with every child the tuned model
writes), the base model, the training settings, the cost (seconds per step and per example) and
the data's provenance (file, SHA-256, rows, runs, formats, evaluation ids).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from elm.finetune import TrainBudget, Trainer
from mutators.backends.hf import ADAPTER_META

__all__ = ["LoRATrainer", "TrainConfig", "TrainResult", "load_rows", "train"]

METHODS = ("lora", "full")


@dataclass(frozen=True)
class TrainConfig:
    """Training settings (units: steps, seconds, tokens). ``threads`` bounds torch's CPU threads, so
    training next to a run leaves the other cores to the sandboxes; ``device`` ``"cuda"`` uses a GPU."""

    method: str = "lora"
    max_steps: int = 100
    max_seconds: float = 600.0
    batch_size: int = 8  # examples per optimizer step
    lr: float | None = None  # None: 2e-4 for LoRA, 2e-5 for full fine-tuning
    rank: int = 16  # LoRA rank
    alpha: int = 32  # LoRA alpha (scale alpha / rank)
    dropout: float = 0.05
    target_modules: tuple[str, ...] | None = None  # None: every linear layer but the output head
    max_length: int = 1024  # tokens per example; longer rows are left out (counted)
    threads: int | None = None  # CPU threads; None: every core this process may use
    device: str = "cpu"
    seed: int = 0
    eval_fraction: float = 0.1  # rows held out to measure the completion loss before and after
    duty_cycle: float = 1.0  # share of the wall time spent in steps; the rest is slept between steps

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        for name in ("max_steps", "batch_size", "rank", "alpha", "max_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if not (isinstance(self.max_seconds, (int, float)) and self.max_seconds > 0):
            raise ValueError(f"max_seconds must be > 0, got {self.max_seconds!r}")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise ValueError(f"threads must be an int >= 1 or None, got {self.threads!r}")
        if not 0 <= self.eval_fraction < 1:
            raise ValueError(f"eval_fraction must be in [0, 1), got {self.eval_fraction!r}")
        if not 0 < self.duty_cycle <= 1:
            raise ValueError(f"duty_cycle must be in (0, 1] (1: no pauses), got {self.duty_cycle!r}")
        if self.lr is not None and not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a finite number > 0 or None, got {self.lr!r}")


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` did: where it saved, the version, steps, seconds and losses."""

    out: Path
    version: str
    steps: int
    examples_seen: int
    train_rows: int
    seconds: float
    seconds_per_step: float
    seconds_per_example: float
    loss_first: float
    loss_last: float
    eval_loss_before: float | None
    eval_loss_after: float | None
    stopped_by: str  # "steps" or "seconds"
    paused_s: float = 0.0  # seconds slept between steps (duty cycle)


def load_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The dataset's rows through ``datasets.load_dataset("json")`` (the format a Hub user would load)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no dataset at {path}: write one with `python -m mutators.finetune export RUN OUT`")
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty: export a run with successful language-model children first")
    try:
        import datasets
    except ImportError as exc:
        raise ImportError(f"training needs datasets and peft ({exc}): pip install -e '.[finetune]'") from exc
    rows = list(datasets.load_dataset("json", data_files=str(path), split="train"))
    missing = [k for k in ("prompt", "completion") if rows and k not in rows[0]]
    if missing:
        raise ValueError(f"{path} has no {missing} column(s): it is not an export of mutators.finetune")
    return rows


def _encode(tok, row: dict[str, Any]) -> tuple[list[int], list[int]]:
    prompt = row["prompt"]
    if row.get("messages"):
        if not getattr(tok, "chat_template", None):
            raise ValueError(f"a chat row (format {row.get('format')}) needs a model with a chat template")
        prompt = tok.apply_chat_template(row["messages"], tokenize=False, add_generation_prompt=True) + prompt
    # separately, as in generation: the prompt is tokenised alone, the completion follows token by token
    return (tok(prompt, add_special_tokens=False)["input_ids"],
            tok(row["completion"], add_special_tokens=False)["input_ids"])


def _batches(encoded: Sequence[tuple[list[int], list[int]]], pad: int, torch):
    ids, labels, mask = [], [], []
    width = max(len(p) + len(c) for p, c in encoded)
    for p, c in encoded:
        n = len(p) + len(c)
        ids.append(p + c + [pad] * (width - n))
        labels.append([-100] * len(p) + c + [-100] * (width - n))
        mask.append([1] * n + [0] * (width - n))
    return torch.tensor(ids), torch.tensor(labels), torch.tensor(mask)


def _loss(model, encoded, pad, torch, batch_size) -> float:
    """Mean completion-token loss over ``encoded`` (weighted by tokens)."""
    total = tokens = 0.0
    model.eval()
    with torch.no_grad():
        for k in range(0, len(encoded), batch_size):
            chunk = encoded[k:k + batch_size]
            ids, labels, mask = _batches(chunk, pad, torch)
            n = float((labels[:, 1:] != -100).sum())
            total += float(model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device),
                                 labels=labels.to(model.device)).loss) * n
            tokens += n
    return total / tokens if tokens else float("nan")


def train(*, data: str | os.PathLike, model: str, out: str | os.PathLike, config: TrainConfig = TrainConfig(),
          cache_dir: str | None = None, log=print, init: str | os.PathLike | None = None) -> TrainResult:
    """Fine-tune ``model`` (hub id, directory or ``"smollm2"``) on the pairs in ``data``; save to ``out``.

    ``out`` must not hold weights already (choose a new directory per version). ``log`` receives
    one line per ~10 % of the steps. ``init``: a LoRA adapter of ``model`` to continue training
    (its rank and targets are kept; ``method`` must be ``lora``). ``max_seconds`` bounds the wall
    time of the steps and of the pauses a ``duty_cycle`` below 1 adds between them.
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty: choose a new directory for this adapter")
    rows = load_rows(data)
    import torch
    import transformers

    from mutators.backends import smollm2

    torch.manual_seed(config.seed)
    if config.device == "cpu":
        torch.set_num_threads(config.threads or len(os.sched_getaffinity(0)))
    path = str(smollm2.smollm2_checkpoint(cache_dir)) if model == smollm2.ALIAS else model
    tok = transformers.AutoTokenizer.from_pretrained(path)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    net = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(config.device)
    if init is not None and config.method != "lora":
        raise ValueError("init (continuing an adapter) needs method='lora'")
    if config.method == "lora":
        try:
            import peft
        except ImportError as exc:
            raise ImportError(f"LoRA needs peft ({exc}): pip install -e '.[finetune]'") from exc
        if init is not None:
            trained_on = json.loads((Path(init) / ADAPTER_META).read_text()).get("base_model") \
                if (Path(init) / ADAPTER_META).is_file() else None
            if trained_on is not None and trained_on != model:
                raise ValueError(f"init adapter {init} was trained on {trained_on!r}, not {model!r}")
            net = peft.PeftModel.from_pretrained(net, str(init), is_trainable=True)
        else:
            targets = list(config.target_modules) if config.target_modules else "all-linear"
            net = peft.get_peft_model(net, peft.LoraConfig(r=config.rank, lora_alpha=config.alpha,
                                                           lora_dropout=config.dropout, target_modules=targets,
                                                           task_type="CAUSAL_LM"))
    lr = config.lr or (2e-4 if config.method == "lora" else 2e-5)
    encoded, too_long = [], 0
    for row in rows:
        p, c = _encode(tok, row)
        if len(p) + len(c) > config.max_length or not c:
            too_long += 1
            continue
        encoded.append((p, c))
    if not encoded:
        raise ValueError(f"no row of {data} fits max_length={config.max_length} tokens; raise --max-length")
    order = torch.randperm(len(encoded), generator=torch.Generator().manual_seed(config.seed)).tolist()
    held = int(len(encoded) * config.eval_fraction) if len(encoded) >= 10 else 0
    evaluate = [encoded[i] for i in order[:held]]
    trainset = [encoded[i] for i in order[held:]]
    eval_before = _loss(net, evaluate, pad, torch, config.batch_size) if evaluate else None
    params = [p for p in net.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    losses: list[float] = []
    seen = 0
    stopped_by = "steps"
    paused = 0.0
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(config.seed + 1)
    queue: list[int] = []
    for step in range(config.max_steps):
        if time.perf_counter() - start >= config.max_seconds:
            stopped_by = "seconds"
            break
        step_start = time.perf_counter()
        net.train()
        if len(queue) < config.batch_size:  # epochs in a fresh order each time
            queue += torch.randperm(len(trainset), generator=gen).tolist()
        batch = [trainset[i] for i in queue[:config.batch_size]]
        del queue[:config.batch_size]
        ids, labels, mask = _batches(batch, pad, torch)
        loss = net(input_ids=ids.to(config.device), attention_mask=mask.to(config.device),
                   labels=labels.to(config.device)).loss
        optim.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optim.step()
        losses.append(float(loss.detach()))
        seen += len(batch)
        if config.duty_cycle < 1 and step + 1 < config.max_steps:
            # sleep so that steps take at most duty_cycle of the wall time: the cores go to evaluation
            pause = (time.perf_counter() - step_start) * (1 - config.duty_cycle) / config.duty_cycle
            pause = min(pause, max(0.0, config.max_seconds - (time.perf_counter() - start)))
            time.sleep(pause)
            paused += pause
        if log and (step + 1) % max(1, config.max_steps // 10) == 0:
            log(f"step {step + 1}/{config.max_steps}: loss {losses[-1]:.4f} "
                f"({time.perf_counter() - start:.1f} s)")
    seconds = time.perf_counter() - start
    if not losses:
        raise ValueError(f"max_seconds={config.max_seconds} ran out before the first step")
    eval_after = _loss(net, evaluate, pad, torch, config.batch_size) if evaluate else None
    out.mkdir(parents=True, exist_ok=True)
    if config.method == "lora":
        net.save_pretrained(out)
        weights = out / "adapter_model.safetensors"
    else:
        net.save_pretrained(out)
        tok.save_pretrained(out)
        weights = out / "model.safetensors"
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:12]
    version = f"{out.name}-{digest}"
    data_path = Path(data)
    provenance = {
        "file": str(data_path.resolve()),
        "sha256": hashlib.sha256(data_path.read_bytes()).hexdigest(),
        "rows": len(rows), "used": len(encoded), "too_long": too_long, "train_rows": len(trainset),
        "eval_rows": len(evaluate),
        "runs": sorted({str(r.get("run")) for r in rows}),
        "formats": dict(Counter(str(r.get("format")) for r in rows)),
        "origins": dict(Counter(str(r.get("origin")) for r in rows)),
        "evaluation_ids": sorted({int(r["evaluation_id"]) for r in rows if r.get("evaluation_id") is not None}),
    }
    result = TrainResult(out=out, version=version, steps=len(losses), examples_seen=seen, train_rows=len(trainset),
                         seconds=seconds, seconds_per_step=(seconds - paused) / len(losses),
                         seconds_per_example=(seconds - paused) / seen,
                         loss_first=losses[0], loss_last=losses[-1], eval_loss_before=eval_before,
                         eval_loss_after=eval_after, stopped_by=stopped_by, paused_s=paused)
    meta = {
        "version": version,
        "method": config.method,
        "base_model": model,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": {**asdict(config), "lr": lr},
        "init": None if init is None else str(init),
        "result": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(result).items()},
        "losses": losses,
        "data": provenance,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     **({"peft": __import__("peft").__version__} if config.method == "lora" else {})},
    }
    (out / ADAPTER_META).write_text(json.dumps(meta, indent=1))
    return result


#: TrainConfig fields that in-run fine-tuning sets from ``finetune.*`` (the run's budget per round)
_BUDGET_FIELDS = ("max_steps", "max_seconds", "threads", "duty_cycle")


class LoRATrainer(Trainer):
    """In-run training (``finetune.trainer``, the default): :func:`train` on a lane's hf model.

    Arguments: the :class:`TrainConfig` fields (``method``, ``batch_size``, ``lr``, ``rank``,
    ``alpha``, ``dropout``, ``target_modules``, ``max_length``, ``device``, ``seed``,
    ``eval_fraction``) with its defaults, except the per-round budget, which the run sets
    (``finetune.max_steps``, ``max_seconds``, ``threads``, ``duty_cycle``). The base model is the
    lane's ``backend.model``; without an adapter of this run to continue, a round continues the
    lane's configured ``backend.adapter`` if it has one. ``method`` must be ``lora`` (a lane loads an
    adapter, not a checkpoint).
    """

    def __init__(self, **settings: object) -> None:
        known = [f for f in TrainConfig.__dataclass_fields__ if f not in _BUDGET_FIELDS]
        for key in settings:
            if key in _BUDGET_FIELDS:
                raise ValueError(f"finetune.trainer.{key} is set by finetune.{key} (the budget of a round)")
            if key not in known:
                raise ValueError(f"finetune.trainer takes no argument {key!r} (it takes: {', '.join(known)})")
        if "target_modules" in settings and settings["target_modules"] is not None:
            settings["target_modules"] = tuple(settings["target_modules"])  # type: ignore[arg-type]
        self.config = TrainConfig(**settings)  # type: ignore[arg-type]
        if self.config.method != "lora":
            raise ValueError("finetune.trainer.method must be 'lora' in a run: the lane's model loads adapters")

    def warm_up(self) -> None:
        """Import torch, transformers, peft and datasets (tens of seconds on a loaded 2-core machine)."""
        import datasets  # noqa: F401
        import peft  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401

    def train(self, *, data: Path, out: Path, lane: Mapping[str, object], init: Path | None,
              budget: TrainBudget) -> dict[str, object]:
        from dataclasses import replace

        backend = lane.get("backend") if isinstance(lane, Mapping) else None
        if not isinstance(backend, Mapping) or backend.get("kind", "hf") != "hf" or not backend.get("model"):
            raise ValueError(f"the trained lane needs an hf backend with a model, got backend={backend!r}")
        config = replace(self.config, max_steps=budget.max_steps, max_seconds=budget.max_seconds,
                         threads=budget.threads, duty_cycle=budget.duty_cycle)
        start_from = init if init is not None else backend.get("adapter")
        train(data=data, model=str(backend["model"]), out=out, config=config,
              cache_dir=backend.get("cache_dir"), log=None, init=start_from)  # type: ignore[arg-type]
        return json.loads((out / ADAPTER_META).read_text())
