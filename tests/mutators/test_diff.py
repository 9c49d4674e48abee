"""The unified-diff parser/applier against realistic diff-model output: each case has its status and result."""

from __future__ import annotations

import pytest

from mutators.diff import DiffStatus, apply_diff, parse_diff

PARENT = '''import numpy as np


def pack():
    n = 26
    x0, y0 = 0.5, 0.5
    pts = [(x0 + i, y0) for i in range(n)]
    centers = np.array(pts)
    return centers, radii(centers)


def radii(centers):
    return np.full(len(centers), 0.01)
'''


def changed(old: str, new: str, source: str = PARENT) -> str:
    assert old in source
    return source.replace(old, new, 1)


CASES = [
    # (name, diff, truncated, status, expected source or None)
    ("exact hunk", "@@ -5,3 +5,3 @@\n     n = 26\n-    x0, y0 = 0.5, 0.5\n+    x0, y0 = 0.25, 0.75\n"
     "     pts = [(x0 + i, y0) for i in range(n)]\n", False, "applied",
     changed("x0, y0 = 0.5, 0.5", "x0, y0 = 0.25, 0.75")),
    ("wrong line numbers", "@@ -40,3 +41,3 @@\n     n = 26\n-    x0, y0 = 0.5, 0.5\n+    x0, y0 = 0.3, 0.5\n",
     False, "applied", changed("x0, y0 = 0.5, 0.5", "x0, y0 = 0.3, 0.5")),
    ("header without counts", "@@ -6 +6 @@\n-    x0, y0 = 0.5, 0.5\n+    x0, y0 = 0.5, 0.6\n", False, "applied",
     changed("x0, y0 = 0.5, 0.5", "x0, y0 = 0.5, 0.6")),
    ("garbage header, content anchors", "@@ garbage @@\n-    n = 26\n+    n = 26  # circles\n", False, "applied",
     changed("    n = 26\n", "    n = 26  # circles\n")),
    ("file headers and git context", "--- a/program.py\n+++ b/program.py\n@@ -12,2 +12,2 @@ def radii(centers):\n"
     " def radii(centers):\n-    return np.full(len(centers), 0.01)\n+    return np.full(len(centers), 0.02)\n",
     False, "applied", changed("0.01)", "0.02)")),
    ("several hunks", "@@ -5,1 +5,1 @@\n-    n = 26\n+    n = 26\n@@ -6,1 +6,1 @@\n-    x0, y0 = 0.5, 0.5\n"
     "+    x0, y0 = 0.1, 0.1\n@@ -13,1 +13,2 @@\n-    return np.full(len(centers), 0.01)\n"
     "+    r = np.full(len(centers), 0.01)\n+    return r\n", False, "applied",
     changed("    return np.full(len(centers), 0.01)\n", "    r = np.full(len(centers), 0.01)\n    return r\n",
             changed("x0, y0 = 0.5, 0.5", "x0, y0 = 0.1, 0.1"))),
    ("hunks out of order", "@@ -13,1 +13,1 @@\n-    return np.full(len(centers), 0.01)\n+    return 0\n"
     "@@ -6,1 +6,1 @@\n-    x0, y0 = 0.5, 0.5\n+    x0, y0 = 0, 0\n", False, "context_not_found", None),
    ("missing trailing newline", "@@ -5,2 +5,2 @@\n     n = 26\n-    x0, y0 = 0.5, 0.5\n+    x0, y0 = 0.4, 0.5",
     False, "applied", changed("x0, y0 = 0.5, 0.5", "x0, y0 = 0.4, 0.5")),
    ("no newline marker", "@@ -13 +13 @@\n-    return np.full(len(centers), 0.01)\n\\ No newline at end of file\n"
     "+    return np.full(len(centers), 0.015)\n\\ No newline at end of file\n", False, "applied",
     changed("0.01)", "0.015)")),
    ("trailing whitespace drift", "@@ -5,2 +5,2 @@\n     n = 26   \n-    x0, y0 = 0.5, 0.5\t\n"
     "+    x0, y0 = 0.5, 0.45\n", False, "applied", changed("x0, y0 = 0.5, 0.5", "x0, y0 = 0.5, 0.45")),
    ("indentation drift, tabs", "@@ -5,2 +5,3 @@\n \tn = 26\n-\tx0, y0 = 0.5, 0.5\n+\tx0, y0 = 0.5, 0.5\n"
     "+\ty0 = y0 / 2\n", False, "applied", changed("    x0, y0 = 0.5, 0.5\n",
                                                   "    x0, y0 = 0.5, 0.5\n    y0 = y0 / 2\n")),
    ("indentation drift, two spaces", "@@ -5,2 +5,3 @@\n   n = 26\n-  x0, y0 = 0.5, 0.5\n+  if n:\n"
     "+    x0, y0 = 0.5, 0.2\n", False, "applied",
     changed("    x0, y0 = 0.5, 0.5\n", "    if n:\n      x0, y0 = 0.5, 0.2\n")),  # shifted by the drift
    ("inconsistent indentation is not a drift", "@@ -5,2 +5,2 @@\n   n = 26\n-     x0, y0 = 0.5, 0.5\n"
     "+     x0, y0 = 1, 1\n", False, "context_not_found", None),
    ("blank context line without its space", "@@ -9,5 +9,5 @@\n     return centers, radii(centers)\n\n\n"
     "-def radii(centers):\n+def radii(centers, scale=1.0):\n", False, "applied",
     changed("def radii(centers):", "def radii(centers, scale=1.0):")),
    ("context drifted away", "@@ -5,2 +5,2 @@\n     n = 30\n-    x0, y0 = 0.5, 0.5\n+    x0, y0 = 1, 1\n", False,
     "context_not_found", None),
    ("ambiguous headerless one-liner", "-    return centers\n+    return centers * 2\n", False,
     "context_not_found", None),
    ("headerless but unique", "-    n = 26\n+    n = 27\n", False, "applied", changed("n = 26", "n = 27")),
    ("truncated inside the last hunk", "@@ -5,3 +5,3 @@\n     n = 26\n-    x0, y0 = 0.5, 0.5\n+    x0, y0 = 0.",
     True, "malformed", None),
    ("truncated after a complete hunk", "@@ -5,2 +5,2 @@\n     n = 26\n-    x0, y0 = 0.5, 0.5\n"
     "+    x0, y0 = 0.5, 0.9\n", True, "applied", changed("x0, y0 = 0.5, 0.5", "x0, y0 = 0.5, 0.9")),
    ("truncated mid-line, counts match", "@@ -5,2 +5,2 @@\n     n = 26\n-    x0, y0 = 0.5, 0.5\n+    x0, y0 = 0.",
     True, "malformed", None),
    ("prose instead of a diff", "I changed the constants to improve the packing.", False, "malformed", None),
    ("garbage inside a hunk", "@@ -5,2 +5,2 @@\n     n = 26\nthen some prose\n", False, "malformed", None),
    ("empty", "", False, "malformed", None),
    ("only context", "@@ -5,2 +5,2 @@\n     n = 26\n     x0, y0 = 0.5, 0.5\n", False, "no_op", PARENT),
    ("remove and re-add the same line", "@@ -5 +5 @@\n-    n = 26\n+    n = 26\n", False, "no_op", PARENT),
    ("pure insertion with a line number", "@@ -13,0 +14,1 @@\n+# end of program\n", False, "applied",
     PARENT + "# end of program\n"),
    ("pure insertion without a line number", "@@ garbage @@\n+import math\n", False, "malformed", None),
    ("insertion past the end", "@@ -99,0 +99,1 @@\n+x = 1\n", False, "context_not_found", None),
    ("deletion", "@@ -5,2 +5,1 @@\n     n = 26\n-    x0, y0 = 0.5, 0.5\n", False, "applied",
     changed("    x0, y0 = 0.5, 0.5\n", "")),
    # issue 14: tolerant of what models write around a valid diff
    ("hunk then prose", "@@ -5,2 +5,2 @@\n     n = 26\n-    x0, y0 = 0.5, 0.5\n+    x0, y0 = 0.5, 0.9\n"
     "\nThis spreads the circles out.\nMore prose.\n", False, "applied", changed("0.5, 0.5", "0.5, 0.9")),
    ("hunk then the next record", "@@ -5 +5 @@\n-    n = 26\n+    n = 24\n<NME> other.py\n", False, "applied",
     changed("n = 26", "n = 24")),
    ("prose after a cut completion is not a cut hunk", "@@ -5 +5 @@\n-    n = 26\n+    n = 24\nThat is all.",
     True, "applied", changed("n = 26", "n = 24")),
    ("prose after two hunks", "@@ -5 +5 @@\n-    n = 26\n+    n = 25\n@@ -13 +13 @@\n"
     "-    return np.full(len(centers), 0.01)\n+    return np.full(len(centers), 0.02)\nDone.\n", False, "applied",
     changed("0.01)", "0.02)", changed("n = 26", "n = 25"))),
    ("leading newline, headerless", "\n-    n = 26\n+    n = 27\n", False, "applied", changed("n = 26", "n = 27")),
    ("blank line after the header", "@@ -5,2 +5,2 @@\n\n     n = 26\n-    x0, y0 = 0.5, 0.5\n"
     "+    x0, y0 = 0.5, 0.7\n", False, "applied", changed("0.5, 0.5", "0.5, 0.7")),
    ("insertion, header numbers disagree", "@@ -5,0 +30,1 @@\n+    m = 3\n", False, "context_not_found", None),
    ("insertion, wrong number: indented line after an import", "@@ -1,0 +2,1 @@\n+    n = 3\n", False,
     "context_not_found", None),
    ("insertion, wrong number: top-level line inside a function", "@@ -5,0 +6,1 @@\n+SCALE = 2\n", False,
     "context_not_found", None),
    ("insertion, wrong number: body line after a def at its level", "@@ -4,0 +5,1 @@\n+def helper():\n",
     False, "context_not_found", None),
    ("insertion that fits", "@@ -5,0 +6,1 @@\n+    m = 3\n", False, "applied",
     changed("    n = 26\n", "    n = 26\n    m = 3\n")),
    ("insertion of a block", "@@ -2,0 +3,3 @@\n+def helper():\n+    return 1\n+\n", False, "applied",
     changed("import numpy as np\n\n", "import numpy as np\n\ndef helper():\n    return 1\n\n")),
]


@pytest.mark.parametrize("name,diff,truncated,status,expected", CASES, ids=[c[0] for c in CASES])
def test_diff_table(name, diff, truncated, status, expected):
    result = apply_diff(PARENT, diff, truncated=truncated)
    assert result.status == DiffStatus(status), result.detail
    assert result.source == expected
    if status in ("malformed", "context_not_found"):
        assert result.detail  # the reason is recorded


def test_duplicate_context_uses_the_line_number():
    source = "def f():\n    x = 1\n    return x\n\n\ndef g():\n    x = 1\n    return x\n"
    diff = "@@ -7,2 +7,2 @@\n     x = 1\n-    return x\n+    return x + 1\n"
    result = apply_diff(source, diff)
    assert result.status is DiffStatus.APPLIED
    assert result.source == source[: source.rindex("return x")] + "return x + 1\n"


def test_parent_without_final_newline_keeps_it_that_way():
    result = apply_diff("x = 1\ny = 2", "@@ -2 +2 @@\n-y = 2\n+y = 3\n")
    assert result.status is DiffStatus.APPLIED and result.source == "x = 1\ny = 3"


def test_parse_reads_header_numbers():
    [h1, h2] = parse_diff("@@ -1,2 +1,3 @@\n a\n-b\n+c\n+d\n@@ -9 +10 @@\n-z\n+y\n")
    assert (h1.old_start, h1.old_len, h1.new_start, h1.new_len) == (1, 2, 1, 3) and h1.complete
    assert h1.before == ["a", "b"] and h1.after == ["a", "c", "d"]
    assert (h2.old_start, h2.old_len) == (9, 1) and h2.complete


def test_prose_is_cut_and_noted_but_prose_before_any_change_is_malformed():
    result = apply_diff(PARENT, "@@ -5 +5 @@\n-    n = 26\n+    n = 24\nThis is better.\n")
    assert result.status == DiffStatus.APPLIED and "line 4" in result.detail
    # only context before the prose: nothing says the diff was complete
    result = apply_diff(PARENT, "@@ -5 +5 @@\n     n = 26\nThis is better.\n")
    assert result.status == DiffStatus.MALFORMED and "not diff syntax" in result.detail


def test_insertion_offsets_follow_earlier_hunks():
    # the first hunk adds a line, so the insertion's new-side number is one further on
    diff = "@@ -5 +5,2 @@\n     n = 26\n+    m = 1\n@@ -6,0 +8,1 @@\n+    k = 2\n"
    result = apply_diff(PARENT, diff)
    assert result.status == DiffStatus.APPLIED, result.detail
    assert result.source == changed("    n = 26\n    x0, y0 = 0.5, 0.5\n",
                                    "    n = 26\n    m = 1\n    x0, y0 = 0.5, 0.5\n    k = 2\n")
    assert apply_diff(PARENT, diff.replace("+8,1", "+7,1")).status == DiffStatus.APPLIED  # "-l,0 +l,k" style
    assert apply_diff(PARENT, diff.replace("+8,1", "+12,1")).status == DiffStatus.CONTEXT_NOT_FOUND
