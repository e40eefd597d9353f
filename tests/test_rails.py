"""Safety rails: protected addresses, the circuit breaker and shields, with literal times."""

from __future__ import annotations

import ipaddress

from omprog_ban import config, rails
from omprog_ban.model import LogLine
from omprog_ban.pipeline import Pipeline
from tests.lab import amps_line
from tests.test_pipeline import FlakyBackend


def pipeline(extra: str = "", own=()) -> tuple[Pipeline, FlakyBackend]:
    text = f"""
never_ban = ["203.0.113.0/24"]
{extra}
[jails.amps]
grammar = "amps"
maxretry = 3
findtime = 10
bantime = 60
max_bans_per_minute = 5
"""
    import tomllib

    backend = FlakyBackend(0)
    return Pipeline(config.parse(tomllib.loads(text)), backend, own_addresses=own), backend


def attack(target: Pipeline, address: str, at: float, count: int = 3) -> None:
    for i in range(count):
        target.handle(LogLine(amps_line(address, port=i), at + i * 0.01))


def test_never_ban_loopback_own_addresses_and_the_list():
    target, backend = pipeline(own=(ipaddress.ip_network("198.51.100.7/32"),))
    for address in ("127.0.0.1", "::1", "203.0.113.9", "198.51.100.7", "::ffff:127.0.0.1", "fe80::1", "224.0.0.1"):
        attack(target, address, 1000, 10)
    assert backend.applied == []
    attack(target, "198.51.100.8", 1000)
    assert [str(b.address) for b in backend.applied] == ["198.51.100.8"]


def test_breaker_goes_log_only_over_the_limit_and_rearms():
    target, backend = pipeline()
    for n in range(8):  # 8 bans decided within a minute; the limit is 5
        attack(target, f"192.0.2.{n + 1}", 1000 + n)
    assert len(backend.applied) == 5
    assert target.counters["amps"].tripped and target.counters["amps"].suppressed == 3
    attack(target, "192.0.2.100", 1200)  # a calm minute later: banning again
    assert str(backend.applied[-1].address) == "192.0.2.100" and not target.counters["amps"].tripped


def test_breaker_table():
    breaker = rails.Breaker(limit=2, window=60)
    assert [breaker.allow(t) for t in (0, 1, 2, 3, 61, 62, 200)] == [True, True, False, False, False, False, True]


def test_shields_scale_maxretry_while_the_rate_is_high():
    shields = rails.Shields(rate=100, factor=0.5, hold=10)
    assert shields.observe(0, 500) == 1.0  # 50/s over the hold window
    assert shields.observe(1, 600) == 0.5 and shields.up  # 110/s: up
    assert shields.observe(9, 1) == 0.5  # still 110/s in the window
    assert shields.observe(20, 1) == 1.0 and not shields.up  # quiet again


def test_shields_make_jails_stricter():
    target, backend = pipeline('[shields]\nrate = "2/s"\nmaxretry_factor = 0.34')
    for n in range(40):  # one failure each from 40 addresses in a second: 4/s over the 10 s hold
        attack(target, f"192.0.2.{n + 1}", 1000, 1)
    assert target.shields.up
    # with maxretry 3 * 0.34 -> 1, every address that failed once is banned (up to the breaker)
    assert len(backend.applied) == 5
