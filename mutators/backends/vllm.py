"""vLLM backend for GPU throughput (optional: ``pip install -e '.[vllm]'`` on a CUDA machine).

``vllm`` is imported only when this backend is built, so the rest of the
package never needs it. The engine is vLLM's offline ``LLM`` class inside
the mutator's Ray actor (give the actor a GPU with ``ray.mutator_num_gpus``;
with a fraction, lower ``gpu_memory_utilization`` to the same share).
Requests of a batch go to ``LLM.generate`` together, each with its own
``SamplingParams`` seed (``seed + index``), so a batch is reproducible.
Completions keep special tokens (FIM markers stay visible to be cut by the
operator) and exclude the stop string, as the ``hf`` backend's do.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from mutators.backends.base import Backend, ChatPrompt, Completion, Prompt, Sampling, cut_at_stop

__all__ = ["VLLMBackend"]


class VLLMBackend(Backend):
    """vLLM's offline engine.

    Args:
        model: hub id or local directory (as for vLLM's ``LLM(model=...)``).
        revision: hub revision.
        trust_remote_code: passed to vLLM only when true.
        dtype: ``"auto"`` (the checkpoint's dtype, bf16/fp16), ``"bfloat16"``, ``"float16"``...
        gpu_memory_utilization: fraction of the GPU's memory vLLM may take (KV cache included).
        tensor_parallel_size: GPUs to shard the model over.
        max_model_len: context length cap (None: the model's).
        seed: engine seed (per-request seeds come from ``generate``'s seed).
        enforce_eager: skip CUDA-graph capture (faster start, slower decode).
    """

    supports_prefill = True

    def __init__(
        self,
        *,
        model: str,
        revision: str | None = None,
        trust_remote_code: bool = False,
        dtype: str = "auto",
        gpu_memory_utilization: float = 0.85,
        tensor_parallel_size: int = 1,
        max_model_len: int | None = None,
        seed: int = 0,
        enforce_eager: bool = False,
    ) -> None:
        if not 0 < float(gpu_memory_utilization) <= 1:
            raise ValueError(f"backend.gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization!r}")
        try:
            import vllm
        except ImportError as exc:
            raise ImportError(
                f"backend kind 'vllm' needs the vllm package ({exc}); on a CUDA machine: pip install -e '.[vllm]', "
                "or use backend.kind=hf"
            ) from exc
        self._vllm = vllm
        kwargs: dict[str, Any] = dict(model=model, dtype=dtype, gpu_memory_utilization=float(gpu_memory_utilization),
                                      tensor_parallel_size=int(tensor_parallel_size), seed=int(seed),
                                      enforce_eager=bool(enforce_eager))
        if revision is not None:
            kwargs["revision"] = revision
        if max_model_len is not None:
            kwargs["max_model_len"] = int(max_model_len)
        if trust_remote_code:
            kwargs["trust_remote_code"] = True
        start = time.perf_counter()
        self.llm = vllm.LLM(**kwargs)
        self.load_seconds = time.perf_counter() - start
        self.tokenizer = self.llm.get_tokenizer()
        self.label = f"vllm:{model}"

    def render(self, prompt: Prompt) -> str:
        if isinstance(prompt, ChatPrompt):
            text = self.tokenizer.apply_chat_template(prompt.as_dicts(), tokenize=False, add_generation_prompt=True)
            return text + prompt.prefill
        return prompt

    def generate(self, prompts: Sequence[Prompt], *, sampling: Sampling, seed: int) -> list[Completion]:
        texts = [self.render(p) for p in prompts]
        if not texts:
            return []
        params = [
            self._vllm.SamplingParams(
                n=1,
                temperature=sampling.temperature,
                top_p=sampling.top_p if sampling.temperature > 0 else 1.0,
                top_k=sampling.top_k if (sampling.top_k > 0 and sampling.temperature > 0) else -1,
                max_tokens=sampling.max_new_tokens,
                stop=list(sampling.stop) or None,
                seed=seed + i,
                skip_special_tokens=False,
                include_stop_str_in_output=False,
            )
            for i in range(len(texts))
        ]
        start = time.perf_counter()
        # Token-id prompts: the text is exactly what the model sees (no BOS added by vLLM's tokenisation).
        inputs = [{"prompt_token_ids": self.tokenizer(t, add_special_tokens=False)["input_ids"]} for t in texts]
        outputs = self.llm.generate(inputs, params, use_tqdm=False)
        elapsed = time.perf_counter() - start
        share = elapsed / len(texts)
        out = []
        for request in outputs:
            gen = request.outputs[0]
            text, hit = cut_at_stop(gen.text, sampling.stop)
            out.append(Completion(
                text=text, tokens_in=len(request.prompt_token_ids), tokens_out=len(gen.token_ids), seconds=share,
                latency_s=elapsed, finish="length" if gen.finish_reason == "length" and not hit else "stop",
            ))
        return out

    def close(self) -> None:
        self.llm = None
