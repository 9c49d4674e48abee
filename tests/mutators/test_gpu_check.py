"""benchmarks/gpu_check.py at tiny sizes on CPU: the one-shot GPU check runs end to end and writes its
JSON and log, through the real operators and the hf backend, without importing Ray (run as a
subprocess: benchmarks are never imported by tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_check_tiny_on_cpu(tmp_path):
    # the diff path (CodeGen) and the remote-code FIM path in both orders with equal-length batching (Refact)
    cmd = [sys.executable, "-m", "benchmarks.gpu_check", "--tiny", "--device", "cpu", "--out", str(tmp_path),
           "--models", "codegen", "refact", "--batches", "2", "--tokens", "4"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=280,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    log = (tmp_path / "gpu_check.log").read_text()
    assert report["heavy_modules_imported"] == []  # no Ray, Hydra, OmegaConf or vLLM on the GPU machine
    codegen, refact = report["models"]["codegen"], report["models"]["refact"]
    assert codegen["model_class"] == "CodeGenForCausalLM" and codegen["context_length"] == 2048
    assert refact["model_class"] == "TinyRefactForCausalLM" and refact["batching"] == "equal_length"
    rows = codegen["operators"] + refact["operators"]
    assert [(r["operator"], r["batch"]) for r in rows] == [("diff", 2), ("FIM SPM", 2), ("FIM PSM", 2)]
    assert [r["format"] for r in refact["operators"]] == ["refact", "refact:psm"]
    for r in rows:
        assert sum(r["engine"]["statuses"].values()) == 2 and r["engine"]["tokens_out"] > 0
        assert r["engine"]["tokens_per_s"] > 0 and r["bare"]["tokens_per_s"] > 0 and r["ratio"] > 0
        assert 100 < r["prompt_tokens_max"] <= 4096 - 4  # the real seed programs, within the context
    assert "ratio" in log and "heavy modules imported: none" in log
