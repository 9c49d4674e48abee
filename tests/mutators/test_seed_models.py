"""The four seed code models: tokenizers with the real special tokens, exact prompt formats, and
generation -> parse -> apply/splice -> child end to end through the hf backend's real loading path.

Tiny random stand-ins (tests/mutators/tiny_models.py) are saved to disk and
loaded with ``from_pretrained(directory)``, as a hub id would be; each is
taught one completion so that greedy decoding produces a known diff or
middle, which the operator must turn into exactly the expected child.
"""

from __future__ import annotations

import os

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from elm.types import Parent, TaskContext
from mutators import DiffMutator, FIMMutator
from mutators.backends import build_backend
from mutators.fim import FORMATS
from tests.mutators import tiny_models as tiny

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything here is local; never try the hub

TASK = TaskContext(name="toy", description="toy task", entry_point="f", signature="def f(x):")
PARENT = 'def f(x):\n    """Scale x."""\n    y = x * 2\n    return y + 1\n'
GREEDY = {"temperature": 0.0, "max_new_tokens": 64}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-models")
    return {kind: tiny.build(kind, root) for kind in ("codegen", "neox", "santacoder", "refact")}


def group(source=PARENT, pid=7):
    return [[Parent(id=pid, source=source, fitness=0.0, descriptor=(0.0,))]]


# ------------------------------------------------------------------------ tokenizers


@pytest.mark.parametrize("name,build", [("gpt-2", tiny.gpt2_tokenizer), ("refact", tiny.refact_tokenizer)])
def test_tokenizers_match_llama_cpp_test_vectors(name, build):
    tok = build()
    vectors = tiny.read_vectors(name)
    assert len(vectors) > 40
    mismatches = [(text, ids) for text, ids in vectors if tok(text, add_special_tokens=False)["input_ids"] != ids]
    assert not mismatches, mismatches[:3]


def test_codegen_tokenizer_whitespace_tokens_and_plain_text_tags():
    tok = tiny.codegen_tokenizer()
    # CodeGen's tokenizer is GPT-2's plus whitespace runs: "  Hello" is one 2-space token + "Hello"
    assert tok("  Hello", add_special_tokens=False)["input_ids"] == [50286, 15496]
    assert tiny.gpt2_tokenizer()("  Hello", add_special_tokens=False)["input_ids"] == [220, 18435]
    assert tok.convert_tokens_to_ids([" " * 31, " " * 2, "\t" * 9, "\t" * 2]) == [50257, 50286, 50287, 50294]
    assert len(tok) == 50295 and tok.eos_token_id == 50256
    assert tok.convert_ids_to_tokens(tok("<NME>", add_special_tokens=False)["input_ids"]) == ["<", "N", "ME", ">"]
    assert tok.convert_ids_to_tokens(tok("    return", add_special_tokens=False)["input_ids"]) == ["    ", "return"]


def test_neox_sentinels_and_the_shifted_copy_is_caught():
    tok = tiny.neox_tokenizer()
    assert tok.convert_tokens_to_ids(["<|SUF|>", "<|PRE|>", "<|MID|>", "<|endoftext|>", "<|padding|>"]) == \
        [50277, 50278, 50279, 0, 1]
    assert FORMATS["fim_neox"].check_tokenizer(tok)["<|MID|>"] == 50279
    # sentinels are added as non-special: skip_special_tokens keeps them (so the operator cuts at them itself)
    ids = tok("x<|SUF|>y", add_special_tokens=False)["input_ids"]
    assert "<|SUF|>" in tok.decode(ids, skip_special_tokens=True)
    modified = tiny.neox_tokenizer(extra_tokens=("<|im_start|>", "<|im_end|>", "assistant", "RWKV"))
    assert modified.convert_tokens_to_ids(["<|SUF|>"]) == [50281]
    with pytest.raises(ValueError, match=r"<\|SUF\|>.*id 50281, expected 50277"):
        FORMATS["fim_neox"].check_tokenizer(modified)


def test_santacoder_special_tokens_are_stripped_by_skip_special_tokens():
    tok = tiny.santacoder_tokenizer()
    assert tok.convert_tokens_to_ids(["<|endoftext|>", "<fim-prefix>", "<fim-middle>", "<fim-suffix>",
                                      "<fim-pad>"]) == [49152, 49153, 49154, 49155, 49156]
    ids = tok("<fim-prefix>a<fim-suffix>b<fim-middle>", add_special_tokens=False)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == "ab"
    assert len(tok("<fim_prefix>", add_special_tokens=False)["input_ids"]) > 1  # the StarCoder spelling is text
    with pytest.raises(ValueError, match="not one"):
        FORMATS["refact"].check_tokenizer(tok)


def test_refact_vocabulary_ids():
    tok = tiny.refact_tokenizer()
    assert tok.convert_tokens_to_ids(["<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>",
                                      "<fim_pad>", "<empty_output>"]) == [0, 1, 2, 3, 4, 14]
    assert len(tok) == 49216
    assert len(tok("<fim-prefix>", add_special_tokens=False)["input_ids"]) == 6  # hyphens are SantaCoder's


# --------------------------------------------------------------------- prompt formats


@pytest.mark.parametrize("fmt,build,ids", [
    ("santacoder", tiny.santacoder_tokenizer, (49153, 49155, 49154)),
    ("fim_neox", tiny.neox_tokenizer, (50277, 50278, 50279)),
    ("refact", tiny.refact_tokenizer, (3, 1, 2)),
    ("refact_psm", tiny.refact_tokenizer, (1, 3, 2)),
])
def test_fim_prompt_strings_and_token_ids(fmt, build, ids):
    f = FORMATS[fmt]
    prefix, suffix = "def f(x):\n", "    return y\n"
    prompt = f.prompt(prefix, suffix)
    expected = {
        "santacoder": "<fim-prefix>def f(x):\n<fim-suffix>    return y\n<fim-middle>",
        "fim_neox": "<|SUF|>    return y\n<|PRE|>def f(x):\n<|MID|>",
        "refact": "<fim_suffix>    return y\n<fim_prefix>def f(x):\n<fim_middle>",
        "refact_psm": "<fim_prefix>def f(x):\n<fim_suffix>    return y\n<fim_middle>",
    }[fmt]
    assert prompt == expected
    tok = build()
    got = tok(prompt, add_special_tokens=False)["input_ids"]
    first_text = suffix if f.order == "spm" else prefix
    second_text = prefix if f.order == "spm" else suffix
    n1 = len(tok(first_text, add_special_tokens=False)["input_ids"])
    n2 = len(tok(second_text, add_special_tokens=False)["input_ids"])
    assert got[0] == ids[0] and got[1 + n1] == ids[1] and got[-1] == ids[2] and len(got) == n1 + n2 + 3
    # the id-built prompt (FIM-NeoX's model card builds it that way) is the same sequence
    assert got == [ids[0], *tok(first_text, add_special_tokens=False)["input_ids"], ids[1],
                   *tok(second_text, add_special_tokens=False)["input_ids"], ids[2]]


def test_diff_prompt_string_and_tokens():
    m = DiffMutator.__new__(DiffMutator)  # prompt() needs only file_name
    m.file_name = "program.py"
    prompt = m.prompt(PARENT, "Fixed bugs")
    assert prompt == ('<NME> program.py\n<BEF> def f(x):\n    """Scale x."""\n    y = x * 2\n    return y + 1'
                      "\n<MSG> Fixed bugs\n<DFF>")
    assert m.prompt(PARENT, "Fixed bugs", "@@ -3,1 +3,1 @@").endswith("<DFF> @@ -3,1 +3,1 @@\n")
    tok = tiny.codegen_tokenizer()
    pieces = tok.convert_ids_to_tokens(tok(prompt, add_special_tokens=False)["input_ids"])
    assert pieces[:4] == ["<", "N", "ME", ">"] and pieces[-4:] == ["<", "D", "FF", ">"]
    assert "    " in pieces  # indentation is one CodeGen whitespace token


# ----------------------------------------------------------------- end to end (taught models)


def test_diff_codegen_end_to_end(models):
    path = models["codegen"]
    m = DiffMutator(backend={"kind": "hf", "model": str(path)}, sampling=GREEDY, messages=["Fixed bugs"])
    diff = " @@ -3,2 +3,2 @@\n-    y = x * 2\n-    return y + 1\n+    y = x * 3\n+    return y - 1\n"
    tiny.teach(path, m.prompt(PARENT, "Fixed bugs"), diff + "<NME> other.py")  # runs on into a next record
    m.close()
    m = DiffMutator(backend={"kind": "hf", "model": str(path)}, sampling=GREEDY, messages=["Fixed bugs"])
    [p] = m.mutate(parents=group(), task=TASK, seed=0)
    assert p.status == "ok" and p.meta["diff_status"] == "applied" and p.meta["finish"] == "stop"
    assert p.source == 'def f(x):\n    """Scale x."""\n    y = x * 3\n    return y - 1\n'
    assert p.parent_ids == (7,) and p.mutator == "diff"
    tok = m.backend.tokenizer
    assert p.tokens_in == len(tok(m.prompt(PARENT, "Fixed bugs"), add_special_tokens=False)["input_ids"])
    assert p.tokens_out > 10 and p.model_seconds > 0
    # the same model on a parent whose context differs: the diff's context is not found
    other = PARENT.replace("x * 2", "x * 5")
    [q] = m.mutate(parents=group(other), task=TASK, seed=0)
    assert q.status in ("context_not_found", "malformed") and q.source is None
    m.close()


@pytest.mark.parametrize("kind,fmt,trust", [("neox", "fim_neox", False), ("santacoder", "santacoder", False),
                                            ("refact", "refact", True), ("refact", "refact_psm", True)])
def test_fim_end_to_end(models, kind, fmt, trust):
    path = models[kind]
    backend = {"kind": "hf", "model": str(path), **({"trust_remote_code": True} if trust else {})}
    f = FORMATS[fmt]
    prefix = 'def f(x):\n    """Scale x."""\n'
    suffix = ""
    middle = "    return x * 4\n"
    # spans={"body": 1}: the whole body of f, the only function -> a deterministic hole
    tiny.teach(path, f.prompt(prefix, suffix), middle, trust_remote_code=trust)
    m = FIMMutator(backend=backend, format=fmt, spans={"body": 1.0}, sampling=GREEDY)
    [p] = m.mutate(parents=group(), task=TASK, seed=3)
    assert p.meta["span"] == "body" and p.meta["lines"] == [3, 4]
    assert p.status == "ok", p.meta
    assert p.source == prefix + middle
    assert p.tokens_in == len(m.backend.tokenizer(f.prompt(prefix, suffix), add_special_tokens=False)["input_ids"])
    m.close()


def test_refact_needs_trust_remote_code_and_natives_never_get_it(models):
    with pytest.raises(ValueError, match="trust_remote_code|custom code"):
        build_backend({"kind": "hf", "model": str(models["refact"])})
    cfg = tiny.config_of(models["refact"])
    assert cfg["auto_map"]["AutoModelForCausalLM"] == "modeling_tinyrefact.TinyRefactForCausalLM"
    b = build_backend({"kind": "hf", "model": str(models["santacoder"])})
    try:
        assert type(b.model).__name__ == "GPTBigCodeForCausalLM" and b.model.config.multi_query
    finally:
        from mutators.backends import release_backend

        release_backend(b)
