"""The fork server's scratch-directory scrub (run inside the sandbox after every candidate)."""

from __future__ import annotations

import os

from sandbox.forkserver import scrub_dir


def _tree(root) -> set[str]:
    return {os.path.relpath(os.path.join(d, n), root) for d, dirs, files in os.walk(root) for n in dirs + files}


def test_scrub_empties_the_scratch_dir(tmp_path):
    (tmp_path / "left" / "behind").mkdir(parents=True)
    (tmp_path / "left" / "behind" / "note").write_text("for the next candidate")
    (tmp_path / ".hidden").write_text("x")
    os.symlink("/etc/passwd", tmp_path / "link")
    scrub_dir(str(tmp_path), [])
    assert _tree(tmp_path) == set()
    assert os.path.exists("/etc/passwd")  # a symlink is removed, not followed


def test_scrub_keeps_binds_and_scrubs_the_directories_on_the_way_to_them(tmp_path):
    # A venv bound at /tmp/<project>/.venv: /tmp/<project> is a writable skeleton directory inside
    # the sandbox; what a candidate leaves there must go, the bind (and the way to it) must stay.
    venv = tmp_path / "project" / ".venv"
    (venv / "lib").mkdir(parents=True)
    (venv / "lib" / "module.py").write_text("")
    (tmp_path / "project" / "big.bin").write_bytes(b"x" * 10)
    (tmp_path / "project" / "left").mkdir()
    (tmp_path / "project" / "left" / "note").write_text("for the next candidate")
    (tmp_path / "elsewhere").mkdir()
    scrub_dir(str(tmp_path), [os.path.normpath(venv)])
    assert _tree(tmp_path) == {"project", "project/.venv", "project/.venv/lib", "project/.venv/lib/module.py"}


def test_scrub_of_a_missing_directory_is_a_no_op(tmp_path):
    scrub_dir(str(tmp_path / "absent"), [])
