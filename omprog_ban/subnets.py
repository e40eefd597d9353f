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
    """Watch each jail's bans per prefix; decide prefix bans.

    A prefix is kept as integers, (version, first address, length): a flood
    bans thousands of addresses a second, and building an ``ip_network`` per
    ban cost more than the ban itself (6 µs). Each jail's prefixes with recent
    member bans are kept least recently banned first, so ``expire`` stops at
    the first one still in its window.
    """

    def __init__(self, rules: dict[str, Subnet]) -> None:
        self._rules = rules
        self._recent: dict[str, dict[tuple[int, int, int], dict[int, float]]] = {jail: {} for jail in rules}
        self._banned: dict[tuple[str, int, int, int], float] = {}  # (jail, version, first, length) -> until

    def observe(self, ban: Ban) -> Ban | None:
        """Note an address ban; return the ban of its prefix if this one completes it."""
        rule = self._rules.get(ban.jail)
        if rule is None:
            return None
        address = ban.address
        cls = address.__class__
        if cls is ipaddress.IPv4Address:
            version, length, host = 4, rule.prefix4, 32 - rule.prefix4
        elif cls is ipaddress.IPv6Address:
            version, length, host = 6, rule.prefix6, 128 - rule.prefix6
        else:  # a prefix ban itself
            return None
        number = address._ip  # the object's own int (``int()`` runs Python code)
        prefix = (version, number >> host << host, length)
        if self._banned.get((ban.jail, *prefix), 0.0) > ban.time:
            return None
        recent = self._recent[ban.jail]
        members = recent.pop(prefix, None) or {}  # re-inserted last: least recently banned first
        members.pop(number, None)
        members[number] = ban.time
        horizon = ban.time - rule.window
        for member in [m for m, moment in members.items() if moment <= horizon]:
            del members[member]
        if len(members) < rule.addresses:
            recent[prefix] = members
            return None
        network = (ipaddress.IPv4Network if version == 4 else ipaddress.IPv6Network)((prefix[1], length))
        self._banned[(ban.jail, *prefix)] = ban.time + ban.bantime
        return Ban(ban.jail, network, ban.bantime, ban.time, len(members),
                   f"{len(members)} addresses of {network} banned within {rule.window:g}s")

    def mark(self, jail: str, network: Network, until: float) -> None:
        """Note a prefix ban that runs until ``until`` (from the kernel or the ledger)."""
        where = (jail, network.version, int(network.network_address), network.prefixlen)
        self._banned[where] = max(until, self._banned.get(where, 0.0))

    def expire(self, now: float) -> None:
        """Forget ended prefix bans and the prefixes whose member bans all left their window
        (the scan stops at the first prefix still in it: one banned out of order may stay a
        little longer; ``observe`` never counts a member outside the window)."""
        for where in [w for w, until in self._banned.items() if until <= now]:
            del self._banned[where]
        for jail, recent in self._recent.items():
            horizon = now - self._rules[jail].window
            stale = []
            for prefix, members in recent.items():  # least recently banned first
                if max(members.values()) > horizon:
                    break
                stale.append(prefix)
            for prefix in stale:
                del recent[prefix]

    def bans(self) -> Iterator[tuple[str, Network, float]]:
        """Yield every (jail, prefix, until) held as banned."""
        for (jail, version, first, length), until in self._banned.items():
            yield jail, (ipaddress.IPv4Network if version == 4 else ipaddress.IPv6Network)((first, length)), until
