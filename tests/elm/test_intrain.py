"""In-run fine-tuning end to end (a tiny Llama in an hf lane beside GP): rounds every K examples, the
lane's actors hot-swap each adapter, a failed round leaves the last good adapter in use, and a resumed
run loads it and continues the numbering."""

from __future__ import annotations

import json
import os
import sqlite3

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("datasets")

from elm.config import ConfigError, compose, load_config
from elm.intrain import state_file
from elm.loop import RunError
from elm.runner import run
from mutators import standins as tiny

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    return tiny.llama(tmp_path_factory.mktemp("tiny-llama") / "llama")


def _cfg(model, *overrides):
    cfg = compose(["sandbox._target_=tests.elm.inprocess.InProcessSandbox", "loop.progress=false",
                   "ray.evaluator_num_cpus=0", "loop.batch_size=4", "loop.ordered=true", "seed=2",
                   "finetune.enabled=true", "finetune.every_examples=2", "finetune.blocking=true",
                   "finetune.max_steps=2", "finetune.duty_cycle=1", "finetune.nice=0",
                   "finetune.trainer._target_=tests.elm.intrain_doubles.FailingTrainer",
                   "+finetune.trainer.batch_size=2", "+finetune.trainer.rank=4", "+finetune.trainer.fail_rounds=[2]",
                   *overrides])
    cfg["env"] = {"_target_": "tests.elm.intrain_doubles.OneLineEnv"}
    cfg["mutator"] = {"_target_": "mutators.mixture.MixtureMutator", "components": {
        "gp": {"_target_": "mutators.gp.GPMutator", "weight": 0.5},
        "lm": {"_target_": "mutators.lm.RewriteMutator", "weight": 0.5, "style": "lines",
               "backend": {"kind": "hf", "model": str(model), "device": "cpu", "threads": 1},
               "sampling": {"max_new_tokens": 6}}}}
    return cfg


def _children(run_dir):
    with sqlite3.connect(run_dir / "run.db") as conn:
        return conn.execute("SELECT id, session, json_extract(info, '$.mutation.model_version') FROM evaluations "
                            "WHERE mutator = 'lm' ORDER BY id").fetchall()


def _rounds(run_dir):
    with sqlite3.connect(run_dir / "run.db") as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM adapters ORDER BY id")]


@pytest.mark.timeout(900)  # two sessions, each starting a model actor and a trainer actor, on a loaded machine
def test_versions_swap_a_failed_round_is_survived_and_resume_keeps_the_last_good_adapter(
        ray_session, tiny_llama, tmp_path):
    run_dir = tmp_path / "r"
    summary = run(_cfg(tiny_llama, "budget.evaluations=40"), run_dir=run_dir)
    assert summary.evaluations == 40
    rounds = _rounds(run_dir)
    assert [r["id"] for r in rounds] == list(range(1, len(rounds) + 1)) and len(rounds) >= 2
    first, failed = rounds[0], rounds[1]
    assert first["status"] == "ok" and first["version"].startswith("v001-") and first["examples"] >= 1
    assert json.loads(first["info"])["data"]["rows"] == first["examples"]
    assert failed["status"] == "failed" and "forced failure of round v002" in failed["error"]
    assert not os.path.exists(failed["path"])  # the half-written adapter is removed
    versions = [v for _, _, v in _children(run_dir)]
    assert versions[0] == "base" and first["version"] in versions  # children of at least two versions
    good = [r for r in rounds if r["status"] == "ok"]
    last_before = good[-1]["version"]
    assert json.loads(state_file(run_dir, "lm").read_text())["version"] == last_before
    # the failed round changed nothing for the lane: its children were written by good weights only
    assert set(versions) <= {"base"} | {r["version"] for r in good}

    # the resumed session's first round trains but cannot be loaded: the lane keeps the last good adapter
    # (how many rounds the first session made depends on how many examples its children gave)
    broken_round = len(rounds) + 1
    summary = run(_cfg(tiny_llama, "budget.evaluations=60", f"resume={run_dir}",
                       f"+finetune.trainer.broken_rounds=[{broken_round}]"), run_dir=run_dir)
    assert summary.evaluations == 60
    # per-version rates: in the summary's table, the store's meta and the dashboard's mutator table
    assert "model" in summary.mutator_stats and last_before[:19] in summary.mutator_stats
    with sqlite3.connect(run_dir / "run.db") as conn:
        stored = json.loads(conn.execute("SELECT value FROM meta WHERE key = 'mutator_version_stats'").fetchone()[0])
    assert {"base", last_before} <= {s["model_version"] for s in stored if s["mutator"] == "lm"}
    from elm.analysis import load_run
    from elm.dashboard import figures

    dash = load_run(run_dir)
    totals, tuned = figures.mutator_totals_shown(dash)
    assert tuned and {"base", last_before} <= set(totals[totals["mutator"] == "lm"]["model_version"])
    table = figures.finetune_rows(dash.finetune_rounds())
    assert [r["status"] for r in table][:2] == ["ok", "failed"] and "forced failure" in table[1]["error"]
    resumed = [v for _, session, v in _children(run_dir) if session == 2]
    assert resumed[0] == last_before  # the new session's actors loaded the last good adapter
    after = _rounds(run_dir)
    assert after[:len(rounds)] == rounds and len(after) > len(rounds)  # numbering continues
    broken = after[len(rounds)]
    assert broken["id"] == broken_round and broken["status"] == "load_failed" and broken["version"] not in resumed
    assert after[-1]["status"] == "ok" and after[-1]["version"].startswith(f"v{after[-1]['id']:03d}-")


@pytest.mark.timeout(600)
def test_configuration_errors_name_the_key(ray_session, tiny_llama, tmp_path):
    with pytest.raises(ConfigError, match="finetune: every_examples must be an int >= 1"):
        load_config(_cfg(tiny_llama, "finetune.every_examples=0"))
    with pytest.raises(RunError, match="finetune.trainer.max_steps is set by finetune.max_steps"):
        run(_cfg(tiny_llama, "+finetune.trainer.max_steps=3"), run_dir=tmp_path / "a")
    gp_only = _cfg(tiny_llama, "budget.evaluations=8")
    gp_only["mutator"] = {"_target_": "mutators.gp.GPMutator"}
    with pytest.raises(RunError, match="none of this run's operators \\['gp'\\] has a model.*mutator=smollm2_gp"):
        run(gp_only, run_dir=tmp_path / "e")
    with pytest.raises(RunError, match="finetune.operator='gp' has no model"):
        run(_cfg(tiny_llama, "finetune.operator=gp", "budget.evaluations=8"), run_dir=tmp_path / "b")
    with pytest.raises(RunError, match="MixtureMutator\\) has no prompt format.*search.lanes=true"):
        run(_cfg(tiny_llama, "search.lanes=false"), run_dir=tmp_path / "d")
    with pytest.raises(RunError, match="finetune.operator='nope' is not one of this run's operators"):
        run(_cfg(tiny_llama, "finetune.operator=nope"), run_dir=tmp_path / "c")
