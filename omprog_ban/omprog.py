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
import json.scanner
import logging
import os
import select
import time
from collections import deque
from typing import Callable

from omprog_ban.model import LogLine
from omprog_ban.nft import NftError

log = logging.getLogger("omprog-ban")
MAX_LINE = 1 << 20  # longer input is cut here; rsyslog's own maximum is smaller
# Relayed, the next line comes from the relay on another CPU: waking a sleeping
# process there costs more than polling a little first (see omprog_ban.relay).
# The relay's turn (answer rsyslog, read its next line, hand it over) takes
# some tens of microseconds.
SPIN = 50e-6
_scan = json.scanner.make_scanner(json.JSONDecoder())  # the C scanner where there is one


def frame(raw: bytes, received: float) -> LogLine:
    """Return the LogLine one input line carries; never raise."""
    text = raw.decode("utf-8", "replace").rstrip("\r\n")
    key, meta = None, {}
    if text.startswith("{"):
        try:
            data, end = _scan(text, 0)  # json.loads without its Python layers; whitespace checked below
            if text[end:].strip(" \t"):
                data = None
        except (ValueError, StopIteration, RecursionError):
            data = None
        if isinstance(data, dict) and isinstance(data.get("msg"), str):
            text = data.pop("msg")
            key = data.get("uuid")
            key = key if isinstance(key, str) and key else None
            meta = data  # the template's other properties (uuid, programname, ...)
    if text.startswith(" "):  # rsyslog's %msg% keeps the space after the tag's colon
        text = text[1:]
    return LogLine(text, received, key, meta)


class LineReader:
    """Read whole lines from a descriptor, with a timeout, without stdio buffering surprises.

    A line longer than MAX_LINE is returned in MAX_LINE pieces, the first piece
    without its newline; ``serve`` answers the first piece and skips the rest.
    """

    def __init__(self, fd: int, spin: float = 0.0) -> None:
        self.fd = fd
        self.spin = spin
        self._poll = select.poll()  # made once: select.select() rebuilds its sets on every call
        self._poll.register(fd, select.POLLIN)
        self._lines: deque[bytes] = deque()
        self._partial = b""
        self._eof = False

    def readline(self, timeout: float) -> bytes | None:
        """Return the next line (with newline), b"" at EOF, or None when ``timeout`` passed."""
        while not self._lines:
            if self._eof:
                line, self._partial = self._partial, b""
                return line
            if len(self._partial) >= MAX_LINE:
                line, self._partial = self._partial[:MAX_LINE], self._partial[MAX_LINE:]
                return line
            if not self._ready(timeout):
                return None
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                self._eof = True
                continue
            pieces = (self._partial + chunk).split(b"\n")
            self._partial = pieces.pop()
            self._lines.extend(piece + b"\n" for piece in pieces)
        return self._lines.popleft()

    def _ready(self, timeout: float) -> bool:
        """Wait until there is input: poll without sleeping for ``spin`` seconds first, then sleep."""
        if self.spin:
            until = time.perf_counter() + min(self.spin, timeout)
            while time.perf_counter() < until:
                if self._poll.poll(0):
                    return True
        return bool(self._poll.poll(timeout * 1000))

    def read_until(self, marks: tuple[bytes, ...]) -> list[bytes]:
        """Return (and take) the whole lines already read, up to the first one in ``marks``; never wait."""
        lines, taken = self._lines, []
        while lines and lines[0] not in marks:
            taken.append(lines.popleft())
        return taken


def serve(
    handle: Callable[..., object],
    flush: Callable[[], None],
    maintain: Callable[[float], None],
    stdin_fd: int,
    stdout_fd: int,
    clock: Callable[[], float] = time.time,
    interval: float = 2.0,
    relayed: bool = False,
    handle_many: Callable[..., object] | None = None,
) -> int:
    """Answer rsyslog until EOF: ``OK`` or an error line per message; return the exit code.

    ``handle(line, defer=...)`` processes one LogLine (raising NftError when the
    kernel refused a ban); ``flush()`` applies deferred bans; ``maintain(now)``
    runs between messages at least every ``interval`` seconds.

    With ``useTransactions="on"`` rsyslog wraps batches in ``BEGIN TRANSACTION``
    and ``COMMIT TRANSACTION``: each message in between is answered
    ``DEFER_COMMIT`` once its failures are in the ledger, and the batch's bans go
    to the kernel in one nft transaction at the commit, which is answered ``OK``
    only after the kernel accepted them.

    ``handle_many(lines, defer=True)``, when given, takes the messages of a
    transaction that are already read in one call (each still answered).

    ``relayed``: the lines come from :mod:`omprog_ban.relay`, which answered
    ``BEGIN TRANSACTION`` and each message inside a transaction itself; only the
    start-up, commits and messages outside a transaction are answered here.
    """
    reader = LineReader(stdin_fd, SPIN if relayed else 0.0)
    _write(stdout_fd, b"OK\n")
    next_maintenance = clock() + interval
    skipping = in_batch = False
    while True:
        raw = reader.readline(max(0.0, next_maintenance - clock()))
        now = clock()
        if now >= next_maintenance and not in_batch:
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
        if raw == BEGIN:
            in_batch, reply = True, "OK"
            if relayed:
                continue
        elif raw == COMMIT:
            in_batch, reply = False, _reply(flush)
        elif in_batch:
            more = reader.read_until(MARKS) if handle_many is not None else []
            if more:
                group = [frame(raw, now), *(frame(line, now) for line in more)]
                reply = _reply(handle_many, group, defer=True)
            else:
                reply = _reply(handle, frame(raw, now), defer=True)
            if relayed:  # answered DEFER_COMMIT already; what went wrong shows at the commit
                continue
            reply = "DEFER_COMMIT" if reply == "OK" else reply
            if more:
                _write(stdout_fd, (reply + "\n").encode() * (1 + len(more)))
                continue
        else:
            reply = _reply(handle, frame(raw, now))
        _write(stdout_fd, b"OK\n" if reply == "OK" else (reply + "\n").encode())


def _write(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


BEGIN, COMMIT = b"BEGIN TRANSACTION\n", b"COMMIT TRANSACTION\n"
MARKS = (BEGIN, COMMIT)


def _reply(action: Callable[..., object], *args, **kwargs) -> str:
    try:
        action(*args, **kwargs)
    except NftError as error:
        log.error("nft refused a ban, rsyslog will resend: %s", error)
        return "nft error: " + " ".join(str(error).split())[:400]
    except Exception:  # a bug must not kill the pipe; the line is answered and logged
        log.exception("could not process a message; answered OK: %r", getattr(args[0], "text", "")[:200] if args else "")
    return "OK"
