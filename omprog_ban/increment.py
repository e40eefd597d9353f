"""Repeat offenders: a longer bantime for each earlier ban of the same address in the same jail.

With ``bantime_increment = { factor = 2, max = "1w" }`` a jail's n-th earlier
ban (counted in the history, within its retention) makes the new ban last
``bantime * factor**n``, never more than ``max`` and never less than the jail's
own ``bantime``. ``bantime_for`` is the pure rule; ``Escalate`` is the hook the
Pipeline calls on the bans the engine decides, before they go to nft: all the
bans of a batch at once, so that a flood costs one history query per jail and
batch instead of one per ban.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

from omprog_ban.config import Jail
from omprog_ban.model import Address, Ban, Network

# earlier(jail, [(address, since), ...]): how many bans each address got in the jail at or after its since
Earlier = Callable[[str, "Sequence[tuple[Address | Network, float]]"], "list[int]"]


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

    ``earlier(jail, [(address, since), ...])`` returns the bans already recorded
    (the history's ``earlier``); they are looked for within ``window`` seconds
    before each new ban (the history's retention).
    """

    def __init__(self, jails: Mapping[str, Jail], earlier: Earlier, window: float) -> None:
        self.jails = jails
        self.earlier = earlier
        self.window = window

    def __call__(self, bans: Sequence[Ban]) -> list[Ban]:
        """Return ``bans`` in order, each with its bantime increased, or itself when nothing changes;
        one ``earlier`` question per jail."""
        result = list(bans)
        by_jail: dict[str, list[int]] = {}
        for position, ban in enumerate(bans):
            jail = self.jails.get(ban.jail)
            if jail is not None and jail.increment is not None:
                by_jail.setdefault(ban.jail, []).append(position)
        for name, positions in by_jail.items():
            increment = self.jails[name].increment
            counts = self.earlier(name, [(bans[at].address, bans[at].time - self.window) for at in positions])
            for at, earlier in zip(positions, counts):
                if not earlier:  # a first offence, as most in a flood: the ban as it is
                    continue
                ban = bans[at]
                bantime = bantime_for(ban.bantime, increment.factor, increment.max, earlier)
                if bantime != ban.bantime:
                    reason = f"{ban.reason}, ban #{earlier + 1}" if ban.reason else f"ban #{earlier + 1}"
                    result[at] = ban._replace(bantime=bantime, reason=reason)
        return result
