"""One message through the stages: grammars -> jails -> engine -> backend, kept durable.

The pipeline is shared by every source (omprog stdin, the journal, replay).
Contract of ``handle``: when it returns, every failure the line carried is in
the ledger and every ban it triggered is in the kernel; when it raises
``NftError`` the failures are in the ledger and the bans wait in ``pending``,
to be applied before anything else on the next call (rsyslog resends the line
after an error reply, and the resend is recognised and not counted twice).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from ipaddress import IPv6Address
from typing import Any, Callable, Iterable

from omprog_ban import applying, rails, recovery
from omprog_ban.config import Config, Jail
from omprog_ban.deliveries import Deliveries
from omprog_ban.engine import Tracker
from omprog_ban.grammars import GRAMMARS
from omprog_ban.ledger import Ledger, failure_line, mark_line
from omprog_ban.model import Ban, LogLine, canonical
from omprog_ban.model import text as text_of
from omprog_ban.rails import Breaker, Shields
from omprog_ban.subnets import Subnets

log = logging.getLogger("omprog-ban")


@dataclass
class Counters:
    """What one jail has seen: for ``status``, metrics and the lost-address warning."""

    lines: int = 0
    candidates: int = 0  # lines holding the grammar's keyword
    parsed: int = 0  # ... that the grammar parsed, address included (a failure or not)
    matched: int = 0  # ... that were a failure
    counted: int = 0
    bans: int = 0
    last_match: float = 0.0
    suppressed: int = 0  # bans the circuit breaker held back
    tripped: bool = False


@dataclass
class Pipeline:
    """Turn LogLines into applied bans. ``backend`` is ``nft.Nft`` or ``dryrun.DryRun``.

    ``log_time``: decide on the log's own timestamps (replay) instead of the time
    the line was received (live); a line without a stamp then takes the time of
    the failure before it (``last_time``, which the caller sets to start with),
    and a LogLine's ``received`` is not read. ``on_ban`` is told of every applied ban.
    ``adjust`` takes the Bans the engine decides from a batch of lines and returns
    them in order, each replaced or itself (repeat offenders get a longer
    bantime), before they are applied; the engine is told the new end.
    ``repair(owed)``, called when nft refuses bans, returns False, or, when the
    table was gone, True once it is back with ``pending`` set to ``owed`` and
    every other running ban (see :mod:`omprog_ban.applying`).
    """

    config: Config
    backend: Any
    ledger: Ledger | None = None
    log_time: bool = False
    on_ban: Callable[[Ban], None] | None = None
    adjust: Callable[[list[Ban]], list[Ban]] | None = None
    repair: Callable[[list[Ban]], bool] | None = None
    tracker: Tracker = field(init=False)
    pending: list[Ban] = field(default_factory=list)
    _counters: dict[str, Counters] = field(init=False)
    own_addresses: tuple = ()
    lines: int = 0
    last_key: str | None = None
    deliveries: Deliveries = field(default_factory=Deliveries)
    last_time: float = 0.0

    def __post_init__(self) -> None:
        jails = self.config.jails.values()
        self.tracker = Tracker({jail.name: jail.policy for jail in jails}, self.protected())
        self._counters = {jail.name: Counters() for jail in jails}
        self.breakers = {jail.name: Breaker(jail.max_bans_per_minute) for jail in jails}
        self.shields = Shields(self.config.shields_rate, self.config.shields_factor)
        self.subnets = Subnets({jail.name: jail.subnet for jail in jails if jail.subnet is not None})
        routes: dict[str, list[Jail]] = {}
        for jail in jails:
            routes.setdefault(jail.grammar, []).append(jail)
        # Per grammar: its keyword scan, its matcher (the compiled regex when it has
        # one; live, without the stamps), its convert, and its jails with their
        # counters, all looked up once.
        self._routes = [(GRAMMARS[name].mentions, GRAMMARS[name].matcher(self.log_time), GRAMMARS[name].convert,
                         [(jail, self._counters[jail.name], jail.filtered) for jail in group])
                        for name, group in routes.items()]

    def protected(self) -> tuple:
        """Return what is never banned: loopback and the like, ``never_ban``, our own addresses."""
        return rails.ALWAYS + self.config.never_ban + tuple(self.own_addresses)

    @property
    def counters(self) -> dict[str, Counters]:
        """Return each jail's counters (every jail sees every line)."""
        for counters in self._counters.values():
            counters.lines = self.lines
        return self._counters

    def handle(self, line: LogLine, defer: bool = False) -> list[Ban]:
        """Count the line's failures durably and apply the bans they trigger.

        ``defer``: leave the bans in ``pending`` for one ``flush`` at the end of a
        batch (an rsyslog transaction, a journal wake-up) instead of applying now.
        """
        return self.handle_many((line,), defer)

    def handle_many(self, lines: Iterable[LogLine], defer: bool = False) -> list[Ban]:
        """``handle`` for several lines in order: the same decisions, one ledger write.

        When it returns, every failure the lines carried is in the ledger. A line
        that raises (a bug) is logged and passed over; the others still count.
        """
        if not defer and self.pending:
            self.flush()
        records: list[str] = []  # ledger lines
        bans: list[Ban] = []
        try:
            self._count(lines, records, bans)
        finally:
            if records:
                self.ledger.append_bytes("".join(records).encode())
        if bans:
            self.pending.extend(bans)
            if not defer:
                self.flush()
        return bans

    def decide(self, line: LogLine) -> list[Ban]:
        """Count one line and return the bans it triggers, left in ``pending`` for ``flush``."""
        return [ban for _, ban in self.decide_many((line,))]

    def decide_many(self, lines: Iterable[LogLine]) -> list[tuple[int, Ban]]:
        """Count lines in order; return each ban they trigger with the index of the line that
        decided it, and leave the bans in ``pending`` for ``flush``.

        For a source without a ledger (replay), which needs each ban's line but
        not each ban applied at once: no ledger write, no flush. A line that
        raises (a bug) is logged and passed over, as in ``handle_many``.
        """
        bans: list[Ban] = []
        where: list[int] = []
        self._count(lines, [], bans, where)
        self.pending.extend(bans)
        return list(zip(where, bans))

    def _count(self, lines: Iterable[LogLine], records: list[str], bans: list[Ban],
               where: list[int] | None = None) -> None:
        """Count ``lines`` in order: their failures' ledger lines go to ``records``, the bans
        they trigger to ``bans`` (and, when ``where`` is a list, each ban's line index to it).

        Per line: each grammar whose keyword the line holds parses it; each jail of
        that grammar counts the failure when its rule and filters admit it (and
        every jail counts the line in its counters); a message resent by rsyslog
        (its key seen) counts for nothing; the engine decides. One loop over the
        lines, the stages' lookups made once: this is the per-line hot path.
        """
        routes = self._routes
        ledger = self.ledger
        deliveries = self.deliveries
        pinned = deliveries.pinned
        shields = self.shields
        record = self.tracker.record
        own_time = self.log_time
        decided: list[tuple[int, Ban]] = []  # (line index, ban), finished after the loop
        count = 0
        try:
            for index, line in enumerate(lines):
                count += 1
                try:
                    # Live, decisions use the time the line was received (its stamp is not
                    # converted); on the log's own time, a line without a stamp takes the
                    # time of the failure before it.
                    received = self.last_time if own_time else line.received
                    text = line.text
                    found = []
                    for mentions, match, convert, jails in routes:
                        if not mentions(text):
                            continue
                        fields = match(text)
                        failure = None if fields is None else convert(fields, received if own_time else None)
                        for jail, counters, filtered in jails:
                            counters.candidates += 1
                            if fields is None:
                                continue
                            counters.parsed += 1
                            if failure is None:
                                continue
                            counters.matched += 1
                            counters.last_match = received
                            if failure.rule in jail.rules and (not filtered or jail.admits(failure.fields, line.meta)):
                                found.append((jail, counters, failure))
                    key = ""
                    if found and ledger is not None:
                        key = line.key or "h" + hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
                        # A resent message (its key counted already) counts for nothing. Two
                        # lookups, and a call only for a pinned key (its resend is noted).
                        if key == self.last_key or (key in pinned and deliveries.resent(key)) or key in deliveries.recent:
                            found = []
                    if not found:
                        # A content digest identifies a resend only right after an error reply or a
                        # restart; after a confirmed message an identical line is a new event.
                        if line.key is None:
                            self.last_key = None
                        continue
                    factor = shields.observe(received, len(found)) if shields.rate else 1.0
                    for jail, counters, failure in found:
                        moment = failure.time if own_time and failure.time is not None else received
                        address = failure.address
                        if isinstance(address, IPv6Address):  # not the ``version`` property: Python code per failure
                            address = canonical(address)
                        if ledger is not None:
                            records.append(failure_line(moment, jail.name, text_of(address), key))
                        counters.counted += 1
                        ban = record(jail.name, address, moment, factor)
                        if ban is None or not self._allowed(ban):
                            continue
                        decided.append((index, ban))
                    self.last_time = moment
                    if ledger is not None and line.key:
                        deliveries.count(line.key)
                    self.last_key = key if line.key is not None else None
                except Exception:  # noqa: BLE001 - one bad line must not cost the others
                    log.exception("could not process a message; passed over: %r", line.text[:200])
        finally:
            self.lines += count
            if decided:
                self._finish(decided, bans, where)

    def _finish(self, decided: list[tuple[int, Ban]], bans: list[Ban], where: list[int] | None) -> None:
        """Append the engine's bans to ``bans`` in order: each lengthened for a repeat offender
        (``adjust``, asked once for the lot; the engine is told the new end), then the ban
        of its prefix when it completes one (and each ban's line index to ``where``)."""
        finished = self.adjust([ban for _, ban in decided]) if self.adjust is not None else [ban for _, ban in decided]
        for (index, ban), final in zip(decided, finished):
            if final is not ban:  # a longer ban for a repeat offender
                self.tracker.mark_banned(final.jail, final.address, final.until)
            bans.append(final)
            prefix = self.subnets.observe(final)
            if prefix is not None:
                bans.append(prefix)
            if where is not None:
                where.extend([index] * (len(bans) - len(where)))

    def _allowed(self, ban: Ban) -> bool:
        """Ask the jail's circuit breaker; log loudly when it holds a ban back."""
        counters = self._counters[ban.jail]
        allowed = self.breakers[ban.jail].allow(ban.time)
        if not allowed:
            counters.suppressed += 1
            if not counters.tripped or counters.suppressed % 1000 == 0:
                log.warning("jail %s is over max_bans_per_minute (%d): LOG-ONLY, not banning %s (%d held back so far); "
                            "a parser bug or an injection wave? check the logs", ban.jail,
                            self.breakers[ban.jail].limit, ban.address, counters.suppressed)
        elif counters.tripped:
            log.warning("jail %s is back under max_bans_per_minute: banning again", ban.jail)
        counters.tripped = not allowed
        return allowed

    def settle(self, confirmed: bool) -> None:
        """Tell whether the messages counted since the last settle are confirmed (their ``OK``
        written) or refused: refused ones stay recognised however late rsyslog resends them
        (see :mod:`omprog_ban.deliveries`). The ledger records which, for the next start."""
        entries = self.deliveries.settle(confirmed)
        if entries and self.ledger is not None:
            self.ledger.append_bytes("".join(mark_line(self.last_time, kind, key) for kind, key in entries).encode())

    def flush(self) -> None:
        """Apply the pending bans; raise NftError and keep what the kernel refused
        (see :func:`omprog_ban.applying.flush`)."""
        applying.flush(self)

    def restore(self, now: float) -> None:
        """Rebuild state from the kernel and the ledger (see :func:`omprog_ban.recovery.restore`)."""
        recovery.restore(self, now)

    def active(self, now: float) -> list[Ban]:
        """Return every ban still running at ``now``, addresses and prefixes, for the time it has left."""
        return recovery.active(self, now)

    def compact(self, now: float) -> None:
        """Rewrite the ledger with only what still matters at ``now``."""
        recovery.compact(self, now)

