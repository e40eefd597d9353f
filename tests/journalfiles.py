"""Real journal files for tests, written by systemd-journal-remote (no journald needed).

``write(directory, entries)`` appends entries to ``directory/NAME.journal`` in one
run of journal-remote; ``Appender`` keeps one journal-remote reading a FIFO, so
entries land in the file while a follower reads it. Entries are dicts of field
-> value, serialised in the journal export format; :func:`entry` fills in the
fields a real syslog-transport entry has.
"""

from __future__ import annotations

import os
import struct
import subprocess
import time
import uuid
from pathlib import Path
from typing import Iterable, Mapping

JOURNAL_REMOTE = "/lib/systemd/systemd-journal-remote"
BOOT_ID = uuid.UUID("6a1f0c3e9b7d4e2f8c5a0b1d2e3f4a5b").hex  # one fake boot: entries order by monotonic time
MONOTONIC_BASE = 1_700_000_000_000_000  # usec subtracted from realtime to make a monotonic clock
_latest = 0.0  # the newest time handed out by default: entries made later never sort earlier


def now() -> float:
    """Return the wall clock, but never earlier than an entry already made with a default time.

    The journal merges files by time: an entry stamped before the follower's
    position is history, even when it lands in a new file later.
    """
    return max(time.time(), _latest + 1e-4)


def _issue(when: float) -> float:
    global _latest
    _latest = max(_latest, when)
    return when


def amps_failure(address: str = "192.0.2.7", reason: str = "auth", client: str = "x") -> str:
    """Return an AMPS 07-0013 disconnect message, as AMPS's syslog output carries it."""
    return f"07-0013 client[{client}]({address}:5) disconnected: {reason}."


def entry(message: str, when: float | None = None, **fields: str) -> dict[str, str]:
    """Return one entry as journald would store a syslog message from amps.service."""
    usec = int((_issue(now()) if when is None else when) * 1e6)
    return {
        "__REALTIME_TIMESTAMP": str(usec),
        "__MONOTONIC_TIMESTAMP": str(usec - MONOTONIC_BASE),
        "_BOOT_ID": BOOT_ID,
        "MESSAGE": message,
        "PRIORITY": "6",
        "SYSLOG_FACILITY": "3",
        "SYSLOG_IDENTIFIER": "amps",
        "SYSLOG_PID": "4242",
        "_PID": "4242",
        "_UID": "996",
        "_GID": "996",
        "_COMM": "ampServer",
        "_EXE": "/opt/amps/bin/ampServer",
        "_SYSTEMD_UNIT": "amps.service",
        "_TRANSPORT": "syslog",
        "_HOSTNAME": "testhost",
        "_SOURCE_REALTIME_TIMESTAMP": str(usec),
        **fields,
    }


def failures(count: int, address: str = "192.0.2.7", start: float | None = None, step: float = 0.01,
             **fields: str) -> list[dict[str, str]]:
    """Return ``count`` AMPS auth failures of ``address``, ``step`` seconds apart."""
    if start is None:
        start = now()
        _issue(start + (count - 1) * step)
    return [entry(amps_failure(address), start + number * step, **fields) for number in range(count)]


def export(entries: Iterable[Mapping[str, str | bytes]]) -> bytes:
    """Return ``entries`` in the journal export format (binary-safe for values with newlines)."""
    out = bytearray()
    for fields in entries:
        for name, value in fields.items():
            data = value.encode() if isinstance(value, str) else bytes(value)
            if b"\n" in data:
                out += name.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
            else:
                out += name.encode() + b"=" + data + b"\n"
        out += b"\n"
    return bytes(out)


def write(directory: Path, entries: Iterable[Mapping[str, str | bytes]], name: str = "test") -> Path:
    """Append ``entries`` to ``directory/NAME.journal`` (created when missing); return its path."""
    path = Path(directory) / f"{name}.journal"
    done = subprocess.run([JOURNAL_REMOTE, f"--output={path}", "-"], input=export(entries), capture_output=True)
    if done.returncode != 0:
        raise RuntimeError(f"journal-remote failed: {done.stderr.decode()}")
    return path


class Appender:
    """A journal-remote fed through a FIFO: ``append`` lands entries in the file at once.

    ``prefix``: a command prefix, e.g. ``["nsenter", "-t", PID, "-m"]`` to write
    into another mount namespace.
    """

    def __init__(self, directory: Path, name: str = "live", prefix: Iterable[str] = (), compress: bool = True) -> None:
        self.path = Path(directory) / f"{name}.journal"
        self.fifo = Path(directory).parent / f".{Path(directory).name}-{name}.fifo"
        if self.fifo.exists():
            self.fifo.unlink()
        os.mkfifo(self.fifo)
        argv = [*prefix, JOURNAL_REMOTE, f"--output={self.path}", f"--compress={'yes' if compress else 'no'}", "-"]
        self.process = subprocess.Popen(f'exec {" ".join(argv)} < {self.fifo}', shell=True,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._fd = os.open(self.fifo, os.O_WRONLY)  # blocks until journal-remote opened its end

    def append(self, entries: Iterable[Mapping[str, str | bytes]]) -> None:
        """Write ``entries``; journal-remote adds each to the file as its blank line arrives."""
        data = export(entries)
        while data:
            data = data[os.write(self._fd, data):]

    def close(self) -> None:
        """End the input and wait for journal-remote to close the file."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            self.process.wait(timeout=10)
            self.fifo.unlink()

    def __enter__(self) -> "Appender":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

