"""The ban history: every ban, kept in SQLite for reports and repeat offenders.

``history.sqlite`` in the state directory holds one row per ban: time, jail,
address, bantime, reason and the failures that triggered it. It is a record,
not a truth: who is banned right now is what the kernel's sets hold, and what
a restart must re-apply is in the ledger. So writes are cheap rather than
durable: ``record`` only queues a row in memory, and ``commit`` (from the
runtime's ticks and upkeeps, a chunk at a time, and at ``close``) writes the
oldest rows in one transaction; a flood of bans holds the rows back for up to
30 s, until the bans stop coming (``runtime.HISTORY_BURST``). A crash loses at
most the rows queued since the last commit, never a ban. WAL mode lets
``report`` read while ``run`` writes.

Rows older than ``retention`` are deleted by a prune that runs at start and
then at most every ``prune_every`` seconds, so the file never grows without
bound. An index on (jail, address, time) makes the repeat-offender question
("how many bans did ADDRESS get in JAIL since T?") one index range read; a batch
of bans asks it for all its addresses in one query.
"""

from __future__ import annotations

import ipaddress
import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from omprog_ban.model import Ban, text

FILE = "history.sqlite"
MAX_QUEUED = 100_000  # rows kept while commits fail (a full disk); the oldest go first
EARLIER_CHUNK = 500  # addresses per query of ``earlier`` (SQLite's limit on parameters is far above)
log = logging.getLogger("omprog-ban")
SCHEMA = """
CREATE TABLE IF NOT EXISTS bans (
    time REAL NOT NULL,
    jail TEXT NOT NULL,
    address TEXT NOT NULL,
    bantime REAL NOT NULL,
    failures INTEGER NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS bans_by_offender ON bans (jail, address, time);
CREATE INDEX IF NOT EXISTS bans_by_time ON bans (time);
"""


@dataclass(frozen=True, slots=True)
class Offender:
    """One address's bans in a report: how many, first and last, in which jails."""

    address: str
    bans: int
    first: float
    last: float
    jails: tuple[str, ...]

    @property
    def interval(self) -> float | None:
        """Return the mean seconds between its bans; None for a single ban."""
        return (self.last - self.first) / (self.bans - 1) if self.bans > 1 else None


@dataclass(frozen=True, slots=True)
class JailTotal:
    """One jail's bans in a report: how many, of how many distinct addresses."""

    jail: str
    bans: int
    addresses: int


class History:
    """Queue ban rows, commit them in batches, prune by age; answer counts and reports.

    ``path`` is the SQLite file (created with its directory unless ``read_only``);
    ``retention`` is in seconds. ``read_only`` opens for queries only (``report``);
    the file must then exist. ``db`` is the sqlite3 connection.
    """

    def __init__(self, path: str | Path, retention: float = 90 * 86400, prune_every: float = 300.0,
                 read_only: bool = False, timeout: float = 5.0) -> None:
        self.path = Path(path)
        self.retention = retention
        self.prune_every = prune_every
        self.queued: list[tuple[float, str, str, float, int, str]] = []
        # The queued rows' times by (jail, address), for ``earlier``: built as far as
        # ``_indexed`` only when it is asked (a jail without bantime_increment never
        # asks). A scan of the queue per ban made a flood of bans quadratic.
        self._waiting: dict[tuple[str, str], list[float]] = {}
        self._indexed = 0
        self._next_prune = 0.0
        if read_only:
            self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=timeout)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=timeout)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # WAL: no fsync per commit; a record, not a truth
        with self.db:
            self.db.executescript(SCHEMA)

    def record(self, ban: Ban) -> None:
        """Queue one row for ``ban``; nothing touches the disk until ``commit``."""
        self.queued.append((ban.time, ban.jail, _text(ban.address), ban.bantime, ban.failures, ban.reason))

    def commit(self, now: float, limit: int | None = None) -> int:
        """Write the queued rows (the oldest ``limit`` of them, all when None) in one transaction,
        prune when due; return rows written."""
        rows, self.queued = (self.queued, []) if limit is None else (self.queued[:limit], self.queued[limit:])
        self._unindex(rows)
        if rows:
            try:
                with self.db:
                    self.db.executemany("INSERT INTO bans VALUES (?, ?, ?, ?, ?, ?)", rows)
            except sqlite3.Error:
                self.queued = (rows + self.queued)[-MAX_QUEUED:]  # for the next try (busy, disk full)
                self._waiting, self._indexed = {}, 0  # rebuilt as asked: the queue's order changed
                raise
        if now >= self._next_prune:
            self.prune(now)
        return len(rows)

    def _unindex(self, rows: list[tuple]) -> None:
        """Take the oldest queued ``rows``, leaving the queue, out of ``_waiting``: a chunk of
        1,000 rows costs that many deletions, not a new index of all the rows still queued."""
        if not self.queued:
            self._waiting, self._indexed = {}, 0
            return
        waiting = self._waiting
        for row in rows[:self._indexed]:  # each key's times are oldest first
            where = (row[1], row[2])  # (jail, address)
            times = waiting[where]
            del times[0]
            if not times:
                del waiting[where]
        self._indexed = max(0, self._indexed - len(rows))

    def prune(self, now: float) -> int:
        """Delete rows older than the retention; return how many went."""
        self._next_prune = now + self.prune_every
        with self.db:
            return self.db.execute("DELETE FROM bans WHERE time < ?", (now - self.retention,)).rowcount

    def count(self, jail: str, address: Any, since: float) -> int:
        """Return how many bans ``address`` got in ``jail`` at or after ``since`` (queued rows too)."""
        return self.earlier(jail, [(address, since)])[0]

    def earlier(self, jail: str, asks: Sequence[tuple[Any, float]]) -> list[int]:
        """Return, for each (address, since) of ``asks``, how many bans the address got in
        ``jail`` at or after ``since``, queued rows too: one query per EARLIER_CHUNK addresses.

        On a database error only the queued rows are counted: a repeat offender
        may get a shorter ban, but the ban itself is never held up.
        """
        texts = [_text(address) for address, _ in asks]
        stored: dict[str, list[float]] = {}
        if asks:
            floor = min(since for _, since in asks)
            unique = list(dict.fromkeys(texts))
            try:
                for start in range(0, len(unique), EARLIER_CHUNK):
                    part = unique[start:start + EARLIER_CHUNK]
                    rows = self.db.execute(
                        f"SELECT address, time FROM bans WHERE jail = ? AND address IN ({','.join('?' * len(part))})"
                        " AND time >= ?", (jail, *part, floor))
                    for text, moment in rows:
                        stored.setdefault(text, []).append(moment)
            except sqlite3.Error as error:
                log.error("history: cannot count earlier bans of %d address(es): %s", len(unique), error)
                stored = {}
        waiting = self._waiting
        for row in self.queued[self._indexed:]:  # (time, jail, address, ...): no unpacking, a flood indexes every row
            waiting.setdefault((row[1], row[2]), []).append(row[0])
        self._indexed = len(self.queued)
        counts = []
        for text, (_, since) in zip(texts, asks):  # mostly neither: a flood's addresses are new
            found = stored.get(text)
            count = sum(1 for moment in found if moment >= since) if found else 0
            found = waiting.get((jail, text))
            if found:
                count += sum(1 for moment in found if moment >= since)
            counts.append(count)
        return counts

    def offenders(self, since: float = 0.0, limit: int | None = None) -> list[Offender]:
        """Return addresses by number of bans since ``since`` (most first; ties: latest first)."""
        rows = self.db.execute(
            "SELECT address, COUNT(*), MIN(time), MAX(time), GROUP_CONCAT(DISTINCT jail) FROM bans"
            " WHERE time >= ? GROUP BY address ORDER BY COUNT(*) DESC, MAX(time) DESC, address LIMIT ?",
            (since, -1 if limit is None else limit),
        )
        return [Offender(address, bans, first, last, tuple(sorted(jails.split(","))))
                for address, bans, first, last, jails in rows]

    def jails(self, since: float = 0.0) -> list[JailTotal]:
        """Return each jail's bans and distinct addresses since ``since`` (most bans first)."""
        rows = self.db.execute(
            "SELECT jail, COUNT(*), COUNT(DISTINCT address) FROM bans WHERE time >= ?"
            " GROUP BY jail ORDER BY COUNT(*) DESC, jail", (since,),
        )
        return [JailTotal(*row) for row in rows]

    def totals(self, since: float = 0.0) -> tuple[int, int, float | None, float | None]:
        """Return (bans, distinct addresses, first time, last time) since ``since``."""
        return self.db.execute(
            "SELECT COUNT(*), COUNT(DISTINCT address), MIN(time), MAX(time) FROM bans WHERE time >= ?", (since,)
        ).fetchone()

    def close(self, now: float | None = None) -> None:
        """Commit what is queued (when ``now`` is given) and close the database."""
        try:
            if now is not None and self.queued:
                self.commit(now)
        finally:
            self.db.close()


def _text(address: Any) -> str:
    """Return the row's address: a one-address network is written as the address."""
    if isinstance(address, (ipaddress.IPv4Network, ipaddress.IPv6Network)):  # not getattr: a miss raises inside
        return str(address.network_address) if address.num_addresses == 1 else text(address)
    return text(address)


def open_history(path: str | Path, retention: float) -> History:
    """Return the History at ``path``; a file SQLite cannot read is moved aside and started afresh.

    The history is only a record: losing it must not stop bans.
    """
    try:
        return History(path, retention)
    except sqlite3.DatabaseError as error:
        path = Path(path)
        aside = path.with_name(f"{path.name}.broken-{int(time.time())}")
        log.error("history %s is unreadable (%s): moved to %s, starting a new one", path, error, aside)
        path.replace(aside)
        for suffix in ("-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
        return History(path, retention)
