"""The scratch-directory scrub (run inside the sandbox after every candidate): sandbox/scrub.py."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from sandbox.scrub import remaining, scrub_dir


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


def _deep(root, levels: int) -> None:
    """A directory tree ``levels`` deep, a file at the bottom (built by fd: its paths exceed PATH_MAX)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(levels):
        os.mkdir("d", dir_fd=fd)
        nxt = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = nxt
    os.close(os.open("f", os.O_WRONLY | os.O_CREAT, dir_fd=fd))
    os.close(fd)


@pytest.fixture
def scratch(tmp_path):
    """A tmpfs directory where there is one (like the sandbox's /tmp; a loaded disk makes 3000 levels slow)."""
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        path = tempfile.mkdtemp(prefix="elm-scrub-", dir="/dev/shm")
        yield Path(path)
        shutil.rmtree(path, ignore_errors=True)
    else:
        yield tmp_path


def test_scrub_removes_a_tree_deeper_than_the_recursion_limit_and_path_max(scratch):
    (scratch / "deep").mkdir()
    _deep(str(scratch / "deep"), 3000)
    (scratch / "wide").mkdir()
    for i in range(1000):
        (scratch / "wide" / str(i)).mkdir()
    scrub_dir(str(scratch), [])
    assert os.listdir(scratch) == []


def test_scrub_opens_up_directories_their_owner_locked(tmp_path):
    locked = tmp_path / "locked" / "inner"
    locked.mkdir(parents=True)
    (locked / "note").write_text("x")
    os.chmod(locked, 0o500)  # no write: unlink fails
    os.chmod(tmp_path / "locked", 0o000)  # no read, no search
    scrub_dir(str(tmp_path), [])
    assert _tree(tmp_path) == set()


def test_remaining_names_what_the_scrub_left_and_not_what_it_keeps(tmp_path):
    venv = tmp_path / "project" / ".venv"
    venv.mkdir(parents=True)
    (venv / "module.py").write_text("")
    (tmp_path / "project" / "note").write_text("x")
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    keep = [os.path.normpath(venv)]
    assert sorted(remaining(str(tmp_path), keep)) == sorted(
        os.path.normpath(tmp_path / p) for p in ("project/note", "dir", "file"))
    scrub_dir(str(tmp_path), keep)
    assert remaining(str(tmp_path), keep) == []
    assert remaining(str(tmp_path / "absent"), []) == []


def test_a_directory_that_cannot_be_listed_is_not_reported_clean(tmp_path, monkeypatch):
    # "nothing left" must mean the scrub looked: a transient listing error (ENOMEM, EMFILE) that made
    # the check see an empty directory would let the next candidate see what is in it
    import errno

    (tmp_path / "note").write_text("x")
    listdir = os.scandir

    def failing(path="."):
        if os.fspath(path) == str(tmp_path):
            raise OSError(errno.ENOMEM, "Cannot allocate memory")
        return listdir(path)

    monkeypatch.setattr(os, "scandir", failing)
    scrub_dir(str(tmp_path), [])  # cannot do anything, and says nothing
    (left,) = remaining(str(tmp_path), [])
    assert left.startswith(str(tmp_path)) and "could not be listed" in left and "Cannot allocate memory" in left
    monkeypatch.setattr(os, "scandir", listdir)
    scrub_dir(str(tmp_path), [])
    assert remaining(str(tmp_path), []) == []


def _immutable(path: Path, on: bool) -> bool:
    """chattr +i / -i (root, and a file system that supports it); False when it cannot be done."""
    return shutil.which("chattr") is not None and os.system(f"chattr {'+' if on else '-'}i '{path}' 2>/dev/null") == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for chattr +i")
def test_a_file_the_scrub_cannot_remove_gets_the_slot_replaced():
    """What the scrub leaves is reported, the host replaces the sandbox, and its successor starts clean.

    The process backend (a scratch directory per slot and sandbox, on the host's disk, where the
    test can plant an immutable file the candidate's clean-up cannot remove).
    """
    from elm.sandbox import EnvironmentSpec, SandboxLimits
    from elm.types import EvalRequest, EvalStatus
    from sandbox import make_sandbox

    box = make_sandbox("process", env=EnvironmentSpec("tests.sandbox.toy_env.ToyEnv"),
                       limits=SandboxLimits(timeout_s=10.0), workers=1)
    planted = None
    try:
        scratch = Path(box._scratch[0])
        planted = scratch / "stuck"
        planted.write_text("x")
        if not _immutable(planted, True):
            pytest.skip("chattr +i is not supported here")
        generation = box._slots[0].generation
        listing = "import os\ndef main():\n    return float(len(os.listdir('.')))\n"
        first, = box.evaluate([EvalRequest(1, listing)])
        assert (first.status, first.fitness) == (EvalStatus.OK, 1.0), first  # it saw the planted file
        second, = box.evaluate([EvalRequest(2, listing)])
        assert box._slots[0].generation == generation + 1  # replaced after the first
        assert (second.status, second.fitness) == (EvalStatus.OK, 0.0), second  # in a fresh directory
        assert Path(box._scratch[0]) != scratch
    finally:
        if planted is not None:
            _immutable(planted, False)
        box.close()
