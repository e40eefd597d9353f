"""Assemble a running omprog-ban: config, state directory, backend, pipeline, upkeep.

Shared by ``run`` (omprog) and ``journal``. The state directory holds the
ledger (see :mod:`omprog_ban.ledger`), a lock so two instances never share it,
``status.json``, rewritten atomically for ``status``, and ``history.sqlite``
(see :mod:`omprog_ban.history`), committed from ``maintain``. With
``metrics_file`` a Prometheus textfile is rewritten there too.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable

from omprog_ban import history, metrics, rails
from omprog_ban.config import Config
from omprog_ban.increment import Escalate
from omprog_ban.ledger import Ledger
from omprog_ban.model import Ban
from omprog_ban.dryrun import DryRun
from omprog_ban.nft import Nft, NftError
from omprog_ban.pipeline import Pipeline

log = logging.getLogger("omprog-ban")
COMPACT_AT = 16 << 20  # bytes of ledger before it is rewritten
# ... or COMPACT_GROWTH times what the last compaction left, when that is more. A
# compaction costs in proportion to the live state (0.6 s with 100,000 bans
# running: 7.7 MB of records). A flood of 30,000 failures a second adds 2.4 MB a
# second, so at 2x the worker would spend about a fifth of its time compacting;
# at 4x, a sixteenth, for a ledger file up to 4x its live state.
COMPACT_GROWTH = 4
LOGGED_BANS = 20  # ban lines logged one by one per upkeep interval
# History rows wait while a flood goes on: more than HISTORY_BURST queued, more
# than at the last commit or check, fewer than HISTORY_HELD (~50 MB of rows at
# most), and the queue caught up (HISTORY_BURST rows or fewer left by a commit)
# under HISTORY_HOLD seconds ago. Bans in the kernel
# come first: writing 100,000 rows takes the worker 0.35-1.5 s. Once bans stop
# arriving, ticks and upkeeps write them HISTORY_CHUNK at a time (1,000 rows:
# ~3 ms, measured beside 100,000 stored), about 4,000 rows a second; only at
# HISTORY_HELD, or at the end, is the whole queue written at once.
HISTORY_BURST = 5_000
HISTORY_TICK = 200  # rows that make ``tick`` commit before the next upkeep: ~1 ms, never one long pause
HISTORY_CHUNK = 1_000
HISTORY_HELD = 200_000
HISTORY_HOLD = 30.0


class LockedError(Exception):
    """Another omprog-ban holds the state directory."""


class Runtime:
    """A pipeline with its backend, ledger and periodic upkeep.

    ``backend`` defaults to the real nft table (or a DryRun with ``dry_run``);
    ``clock`` to ``time.time``; ``metrics_file`` to None (no metrics written).
    """

    def __init__(self, config: Config, dry_run: bool = False, backend: Any = None,
                 clock: Callable[[], float] = time.time, lock_wait: float = 10.0,
                 metrics_file: str | Path | None = None,
                 own_addresses: Callable[[], tuple] = rails.local_addresses) -> None:
        self.config = config
        self.clock = clock
        self.state_dir = Path(config.state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._lock = _lock(self.state_dir / ("dry-run.lock" if dry_run else "lock"), lock_wait)
        self.backend = backend if backend is not None else (DryRun() if dry_run else Nft(config.table))
        ledger = Ledger(self.state_dir / ("dry-run.ledger" if dry_run else "ledger"))
        self.history = history.open_history(self.state_dir / (("dry-run." if dry_run else "") + history.FILE),
                                            config.history_retention)
        self.latency = metrics.Histogram()
        self.metrics_file = Path(metrics_file) if metrics_file else None
        self.own_addresses = own_addresses
        self.timed = metrics.Timed(self.backend, self.latency)
        self.pipeline = Pipeline(config, self.timed, ledger, on_ban=self._banned,
                                 adjust=Escalate(config.jails, self.history.earlier, config.history_retention),
                                 repair=self.repair, own_addresses=own_addresses())
        self._addresses_checked = clock()
        self.ledger = ledger
        self.setup_errors = 0  # table or set creation refused (ban refusals are counted by ``timed``)
        self.restores = 0
        self._logged = self._unlogged = 0
        self._history_queued, self._history_written = 0, clock()
        self._compact_at = COMPACT_AT  # ledger bytes that trigger the next compaction

    def start(self) -> None:
        """Create the table and sets, restore state, apply owed bans; raise NftError if nft refuses."""
        self.backend.ensure(self.config.jails.values(), self.config.max_set_size, self.config.blocklist)
        if isinstance(self.backend, DryRun):  # a dry run's "kernel" is what its ledger shows applied
            self.backend.remember(self.ledger.replay(), self.clock())
        self.pipeline.restore(self.clock())
        self._flush()
        self._compact_at = max(COMPACT_AT, COMPACT_GROWTH * self.ledger.size)

    def maintain(self, now: float) -> None:
        """Between messages: restore a vanished table, expire state, compact, publish status."""
        if self._unlogged:
            log.info("%d more bans since the last upkeep, not logged one by one (omprog-ban list, report)", self._unlogged)
        self._logged = self._unlogged = 0
        if now - self._addresses_checked > 60:  # the host's own addresses may change (DHCP, SLAAC)
            self._addresses_checked = now
            self.pipeline.own_addresses = self.own_addresses()
            self.pipeline.tracker.protect(self.pipeline.protected())
        self.repair(self.pipeline.pending, now)
        self._flush()
        self.pipeline.tracker.expire(now)
        self.pipeline.subnets.expire(now)
        if self.ledger.size > self._compact_at:
            self.pipeline.compact(now)
            self._compact_at = max(COMPACT_AT, COMPACT_GROWTH * self.ledger.size)  # live state alone may be large
        self.write_status(now)
        self._publish(now)

    def repair(self, owed: list[Ban], now: float | None = None) -> bool:
        """Restore a vanished table (a flushed ruleset) and set the pending bans to ``owed``
        and every other ban running at ``now`` (default: the clock's); return whether it
        was gone and is back."""
        try:
            if self.backend.exists():
                return False
            log.warning("table inet %s is gone (ruleset flushed?): restoring it and every active ban", self.config.table)
            self.backend.ensure(self.config.jails.values(), self.config.max_set_size, self.config.blocklist)
        except NftError as error:
            self.setup_errors += 1
            log.error("nft: %s", error)
            return False
        held = {(ban.jail, ban.address) for ban in owed}
        self.pipeline.pending = [*owed, *(ban for ban in self.pipeline.active(self.clock() if now is None else now)
                                         if (ban.jail, ban.address) not in held)]
        self.restores += 1
        return True

    def _flush(self) -> None:
        try:
            self.pipeline.flush()
        except NftError as error:
            log.error("nft refused owed bans, will retry: %s", error)

    @property
    def nft_errors(self) -> int:
        """Return how many nft transactions failed: bans from any caller, and table set-ups."""
        return self.timed.refused + self.setup_errors

    def _banned(self, ban: Ban) -> None:
        # One line per ban, up to LOGGED_BANS per upkeep interval; then a count in the
        # next upkeep: a flood must not turn into a flood of log lines.
        if self._logged < LOGGED_BANS:
            self._logged += 1
            log.info("ban %s in jail %s for %gs (%s)", ban.address, ban.jail, ban.bantime, ban.reason)
        else:
            self._unlogged += 1
        if ban.reason != "restored":  # a re-applied ban is already in the history
            self.history.record(ban)

    def tick(self, now: float) -> None:
        """Between messages, several times a second: commit the history's rows once HISTORY_TICK
        are queued, HISTORY_CHUNK at most, so that no upkeep holds a ban up for long (a flood's
        rows still wait, see _publish)."""
        if len(self.history.queued) >= HISTORY_TICK:
            self._publish(now)

    def _publish(self, now: float, final: bool = False) -> None:
        """Commit the oldest HISTORY_CHUNK queued history rows (none while a flood holds them,
        see HISTORY_BURST; all when ``final`` or at HISTORY_HELD) and rewrite the metrics file;
        log, never raise."""
        queued = len(self.history.queued)
        held = (not final and HISTORY_BURST < queued < HISTORY_HELD and queued > self._history_queued
                and now - self._history_written < HISTORY_HOLD)
        try:
            if not held:
                self.history.commit(now, None if final or queued >= HISTORY_HELD else HISTORY_CHUNK)
                if len(self.history.queued) <= HISTORY_BURST:  # caught up: the next flood may hold rows again
                    self._history_written = now
        except sqlite3.Error as error:
            log.error("history: cannot commit %d row(s), will retry: %s", len(self.history.queued), error)
        self._history_queued = len(self.history.queued)
        if self.metrics_file is not None:
            tracked = {name: self.pipeline.tracker.tracked(name) for name in self.pipeline.counters}
            text = metrics.render(self.pipeline.counters, tracked, self.nft_errors, self.restores, self.latency,
                                  len(self.pipeline.deliveries.pinned))
            try:
                metrics.write(self.metrics_file, text)
            except OSError as error:
                log.error("metrics: cannot write %s: %s", self.metrics_file, error)

    def write_status(self, now: float) -> None:
        """Write the counters to status.json (write, then rename)."""
        jails = {}
        for name, counters in self.pipeline.counters.items():
            jails[name] = {**counters.__dict__, "tracked": self.pipeline.tracker.tracked(name)}
        shields = self.pipeline.shields
        status = {"time": now, "pid": os.getpid(), "nft_errors": self.nft_errors, "restores": self.restores,
                  "pinned": len(self.pipeline.deliveries.pinned),
                  "shields": {"up": shields.up, "raised": shields.raised, "rate": shields.rate, "factor": shields.strict},
                  "jails": jails}
        fresh = self.state_dir / "status.json.new"
        fresh.write_text(json.dumps(status, indent=1))
        os.replace(fresh, self.state_dir / "status.json")

    def close(self) -> None:
        """Apply bans still pending (a transaction cut short), write final status, history and
        metrics; release the state directory. What nft still refuses stays owed in the ledger."""
        self._flush()
        now = self.clock()
        self.write_status(now)
        self._publish(now, final=True)
        self.history.close()
        self.ledger.close()
        os.close(self._lock)


def _lock(path: Path, wait: float) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise LockedError(f"another omprog-ban holds {path}")
            time.sleep(0.1)
