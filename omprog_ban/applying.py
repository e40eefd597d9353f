"""Applying decided bans to the kernel: in few transactions, and as many as it takes.

A pipeline's pending bans go in one transaction (up to CHUNK elements each).
When nft refuses, each jail's bans are tried on their own, so one full set does
not hold back the other jails, and of each jail as many as the kernel takes;
whatever is still refused stays pending, to go first next time. Each applied
ban is written to the ledger (a B record), counted and told to ``on_ban``.

When the table is gone (a flushed ruleset: a firewall reload does that), the
pipeline's ``repair`` puts it back with every running ban queued, and the
flush is tried once more at once: the batch at hand succeeds, instead of an
error for rsyslog and a resend after the next upkeep.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from omprog_ban.ledger import ban_line
from omprog_ban.model import Ban, text
from omprog_ban.nft import NftError

if TYPE_CHECKING:
    from omprog_ban.pipeline import Pipeline

CHUNK = 8192  # elements per nft transaction: larger batches can overrun netlink's buffer (ENOBUFS)


def flush(pipeline: Pipeline, repaired: bool = False) -> None:
    """Apply ``pipeline.pending``; raise NftError and keep what the kernel refused pending."""
    if not pipeline.pending:
        return
    bans, pipeline.pending = pipeline.pending, []
    try:
        for start in range(0, len(bans), CHUNK):
            pipeline.backend.ban(bans[start:start + CHUNK])
            _applied(pipeline, bans[start:start + CHUNK])
        return
    except NftError as error:
        if not repaired and pipeline.repair is not None and pipeline.repair(bans[start:]):
            flush(pipeline, repaired=True)  # the table is back, every running ban queued
            return
        refused: list[Ban] = []
        by_jail: dict[str, list[Ban]] = {}
        for ban in bans[start:]:
            by_jail.setdefault(ban.jail, []).append(ban)
        for group in by_jail.values():
            refused.extend(_fill(pipeline, group))
        pipeline.pending = refused + pipeline.pending
        if refused:
            raise error


def _fill(pipeline: Pipeline, group: list[Ban]) -> list[Ban]:
    """Apply the longest head of ``group`` the kernel takes; return the rest.

    Halving on each refusal: a full set costs log2(len) refused transactions,
    not one per ban, and the bans that fit (a set with room for some) go in.
    """
    done, size = 0, min(len(group), CHUNK)
    while size and done < len(group):
        part = group[done:done + size]
        try:
            pipeline.backend.ban(part)
        except NftError:
            size //= 2
            continue
        _applied(pipeline, part)
        done += len(part)
    return group[done:]


def _applied(pipeline: Pipeline, bans: list[Ban]) -> None:
    if pipeline.ledger is not None:
        pipeline.ledger.append_bytes("".join([ban_line(ban.time, ban.jail, text(ban.address), ban.bantime) for ban in bans]).encode())
    counters = pipeline.counters
    for ban in bans:
        counters[ban.jail].bans += 1
        if pipeline.on_ban is not None:
            pipeline.on_ban(ban)
