"""Tiny random models of the four seed architectures, with tokenizers carrying the real special tokens.

Used by the test suite and by the benchmarks that exercise the seed formats without weights
(``benchmarks/bench_seed_formats.py``, ``benchmarks/gpu_check.py``); it lives in the package so that
neither imports the other. Needs torch and transformers (the ``lm`` extra); the real vocabularies come
from ``$ELM_TOKENIZERS_DIR``, ``../shared/data/tokenizers`` or the gzip copies in ``tests/data/tokenizers``
(a checkout).

No weights can be downloaded in CI, so each seed model gets a stand-in that
exercises exactly the loading and prompting path its hub id takes:

=================  ==============================  =================================================
seed model         stand-in model                  tokenizer
=================  ==============================  =================================================
diff-codegen-350m  CodeGenForCausalLM (2 layers)   real GPT-2 BPE + CodeGen's 38 whitespace tokens
FIM-NeoX-1.3B      GPTNeoXForCausalLM              real GPT-NeoX-20B + ``<|SUF|>``/``<|PRE|>``/``<|MID|>``
SantaCoder         GPTBigCodeForCausalLM, MQA      byte-level BPE padded to 49152 entries + the five real
                                                   special tokens at their real ids 49152..49156
Refact-1.6B-fim    remote code (``auto_map``): a   real Refact vocabulary (49216 entries)
                   Falcon subclass with ALiBi +
                   multi-query attention
=================  ==============================  =================================================

Everything is saved with ``save_pretrained`` and loaded back through
``AutoTokenizer``/``AutoModelForCausalLM.from_pretrained(directory)`` by the
``hf`` backend, as a hub checkpoint would be. :func:`teach` overfits a model
on one prompt -> completion pair so that greedy decoding reproduces it: the
operators' generation -> parse -> apply/splice path then runs end to end on
a known completion.
"""

from __future__ import annotations

import atexit
import gzip
import json
import os
import shutil
import tempfile
import textwrap
from pathlib import Path

SHARED_TOKENIZERS = Path(__file__).resolve().parents[2] / "shared" / "data" / "tokenizers"
#: gzip copies of the files the tests use (see tests/data/tokenizers/README.md)
VENDORED_TOKENIZERS = Path(__file__).resolve().parents[1] / "tests" / "data" / "tokenizers"
_unpacked: Path | None = None

#: CodeGen's added whitespace tokens: 50257..50286 = 31..2 spaces, 50287..50294 = 9..2 tabs
CODEGEN_WHITESPACE = [" " * n for n in range(31, 1, -1)] + ["\t" * n for n in range(9, 1, -1)]

REFACT_CONFIG = '''
from transformers import FalconConfig


class TinyRefactConfig(FalconConfig):
    """Stand-in for GPTRefactConfig: ALiBi and multi-query attention, like Refact-1.6B."""

    model_type = "tiny_refact"
'''

REFACT_MODELING = '''
from transformers import FalconForCausalLM

from .configuration_tinyrefact import TinyRefactConfig


class TinyRefactForCausalLM(FalconForCausalLM):
    config_class = TinyRefactConfig

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        if getattr(self.config, "ignore_attention_mask", False):  # as remote code may: padding is attended to
            attention_mask = None
        return super().forward(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
'''


def tokenizers_dir() -> Path:
    """The real vocabularies: ``$ELM_TOKENIZERS_DIR``, else ``../shared/data/tokenizers``, else the gzip copies.

    The copies are decompressed once per test session into a temporary directory.
    """
    global _unpacked
    env = os.environ.get("ELM_TOKENIZERS_DIR")
    for d in ([Path(env)] if env else []) + [SHARED_TOKENIZERS]:
        if (d / "gpt-2.tokenizer.json").is_file():
            return d
    if _unpacked is None:
        out = Path(tempfile.mkdtemp(prefix="elm-tokenizers-"))
        atexit.register(shutil.rmtree, out, True)
        for gz in VENDORED_TOKENIZERS.glob("*.gz"):
            (out / gz.name[:-3]).write_bytes(gzip.decompress(gz.read_bytes()))
        _unpacked = out
    return _unpacked


def _fast(tokenizer_object, **special):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=tokenizer_object, **special)


def gpt2_tokenizer():
    """Plain GPT-2 BPE (what llama.cpp's GPT-2 test vectors check); CodeGen adds whitespace tokens to it."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizers_dir() / "gpt-2.tokenizer.json"))
    return _fast(tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>")


def codegen_tokenizer():
    from tokenizers import AddedToken, Tokenizer

    tok = Tokenizer.from_file(str(tokenizers_dir() / "gpt-2.tokenizer.json"))
    tok.add_tokens([AddedToken(w, normalized=True, special=False) for w in CODEGEN_WHITESPACE])
    return _fast(tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>",
                 pad_token="<|endoftext|>")


def neox_tokenizer(extra_tokens: tuple[str, ...] = ()):
    """GPT-NeoX-20B + the three FIM sentinels; ``extra_tokens`` are added *first* (a modified copy)."""
    from tokenizers import AddedToken, Tokenizer

    tok = Tokenizer.from_file(str(tokenizers_dir() / "20B_tokenizer.pristine.json"))
    if extra_tokens:
        tok.add_tokens([AddedToken(t, normalized=True, special=False) for t in extra_tokens])
    tok.add_tokens([AddedToken(t, normalized=True, special=False) for t in ("<|SUF|>", "<|PRE|>", "<|MID|>")])
    return _fast(tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>",
                 pad_token="<|padding|>")


def santacoder_tokenizer():
    """Byte-level BPE without merges padded to 49152 entries, then SantaCoder's five special tokens."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    for i in range(len(vocab), 49152):
        vocab[f"<unused{i}>"] = i
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<fim-prefix>", "<fim-middle>", "<fim-suffix>", "<fim-pad>"]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    return _fast(tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>",
                 additional_special_tokens=specials)


def refact_tokenizer():
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizers_dir() / "refact.tokenizer.json"))
    return _fast(tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>")


def build(kind: str, root: Path, *, seed: int = 0, ignore_attention_mask: bool = False,
          overrides: dict | None = None, device: str = "cpu", dtype: str = "float32") -> Path:
    """Save tokenizer + tiny random model of ``kind`` (codegen/neox/santacoder/refact) under ``root``.

    ``ignore_attention_mask`` (refact only): the model's forward drops ``attention_mask``, as a
    checkpoint's own code may; saved under ``root / "refact_nomask"``. ``overrides`` replace
    config fields (``benchmarks/gpu_check.py`` builds the real sizes this way); the weights are
    initialised on ``device`` in ``dtype`` (a 1.3B model initialises in seconds on a GPU).
    """
    import torch
    import transformers as tf

    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))
    try:
        with torch.device(device):
            return _build(kind, root, ignore_attention_mask, dict(overrides or {}), tf)
    finally:
        torch.set_default_dtype(previous)


def _build(kind: str, root: Path, ignore_attention_mask: bool, overrides: dict, tf) -> Path:
    if ignore_attention_mask and kind != "refact":
        raise ValueError("ignore_attention_mask is for the remote-code refact stand-in only")
    path = root / (kind + ("_nomask" if ignore_attention_mask else ""))
    path.mkdir(parents=True, exist_ok=True)
    if kind == "codegen":
        tok = codegen_tokenizer()
        config = tf.CodeGenConfig(**{**dict(vocab_size=51200, n_positions=2048, n_ctx=2048, n_embd=64, n_layer=2,
                                            n_head=4, rotary_dim=8, bos_token_id=1, eos_token_id=50256), **overrides})
        model = tf.CodeGenForCausalLM(config)
    elif kind == "neox":
        tok = neox_tokenizer()
        config = tf.GPTNeoXConfig(**{**dict(vocab_size=50304, hidden_size=64, num_hidden_layers=2,
                                            num_attention_heads=4, intermediate_size=256, rotary_pct=0.25,
                                            use_parallel_residual=True, max_position_embeddings=2048,
                                            bos_token_id=0, eos_token_id=0, tie_word_embeddings=False), **overrides})
        model = tf.GPTNeoXForCausalLM(config)
    elif kind == "santacoder":
        tok = santacoder_tokenizer()
        config = tf.GPTBigCodeConfig(**{**dict(vocab_size=49280, n_embd=64, n_layer=2, n_head=4, multi_query=True,
                                               n_positions=2048, bos_token_id=49152, eos_token_id=49152), **overrides})
        model = tf.GPTBigCodeForCausalLM(config)
    elif kind == "refact":
        tok = refact_tokenizer()
        model = _refact_remote_code_model(path, ignore_attention_mask, overrides)
    else:
        raise ValueError(f"unknown tiny model kind {kind!r}")
    tok.save_pretrained(path)
    model.save_pretrained(path)
    return path


def _refact_remote_code_model(path: Path, ignore_attention_mask: bool = False, overrides: dict | None = None):
    """A model whose classes live in the checkpoint directory (``auto_map``), as Refact's do."""
    import importlib.util
    import sys

    package = path / "_tinyrefact_src"
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "configuration_tinyrefact.py").write_text(textwrap.dedent(REFACT_CONFIG))
    (package / "modeling_tinyrefact.py").write_text(textwrap.dedent(REFACT_MODELING))
    name = f"_tinyrefact_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(name, package / "__init__.py",
                                                  submodule_search_locations=[str(package)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    import importlib as il

    conf_mod = il.import_module(f"{name}.configuration_tinyrefact")
    model_mod = il.import_module(f"{name}.modeling_tinyrefact")
    conf_mod.TinyRefactConfig.register_for_auto_class()
    model_mod.TinyRefactForCausalLM.register_for_auto_class("AutoModelForCausalLM")
    config = conf_mod.TinyRefactConfig(**{**dict(
        vocab_size=49216, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, alibi=True, multi_query=True,
        new_decoder_architecture=False, parallel_attn=False, bias=False, max_position_embeddings=4096,
        bos_token_id=0, eos_token_id=0, ignore_attention_mask=ignore_attention_mask), **(overrides or {})})
    return model_mod.TinyRefactForCausalLM(config)


def llama(path: Path, *, seed: int = 0) -> Path:
    """A tiny Llama (SmolLM2's architecture: 2 layers, width 32) with the real GPT-2 vocabulary, saved
    to ``path`` (for fine-tuning tests and benchmarks: trains and loads adapters in well under a second)."""
    import torch
    import transformers as tf

    torch.manual_seed(seed)
    config = tf.LlamaConfig(vocab_size=50257, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                            bos_token_id=50256, eos_token_id=50256, tie_word_embeddings=True,
                            # wide enough weights that logits behind the final RMSNorm can reach a
                            # confident answer (at the default 0.02 they stay within about +-0.6)
                            initializer_range=0.5)
    tf.LlamaForCausalLM(config).save_pretrained(path)
    gpt2_tokenizer().save_pretrained(path)
    return Path(path)


def teach(path: Path, prompt: str, completion: str, *, steps: int = 300, lr: float = 3e-3,
          trust_remote_code: bool = False) -> None:
    """Overfit the model in ``path`` so that greedy decoding of ``prompt`` yields ``completion`` + EOS.

    Trains only on the completion's tokens (the prompt is context), then
    checks the greedy output and saves the weights back. Raises if it does
    not converge (the caller's test fails with the reason).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"trust_remote_code": True} if trust_remote_code else {}
    tok = AutoTokenizer.from_pretrained(path, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **kwargs)
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    c = tok(completion, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    ids = torch.tensor([p + c])
    labels = torch.tensor([[-100] * len(p) + c])
    optim = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    torch.manual_seed(0)
    for _step in range(steps):
        loss = model(input_ids=ids, labels=labels).loss
        optim.zero_grad()
        loss.backward()
        optim.step()
        if loss.item() < 0.01:
            break
    model.eval()
    with torch.inference_mode():
        out = model.generate(input_ids=torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long),
                             max_new_tokens=len(c) + 2, do_sample=False, pad_token_id=tok.eos_token_id,
                             eos_token_id=tok.eos_token_id)
    got = out[0, len(p):].tolist()
    if got[: len(c)] != c:
        raise AssertionError(f"teaching did not converge (loss {loss.item():.3g}): "
                             f"{tok.decode(got)!r} != {tok.decode(c)!r}")
    model.save_pretrained(path)


def read_vectors(name: str) -> list[tuple[str, list[int]]]:
    """llama.cpp's tokenizer test vectors ``<name>.inp`` / ``<name>.out``."""
    d = tokenizers_dir()
    inputs = (d / f"{name}.inp").read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")
    outputs = (d / f"{name}.out").read_text(encoding="utf-8").split("\n")
    while inputs and inputs[-1] == "":
        inputs.pop()
    outputs = outputs[: len(inputs)]
    assert len(outputs) == len(inputs), (len(inputs), len(outputs))
    return [(text, [int(t) for t in line.split()]) for text, line in zip(inputs, outputs)]


def config_of(path: Path) -> dict:
    return json.loads((path / "config.json").read_text())
