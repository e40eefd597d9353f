"""The ledger: an append-only file of counted failures and applied bans, replayed at start.

What we acknowledge, we keep. Before the reply that confirms a message goes to
rsyslog, every failure that message carried is appended here. The file is
mapped into memory (``mmap``, ``MAP_SHARED``), so an append is a memory copy,
not a system call: the pages belong to the kernel's page cache and survive the
death of the process, SIGKILL included, and the kernel writes them back on its
own. No fsync: a host crash loses the kernel's sets too. ``bench/`` measures
the cost against a ``write(2)`` per message.

The file is sparse and NUL-filled past the last record. A record torn by a
kill in mid-copy lacks its newline: the next open cuts it off, with anything
after it (a copy need not go front to back), before appending again. When the
mapping fills up it is doubled; compaction writes the live state to
``ledger.new``, fsyncs it and renames it over the old file.

Records, one per line, tab-separated::

    F  time  jail  address  key      a counted failure (key: the delivery it came with)
    B  time  jail  address  bantime  a ban the kernel accepted
    U  time  jail  address           an admin's unban
    C  time  -     -                 the messages counted since the last C or P were confirmed
    P  time  -     -                 ... were refused: their keys stay pinned (omprog_ban.deliveries)
    R  time  -     -        key      a pinned key whose resend was confirmed
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

INITIAL = 32 << 20  # bytes mapped at first; sparse on disk until written


@dataclass(frozen=True, slots=True)
class Record:
    """One ledger line, parsed."""

    kind: str
    time: float
    jail: str
    address: str
    extra: str = ""


class Ledger:
    """Append records durably against process death; replay and compact them."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._open()

    def _open(self) -> None:
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        length = os.fstat(self._fd).st_size
        self.size = _whole(self._fd, length)
        # Cut what follows the last whole record and map zeros after it: a record
        # torn by a kill in mid-copy is dropped (its message had no OK yet, so
        # rsyslog resends it), never closed off into a record with a cut key,
        # and bytes a torn copy left further on can never join a later record.
        os.ftruncate(self._fd, self.size)
        length = max(length, INITIAL)
        os.ftruncate(self._fd, length)
        self._map = mmap.mmap(self._fd, length)

    def append(self, records: list[Record]) -> None:
        """Copy ``records`` into the mapping; they outlive this process."""
        if records:
            self.append_bytes("".join(_line(record) for record in records).encode())

    def append_bytes(self, data: bytes) -> None:
        """Copy raw record bytes into the mapping, doubling it when full."""
        end = self.size + len(data)
        if end > len(self._map):
            self._grow(end)
        self._map[self.size:end] = data
        self.size = end

    def _grow(self, needed: int) -> None:
        length = len(self._map)
        while length < needed:
            length *= 2
        os.ftruncate(self._fd, length)
        self._map.resize(length)

    def replay(self) -> Iterator[Record]:
        """Yield every whole, well-formed record; a torn one is skipped."""
        for raw in self._map[: self.size].split(b"\n"):
            record = _parse(raw + b"\n") if raw else None
            if record is not None:
                yield record

    def compact_bytes(self, data: bytes) -> None:
        """Replace the file with the raw record bytes ``data`` atomically (write, fsync, rename)."""
        fresh = self.path.with_name(self.path.name + ".new")
        with open(fresh, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(fresh, self.path)
        self.close()
        self._open()

    def close(self) -> None:
        """Unmap and close; the kernel writes the pages back."""
        self._map.close()
        os.close(self._fd)


def read(path: Path) -> list[Record]:
    """Return the whole records of a ledger file without touching it (the live one too: tests, benchmarks)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return []
    try:
        length = os.fstat(fd).st_size
        end = _whole(fd, length)
        data = os.pread(fd, end, 0) if end else b""
    finally:
        os.close(fd)
    return [record for raw in data.split(b"\n") if raw and (record := _parse(raw + b"\n")) is not None]


def _whole(fd: int, length: int) -> int:
    """Return where the whole records of a ledger file end: at the last newline before its first NUL."""
    if not length:
        return 0
    with mmap.mmap(fd, length, access=mmap.ACCESS_READ) as view:
        end = view.find(b"\0")
        return view.rfind(b"\n", 0, length if end < 0 else end) + 1


def failure_line(moment: float, jail: str, address: str, key: str) -> str:
    """Return the text of an F record, as ``Record("F", moment, jail, address, key)`` is written."""
    if moment != _STAMP[0]:  # live, the messages of a batch share the time they were read
        _STAMP[:] = [moment, f"{moment:.6f}"]
    stamp = _STAMP[1]
    return f"F\t{stamp}\t{jail}\t{address}\t{key}\n" if key else f"F\t{stamp}\t{jail}\t{address}\n"


def ban_line(moment: float, jail: str, address: str, bantime: float) -> str:
    """Return the text of a B record, as ``Record("B", moment, jail, address, f"{bantime:g}")`` is written."""
    if moment != _STAMP[0]:  # the bans of a flush mostly share their line's time
        _STAMP[:] = [moment, f"{moment:.6f}"]
    return f"B\t{_STAMP[1]}\t{jail}\t{address}\t{bantime:g}\n"


def mark_line(moment: float, kind: str, key: str = "") -> str:
    """Return the text of a delivery record: a C or P marker, or an R record with its key."""
    return f"{kind}\t{moment:.6f}\t-\t-\t{key}\n" if key else f"{kind}\t{moment:.6f}\t-\t-\n"


KINDS = ("F", "B", "U", "C", "P", "R")
_STAMP: list = [None, ""]  # the last moment written, and its text: formatting a float is dear


def _line(record: Record) -> str:
    fields = [record.kind, f"{record.time:.6f}", record.jail, record.address]
    if record.extra:
        fields.append(record.extra)
    return "\t".join(fields) + "\n"


def _parse(raw: bytes) -> Record | None:
    if not raw.endswith(b"\n"):
        return None
    parts = raw.decode("utf-8", "replace").rstrip("\n").split("\t")
    if len(parts) < 4 or parts[0] not in KINDS:
        return None
    try:
        moment = float(parts[1])
    except ValueError:
        return None
    return Record(parts[0], moment, parts[2], parts[3], parts[4] if len(parts) > 4 else "")
