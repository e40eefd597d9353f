"""Framing rsyslog's input: bytes on a descriptor -> whole lines -> LogLines.

``LineReader`` reads whole lines from a descriptor (with a timeout, polling a
little first when asked, and cutting over-long lines); ``frame`` turns one line
into a LogLine. A line is one of:

- the shipped template's (``rsyslog.d/10-omprog-ban.conf``): rsyslog's uuid (32
  hex digits), programname, hostname, timereported and msg, separated by TABs,
  each but the uuid escaped as a JSON string's body (so only msg could hold a
  TAB, and rsyslog escapes it too);
- a JSON object with a string ``msg`` (a template of one's own, ``jsonf``), its
  ``uuid`` the key and its other members the meta;
- anything else: plain text (``%msg%``), with no key.
"""

from __future__ import annotations

import json
import json.decoder
import json.scanner
import os
import re
import select
import time
from collections import deque

from omprog_ban.model import LogLine, new

MAX_LINE = 1 << 20  # longer input is cut here; rsyslog's own maximum is smaller
_scan = json.scanner.make_scanner(json.JSONDecoder())  # the C scanner where there is one
_UUID = re.compile(r"[0-9A-Fa-f]{32}").fullmatch  # rsyslog's uuid: 32 hex digits
_scanstring = json.decoder.scanstring


def _unescape(field: str) -> str:
    """Return a field the template escaped as a JSON string's body, decoded; as it is when it is
    not one (never raise)."""
    if "\\" not in field:
        return field
    try:
        text, end = _scanstring(field + '"', 0, False)
    except ValueError:
        return field
    return text if end == len(field) + 1 else field


def frame(raw: bytes, received: float) -> LogLine:
    """Return the LogLine one input line carries; never raise."""
    text = raw.decode("utf-8", "replace").rstrip("\r\n")
    key, meta = None, {}
    if text[32:33] == "\t" and len(parts := text.split("\t", 4)) == 5 and _UUID(parts[0]):
        # The shipped template: rsyslog's uuid, then programname, hostname, timereported
        # and msg, each escaped as in a JSON string (so only the last may hold a tab).
        if "\\" in text:
            parts = [_unescape(part) for part in parts]
        key, program, host, reported, text = parts
        meta = {"uuid": key, "programname": program, "hostname": host, "timereported": reported}
    elif text.startswith("{"):
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
    return new(LogLine, (text, received, key, meta))


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
            if not self._take(os.read(self.fd, 1 << 16)):
                continue
        return self._lines.popleft()

    def _take(self, chunk: bytes) -> bool:
        """Split ``chunk`` into whole lines after the partial one; return False at EOF (empty)."""
        if not chunk:
            self._eof = True
            return False
        pieces = (self._partial + chunk).split(b"\n")
        self._partial = pieces.pop()
        self._lines.extend(piece + b"\n" for piece in pieces)
        return True

    def _ready(self, timeout: float) -> bool:
        """Wait until there is input: poll without sleeping for ``spin`` seconds first, then sleep."""
        if self.spin:
            until = time.perf_counter() + min(self.spin, timeout)
            while time.perf_counter() < until:
                if self._poll.poll(0):
                    return True
        return bool(self._poll.poll(timeout * 1000))

    def fill(self) -> None:
        """Read what the descriptor holds now, never waiting (and at most MAX_LINE more)."""
        taken = 0
        while not self._eof and taken < MAX_LINE and self._poll.poll(0):
            chunk = os.read(self.fd, 1 << 16)
            taken += len(chunk)
            self._take(chunk)

    def peek(self) -> bytes | None:
        """Return the next whole line already read, without taking it; None when there is none."""
        return self._lines[0] if self._lines else None

    def read_plain(self, marks: tuple[bytes, ...], prefix: bytes, limit: int) -> list[bytes]:
        """Return (and take) up to ``limit`` whole lines already read, up to the first one in ``marks``
        or starting with ``prefix``; never wait."""
        lines, taken = self._lines, []
        while lines and len(taken) < limit and lines[0] not in marks and not lines[0].startswith(prefix):
            taken.append(lines.popleft())
        return taken

    def read_until(self, marks: tuple[bytes, ...]) -> list[bytes]:
        """Return (and take) the whole lines already read, up to the first one in ``marks``; never wait."""
        lines, taken = self._lines, []
        while lines and lines[0] not in marks:
            taken.append(lines.popleft())
        return taken
