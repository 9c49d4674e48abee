"""Per-status counts of the seed formats' children on realistic completions (issue 14's before/after).

Each seed format's real operator (diff for CodeGen, FIM for FIM-NeoX, SantaCoder and Refact in
its SPM and PSM orders) runs one batch on fixed parents through the ``hf`` backend with a tiny
random-weight model of that architecture and its real tokenizer (``mutators/standins.py``).
The model really generates (so a prompt longer than the model's context fails as it would on
the real model), then each completion's text is replaced by a *realistic synthetic completion*
for that case: the shapes the audit of issue 14 found in real diff/FIM outputs (a valid hunk
followed by prose, a completion that starts with a newline, a pure insertion under a wrong line
number, a middle that rewrites the start of the suffix, an empty middle, a parent longer than
the context...). Every case has the child a correct operator would build (or None), so besides
the per-status counts the table shows ``ok`` children that are *wrong* (silently misplaced or
duplicated code). A batch whose generation raises counts as ``mutator_error`` for all its
children, as the engine records it: the parent past the context goes in a second batch with a
copy of the first case, to show what it does to the other children of its batch.

    .venv/bin/python -m benchmarks.bench_seed_formats [--json out.json]

Figures are in docs/mutators.md. Runs in about a minute on a loaded 2-core machine.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from elm.types import Parent, TaskContext
from mutators import DiffMutator, FIMMutator
from mutators import standins as tiny
from mutators.backends import Backend, Completion, build_backend, release_backend

TASK = TaskContext(name="toy", description="toy task", entry_point="f", signature="def f(x):")

PARENT = '''import math
{filler}

def f(x):
    """Scale x. (case {case})"""
    y = x * 2
    z = y + 1
    return z


def g(x):
    return f(x) - 1
'''
#: about 5,000 tokens in every seed vocabulary: past the 2,048 of CodeGen, FIM-NeoX and SantaCoder
#: and the 4,096 of Refact
LONG_FILLER = "\nTABLE = [\n" + "".join(f"    ({i}, {i * 7 % 13}, {i * 3 % 11}),  # row {i}\n"
                                         for i in range(400)) + "]\n"


def parent(case: str, long: bool = False) -> str:
    return PARENT.format(case=case, filler=LONG_FILLER if long else "")


def _with(case: str, old: str, new: str, long: bool = False) -> str:
    src = parent(case, long)
    assert old in src, old
    return src.replace(old, new, 1)


def _line(source: str, text: str) -> int:
    """1-based number of the line of ``source`` that equals ``text``."""
    return source.split("\n").index(text) + 1


def diff_cases() -> list[tuple[str, str, str, str | None, bool]]:
    """``(case, parent, completion after <DFF>, intended child or None, truncated)``."""
    out = []
    p = parent("clean")
    n = _line(p, "    z = y + 1")
    out.append(("clean hunk", p, f" @@ -{n - 1},2 +{n - 1},2 @@\n     y = x * 2\n-    z = y + 1\n+    z = y + 3\n",
                _with("clean", "z = y + 1", "z = y + 3"), False))
    p = parent("prose")
    out.append(("hunk then prose", p, f" @@ -{n - 1},2 +{n - 1},2 @@\n     y = x * 2\n-    z = y + 1\n+    z = y - 1\n"
                "\nThis lowers the offset so that the result stays positive.\n",
                _with("prose", "z = y + 1", "z = y - 1"), False))
    p = parent("newline")
    out.append(("leading newline", p, "\n-    z = y + 1\n+    z = y + 5\n", _with("newline", "z = y + 1", "z = y + 5"),
                False))
    p = parent("wrongnum")
    out.append(("wrong line numbers", p, " @@ -40,2 +41,2 @@\n     y = x * 2\n-    z = y + 1\n+    z = y * 4\n",
                _with("wrongnum", "z = y + 1", "z = y * 4"), False))
    p = parent("insert")
    # meant after "y = x * 2" (line n - 1), but the header says line 1: after "import math"
    out.append(("insertion, wrong number", p, " @@ -1,0 +2,1 @@\n+    y = max(y, 0)\n",
                None, False))
    p = parent("insertok")
    out.append(("insertion, right number", p, f" @@ -{n - 1},0 +{n},1 @@\n+    y = max(y, 0)\n",
                _with("insertok", "    y = x * 2\n", "    y = x * 2\n    y = max(y, 0)\n"), False))
    p = parent("cut")
    out.append(("cut at max_new_tokens", p, f" @@ -{n - 1},2 +{n - 1},2 @@\n     y = x * 2\n-    z = y + 1\n+    z = y",
                None, True))
    p = parent("long", long=True)
    m = _line(p, "    z = y + 1")
    out.append(("parent past the context", p, f" @@ -{m},1 +{m},1 @@\n-    z = y + 1\n+    z = y + 2\n",
                _with("long", "z = y + 1", "z = y + 2", long=True), False))
    return out


BODY = "    y = x * 2\n    z = y + 1\n    return z\n"
SUFFIX = "\n\ndef g(x):\n    return f(x) - 1\n"


def fim_cases() -> list[tuple[str, str, str, str | None, bool]]:
    """``(case, parent, middle, intended child or None, truncated)``; the hole is f's body (``spans: body``)."""
    new = "    y = x * 3\n    return y\n"
    out = []
    for case, middle, intended, truncated, long in (
        ("clean middle", new, new, False, False),
        ("middle repeats the whole suffix", new + SUFFIX, new, False, False),
        ("middle rewrites the suffix's start", new + "\n\ndef g(x):\n", new, False, False),
        ("empty middle", "", None, False, False),
        ("cut at max_new_tokens", "    y = x *", None, True, False),
        ("parent past the context", new, new, False, True),
    ):
        p = parent(case, long)
        out.append((case, p, middle, None if intended is None else p.replace(BODY, intended, 1), truncated))
    return out


class ScriptedCompletions(Backend):
    """The real backend generates (errors, token counts and all); the text is replaced by the case's script.

    Attributes not defined here (tokenizer, count_tokens, context_length...) are the wrapped backend's.
    """

    def __init__(self, inner: Backend, script: dict[str, tuple[str, bool]]) -> None:
        self.inner = inner
        self.script = script  # case marker in the prompt -> (completion text, truncated)
        self.label = inner.label
        self.supports_prefill = inner.supports_prefill

    def __getattr__(self, name):
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def generate(self, prompts, *, sampling, seed):
        real = self.inner.generate(prompts, sampling=sampling, seed=seed)
        out = []
        for prompt, c in zip(prompts, real):
            if c.finish == "error":
                out.append(c)
                continue
            [(text, truncated)] = [v for k, v in self.script.items() if f"(case {k})" in prompt]
            out.append(Completion(text=text, tokens_in=c.tokens_in, tokens_out=c.tokens_out, seconds=c.seconds,
                                  latency_s=c.latency_s, finish="length" if truncated else "stop"))
        return out


OPERATORS = (  # (label, tiny model kind, operator class, operator arguments)
    ("diff-codegen-350m", "codegen", DiffMutator, {}),
    ("FIM-NeoX SPM", "neox", FIMMutator, {"format": "fim_neox"}),
    ("SantaCoder PSM", "santacoder", FIMMutator, {"format": "santacoder"}),
    ("Refact SPM", "refact", FIMMutator, {"format": "refact"}),
    ("Refact PSM", "refact", FIMMutator, {"format": "refact_psm"}),
)


def run(root: Path) -> list[dict]:
    rows = []
    for label, kind, cls, args in OPERATORS:
        path = root / kind
        if not path.exists():
            tiny.build(kind, root)
        inner = build_backend({"kind": "hf", "model": str(path), "device": "cpu",
                               **({"trust_remote_code": True} if kind == "refact" else {})})
        cases = diff_cases() if cls is DiffMutator else fim_cases()
        script = {c[1].split("(case ", 1)[1].split(")", 1)[0]: (c[2], c[4]) for c in cases}
        backend = ScriptedCompletions(inner, script)
        extra = {} if cls is DiffMutator else {"spans": {"body": 1.0}}
        op = cls(backend=backend, sampling={"temperature": 0.0, "max_new_tokens": 16}, **args, **extra)
        # the long parent goes in a second batch with a copy of the first case, to show what it does to a batch
        long = [c for c in cases if LONG_FILLER in c[1]]
        batches = [[c for c in cases if c not in long], long + [cases[0]]]
        for b, batch in enumerate(batches, 1):
            groups = [[Parent(id=i, source=c[1], fitness=0.0, descriptor=(0.0,))] for i, c in enumerate(batch)]
            try:
                proposals = op.mutate(parents=groups, task=TASK, seed=0)
                results = [(p.status.value, p.source) for p in proposals]
                error = ""
            except Exception as exc:  # noqa: BLE001 -- what the engine does: the whole batch is mutator_error
                results = [("mutator_error", None)] * len(batch)
                error = f"{type(exc).__name__}: {str(exc)[:120]}"
            for (case, _, _, intended, _), (status, source) in zip(batch, results):
                wrong = status == "ok" and source != intended
                rows.append({"operator": label, "batch": b, "case": case, "status": status, "wrong_ok": wrong,
                             "error": error})
        op.close()
        release_backend(inner)
    return rows


def report(rows: list[dict]) -> None:
    width = max(len(r["case"]) for r in rows)
    current = None
    for r in rows:
        if (r["operator"], r["batch"]) != current:
            if r["operator"] != (current or ("",))[0]:
                print(f"\n{r['operator']}")
            current = (r["operator"], r["batch"])
            print(f"  batch {r['batch']}" + (f" failed: {r['error']}" if r["error"] else ""))
        print(f"    {r['case']:<{width}}  {r['status']}{'  (WRONG child)' if r['wrong_ok'] else ''}")
    print("\nper-status counts (all operators):")
    counts = collections.Counter(r["status"] for r in rows)
    for status, n in sorted(counts.items()):
        print(f"  {status:<20} {n}")
    print(f"  {'ok but wrong':<20} {sum(r['wrong_ok'] for r in rows)}")
    print(f"  {'children':<20} {len(rows)}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", help="also write the rows to this JSON file")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))
    with tempfile.TemporaryDirectory(prefix="elm-seed-formats-") as d:
        rows = run(Path(d))
    report(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
