"""Safety rails: addresses never banned, a circuit breaker per jail, and shields.

All three are pure values with time as an argument, like the engine:

- ``protected``: loopback, unspecified, multicast and link-local ranges, the
  host's own addresses and the config's ``never_ban`` list: whatever the logs
  say, these are never banned (the admin is never locked out by a forged line).
- ``Breaker``: when a jail decides more than ``max_bans_per_minute`` bans in a
  minute, a parser bug or an injection wave is the likelier cause than that many
  attackers: the jail goes log-only (bans are logged, not applied) until its rate
  falls back under the limit. An attacker can trip it to blunt one jail for as
  long as he keeps it tripped; that is the price of never banning half the net.
- ``Shields``: when failures over all jails stay above ``rate`` per second for
  ``hold`` seconds, every jail's maxretry is scaled by ``factor`` (stricter)
  until the rate falls again.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections import deque

from omprog_ban.model import Network

ALWAYS = tuple(ipaddress.ip_network(n) for n in (
    "127.0.0.0/8", "0.0.0.0/32", "224.0.0.0/4", "255.255.255.255/32", "169.254.0.0/16",
    "::1/128", "::/128", "ff00::/8", "fe80::/10",
))


def local_addresses() -> tuple[Network, ...]:
    """Return this host's own addresses (from ``ip -j addr``); () when ip is unavailable."""
    try:
        done = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, text=True, timeout=5)
        links = json.loads(done.stdout or "[]")
    except (OSError, ValueError, subprocess.SubprocessError):
        return ()
    found = []
    for link in links:
        for entry in link.get("addr_info", []):
            try:
                found.append(ipaddress.ip_network(entry["local"]))
            except (KeyError, ValueError):
                continue
    return tuple(found)


class Breaker:
    """Count a jail's bans per minute; ``allow`` answers False while over the limit."""

    def __init__(self, limit: int, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self._times: deque[float] = deque()
        self.tripped = False
        self.suppressed = 0

    def allow(self, now: float) -> bool:
        """Record one ban decided at ``now``; return whether it may be applied."""
        if not self.limit:
            return True
        times = self._times
        times.append(now)
        while times and times[0] <= now - self.window:
            times.popleft()
        self.tripped = len(times) > self.limit
        if self.tripped:
            self.suppressed += 1
        return not self.tripped


class Shields:
    """Watch the failure rate over all jails; ``factor`` is < 1 while shields are up."""

    def __init__(self, rate: float, factor: float, hold: float = 10.0) -> None:
        self.rate = rate
        self.strict = factor
        self.hold = hold
        self._buckets: deque[list] = deque()  # [second, count]
        self.up = False
        self.raised = 0

    def observe(self, now: float, failures: int = 1) -> float:
        """Count ``failures`` at ``now``; return the maxretry factor in force."""
        if not self.rate:
            return 1.0
        second = int(now)
        buckets = self._buckets
        if buckets and buckets[-1][0] == second:
            buckets[-1][1] += failures
        else:
            buckets.append([second, failures])
        while buckets and buckets[0][0] <= second - self.hold:
            buckets.popleft()
        rate = sum(count for _, count in buckets) / self.hold
        if not self.up and rate > self.rate:
            self.up, self.raised = True, self.raised + 1
        elif self.up and rate < self.rate / 2:  # hysteresis: no flapping at the edge
            self.up = False
        return self.strict if self.up else 1.0
