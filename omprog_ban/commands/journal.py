"""Follow the systemd journal (or the journal files in a directory) and ban in nftables.

Only jails with a ``journal`` match are fed, and each counts only the entries
its own match selects; jails without one are left out of this process (a
warning says so). Decisions use each entry's time, so a backlog read late counts
its windows as they happened.

Where reading starts: just after the saved cursor; at the tail when the saved
cursor is not in this journal (wiped, or another machine's: a warning, and the
history is not read); with no saved cursor at all, at the tail when following
and at the head with --once. How the cursor and the ledger make sure that no
ban is lost and no entry counted twice: see omprog_ban.journal.

Exit codes: 0 stopped (SIGTERM, SIGINT) or --once done; 66 journal directory
unreadable; 69 nft unavailable (or refusing bans under --once); 75 state
directory locked; 78 bad config.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import signal
import sys
import time
from typing import Callable

from omprog_ban import cli
from omprog_ban.config import Config, ConfigError
from omprog_ban.journal import CursorFile, Journal, Saved
from omprog_ban.dryrun import DryRun
from omprog_ban.nft import NftError
from omprog_ban.runtime import LockedError, Runtime

NAME = "journal"
HELP = "follow the systemd journal (or journal files) and ban"
log = logging.getLogger("omprog-ban")
UPKEEP = 1.0  # seconds between runtime.maintain() calls
SAVE_EVERY = 1.0  # seconds between cursor writes while entries flow
WAIT = 0.25  # longest wait for the journal: a signal is only seen when sd_journal_wait() returns
RETRY_PAUSE = 1.0  # seconds before an entry whose ban nft refused is tried again
ONCE_ATTEMPTS = 5
BATCH = 1024  # entries counted before their bans go to the kernel in one transaction, at most  # with --once, give up (exit 69) after this many refusals
EX_NOINPUT, EX_TEMPFAIL = 66, 75


def add_arguments(parser) -> None:
    """Add journal's options."""
    parser.add_argument("--directory", metavar="DIR",
                        help="read the journal files in DIR instead of the system journal")
    parser.add_argument("--dry-run", action="store_true",
                        help="decide but never touch nftables; bans go to stdout as JSON lines")
    parser.add_argument("--once", action="store_true", help="process what is there, save the cursor and exit")


class Follower:
    """Feed journal entries to a runtime's pipeline; keep the cursor; run the upkeep.

    ``source`` is a :class:`~omprog_ban.journal.Journal`, ``cursors`` a
    :class:`~omprog_ban.journal.CursorFile` (the scheme is described in
    :mod:`omprog_ban.journal`); the clocks and ``sleep`` are the real ones unless
    a test passes its own. ``runtime.maintain`` runs every ``UPKEEP`` seconds,
    with the time of the entry at hand while a backlog drains (so its windows
    are not expired early) and the wall clock once caught up.
    """

    def __init__(self, runtime: Runtime, source: Journal, cursors: CursorFile, once: bool = False,
                 clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.runtime, self.source, self.cursors, self.once = runtime, source, cursors, once
        self.clock, self.monotonic, self.sleep = clock, monotonic, sleep
        self.done: str | None = None  # cursor of the last entry whose handle() returned
        self.saved: Saved | None = None
        self.saved_at = float("-inf")
        self.latest: float | None = None  # entry time while a backlog drains; None when caught up
        self.stopping = False

    def stop(self, *_args) -> None:
        """Finish the entry at hand, save the cursor and return from ``run`` (a signal handler)."""
        self.stopping = True

    def position(self) -> str:
        """Seek where reading must start (see the module docstring); return where that is."""
        last = self.runtime.pipeline.last_key
        try:
            saved = self.cursors.load()
        except ValueError as error:
            log.warning("%s: starting at the tail of %s", error, self.source.where)
            self.done = self.source.seek_tail()
            return "from the tail"
        if last and (saved is None or last != saved.counted) and self.source.seek(last):
            self.done = last
            return "after the last counted entry"
        if saved is not None:
            if self.source.seek(saved.cursor):
                self.done, self.saved = saved.cursor, saved
                return "after the saved cursor"
            log.warning("the cursor saved in %s is not in %s (journal wiped, or a state directory from another "
                        "machine?): starting at the tail, earlier entries are not read",
                        self.cursors.path, self.source.where)
            self.done = self.source.seek_tail()
            return "from the tail"
        if self.once:
            self.source.seek_head()
            return "from the head (no saved cursor)"
        self.done = self.source.seek_tail()
        return "from the tail (no saved cursor)"

    def run(self) -> int:
        """Follow until stopped (with ``once``: until the journal runs dry); return the exit code."""
        code = 0
        upkeep = self.monotonic() + UPKEEP
        try:
            self._save(force=True)
            batch = 0
            while not self.stopping:
                line = self.source.next()
                if line is not None:
                    if not self._handle(line):
                        code = 0 if self.stopping else cli.EX_UNAVAILABLE
                        break
                    self.latest = line.received
                    batch += 1
                else:
                    self.latest = None
                if line is None or batch >= BATCH:  # drained, or a flood: one nft transaction for the lot
                    batch = 0
                    if not self._apply(self.runtime.pipeline.flush):
                        code = 0 if self.stopping else cli.EX_UNAVAILABLE
                        break
                    # The journal resends nothing (a restart resumes after the last counted
                    # entry): what was counted is settled, so that no restart pins it.
                    self.runtime.pipeline.settle(True)
                self._save()
                if self.monotonic() >= upkeep:
                    self._maintain()
                    upkeep = self.monotonic() + UPKEEP
                if line is None:
                    if self.once:
                        break
                    self.source.wait(max(0.0, min(WAIT, upkeep - self.monotonic())))
        finally:
            self._save(force=True)
        return code

    def _handle(self, line) -> bool:
        """Count one entry (its bans wait for the batch's flush); return False when giving up."""
        if not self._apply(lambda: self.runtime.pipeline.handle(line, defer=True)):
            return False
        self.done = line.key
        return True

    def _apply(self, action: Callable[[], object]) -> bool:
        """Run ``action``, retrying while nft refuses; return False when giving up."""
        attempts = 0
        while True:
            try:
                action()
            except NftError as error:
                attempts += 1
                log.error("nft refused a ban, it will be tried again: %s", error)
                if self.stopping or (self.once and attempts >= ONCE_ATTEMPTS):
                    return False
                self.sleep(RETRY_PAUSE)
                self._maintain()  # restores a vanished table
                continue
            except Exception:  # a bug must not stop the follower; the entry is logged and passed
                log.exception("could not process a journal entry, passed over")
            return True

    def _maintain(self) -> None:
        wall = self.clock()
        self.runtime.maintain(wall if self.latest is None else min(wall, self.latest))

    def _save(self, force: bool = False) -> None:
        if self.done is None or self.runtime.pipeline.pending:  # a cursor never passes an unapplied ban
            return
        saved = Saved(self.done, self.runtime.pipeline.last_key)
        if saved == self.saved or (not force and self.monotonic() - self.saved_at < SAVE_EVERY):
            return
        self.cursors.save(saved)
        self.saved, self.saved_at = saved, self.monotonic()


def journal_config(config: Config) -> Config:
    """Return ``config`` with only the jails the journal feeds, each requiring its own match."""
    fed = {}
    for name, jail in config.jails.items():
        if not jail.journal:
            log.warning("jail %s has no journal match: the journal follower does not feed it", name)
            continue
        for field, value in jail.trusted.items():
            if jail.journal.get(field, value) != value:
                raise ConfigError(f"jails.{name}.trusted.{field}", f"contradicts journal.{field}",
                                  "give the field one value, or drop it from one of the tables")
            if not field.startswith("_"):
                log.warning("jails.%s.trusted.%s can be set by any local sender: only fields that begin "
                            "with _ (_SYSTEMD_UNIT, _EXE, _UID, _TRANSPORT) cannot be forged", name, field)
        fed[name] = dataclasses.replace(jail, trusted={**jail.journal, **jail.trusted})
    if not fed:
        raise ConfigError("jails", "no jail has a journal match",
                          'add journal = { SYSLOG_IDENTIFIER = "..." } to a jail')
    return dataclasses.replace(config, jails=fed)


def main(args) -> int:
    """Follow until SIGTERM (with --once: until the journal runs dry)."""
    config = journal_config(cli.load_config(args))
    backend = DryRun(sys.stdout) if args.dry_run else None
    try:
        runtime = Runtime(config, dry_run=args.dry_run, backend=backend)
    except LockedError as error:
        log.error("%s", error)
        return EX_TEMPFAIL
    try:
        try:
            source = Journal(args.directory, [jail.journal for jail in config.jails.values()])
        except OSError as error:
            log.error("cannot open %s: %s", args.directory or "the system journal", error)
            return EX_NOINPUT
        try:
            return _follow(runtime, source, args)
        finally:
            source.close()
    finally:
        runtime.close()


def _follow(runtime: Runtime, source: Journal, args) -> int:
    try:
        runtime.start()
    except NftError as error:
        log.error("cannot set up table inet %s: %s", runtime.config.table, error)
        return cli.EX_UNAVAILABLE
    cursors = CursorFile(runtime.state_dir / ("dry-run.cursor" if args.dry_run else "cursor"))
    gc.freeze()  # start-up's objects (grammars, config, restored bans) are never scanned again: -2 % a ban in a flood
    follower = Follower(runtime, source, cursors, once=args.once)
    signal.signal(signal.SIGTERM, follower.stop)
    signal.signal(signal.SIGINT, follower.stop)
    start = follower.position()
    jails = runtime.config.jails
    log.info("following %s %s: %d jail(s) %s, table inet %s%s", source.where, start, len(jails), ", ".join(jails),
             runtime.config.table, " (dry run)" if args.dry_run else "")
    return follower.run()
