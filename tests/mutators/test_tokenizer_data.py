"""The real vocabularies the seed-model tests use are there in any clone, and are the real ones."""

from __future__ import annotations

import gzip

import pytest

from mutators import standins as tiny_models


def test_vendored_vocabularies_match_the_shared_ones():
    shared = tiny_models.SHARED_TOKENIZERS
    if not shared.is_dir():
        pytest.skip(f"no shared copy at {shared} to compare with")
    copies = sorted(tiny_models.VENDORED_TOKENIZERS.glob("*.gz"))
    assert len(copies) == 7
    for gz in copies:
        assert gzip.decompress(gz.read_bytes()) == (shared / gz.name[:-3]).read_bytes(), gz.name


def test_a_clone_without_the_shared_directory_uses_the_copies(monkeypatch, tmp_path):
    from tokenizers import Tokenizer

    monkeypatch.delenv("ELM_TOKENIZERS_DIR", raising=False)
    monkeypatch.setattr(tiny_models, "SHARED_TOKENIZERS", tmp_path / "absent")
    monkeypatch.setattr(tiny_models, "_unpacked", None)
    d = tiny_models.tokenizers_dir()
    assert d != tmp_path / "absent"
    neox = Tokenizer.from_file(str(d / "20B_tokenizer.pristine.json"))
    assert neox.get_vocab_size(with_added_tokens=True) == 50277  # FIM-NeoX adds 50277-50279 after these
    assert neox.token_to_id("<|endoftext|>") == 0
    refact = Tokenizer.from_file(str(d / "refact.tokenizer.json"))
    assert [refact.token_to_id(t) for t in ("<fim_prefix>", "<fim_middle>", "<fim_suffix>")] == [1, 2, 3]
    gpt2 = Tokenizer.from_file(str(d / "gpt-2.tokenizer.json"))
    vectors = tiny_models.read_vectors("gpt-2")
    assert len(vectors) > 10
    assert all(gpt2.encode(text).ids == ids for text, ids in vectors)
