"""The four seed code models: tokenizers with the real special tokens, exact prompt formats, and
generation -> parse -> apply/splice -> child end to end through the hf backend's real loading path.

Tiny random stand-ins (mutators/standins.py) are saved to disk and
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
from mutators import standins as tiny
from mutators.backends import build_backend
from mutators.fim import FORMATS

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


# ------------------------------------------------------- what real models write (issue 14)


def test_trim_suffix_overlap():
    from mutators.fim import trim_suffix_overlap

    suffix = "\n\ndef g(x):\n    return f(x) - 1\n"
    new = "    return x * 3\n"
    assert trim_suffix_overlap(new + suffix, suffix) == (new, 4)  # the whole suffix again
    assert trim_suffix_overlap(new + "\n\ndef g(x):\n", suffix) == (new, 3)  # its start
    assert trim_suffix_overlap(new + "\n\ndef g(x):   \n", suffix) == (new, 3)  # trailing spaces do not count
    assert trim_suffix_overlap(new + "\n", suffix) == (new + "\n", 0)  # blank lines alone are not a repeat
    assert trim_suffix_overlap(new, suffix) == (new, 0)
    assert trim_suffix_overlap("    y = 1\n    return y\n", "    return y\n") == ("    y = 1\n", 1)
    assert trim_suffix_overlap("", suffix) == ("", 0)
    assert trim_suffix_overlap(new, "") == (new, 0)


@pytest.fixture(scope="module")
def fim_neox(models):
    m = FIMMutator(backend={"kind": "hf", "model": str(models["neox"])}, format="fim_neox", spans={"body": 1.0},
                   sampling=GREEDY)
    yield m
    m.close()


def _fim_child(m, source, middle, finish="stop"):
    """The child the operator builds from ``middle`` for the hole at f's body (what a model wrote)."""
    import numpy as np

    from mutators.backends import Completion

    [plan] = [m._plan(g, TASK, np.random.default_rng(0)) for g in group(source)]
    done = Completion(text=middle, tokens_in=1, tokens_out=1, seconds=0.0, finish=finish)
    return m._child(plan, group(source)[0], middle, done)


def test_fim_middle_that_repeats_the_suffix_is_trimmed(fim_neox):
    suffix = "\n\ndef g(x):\n    return f(x) - 1\n"
    source = PARENT + suffix
    prefix = 'def f(x):\n    """Scale x."""\n'
    new = "    return x * 4\n"
    for middle, k in ((new + suffix, 4), (new + "\n\ndef g(x):\n", 3), (new + "\n\ndef g(x):", 3)):
        child, status, meta = _fim_child(fim_neox, source, middle)
        assert (status, meta["suffix_overlap_lines"]) == ("ok", k)
        assert child == prefix + new + suffix  # not "def g(x):" twice
    child, status, meta = _fim_child(fim_neox, source, new)
    assert status == "ok" and "suffix_overlap_lines" not in meta and child == prefix + new + suffix
    # a middle that is only the suffix again wrote nothing for the hole
    assert _fim_child(fim_neox, source, suffix)[1] == "empty_middle"


def test_fim_empty_middle_has_its_own_status(fim_neox):
    for middle in ("", "\n", "  \n\n"):
        child, status, meta = _fim_child(fim_neox, PARENT, middle)
        assert status == "empty_middle" and child is None and meta["detail"]
    assert _fim_child(fim_neox, PARENT, "", finish="length")[1] == "malformed"  # cut, not empty


LONG_FILLER = "".join(f"ROW_{i} = ({i}, {i * 7 % 13}, {i * 3 % 11})  # row {i}\n" for i in range(300))
LONG_PARENT = "import math\n" + LONG_FILLER + "\n\n" + PARENT + "\n\n" + LONG_FILLER.replace("ROW_", "COL_")


def test_hf_backend_skips_rows_past_the_context_and_runs_the_rest(models):
    from mutators.backends import Sampling, release_backend

    b = build_backend({"kind": "hf", "model": str(models["codegen"]), "context_length": 64})
    try:
        assert b.context_length == 64
        long, short = "x = 1\n" * 40, "def f(x):\n"
        assert b.prompt_tokens(long) > 56
        done = b.generate([long, short], sampling=Sampling(max_new_tokens=8, temperature=0.0), seed=0)
        assert done[0].finish == "prompt_too_long" and "context length 64" in done[0].error
        assert done[0].text == "" and done[0].tokens_in == b.prompt_tokens(long)
        assert done[1].finish in ("stop", "length") and done[1].tokens_out > 0
    finally:
        release_backend(b)
    b = build_backend({"kind": "hf", "model": str(models["codegen"])})
    try:
        assert b.context_length == 2048  # from the config (n_positions)
    finally:
        release_backend(b)
    with pytest.raises(ValueError, match="context_length"):
        build_backend({"kind": "hf", "model": str(models["codegen"]), "context_length": 0})


def test_long_parent_is_windowed_around_the_edit_and_the_batch_runs(models):
    # CodeGen has 2,048 learned-length positions: the whole parent (~5,000 tokens) would fail the batch
    m = DiffMutator(backend={"kind": "hf", "model": str(models["codegen"])}, sampling={"max_new_tokens": 8},
                    hunk_header=True)
    try:
        assert m.backend.prompt_tokens(m.prompt(LONG_PARENT, "Fixed bugs")) > 2048
        out = m.mutate(parents=group(LONG_PARENT) + group(PARENT, pid=8), task=TASK, seed=1)
        long, short = out
        first, last = long.meta["window"]
        shown = "".join(LONG_PARENT.splitlines(keepends=True)[first - 1:last])
        assert PARENT in shown and 2000 < long.meta["prompt_tokens_unwindowed"]
        assert long.tokens_in <= 2048 - 8 and long.status != "prompt_too_long"
        assert "window" not in short.meta and short.tokens_in < 200
        # the anchor is renumbered into the window
        anchored = int(long.meta["anchor"].split()[1].split(",")[0][1:])
        assert shown.splitlines()[anchored - 1] in PARENT
    finally:
        m.close()


def test_diff_applied_inside_a_window_edits_the_whole_parent():
    from mutators.backends import Completion
    from mutators.lm import DiffMutator as D
    from mutators.lm import _DiffWindow, _Plan

    lines = LONG_PARENT.splitlines(keepends=True)
    start = lines.index('def f(x):\n') - 2
    window = _DiffWindow(anchor="", message="m", focus=(start + 2, start + 6), start=start, end=start + 8)
    plan = _Plan(prompt="", context=window)
    diff = " @@ -5,1 +5,1 @@\n-    y = x * 2\n+    y = x * 3\n"
    done = Completion(text=diff, tokens_in=1, tokens_out=1, seconds=0.0, finish="stop")
    source, status, meta = D._child(object.__new__(D), plan, [Parent(1, LONG_PARENT, 0.0, (0.0,))], diff, done)
    assert status == "ok" and source == LONG_PARENT.replace("y = x * 2", "y = x * 3")


@pytest.mark.parametrize("kind,fmt", [("neox", "fim_neox"), ("santacoder", "santacoder")])
def test_fim_prompt_is_windowed_and_too_long_is_a_status(models, kind, fmt):
    m = FIMMutator(backend={"kind": "hf", "model": str(models[kind]), "context_length": 256}, format=fmt,
                   spans={"body": 1.0}, sampling={"max_new_tokens": 8})
    try:
        long, short = m.mutate(parents=group(LONG_PARENT) + group(PARENT, pid=8), task=TASK, seed=1)
        assert long.tokens_in <= 256 - 8 and "window" in long.meta and long.status != "prompt_too_long"
        first, last = long.meta["window"]
        assert first < LONG_PARENT.splitlines().index("def f(x):") + 1 < last
        assert "window" not in short.meta
    finally:
        m.close()
    # no room even for the short parent (6 tokens): each child says so, nothing is generated
    m = FIMMutator(backend={"kind": "hf", "model": str(models[kind]), "context_length": 256}, format=fmt,
                   spans={"body": 1.0}, sampling={"max_new_tokens": 250})
    try:
        for p in m.mutate(parents=group(LONG_PARENT) + group(PARENT, pid=8), task=TASK, seed=1):
            assert p.status == "prompt_too_long" and p.source is None and "context length 256" in p.meta["error"]
    finally:
        m.close()


def test_equal_length_batching_is_safe_for_a_model_that_ignores_the_attention_mask(tmp_path):
    from mutators.backends import Sampling, release_backend

    path = tiny.build("refact", tmp_path, ignore_attention_mask=True)
    prompts = ["def f(x):\n    return", "import math\n\n\ndef area(r):\n    return", "def g(y):\n    return",
               "x = 1\n"]
    sampling = Sampling(max_new_tokens=12, temperature=0.0)
    out = {}
    for batching in ("single", "equal_length", "padded"):
        b = build_backend({"kind": "hf", "model": str(path), "trust_remote_code": True, "batching": batching})
        try:
            lengths = [b.prompt_tokens(p) for p in prompts]
            chunks = b._chunks(list(range(len(prompts))), lengths)
            out[batching] = [c.text for c in b.generate(prompts, sampling=sampling, seed=0)]
        finally:
            release_backend(b)
        if batching == "equal_length":  # only prompts of one length share a call: nothing is padded
            assert all(len({lengths[i] for i in c}) == 1 for c in chunks) and len(chunks) < len(prompts)
    assert lengths[0] == lengths[2] != lengths[1]
    assert out["equal_length"] == out["single"]
    # what equal-length batching avoids: padded rows of this model attend to their padding
    assert out["padded"] != out["single"]


def test_refact_config_batches_equal_lengths_and_bad_batching_is_named():
    from elm.config import compose

    assert compose(["mutator=refact_1b6"])["mutator"]["backend"]["batching"] == "equal_length"
    assert compose(["mutator=santacoder"])["mutator"]["backend"].get("batching") is None  # padded
    with pytest.raises(ValueError, match="batching must be one of"):
        from mutators.backends.hf import HFBackend

        HFBackend(model="x", batching="ragged")
