"""Repeat offenders: a longer bantime for each earlier ban of the same address in the same jail.

With ``bantime_increment = { factor = 2, max = "1w" }`` a jail's n-th earlier
ban (counted in the history, within its retention) makes the new ban last
``bantime * factor**n``, never more than ``max`` and never less than the jail's
own ``bantime``. ``bantime_for`` is the pure rule; ``Escalate`` is the hook the
Pipeline calls on every ban the engine decides, before the ban goes to nft.
"""

from __future__ import annotations

from typing import Callable, Mapping

from omprog_ban.config import Jail
from omprog_ban.model import Address, Ban, Network

Count = Callable[[str, "Address | Network", float], int]


def bantime_for(bantime: float, factor: float, maximum: float, earlier: int) -> float:
    """Return ``bantime * factor**earlier`` capped at ``maximum`` (but never below ``bantime``)."""
    if earlier <= 0 or factor <= 1.0:
        return bantime
    try:
        longer = bantime * factor**earlier
    except OverflowError:  # a very old offender: the cap applies anyway
        longer = float("inf")
    return max(bantime, min(longer, maximum))


class Escalate:
    """Lengthen each Ban of a jail with ``bantime_increment`` by its address's earlier bans.

    ``count(jail, address, since)`` returns the bans already recorded (the
    history's ``count``); earlier bans are looked for within ``window`` seconds
    before the new ban (the history's retention).
    """

    def __init__(self, jails: Mapping[str, Jail], count: Count, window: float) -> None:
        self.jails = jails
        self.count = count
        self.window = window

    def __call__(self, ban: Ban) -> Ban:
        """Return ``ban`` with its bantime increased, or ``ban`` itself when nothing changes."""
        jail = self.jails.get(ban.jail)
        if jail is None or jail.increment is None:
            return ban
        earlier = self.count(ban.jail, ban.address, ban.time - self.window)
        bantime = bantime_for(ban.bantime, jail.increment.factor, jail.increment.max, earlier)
        if bantime == ban.bantime:
            return ban
        reason = f"{ban.reason}, ban #{earlier + 1}" if ban.reason else f"ban #{earlier + 1}"
        return ban._replace(bantime=bantime, reason=reason)
