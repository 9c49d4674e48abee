"""Emptying a scratch directory after every candidate (``/tmp`` inside the sandbox), at any depth.

Standard library only: the fork server imports it inside the sandbox.
"""

from __future__ import annotations

import os
import stat


def scrub_dir(directory: str, keep: list[str]) -> None:
    """Delete everything under ``directory`` except mount points and the kept paths.

    ``keep`` holds normalised absolute paths (read-only binds such as a venv under ``/tmp``).
    A directory on the way to a kept path is not deleted but scrubbed in turn: inside the
    sandbox it is a writable skeleton directory of the tmpfs (``/tmp/<project>`` for a venv at
    ``/tmp/<project>/.venv``), and a file a candidate leaves there must not reach the next one.
    Errors are ignored: what cannot be removed is found by :func:`remaining`. Trees of any
    depth are removed without recursion (see :func:`_remove_tree`); only the way to a kept
    path, fixed by the configuration, recurses.
    """
    for entry, path, kind, dev in _entries(directory, keep):
        if kind == "unlisted":
            continue
        try:
            if kind == "way":
                scrub_dir(path, keep)
            elif kind == "dir":
                _remove_tree(directory, entry.name, dev)
            else:
                os.unlink(entry.path)
        except OSError:
            pass


def remaining(directory: str, keep: list[str]) -> list[str]:
    """Paths under ``directory`` that :func:`scrub_dir` should have removed but are still there.

    Mount points, kept paths and the directories on the way to them are not counted (their
    contents are, recursively along that way). Empty when the scrub did its job; a non-empty
    answer means the next candidate would see them, so the sandbox is replaced instead. A
    directory that cannot be listed counts as not empty: what is in it is not known.
    """
    left: list[str] = []
    for _, path, kind, _ in _entries(directory, keep):
        left += remaining(path, keep) if kind == "way" else [path]
    return left


def _entries(directory: str, keep: list[str]):
    """(entry, normalised path, kind, st_dev of ``directory``) for what a scrub must deal with.

    kind: ``"way"`` (a directory on the way to a kept path), ``"dir"`` or ``"other"``; kept
    paths and mount points are skipped. An entry that cannot be examined counts as "other". A
    ``directory`` that cannot be listed (e.g. a transient ENOMEM or EMFILE) gives one entry of kind
    ``"unlisted"`` (``entry`` None): an empty answer must mean "nothing there", not "not looked".
    """
    try:
        dev = os.stat(directory).st_dev
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return  # no such scratch directory: nothing to scrub
    except OSError as exc:
        yield None, f"{directory} (could not be listed: {exc.strerror or exc})", "unlisted", None
        return
    for entry in entries:
        path = os.path.normpath(entry.path)
        if path in keep:
            continue
        kind = "other"
        try:
            if entry.is_dir(follow_symlinks=False):
                if entry.stat(follow_symlinks=False).st_dev != dev:
                    continue  # a mount point
                kind = "way" if any(k.startswith(path + "/") for k in keep) else "dir"
        except OSError:
            pass  # vanished or unreadable: unlink is tried, and remaining() counts it
        yield entry, path, kind, dev


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_dir(name: str, parent_fd: int) -> int | None:
    """fd of directory ``name`` in ``parent_fd``; a directory its owner made unreadable is opened up first."""
    for attempt in range(2):
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
        except PermissionError:
            if attempt:
                return None
            try:
                os.chmod(name, 0o700, dir_fd=parent_fd, follow_symlinks=False)
            except (OSError, NotImplementedError):
                return None
        except OSError:
            return None
    return None


def _empty_dir(fd: int, dev: int) -> list[str]:
    """Unlink every non-directory in ``fd``; return the names of its subdirectories on device ``dev``."""
    subdirs: list[str] = []
    try:
        with os.scandir(fd) as it:
            entries = list(it)
    except OSError:
        return subdirs
    opened_up = False
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            if st.st_dev == dev:  # else a mount point: left alone
                subdirs.append(entry.name)
            continue
        try:
            os.unlink(entry.name, dir_fd=fd)
        except PermissionError:
            if not opened_up:  # a directory its owner made read-only
                opened_up = True
                try:
                    os.fchmod(fd, 0o700)
                    os.unlink(entry.name, dir_fd=fd)
                except OSError:
                    pass
        except OSError:
            pass
    return subdirs


def _remove_tree(parent: str, name: str, dev: int) -> None:
    """Remove the directory ``parent/name`` and everything under it, iteratively.

    A candidate can build a tree thousands of levels deep: recursion (``shutil.rmtree``)
    raised RecursionError, paths beyond PATH_MAX fail, and one fd per level would exceed
    RLIMIT_NOFILE. So this walks down by name relative to one open directory fd at a time
    and back up through ``..``; each directory is listed once (the names of its
    subdirectories still to remove are kept, on a stack, not fds). Symlinks are unlinked,
    never followed; mount points (another ``st_dev``) are left. What cannot be removed is
    left for the health check.
    """
    try:
        parent_fd = os.open(parent, _DIR_FLAGS)
    except OSError:
        return
    try:
        # an error part-way leaves the rest of the tree, which the next candidate would see (seen once
        # in a full test run on a loaded machine): a second and third pass continue where it stopped
        for _ in range(3):
            try:
                if _empty_tree(parent_fd, name, dev):
                    os.rmdir(name, dir_fd=parent_fd)
                    return
            except FileNotFoundError:
                return
            except OSError:
                pass
    finally:
        os.close(parent_fd)


def _empty_tree(parent_fd: int, name: str, dev: int) -> bool:
    """Remove what is under ``name`` (see :func:`_remove_tree`); False if it could not be opened or left."""
    fd = _open_dir(name, parent_fd)
    if fd is None:
        return False
    try:
        # levels[i]: (name of the directory at depth i, its subdirectories not yet removed)
        levels: list[tuple[str, list[str]]] = [(name, _empty_dir(fd, dev))]
        while True:
            pending = levels[-1][1]
            if pending:
                sub = pending.pop()
                child = _open_dir(sub, fd)
                if child is not None:
                    os.close(fd)
                    fd = child
                    levels.append((sub, _empty_dir(fd, dev)))
                continue
            done, _ = levels.pop()
            if not levels:
                return True
            up = os.open("..", _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = up
            try:
                os.rmdir(done, dir_fd=fd)
            except OSError:
                pass
    except OSError:
        return False
    finally:
        os.close(fd)
