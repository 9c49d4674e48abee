"""Hugging Face transformers backend: batched sampling with left padding, stop strings and seeds.

Runs inside the mutator's Ray actor, so placement follows ``ray.mutator_num_gpus``
(fractional values allowed). Loads any checkpoint ``AutoModelForCausalLM``
can: a hub id (from the local Hugging Face cache when offline), a local
directory, a GGUF file (``gguf_file=``), or the alias ``"smollm2"`` for the
embedded default model. ``trust_remote_code`` is passed only when the config
sets it (Refact-1.6B needs it; the natively supported models never do).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mutators.backends.base import Backend, ChatPrompt, Completion, Prompt, Sampling, cut_at_stop

__all__ = ["ADAPTER_META", "HFBackend", "model_version"]

#: the file, next to a fine-tuned model's weights, that records its base model, data and version
ADAPTER_META = "elm_adapter.json"

_DTYPES = ("auto", "float32", "bfloat16", "float16")
_BATCHING = ("padded", "equal_length", "single")


def _import_torch_transformers():
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise ImportError(
            f"the hf backend needs torch and transformers ({exc}); install the language-model extra: "
            "pip install -e '.[lm]' (or bash .ci/setup.sh)"
        ) from exc
    return torch, transformers


class HFBackend(Backend):
    """A causal LM and its tokenizer, loaded once, generating batches.

    Args:
        model: hub id (``"bigcode/gpt_bigcode-santacoder"``), local directory, or
            ``"smollm2"`` (the embedded model, converted and cached on first use).
        revision: hub revision (branch, tag or commit); None for the default.
        gguf_file: file name of a GGUF checkpoint inside ``model`` (a directory).
        trust_remote_code: run the checkpoint's own Python code (``auto_map``).
            Only for models without a native transformers class (Refact).
        device: ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        dtype: ``"auto"`` = bf16 on GPUs that support it, else fp16 on GPU, fp32 on CPU;
            or ``"float32"``/``"bfloat16"``/``"float16"``.
        max_batch: prompts per ``generate`` call; larger batches are split.
        threads: CPU threads for torch (None: every core this process may use).
            Ray sets OMP_NUM_THREADS=1 in workers, so this is set explicitly.
        eos_tokens: extra token strings that also end a completion (e.g.
            ``"<|endoftext|>"`` for a chat model used for plain completion).
        cache_dir: where ``"smollm2"`` is converted to (default ``$ELM_CACHE`` or ``~/.cache/elm``).
        batching: how prompts share a ``generate`` call: ``"padded"`` (left-padded with an
            attention mask, up to ``max_batch`` rows), ``"equal_length"`` (only prompts of
            the same token length share a call, so nothing is padded: for models whose
            code ignores ``attention_mask`` in generation, e.g. remote-code Refact, where
            padded rows would attend to the padding) or ``"single"`` (one prompt per call).
        context_length: tokens of prompt + completion the model can take (None: the model
            config's ``max_position_embeddings``/``n_positions``/``n_ctx``/``seq_length``).
            A row whose prompt plus ``max_new_tokens`` exceeds it is not run: its completion
            has ``finish="prompt_too_long"`` and the rest of the batch runs (operators window
            their prompts to fit before that, see :mod:`mutators.lm`).
        adapter: a LoRA adapter directory (``python -m mutators.finetune train``, or any PEFT
            adapter of this base model), merged into the weights at load, so generation costs
            what the base model's does. ``version`` (recorded with every child) is the adapter's
            version from its ``elm_adapter.json``; a fully fine-tuned checkpoint is loaded with
            ``model=DIR`` instead, and its ``elm_adapter.json`` gives the version the same way.

    Generation: prompts are tokenised without adding special tokens (the
    prompt string is exactly what the model sees), batched as ``batching``
    says (left-padded with an attention mask by default), sampled with ``temperature``/``top_p`` (greedy at
    temperature 0) after ``torch.manual_seed``. A row stops at any EOS id or
    when its generated text contains a stop string; the other rows of the
    batch continue. Text is decoded with ``skip_special_tokens=False`` (FIM
    markers that a model emits stay visible, so the caller can cut at them)
    and without clean-up of tokenisation spaces (diffs are whitespace-exact).
    """

    supports_prefill = True

    def __init__(
        self,
        *,
        model: str,
        revision: str | None = None,
        gguf_file: str | None = None,
        trust_remote_code: bool = False,
        device: str = "auto",
        dtype: str = "auto",
        max_batch: int = 16,
        threads: int | None = None,
        eos_tokens: Sequence[str] = (),
        cache_dir: str | None = None,
        context_length: int | None = None,
        batching: str = "padded",
        adapter: str | None = None,
    ) -> None:
        if not isinstance(model, str) or not model:
            raise ValueError(f"backend.model must be a hub id, a local directory or 'smollm2', got {model!r}")
        if dtype not in _DTYPES:
            raise ValueError(f"backend.dtype must be one of {_DTYPES}, got {dtype!r}")
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"backend.max_batch must be an int >= 1, got {max_batch!r}")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ValueError(f"backend.threads must be an int >= 1 or None, got {threads!r}")
        if context_length is not None and (isinstance(context_length, bool) or not isinstance(context_length, int)
                                           or context_length < 2):
            raise ValueError(f"backend.context_length must be an int >= 2 or None (from the model config), "
                             f"got {context_length!r}")
        if batching not in _BATCHING:
            raise ValueError(f"backend.batching must be one of {_BATCHING}, got {batching!r} "
                             "(equal_length or single for models that ignore the attention mask)")
        if not isinstance(trust_remote_code, bool):
            raise ValueError(f"backend.trust_remote_code must be true or false, got {trust_remote_code!r}")
        torch, transformers = _import_torch_transformers()
        self._torch = torch
        from mutators.backends import smollm2

        path = str(smollm2.smollm2_checkpoint(cache_dir)) if model == smollm2.ALIAS else model
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if self.device.type == "cpu":
            torch.set_num_threads(threads or len(os.sched_getaffinity(0)))
        if dtype == "auto":
            if self.device.type == "cuda":
                torch_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            else:
                torch_dtype = torch.float32
        else:
            torch_dtype = getattr(torch, dtype)
        load: dict[str, Any] = {"revision": revision}
        if gguf_file:
            load["gguf_file"] = gguf_file
        if trust_remote_code:  # never passed otherwise, so a native model cannot run hub code by accident
            load["trust_remote_code"] = True
        start = time.perf_counter()
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(path, **load)
        self.model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, **load)
        self.version = model_version(Path(path)) if Path(path).is_dir() else "base"
        self._reload = (path, torch_dtype, load, model)  # for load_adapter: the base weights, from disk
        self.adapter = None
        if adapter is not None:
            self.model, self.version = _load_adapter(self.model, adapter, model)
            self.adapter = str(Path(adapter).expanduser())
        self.model.to(self.device).eval()
        self.load_seconds = time.perf_counter() - start
        tok = self.tokenizer
        tok.padding_side = "left"  # decoder-only: generation continues from the last real token
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        eos: set[int] = set()
        for source in (tok.eos_token_id, getattr(self.model.generation_config, "eos_token_id", None)):
            if isinstance(source, int):
                eos.add(source)
            elif source:
                eos.update(int(i) for i in source)
        for text in eos_tokens:
            ids = tok.convert_tokens_to_ids([text])
            if not ids or ids[0] is None or tok.convert_ids_to_tokens(ids[0]) != text:
                raise ValueError(f"backend.eos_tokens: {text!r} is not a single token of {model}'s vocabulary")
            eos.add(int(ids[0]))
        if not eos:
            raise ValueError(f"{model}: tokenizer and generation config name no end-of-sequence token; "
                             "list one in backend.eos_tokens")
        self.eos_ids = tuple(sorted(eos))
        self.context_length = context_length or _config_context(self.model.config)
        self.max_batch = max_batch
        self.batching = batching
        self.label = f"hf:{model}"

    # ------------------------------------------------------------------ API

    def render(self, prompt: Prompt) -> str:
        """The exact text the model sees for ``prompt`` (chat prompts through the chat template)."""
        if isinstance(prompt, ChatPrompt):
            if not getattr(self.tokenizer, "chat_template", None):
                raise ValueError(f"{self.label} has no chat template; use a completion-style operator")
            text = self.tokenizer.apply_chat_template(prompt.as_dicts(), tokenize=False, add_generation_prompt=True)
            return text + prompt.prefill
        return prompt

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt_tokens(self, prompt: Prompt) -> int:
        return self.count_tokens(self.render(prompt))

    def generate(self, prompts: Sequence[Prompt], *, sampling: Sampling, seed: int) -> list[Completion]:
        texts = [self.render(p) for p in prompts]
        lengths = [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]] if texts else []
        out: list[Completion | None] = [None] * len(texts)
        room = None if self.context_length is None else self.context_length - sampling.max_new_tokens
        run = []
        for i, n in enumerate(lengths):
            if room is not None and n > room:  # learned positions would fail the whole batch: skip the row
                out[i] = Completion(text="", tokens_in=n, tokens_out=0, seconds=0.0, finish="prompt_too_long",
                                    error=f"prompt of {n} tokens + max_new_tokens {sampling.max_new_tokens} > "
                                          f"context length {self.context_length}")
            else:
                run.append(i)
        for k, chunk in enumerate(self._chunks(run, lengths)):
            done = self._generate_chunk([texts[i] for i in chunk], sampling, seed + k * self.max_batch)
            for i, completion in zip(chunk, done):
                out[i] = completion
        return out  # type: ignore[return-value]

    def _chunks(self, rows: list[int], lengths: list[int]) -> list[list[int]]:
        """The rows to run, in ``generate`` calls of at most ``max_batch`` (see ``batching``)."""
        if self.batching == "single":
            return [[i] for i in rows]
        groups = [rows]
        if self.batching == "equal_length":
            by_length: dict[int, list[int]] = {}
            for i in rows:
                by_length.setdefault(lengths[i], []).append(i)
            groups = list(by_length.values())
        return [g[k:k + self.max_batch] for g in groups for k in range(0, len(g), self.max_batch)]

    def load_adapter(self, path: str) -> str:
        """Hot-swap: the base weights reloaded from disk with the LoRA adapter in ``path`` merged in
        (adapters are merged at load, so the previous one cannot be subtracted exactly). The new
        model replaces the current one only once it is ready; on any error the current one stays.
        Loading the adapter already loaded does nothing."""
        resolved = str(Path(path).expanduser())
        if resolved == self.adapter:
            return self.version
        _, transformers = _import_torch_transformers()
        where, dtype, load, base = self._reload
        start = time.perf_counter()
        fresh = transformers.AutoModelForCausalLM.from_pretrained(where, dtype=dtype, **load)
        fresh, version = _load_adapter(fresh, resolved, base)
        fresh.to(self.device).eval()
        self.model, self.version, self.adapter = fresh, version, resolved
        self.load_seconds = time.perf_counter() - start
        if self.device.type == "cuda":
            self._torch.cuda.empty_cache()
        return version

    def close(self) -> None:
        self.model = None
        if self.device.type == "cuda":
            self._torch.cuda.empty_cache()

    # ------------------------------------------------------------ internals

    def _generate_chunk(self, texts: list[str], sampling: Sampling, seed: int) -> list[Completion]:
        torch = self._torch
        tok = self.tokenizer
        start = time.perf_counter()
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        input_ids = enc["input_ids"].to(self.device)
        attention_mask = enc["attention_mask"].to(self.device)
        prompt_len = input_ids.shape[1]
        kwargs: dict[str, Any] = dict(
            max_new_tokens=sampling.max_new_tokens,
            eos_token_id=list(self.eos_ids),
            pad_token_id=tok.pad_token_id,
        )
        # Sampling happens in a logits processor (Gumbel-max over the top-k/top-p set) and
        # generate() then decodes greedily: the same distribution as do_sample=True, but
        # without a full-vocabulary sort and multinomial per step, which on CPU cost more
        # than the forward pass of a small model (measured: 4-5x slower at batch 8).
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if sampling.temperature > 0:
            kwargs["logits_processor"] = _gumbel_sampler(sampling, seed)
        if sampling.stop:
            kwargs["stopping_criteria"] = _stopping_criteria(tok, sampling.stop, prompt_len)
        torch.manual_seed(seed)  # for models that draw random numbers themselves (none of ours do)
        with torch.inference_mode():
            generated = self.model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        elapsed = time.perf_counter() - start
        new = generated[:, prompt_len:].tolist()
        in_counts = attention_mask.sum(dim=1).tolist()
        share = elapsed / len(texts)
        eos = set(self.eos_ids)
        pad = tok.pad_token_id
        completions = []
        for row, ids in enumerate(new):
            end = next((i for i, t in enumerate(ids) if t in eos), None)
            hit_eos = end is not None
            if hit_eos:
                ids = ids[:end]
            elif pad is not None:  # a row stopped by a stop string is padded to the batch's length
                while ids and ids[-1] == pad:
                    ids = ids[:-1]
            text = tok.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
            text, hit_stop = cut_at_stop(text, sampling.stop)
            completions.append(Completion(
                text=text, tokens_in=int(in_counts[row]), tokens_out=len(ids) + int(hit_eos),
                seconds=share, latency_s=elapsed, finish="stop" if (hit_eos or hit_stop) else "length",
            ))
        return completions


def _config_context(config) -> int | None:
    """The context length a model config states (None if it names none)."""
    for key in ("max_position_embeddings", "n_positions", "n_ctx", "seq_length", "max_sequence_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 1:
            return value
    return None


def _gumbel_sampler(sampling: Sampling, seed: int):
    """A logits processor that samples a token per row and leaves only it finite.

    Keeps the ``top_k`` largest logits (all when 0), scales by 1/temperature,
    keeps the nucleus whose cumulative probability reaches ``top_p`` (always
    at least the most likely token), and picks ``argmax(logit + Gumbel noise)``
    over it, which is an exact draw from the renormalised distribution. The
    noise comes from a private generator seeded with ``seed``, so a batch is
    reproducible without touching torch's global RNG.
    """
    import torch
    from transformers import LogitsProcessor, LogitsProcessorList

    class _GumbelSample(LogitsProcessor):
        generator: torch.Generator | None = None

        def __call__(self, input_ids, scores):
            if self.generator is None:
                self.generator = torch.Generator(device=scores.device).manual_seed(seed)
            k = scores.shape[-1] if sampling.top_k == 0 else min(sampling.top_k, scores.shape[-1])
            values, index = torch.topk(scores.float(), k, dim=-1)  # sorted, largest first
            values = values / sampling.temperature
            if sampling.top_p < 1.0:
                probs = values.softmax(dim=-1)
                outside = (probs.cumsum(dim=-1) - probs) >= sampling.top_p  # mass before this token
                values = values.masked_fill(outside, float("-inf"))
            uniform = torch.rand(values.shape, generator=self.generator, device=values.device)
            gumbel = -torch.log(-torch.log(uniform.clamp_(min=1e-20, max=1.0 - 1e-7)))
            pick = index.gather(-1, (values + gumbel).argmax(dim=-1, keepdim=True))
            out = torch.full_like(scores, float("-inf"))
            return out.scatter_(-1, pick, 0.0)

    return LogitsProcessorList([_GumbelSample()])


def _stopping_criteria(tokenizer, stops: Sequence[str], prompt_len: int):
    """A per-row stopping criterion: a row is done once its generated text contains a stop string.

    Only the last few generated tokens are decoded each step (enough to span
    the longest stop string), so the check costs a small fraction of a step.
    """
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    window = max(len(s) for s in stops) + 2  # every token decodes to >= 1 character, plus slack

    class _StopStrings(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            gen = input_ids[:, prompt_len:]
            done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
            if gen.shape[1] == 0:
                return done
            tails = tokenizer.batch_decode(gen[:, -window:].tolist(), skip_special_tokens=False,
                                           clean_up_tokenization_spaces=False)
            for i, tail in enumerate(tails):
                if any(s in tail for s in stops):
                    done[i] = True
            return done

    return StoppingCriteriaList([_StopStrings()])


def model_version(path: Path) -> str:
    """The version of fine-tuned weights in ``path`` (its ``elm_adapter.json``), or ``"base"``.

    Weights without that file (a PEFT adapter made elsewhere) are named by their directory and the
    first 12 hex digits of the SHA-256 of their weights file.
    """
    meta = path / ADAPTER_META
    if meta.is_file():
        try:
            return str(json.loads(meta.read_text())["version"])
        except (ValueError, KeyError) as exc:
            raise ValueError(f"{meta} is not a valid {ADAPTER_META} (no 'version'): {exc}; "
                             "re-train the adapter or delete the file") from exc
    weights = path / "adapter_model.safetensors"
    if weights.is_file():
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:12]
        return f"{path.name}-{digest}"
    return "base"


def _load_adapter(model, adapter: str, base: str):
    """``model`` with the LoRA adapter in directory ``adapter`` merged in, and the adapter's version."""
    path = Path(adapter).expanduser()
    if not (path / "adapter_config.json").is_file():
        hint = (" (it holds a full checkpoint: load it with backend.model=" f"{path})"
                if (path / "config.json").is_file() else "")
        raise ValueError(f"backend.adapter: {path} is not a LoRA adapter directory (no adapter_config.json)"
                         f"{hint}; train one with `python -m mutators.finetune train --out DIR`")
    meta = path / ADAPTER_META
    if meta.is_file():
        trained_on = json.loads(meta.read_text()).get("base_model")
        if trained_on is not None and trained_on != base:
            raise ValueError(f"backend.adapter: {path} was trained on base model {trained_on!r}, but "
                             f"backend.model is {base!r}; set backend.model={trained_on}")
    try:
        from peft import PeftModel
    except ImportError as exc:
        raise ImportError(f"backend.adapter needs peft ({exc}): pip install -e '.[finetune]'") from exc
    merged = PeftModel.from_pretrained(model, str(path)).merge_and_unload()
    return merged, model_version(path)
