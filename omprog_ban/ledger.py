"""The ledger: an append-only file of counted failures and applied bans, replayed at start.

What we acknowledge, we keep. Before the reply that confirms a message goes to
rsyslog, every failure that message carried is appended here with one
``write(2)`` on an ``O_APPEND`` descriptor. That survives the death of the
process (SIGKILL included: the data is in the kernel's page cache), costs a few
microseconds (measured in ``bench/``), and needs no fsync; a host crash loses
the kernel's sets too. Compaction writes the live state to ``ledger.new``,
fsyncs it and renames it over the old file.

Records, one per line, tab-separated::

    F  time  jail  address  key      a counted failure (key: the delivery it came with)
    B  time  jail  address  bantime  a ban the kernel accepted
    U  time  jail  address           an admin's unban
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator


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
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.size = os.fstat(self._fd).st_size

    def append(self, records: list[Record]) -> None:
        """Write ``records`` with a single write(2); they outlive this process."""
        if not records:
            return
        data = "".join(_line(record) for record in records).encode()
        written = os.write(self._fd, data)
        while written < len(data):  # a short write only happens on a full disk or a signal
            written += os.write(self._fd, data[written:])
        self.size += len(data)

    def replay(self) -> Iterator[Record]:
        """Yield every whole, well-formed record; a torn last line is skipped."""
        try:
            handle = open(self.path, "rb")
        except FileNotFoundError:
            return
        with handle:
            for raw in handle:
                record = _parse(raw)
                if record is not None:
                    yield record

    def compact(self, records: list[Record]) -> None:
        """Replace the file with ``records`` atomically (write, fsync, rename)."""
        fresh = self.path.with_name(self.path.name + ".new")
        with open(fresh, "wb") as handle:
            handle.write("".join(_line(record) for record in records).encode())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(fresh, self.path)
        os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.size = os.fstat(self._fd).st_size

    def close(self) -> None:
        """Close the descriptor."""
        os.close(self._fd)


def _line(record: Record) -> str:
    fields = [record.kind, f"{record.time:.6f}", record.jail, record.address]
    if record.extra:
        fields.append(record.extra)
    return "\t".join(fields) + "\n"


def _parse(raw: bytes) -> Record | None:
    if not raw.endswith(b"\n"):
        return None
    parts = raw.decode("utf-8", "replace").rstrip("\n").split("\t")
    if len(parts) < 4 or parts[0] not in ("F", "B", "U"):
        return None
    try:
        moment = float(parts[1])
    except ValueError:
        return None
    return Record(parts[0], moment, parts[2], parts[3], parts[4] if len(parts) > 4 else "")
