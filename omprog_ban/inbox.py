"""The inbox: the messages the relay answered ``OK`` before the worker counted them.

In its fast mode (see :mod:`omprog_ban.relay`) the relay answers a message
``OK`` as soon as its line is copied here: into a shared mapping of a file,
which the page cache keeps through the death of the process, SIGKILL
included, as it keeps the ledger (a copy, not a system call per message).
rsyslog then forgets the message; the worker counts it a moment later, from
the hand-over pipe.

The inbox is a directory of numbered segments of up to SEGMENT lines (files of
CAPACITY bytes, zeros after the last line: a line is never written over). When a
segment is full the relay tells the worker (a marker after the segment's last
line in the pipe) and opens the next one; the worker removes a segment once
its lines are counted (their failures in the ledger) and their bans applied,
or owed (kept pending and retried, as the ledger would restore them).

A worker that starts counts the segments that are left, oldest first, before
its start-up ``OK``. Only messages that carry rsyslog's uuid come here, so a
line counted before a crash is recognised by its key, as a resend is (see
:class:`omprog_ban.pipeline.Pipeline`). The relay opens a segment only once
the one LAG before it is gone: at most (LAG + 1) x SEGMENT lines wait, far
fewer than the keys the pipeline remembers, and a worker that falls behind
slows rsyslog down instead of piling up an inbox.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

SEGMENT = 2048  # lines per segment
CAPACITY = 4 << 20  # bytes per segment (sparse: only what is written takes room)
LONGEST = CAPACITY // 8  # a longer line is not taken (the relay answers it carefully)
LAG = 3  # segments the relay may be ahead of the worker


class Inbox:
    """A directory of segment files: the relay appends, the worker counts and removes."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.number = -1  # the segment being written (the relay's side)
        self.lines = 0  # lines in it so far
        self.size = 0  # bytes in it so far
        self._map: mmap.mmap | None = None

    def path(self, number: int) -> Path:
        """Return the file of segment ``number``."""
        return self.directory / f"{number:012d}.seg"

    def numbers(self) -> list[int]:
        """Return the numbers of the segments on disk, oldest first."""
        found = []
        for entry in os.listdir(self.directory):
            stem, dot, suffix = entry.partition(".")
            if dot and suffix == "seg" and stem.isdigit():
                found.append(int(stem))
        return sorted(found)

    # The relay's side.

    def open(self) -> None:
        """Start a segment after the last one on disk."""
        self.number = max(self.numbers(), default=self.number)
        self._start()

    def _start(self) -> None:
        self.number += 1
        self.lines = self.size = 0
        fd = os.open(self.path(self.number), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, CAPACITY)
            self._map = mmap.mmap(fd, CAPACITY)
        finally:
            os.close(fd)

    @property
    def opened(self) -> bool:
        """Whether a segment is open for writing (``open`` was called)."""
        return self._map is not None

    def add(self, line: bytes) -> bool:
        """Copy one whole line (with its newline) if it fits the segment being written; return whether it did."""
        end = self.size + len(line)
        if self.lines >= SEGMENT or end > CAPACITY:
            return False
        self._map[self.size:end] = line
        self.size = end
        self.lines += 1
        return True

    def keep(self, data: bytes, lines: int) -> None:
        """Copy ``lines`` whole lines (``data``, each with its newline, fitting); they outlive this process."""
        end = self.size + len(data)
        self._map[self.size:end] = data
        self.size = end
        self.lines += lines

    def rotate(self) -> int:
        """Close the segment being written, open the next; return the closed one's number.

        The caller first waits while ``ahead()`` (the worker LAG segments behind).
        """
        finished = self.number
        self.close()
        self._start()
        return finished

    def ahead(self) -> bool:
        """Whether the segment LAG before the next one is still there: the worker is too far behind."""
        return self.path(self.number + 1 - LAG).exists()

    def close(self) -> None:
        """Let go of the segment being written; what it holds stays for the worker."""
        if self._map is not None:
            self._map.close()
            self._map = None

    # The worker's side.

    def pending(self) -> list[tuple[int, list[bytes]]]:
        """Return each segment on disk with its whole lines (each with its newline), oldest first.

        A last line torn by a kill (no newline) was never answered: it is dropped.
        (A JSON line holds no NUL byte: the zeros after the last line end it.)
        """
        segments = []
        for number in self.numbers():
            try:
                data = self.path(number).read_bytes()
            except FileNotFoundError:
                continue
            lines = data.split(b"\0", 1)[0].split(b"\n")
            lines.pop()
            segments.append((number, [line + b"\n" for line in lines if line]))
        return segments

    def drop(self, number: int) -> None:
        """Remove segment ``number``: its lines are counted."""
        try:
            os.unlink(self.path(number))
        except FileNotFoundError:
            pass
