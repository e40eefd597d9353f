"""rsyslog's omprog protocol: ``OK`` once ready, then exactly one reply line per message.

A message is one line on stdin: the plain log line (imfile, ``%msg%``) or a JSON
object from the shipped template (``msg`` plus ``uuid`` and other properties).
The reply is ``OK`` once the failures it carried are in the ledger and the bans
it triggered are in the kernel; an nft failure replies with an error line, which
makes rsyslog suspend the action and resend the message. A line that matches
nothing, or is malformed, is still answered ``OK``. EOF or SIGTERM ends with 0.
"""

from __future__ import annotations

import json
import logging
import os
import select
import time
from typing import Callable, TextIO

from omprog_ban.model import LogLine
from omprog_ban.nft import NftError

log = logging.getLogger("omprog-ban")
MAX_LINE = 1 << 20  # longer input is cut here; rsyslog's own maximum is smaller


def frame(raw: bytes, received: float) -> LogLine:
    """Return the LogLine one input line carries; never raise."""
    text = raw.decode("utf-8", "replace").rstrip("\r\n")
    key, meta = None, {}
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("msg"), str):
            text = data["msg"]
            key = data.get("uuid") if isinstance(data.get("uuid"), str) and data.get("uuid") else None
            meta = {name: value for name, value in data.items() if isinstance(value, str) and name != "msg"}
    if text.startswith(" "):  # rsyslog's %msg% keeps the space after the tag's colon
        text = text[1:]
    return LogLine(text=text, received=received, key=key, meta=meta)


class LineReader:
    """Read whole lines from a descriptor, with a timeout, without stdio buffering surprises."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buffer = b""
        self._eof = False

    def readline(self, timeout: float) -> bytes | None:
        """Return the next line (with newline), b"" at EOF, or None when ``timeout`` passed."""
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0 or len(self._buffer) >= MAX_LINE:
                cut = end + 1 if end >= 0 else MAX_LINE
                line, self._buffer = self._buffer[:cut], self._buffer[cut:]
                return line
            if self._eof:
                line, self._buffer = self._buffer, b""
                return line
            ready, _, _ = select.select([self.fd], [], [], timeout)
            if not ready:
                return None
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                self._eof = True
            self._buffer += chunk


def serve(
    handle: Callable[[LogLine], object],
    maintain: Callable[[float], None],
    stdin_fd: int,
    stdout: TextIO,
    clock: Callable[[], float] = time.time,
    interval: float = 2.0,
) -> int:
    """Answer rsyslog until EOF: ``OK`` or an error line per message; return the exit code.

    ``handle`` processes one LogLine (raising NftError when the kernel refused a
    ban); ``maintain`` runs between messages at least every ``interval`` seconds.
    """
    reader = LineReader(stdin_fd)
    stdout.write("OK\n")
    stdout.flush()
    next_maintenance = clock() + interval
    skipping = False
    while True:
        raw = reader.readline(max(0.0, next_maintenance - clock()))
        now = clock()
        if now >= next_maintenance:
            maintain(now)
            next_maintenance = now + interval
        if raw is None:
            continue
        if raw == b"":
            return 0
        if skipping:  # the tail of an over-long line: it was answered with its head
            skipping = not raw.endswith(b"\n")
            continue
        skipping = not raw.endswith(b"\n") and len(raw) >= MAX_LINE
        stdout.write(_reply(handle, frame(raw, now)) + "\n")
        stdout.flush()


def _reply(handle: Callable[[LogLine], object], line: LogLine) -> str:
    try:
        handle(line)
    except NftError as error:
        log.error("nft refused a ban, rsyslog will resend the message: %s", error)
        return "nft error: " + " ".join(str(error).split())[:400]
    except Exception:  # a bug must not kill the pipe; the line is answered and logged
        log.exception("could not process a line; answered OK: %r", line.text[:200])
    return "OK"
