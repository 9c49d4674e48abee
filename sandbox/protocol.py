"""The fork server's wire protocol and limits, shared by the server (inside the sandbox) and the host.

Every message is a 4-byte big-endian length followed by that many bytes of UTF-8
JSON (see ``sandbox/forkserver.py`` for the messages). Standard library only: the
fork server imports it inside the sandbox.
"""

from __future__ import annotations

import json
import os
import struct
import traceback

HEADER = struct.Struct(">I")
#: the candidate's randomness seed, sent to a spare child ahead of its program
SEED = struct.Struct(">Q")
MAX_FRAME = 64 << 20  # largest request the server accepts (a program source)
RESULT_CAP = 64 << 20  # largest raw output (JSON) a candidate may return
MAX_RESPONSE = 256 << 20  # largest answer the host accepts from a server
ERROR_CHARS = 4000  # error text / traceback tail the server keeps per result
#: longest error text in a result (the server's ERROR_CHARS plus room for the status's own words)
ERROR_CAP = ERROR_CHARS + 200
TAIL_CHARS = 2000  # stdout/stderr tail kept per result
EXIT_SETUP_FAILED = 70
#: fds inside a candidate child: 1 and 2 the capped stdout/stderr pipe, 3 the result pipe,
#: 4 (until the program has arrived) the pipe its program comes on
RESULT_FD = 3
CONTROL_FD = 4
#: zygote messages (one SOCK_SEQPACKET datagram each): server -> zygote b"C"/b"S" + the new
#: process's pipe ends (SCM_RIGHTS); zygote -> server "P" (pid, or -errno) and "X" (a child exited)
FORKED = struct.Struct(">ci")
EXITED = struct.Struct(">ciid")


def read_exact(fd: int, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def read_frame(fd: int):
    """Read one length-prefixed JSON message; None at EOF."""
    head = read_exact(fd, HEADER.size)
    if head is None:
        return None
    (length,) = HEADER.unpack(head)
    if length > MAX_FRAME:
        raise ValueError(f"frame of {length} bytes exceeds the {MAX_FRAME}-byte limit")
    body = read_exact(fd, length)
    if body is None:
        return None
    return json.loads(body)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def write_frame(fd: int, obj) -> None:
    body = json.dumps(obj).encode("utf-8")
    write_all(fd, HEADER.pack(len(body)) + body)


def read_blob(fd: int, limit: int) -> bytes | None:
    """Read one length-prefixed byte string (4-byte big-endian length); None at EOF."""
    head = read_exact(fd, HEADER.size)
    if head is None:
        return None
    (length,) = HEADER.unpack(head)
    if length > limit:
        raise ValueError(f"blob of {length} bytes exceeds the {limit}-byte limit")
    return read_exact(fd, length)


def shorten(text: str, limit: int = ERROR_CHARS) -> str:
    if len(text) <= limit:
        return text
    head = limit // 4
    return text[:head] + f"\n... [{len(text) - limit} characters cut] ...\n" + text[-(limit - head):]


def format_exception(exc: BaseException) -> str:
    """Exception type, message and the tail of its traceback, at most ~ERROR_CHARS characters."""
    try:
        only = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    except BaseException:  # noqa: BLE001 - hostile __str__
        only = type(exc).__name__
    only = shorten(only, ERROR_CHARS // 3)
    try:
        frames = "".join(traceback.format_tb(exc.__traceback__))
    except BaseException:  # noqa: BLE001
        frames = ""
    room = ERROR_CHARS - len(only) - 40
    if len(frames) > room:
        frames = "  ...\n" + frames[-room:]
    return f"Traceback (most recent call last):\n{frames}{only}"


def exit_code(exc: SystemExit) -> int:
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    return 1
