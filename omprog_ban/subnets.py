"""Subnet bans: when ``addresses`` members of one /24 (IPv4) or /64 (IPv6) are banned
within ``window`` seconds in a jail, the whole prefix is banned too.

Pure, like the engine: bans in, prefix bans out, time as an argument. The
prefix goes to the jail's interval set (``flags interval, timeout``), which
rejects overlapping elements: a prefix that is already banned is never added
again, and every prefix of a jail has the same length, so none contains another.
Off for named jails (the config refuses it): DNS sources are spoofable.
"""

from __future__ import annotations

import ipaddress
from typing import Iterator

from omprog_ban.config import Subnet
from omprog_ban.model import Ban, Network


class Subnets:
    """Watch each jail's bans per prefix; decide prefix bans."""

    def __init__(self, rules: dict[str, Subnet]) -> None:
        self._rules = rules
        self._recent: dict[tuple[str, Network], dict[str, float]] = {}
        self._banned: dict[tuple[str, Network], float] = {}

    def observe(self, ban: Ban) -> Ban | None:
        """Note an address ban; return the ban of its prefix if this one completes it."""
        rule = self._rules.get(ban.jail)
        if rule is None or isinstance(ban.address, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
            return None
        length = rule.prefix4 if ban.address.version == 4 else rule.prefix6
        where = (ban.jail, ipaddress.ip_network(f"{ban.address}/{length}", strict=False))
        if self._banned.get(where, 0.0) > ban.time:
            return None
        members = self._recent.setdefault(where, {})
        members[str(ban.address)] = ban.time
        for member in [m for m, moment in members.items() if moment <= ban.time - rule.window]:
            del members[member]
        if len(members) < rule.addresses:
            return None
        del self._recent[where]
        self._banned[where] = ban.time + ban.bantime
        return Ban(ban.jail, where[1], ban.bantime, ban.time, len(members),
                   f"{len(members)} addresses of {where[1]} banned within {rule.window:g}s")

    def mark(self, jail: str, network: Network, until: float) -> None:
        """Note a prefix ban that runs until ``until`` (from the kernel or the ledger)."""
        self._banned[(jail, network)] = max(until, self._banned.get((jail, network), 0.0))

    def expire(self, now: float) -> None:
        """Forget ended prefix bans and stale member lists."""
        for where in [w for w, until in self._banned.items() if until <= now]:
            del self._banned[where]
        for where, members in list(self._recent.items()):
            rule = self._rules[where[0]]
            if all(moment <= now - rule.window for moment in members.values()):
                del self._recent[where]

    def bans(self) -> Iterator[tuple[str, Network, float]]:
        """Yield every (jail, prefix, until) held as banned."""
        for (jail, network), until in self._banned.items():
            yield jail, network, until
