"""Reading /proc: a process's parent, state, start time and name, its children and descendants.

Shared by the fork server (inside the sandbox: who is left after a candidate), the
janitor (is an owner still the same process?) and the reaper (which zombies are
runsc's). Standard library only.
"""

from __future__ import annotations

import os


def stat_fields(pid: int) -> tuple[str, list[str]] | None:
    """(comm, the fields after it) of /proc/PID/stat, or None if the process is gone.

    The fields after ``comm`` start with field 3 of proc(5): state, ppid, ... (so
    ``fields[19]`` is field 22, starttime). ``comm`` may hold spaces and parentheses:
    it is everything between the first "(" and the last ")".
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    return data[data.find("(") + 1:data.rfind(")")], data[data.rfind(")") + 2:].split()


def proc_stat(pid: int) -> tuple[int, str] | None:
    """(ppid, state) of ``pid`` from /proc, or None if it is gone."""
    st = stat_fields(pid)
    if st is None:
        return None
    try:
        return int(st[1][1]), st[1][0]
    except (IndexError, ValueError):
        return None


def start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (field 22 of stat), or None if it is gone."""
    st = stat_fields(pid)
    try:
        return int(st[1][19]) if st is not None else None
    except (IndexError, ValueError):
        return None


def all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def children(pid: int) -> list[int] | None:
    """Direct children of ``pid`` via /proc/PID/task/*/children; None if unsupported."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    kids: list[int] = []
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids.extend(int(x) for x in f.read().split())
        except FileNotFoundError:
            if not os.path.exists(f"/proc/{pid}/task/{tid}"):
                continue  # thread went away
            return None
        except OSError:
            continue
    return kids


def descendants(root: int) -> list[int]:
    out: list[int] = []
    stack = [root]
    fast = True
    while stack and fast:
        kids = children(stack.pop())
        if kids is None:
            fast = False
            break
        out.extend(kids)
        stack.extend(kids)
    if fast:
        return out
    # Fallback: build the parent map from a full /proc scan.
    parent: dict[int, list[int]] = {}
    for pid in all_pids():
        st = proc_stat(pid)
        if st is not None:
            parent.setdefault(st[0], []).append(pid)
    out, stack = [], [root]
    while stack:
        kids = parent.get(stack.pop(), [])
        out.extend(kids)
        stack.extend(kids)
    return out
