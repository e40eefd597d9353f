"""Recovery: rebuild a pipeline's state from the kernel and the ledger, and compact the ledger.

Run at start (``restore``), when the table vanished (``active``: every running
ban with the time it has left) and when the ledger has grown (``compact``).
The kernel owns the bans; the ledger is the record beside it that lets a new
process pick up where a dead one stopped.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from omprog_ban.ledger import ban_line, failure_line, mark_line
from omprog_ban.model import Ban, text

if TYPE_CHECKING:
    from omprog_ban.pipeline import Pipeline


def restore(pipeline: Pipeline, now: float) -> None:
    """Rebuild the engine from the kernel and the ledger; queue bans a crash left unapplied.

    Kernel bans are marked first, so failures already punished do not count
    again. A ban the ledger shows but the kernel lacks (a flushed ruleset) and
    a ban a crash cut off before the kernel took it are both re-applied for
    the time they have left. The ledger is compacted afterwards.
    """
    jails = pipeline.config.jails
    in_kernel = set()
    for element in pipeline.backend.elements():
        if element.jail in jails and element.expires is not None:
            in_kernel.add((element.jail, element.address))
            _mark(pipeline, element.jail, target(element.address), now + element.expires)
    owed: dict[tuple[str, str], Ban] = {}
    last_key = None
    deliveries: list[tuple[str, str]] = []  # delivery keys and settles, for Deliveries.restore
    for record in pipeline.ledger.replay() if pipeline.ledger is not None else ():
        if record.kind == "F":
            last_key = record.extra or None
            if last_key and not last_key.startswith("h"):
                deliveries.append(("F", last_key))
        elif record.kind in "CPR":
            deliveries.append((record.kind, record.extra))
            continue
        if record.jail not in jails:
            continue
        where = (record.jail, record.address)
        try:
            address = target(record.address)
        except ValueError:  # a record torn by a kill, or written by a bug: skip it
            continue
        if record.kind == "F":
            ban = pipeline.tracker.record(record.jail, address, record.time)
            if ban is not None:
                owed[where] = pipeline.adjust([ban])[0] if pipeline.adjust is not None else ban
        elif record.kind == "B":
            ban = Ban(record.jail, address, float(record.extra or 0), record.time)
            _mark(pipeline, record.jail, address, ban.until)
            owed[where] = ban
        elif record.kind == "U":
            pipeline.tracker.forget(record.jail, address)
            owed.pop(where, None)
    pipeline.last_key = last_key
    pipeline.deliveries.restore(deliveries)
    for (jail, written), ban in owed.items():
        if ban.until > now and (jail, written) not in in_kernel:
            pipeline.pending.append(Ban(jail, ban.address, ban.until - now, now, ban.failures, "restored"))
    compact(pipeline, now)


def active(pipeline: Pipeline, now: float) -> list[Ban]:
    """Return every ban still running at ``now``, addresses and prefixes, for the time it has left."""
    running = list(pipeline.tracker.bans()) + list(pipeline.subnets.bans())
    return [Ban(jail, where, until - now, now, 0, "restored") for jail, where, until in running if until > now + 1]


def compact(pipeline: Pipeline, now: float) -> None:
    """Rewrite the ledger with only what still matters at ``now``: running bans, open windows,
    and the delivery keys of counted messages (``Pipeline.deliveries``)."""
    if pipeline.ledger is None:
        return
    pipeline.tracker.expire(now)
    pipeline.subnets.expire(now)
    # Record lines written as the hot path writes them (``ban_line``, ``failure_line``,
    # ``text``): with 100,000 bans running, Record objects and ``str`` took 1.5 s.
    lines = [ban_line(now, ban.jail, text(ban.address), ban.bantime) for ban in active(pipeline, now)]
    for jail, address, times in pipeline.tracker.windows():
        written = text(address)
        lines.extend(failure_line(moment, jail, written, "") for moment in times)
    # The delivery keys of counted messages, recent and pinned: whatever rsyslog may
    # resend is still recognised after the next crash too.
    lines.extend(failure_line(now, "-", "-", key) if kind == "F" else mark_line(now, kind, key)
                 for kind, key in pipeline.deliveries.compacted(pipeline.last_key))
    pipeline.ledger.compact_bytes("".join(lines).encode())


def target(text: str):
    """Return ledger or kernel text as an address, or a network when it is a prefix."""
    if "/" in text:
        return ipaddress.ip_network(text)
    return ipaddress.ip_address(text)


def _mark(pipeline: Pipeline, jail: str, where, until: float) -> None:
    if isinstance(where, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
        pipeline.subnets.mark(jail, where, until)
    else:
        pipeline.tracker.mark_banned(jail, where, until)
