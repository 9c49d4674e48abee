"""Fine-tuning a mutator's model on a run's successes: the operators' training pairs (exact formats),
the export from a run store (provenance, what is left out, errors), LoRA and full training on a tiny
model, and the hf backend loading the result (``backend.adapter``, the version recorded per child)."""

from __future__ import annotations

import json
import os
import shutil

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")
datasets = pytest.importorskip("datasets")

from elm.config import compose, load_config  # noqa: E402
from elm.finetune import FinetuneError, export_examples  # noqa: E402
from elm.store import EvaluationRecord, RunStore  # noqa: E402
from elm.types import Parent, TaskContext  # noqa: E402
from mutators import prompts as P  # noqa: E402
from mutators import standins as tiny  # noqa: E402
from mutators.backends.hf import ADAPTER_META, HFBackend  # noqa: E402
from mutators.diff import apply_diff  # noqa: E402
from mutators.finetune.__main__ import main as cli  # noqa: E402
from mutators.finetune.train import TrainConfig, train  # noqa: E402
from mutators.lm import CrossoverMutator, DiffMutator, RewriteMutator  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TASK = TaskContext(name="toy", description="toy task", entry_point="pack", signature="def pack():")
PARENT = '''import numpy as np


def pack():
    n = 3
    x0, y0 = 0.5, 0.5
    gap = 0.25
    pts = [(x0 + i * gap, y0) for i in range(n)]
    return np.array(pts)
'''
LINES = {"_target_": "mutators.lm.RewriteMutator", "style": "lines", "backend": {"kind": "hf", "model": "x"}}


def _parent(source=PARENT, id=0, fitness=1.0):
    return Parent(id=id, source=source, fitness=fitness, descriptor=(0.0,))


class RecordingBackend(HFBackend):
    """The real hf backend on a tiny model, keeping the prompts it was sent."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.prompts = []

    def generate(self, prompts, *, sampling, seed):
        self.prompts.extend(prompts)
        return super().generate(prompts, sampling=sampling, seed=seed)


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    """A tiny Llama (SmolLM2's architecture) with the real GPT-2 vocabulary, saved as a checkpoint."""
    import torch

    torch.set_num_threads(1)  # a tiny model gains nothing from threads, and the test machine is shared
    path = tmp_path_factory.mktemp("tiny-llama") / "llama"
    tiny.llama(path)
    return path


# ------------------------------------------------------------------------------ training pairs


def test_lines_pairs_are_the_prompt_the_operator_sent_and_the_line_it_wrote(tiny_llama, tmp_path):
    taught = tmp_path / "taught"
    shutil.copytree(tiny_llama, taught)
    # taught one line's answer, the tiny model ends its lines (a random one never writes a newline)
    tiny.teach(taught, P.lines_prompt(P.find_entry(PARENT, "pack"), "pack", 6, "    gap ="), " 0.3 * n\n",
               steps=150, lr=1e-2)
    backend = RecordingBackend(model=str(taught), device="cpu", threads=1)
    m = RewriteMutator(backend=backend, style="lines", sampling={"temperature": 0.7, "max_new_tokens": 12})
    proposals = m.mutate(parents=[[_parent()]] * 12, task=TASK, seed=3)
    sent = dict(zip([i for i, p in enumerate(proposals) if p.meta.get("finish")], backend.prompts))
    checked = 0
    for i, p in enumerate(proposals):
        if p.status != "ok":
            continue
        ex = RewriteMutator.training_example(LINES, parents=[_parent()], child=p.source, task=TASK, meta=p.meta)
        assert ex is not None and ex.format == "rewrite/lines" and not ex.messages
        assert ex.prompt == sent[i]  # exactly what the model saw
        assert ex.completion.rstrip("\n").strip() == p.meta["completion"].split("\n")[0].strip()
        assert ex.completion.endswith("\n")  # the line's end: the operator's stop string
        checked += 1
    assert checked >= 3, [p.status for p in proposals]
    assert all(p.meta["model_version"] == "base" for p in proposals if "finish" in p.meta)


def test_lines_pairs_reexpress_one_changed_assignment_and_refuse_other_changes():
    child = PARENT.replace("    gap = 0.25\n", "    gap = 0.3 * n\n")
    ex = RewriteMutator.training_example(LINES, parents=[_parent()], child=child, task=TASK, meta={})
    entry = P.find_entry(PARENT, "pack")
    assert ex.prompt == P.lines_prompt(entry, "pack", 6, "    gap =") and ex.completion == " 0.3 * n\n"
    two = child.replace("    n = 3\n", "    n = 4\n")
    renamed = PARENT.replace("    gap = 0.25\n", "    gaps = 0.25\n")
    outside = PARENT.replace("import numpy as np", "import numpy as np  # arrays")
    longer = PARENT.replace("    gap = 0.25\n", "    gap = 0.25\n    gap += 0.1\n")
    for other in (two, renamed, outside, longer, PARENT):
        assert RewriteMutator.training_example(LINES, parents=[_parent()], child=other, task=TASK, meta={}) is None
    # show_parent changes the prompt exactly as it changes the operator's
    shown = RewriteMutator.training_example({**LINES, "show_parent": True}, parents=[_parent()], child=child,
                                            task=TASK, meta={})
    assert shown.prompt == P.lines_prompt(entry, "pack", 6, "    gap =", show_parent=True)


def test_body_chat_and_diff_pairs_rebuild_the_child():
    entry = P.find_entry(PARENT, "pack")
    new_body = "    n = 3\n    return np.zeros((n, 2))\n"
    child = entry.with_body(new_body)
    body = RewriteMutator.training_example({**LINES, "style": "body"}, parents=[_parent()], child=child,
                                           task=TASK, meta={})
    start = P.body_start(entry, 1)
    assert body.prompt == P.body_prompt([entry], "pack", "Improved version of {versions}.", start)
    assert start + body.completion == new_body
    chat = RewriteMutator.training_example({**LINES, "style": "chat"}, parents=[_parent()], child=child,
                                           task=TASK, meta={})
    assert chat.messages == P.chat_prompt([PARENT], TASK, "Write an improved version of the program that "
                                          "scores higher.").messages
    assert P.extract_code(chat.prompt + chat.completion) == child
    cross = CrossoverMutator.training_example({"style": "body", "parents": 2}, parents=[_parent(), _parent(id=1)],
                                              child=child, task=TASK, meta={})
    assert "combining the best ideas" in cross.prompt and cross.format == "crossover/body"
    assert CrossoverMutator.training_example({"style": "body"}, parents=[_parent()], child=child, task=TASK,
                                             meta={}) is None  # a crossover needs its two parents
    diff = DiffMutator.training_example({}, parents=[_parent()], child=child, task=TASK,
                                        meta={"message": "Improved the packing"})
    assert diff.prompt.endswith("<MSG> Improved the packing\n<DFF>") and diff.completion.startswith(" @@")
    assert apply_diff(PARENT, diff.completion.lstrip(" ")).source == child
    assert DiffMutator.training_example({"hunk_header": True}, parents=[_parent()], child=child, task=TASK,
                                        meta={}) is None


# ---------------------------------------------------------------------------------- export


def _store(tmp_path, mutator_node, rows):
    run = tmp_path / "run"
    cfg = compose(["env=circle_packing"])
    cfg["mutator"] = mutator_node
    store = RunStore.create(run, meta={"config": cfg})
    store.begin_session()
    store.record(rows)
    store.end_session("finished")
    store.close()
    return run


def _rec(id, mutator, source, *, parents=(0,), status="ok", fitness=1.0, archive=None, meta=None):
    return EvaluationRecord(id=id, parent_ids=tuple(parents), mutator=mutator, generation=1 if parents else 0,
                            source=source, status=status, fitness=fitness, descriptor=(0.5, 0.5),
                            archive_status=archive, info={"mutation": meta} if meta else {})


MIXTURE = {"_target_": "mutators.mixture.MixtureMutator", "components": {
    "lm": {"weight": 0.5, **LINES}, "gp": {"weight": 0.5, "_target_": "mutators.gp.GPMutator"}}}


def _run(tmp_path):
    line = lambda old, new: PARENT.replace(old, new)  # noqa: E731
    return _store(tmp_path, MIXTURE, [
        _rec(0, "seed", PARENT, parents=(), archive="new_cell"),
        _rec(1, "lm", line("    gap = 0.25\n", "    gap = 0.3\n"), fitness=1.2, archive="improved",
             meta={"style": "lines", "model_version": "base"}),
        _rec(2, "gp", line("    x0, y0 = 0.5, 0.5\n", "    x0, y0 = 0.5, 0.6\n"), fitness=0.9, archive="new_cell"),
        _rec(3, "gp", line("    n = 3\n    x0, y0 = 0.5, 0.5\n", "    n = 4\n    x0, y0 = 0.5, 0.1\n"), fitness=2.0,
             archive="improved"),  # two lines: not a lines example
        _rec(4, "lm", line("    gap = 0.25\n", "    gap = -1\n"), status="invalid", fitness=None),
        _rec(5, "lm", line("    gap = 0.25\n", "    gap = 0.2\n"), fitness=0.5, archive="not_added"),
        _rec(6, "lm", line("    gap = 0.25\n", "    gap = 0.1\n"), fitness=1.5, archive="not_added",
             meta={"style": "lines", "model_version": "v1"}),  # beats its parent, not inserted
        _rec(7, "gp", line("    gap = 0.25\n", "    gap = 0.3\n"), fitness=1.2, archive="not_added"),  # = pair of 1
    ])


def test_export_writes_successes_in_the_operators_format_with_provenance(tmp_path):
    run = _run(tmp_path)
    out = tmp_path / "data.jsonl"
    summary = export_examples(run, out)
    rows = list(datasets.load_dataset("json", data_files=str(out), split="train"))
    assert [r["evaluation_id"] for r in rows] == [1, 6] and summary.rows == 2
    first = rows[0]
    assert first["format"] == "rewrite/lines" and first["origin"] == "own" and first["written_by"] == "lm"
    assert first["completion"] == " 0.3\n" and first["prompt"].endswith("    gap =")
    assert first["parent_ids"] == [0] and first["fitness_gain"] == pytest.approx(0.2)
    assert first["run"] == str(run.resolve()) and first["environment"] == "circle_packing"
    assert [r["model_version"] for r in rows] == ["base", "v1"]
    # the baseline's one-line successes re-expressed as lines examples; identical pairs kept once
    summary = export_examples(run, out, reexpress=["lm"])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["evaluation_id"], r["origin"]) for r in rows] == [(1, "own"), (2, "reexpressed"), (6, "own")]
    assert summary.unexpressed == 1 and summary.repeated == 1  # evaluation 3 (two lines), 7 (= pair of 1)
    assert summary.by_operator == {"lm/own": 2, "lm/reexpressed": 1}
    assert [r["evaluation_id"] for r in map(json.loads, open(out))] == [1, 2, 6]
    export_examples(run, out, min_gain=0.25)
    assert [json.loads(line)["evaluation_id"] for line in open(out)] == [6]


def test_mutator_statistics_per_model_version(tmp_path):
    from elm.stats import mutator_stats

    with RunStore.open(_run(tmp_path)) as store:
        per = {(s.mutator, s.model_version): (s.proposals, s.valid, s.inserted)
               for s in mutator_stats(store, by_version=True)}
        whole = {s.mutator: s.proposals for s in mutator_stats(store)}
    assert per == {("gp", None): (3, 3, 2), ("lm", None): (2, 1, 0), ("lm", "base"): (1, 1, 1),
                   ("lm", "v1"): (1, 1, 0)}
    assert whole == {"gp": 3, "lm": 4}


def test_export_errors_name_the_problem(tmp_path, capsys):
    with pytest.raises(FinetuneError, match="no run store"):
        export_examples(tmp_path / "missing", tmp_path / "x.jsonl")
    seeds = _store(tmp_path, MIXTURE, [_rec(0, "seed", PARENT, parents=(), archive="new_cell")])
    with pytest.raises(FinetuneError, match="no children yet"):
        export_examples(seeds, tmp_path / "x.jsonl")
    run = _run(tmp_path / "b")
    with pytest.raises(FinetuneError, match=r"unknown operator\(s\) \['smollm2'\].*\['gp', 'lm'\]"):
        export_examples(run, tmp_path / "x.jsonl", reexpress=["smollm2"])
    with pytest.raises(FinetuneError, match="none in a language-model operator's format.*--reexpress"):
        export_examples(run, tmp_path / "x.jsonl", operators=["gp"])
    assert not (tmp_path / "x.jsonl").exists()
    assert cli(["export", str(tmp_path / "missing"), str(tmp_path / "x.jsonl")]) == 2
    assert "error: no run store" in capsys.readouterr().err


def test_the_engine_module_runs_the_same_command_line(tmp_path):
    # `python -m elm.finetune export ...` is the spelling in the issue and in ELM's docs: it must work too
    import subprocess
    import sys

    run, out = _run(tmp_path), tmp_path / "data.jsonl"
    ok = subprocess.run([sys.executable, "-m", "elm.finetune", "export", str(run), str(out)],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "wrote 2 pairs" in ok.stdout and [json.loads(line)["evaluation_id"] for line in open(out)] == [1, 6]
    bad = subprocess.run([sys.executable, "-m", "elm.finetune", "export", str(tmp_path / "missing"), str(out)],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "error: no run store" in bad.stderr


# -------------------------------------------------------------------------------- training


def _dataset(tmp_path, prompt, completion, n=12):
    out = tmp_path / "pairs.jsonl"
    with open(out, "w") as fh:
        for i in range(n):
            fh.write(json.dumps({"prompt": prompt, "completion": completion, "messages": None,
                                 "format": "rewrite/lines", "run": "r", "evaluation_id": i, "origin": "own"}) + "\n")
    return out


def _greedy(backend, prompt, tokens=6):
    from mutators.backends import Sampling

    return backend.generate([prompt], sampling=Sampling(max_new_tokens=tokens, temperature=0.0, stop=("\n",)),
                            seed=0)[0].text


def test_lora_training_teaches_the_pair_and_the_backend_loads_the_adapter(tiny_llama, tmp_path, capsys):
    entry = P.find_entry(PARENT, "pack")
    prompt = P.lines_prompt(entry, "pack", 6, "    gap =")
    data = _dataset(tmp_path, prompt, " 0.75 * n\n")
    base = HFBackend(model=str(tiny_llama), device="cpu", threads=1)
    assert _greedy(base, prompt) != " 0.75 * n" and base.version == "base"
    out = tmp_path / "adapter"
    result = train(data=data, model=str(tiny_llama), out=out, log=None,
                   config=TrainConfig(max_steps=60, max_seconds=120, batch_size=4, lr=2e-2, threads=1, rank=8))
    assert result.steps == 60 and result.stopped_by == "steps" and result.loss_last < result.loss_first / 5
    assert result.examples_seen == 240 and result.seconds_per_example == pytest.approx(result.seconds / 240)
    assert result.eval_loss_after < result.eval_loss_before  # 1 of the 12 rows held out
    meta = json.loads((out / ADAPTER_META).read_text())
    assert meta["version"] == result.version and meta["base_model"] == str(tiny_llama)
    assert meta["data"]["rows"] == 12 and meta["data"]["evaluation_ids"] == list(range(12))
    assert meta["config"]["method"] == "lora" and len(meta["losses"]) == 60
    assert (out / "adapter_config.json").is_file()
    tuned = HFBackend(model=str(tiny_llama), device="cpu", threads=1, adapter=str(out))
    assert tuned.version == result.version and _greedy(tuned, prompt) == " 0.75 * n"
    # every child records the weights that wrote it
    m = RewriteMutator(backend=tuned, style="lines", sampling={"temperature": 0.0, "max_new_tokens": 6})
    (child,) = m.mutate(parents=[[_parent()]], task=TASK, seed=0)
    assert child.meta["model_version"] == result.version
    with pytest.raises(FileExistsError, match="not empty"):
        train(data=data, model=str(tiny_llama), out=out, log=None, config=TrainConfig(max_steps=1))


def test_full_fine_tuning_saves_a_checkpoint_loaded_as_the_model(tiny_llama, tmp_path):
    data = _dataset(tmp_path, "x =", " 1\n", n=4)
    out = tmp_path / "full"
    result = train(data=data, model=str(tiny_llama), out=out, log=None,
                   config=TrainConfig(method="full", max_steps=2, batch_size=2, threads=1))
    assert result.steps == 2 and result.eval_loss_before is None  # too few rows to hold any out
    backend = HFBackend(model=str(out), device="cpu", threads=1)
    assert backend.version == result.version
    with pytest.raises(ValueError, match="not a LoRA adapter directory.*backend.model="):
        HFBackend(model=str(tiny_llama), device="cpu", threads=1, adapter=str(out))


def test_training_and_adapter_errors(tiny_llama, tmp_path):
    with pytest.raises(FileNotFoundError, match="no dataset"):
        train(data=tmp_path / "none.jsonl", model=str(tiny_llama), out=tmp_path / "a", log=None)
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ValueError, match="is empty"):
        train(data=tmp_path / "empty.jsonl", model=str(tiny_llama), out=tmp_path / "a", log=None)
    with pytest.raises(ValueError, match="method must be one of"):
        TrainConfig(method="qlora")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / ADAPTER_META).write_text(json.dumps({"version": "v", "base_model": "smollm2"}))
    with pytest.raises(ValueError, match="trained on base model 'smollm2'"):
        HFBackend(model=str(tiny_llama), device="cpu", threads=1, adapter=str(adapter))


def test_backend_adapter_is_a_config_key():
    cfg = load_config(compose(["mutator=smollm2", "mutator.backend.adapter=/runs/a/adapter"]))
    assert cfg.mutator["backend"]["adapter"] == "/runs/a/adapter"


# ------------------------------------------------------------------------------ in-run training


def test_the_backend_hot_swaps_adapters_and_keeps_its_weights_when_one_cannot_be_loaded(tiny_llama, tmp_path):
    prompt = P.lines_prompt(P.find_entry(PARENT, "pack"), "pack", 6, "    gap =")
    config = TrainConfig(max_steps=40, max_seconds=120, batch_size=4, lr=2e-2, threads=1, rank=8)
    first = train(data=_dataset(tmp_path, prompt, " 0.75 * n\n"), model=str(tiny_llama), out=tmp_path / "v1",
                  config=config, log=None)
    backend = HFBackend(model=str(tiny_llama), device="cpu", threads=1)
    m = RewriteMutator(backend=backend, style="lines", sampling={"temperature": 0.0, "max_new_tokens": 6})
    assert m.model_version() == "base"
    assert m.load_adapter(str(tmp_path / "v1")) == first.version == backend.version
    assert _greedy(backend, prompt) == " 0.75 * n"
    # a second round continues the first adapter (warm start) on other data; the swap replaces the
    # merged weights (the base reloaded, then the new adapter), never stacks them
    (tmp_path / "b").mkdir()
    second = train(data=_dataset(tmp_path / "b", prompt, " 0.5 / n\n"), model=str(tiny_llama), out=tmp_path / "v2",
                   config=config, log=None, init=tmp_path / "v1")
    assert json.loads((tmp_path / "v2" / ADAPTER_META).read_text())["init"] == str(tmp_path / "v1")
    assert m.load_adapter(str(tmp_path / "v2")) == second.version and _greedy(backend, prompt) == " 0.5 / n"
    (child,) = m.mutate(parents=[[_parent()]], task=TASK, seed=0)
    assert child.meta["model_version"] == second.version
    broken = tmp_path / "broken"
    shutil.copytree(tmp_path / "v2", broken)
    (broken / "adapter_model.safetensors").write_bytes(b"not weights")
    with pytest.raises(Exception):  # noqa: B017 (safetensors' own error type)
        m.load_adapter(str(broken))
    assert backend.version == second.version and _greedy(backend, prompt) == " 0.5 / n"  # the last good one
    assert m.load_adapter(str(tmp_path / "v2")) == second.version  # already loaded: nothing to do


def test_the_in_run_trainer_takes_its_budget_from_the_run_and_pauses_between_steps(tiny_llama, tmp_path):
    from elm.finetune import TrainBudget
    from mutators.finetune.train import LoRATrainer

    with pytest.raises(ValueError, match="set by finetune.max_steps"):
        LoRATrainer(max_steps=3)
    with pytest.raises(ValueError, match="takes no argument 'rnk'"):
        LoRATrainer(rnk=3)
    with pytest.raises(ValueError, match="must be 'lora' in a run"):
        LoRATrainer(method="full")
    lane = {**LINES, "backend": {"kind": "hf", "model": str(tiny_llama), "adapter": None}}
    meta = LoRATrainer(batch_size=2, rank=4).train(
        data=_dataset(tmp_path, "x =", " 1\n", n=4), out=tmp_path / "v001", lane=lane, init=None,
        budget=TrainBudget(max_steps=3, max_seconds=60, threads=1, duty_cycle=0.25))
    result = meta["result"]
    assert meta["version"].startswith("v001-") and result["steps"] == 3 and meta["config"]["rank"] == 4
    # steps take at most a quarter of the wall time: 3 s of pause per 1 s of step, none after the last
    busy = result["seconds"] - result["paused_s"]
    assert result["paused_s"] == pytest.approx(3 * busy * 2 / 3, rel=0.35)
    with pytest.raises(ValueError, match="needs an hf backend"):
        LoRATrainer().train(data=tmp_path / "x.jsonl", out=tmp_path / "v2", lane={"backend": {"kind": "openai"}},
                            init=None, budget=TrainBudget(max_steps=1, max_seconds=1, threads=1))
