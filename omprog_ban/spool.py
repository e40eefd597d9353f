"""The spool: the messages of a transaction committed before they were counted.

When a whole batch is in hand at its ``COMMIT TRANSACTION``, the worker may
answer ``OK`` before it counts the messages it has not counted yet: it copies
them here first (one ``pwrite``; the page cache keeps them through the death of
the process, SIGKILL included, as it keeps the ledger), answers, counts them,
and empties the spool. rsyslog meanwhile prepares its next batch, so the
counting no longer sits in rsyslog's round trip.

A worker that starts counts what a dead one left here, before anything else.
Only messages that carry rsyslog's uuid are spooled: counting one twice (once
before a kill, once from the spool) is then recognised by its key, as a resend
is (see :class:`omprog_ban.pipeline.Pipeline`).
"""

from __future__ import annotations

import os
from pathlib import Path


class Spool:
    """A file of raw message lines, emptied once they are counted."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)

    def pending(self) -> list[bytes]:
        """Return the whole lines (each with its newline) a dead worker left; a torn last one is dropped."""
        size = os.fstat(self._fd).st_size
        data = os.pread(self._fd, size, 0) if size else b""
        lines = data.split(b"\n")
        lines.pop()  # after the last newline: empty, or a line torn by a kill
        return [line + b"\n" for line in lines if line]

    def keep(self, lines: list[bytes]) -> None:
        """Append ``lines`` (each with its newline) to the spool; they outlive this process."""
        data = memoryview(b"".join(lines))
        while data:
            data = data[os.write(self._fd, data):]

    def clear(self) -> None:
        """Empty the spool: what it held is counted (one ftruncate, so a kill leaves all or nothing)."""
        os.ftruncate(self._fd, 0)

    def close(self) -> None:
        """Close the file; what it holds stays for the next worker."""
        os.close(self._fd)
