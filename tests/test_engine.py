"""The pure engine, table-driven with literal times."""

from __future__ import annotations

import ipaddress

import pytest

from omprog_ban.engine import Policy, Tracker, address_key, networks

A = ipaddress.ip_address("192.0.2.1")
B = ipaddress.ip_address("192.0.2.2")
V6 = ipaddress.ip_address("2001:db8::1")
MAPPED = ipaddress.ip_address("::ffff:192.0.2.1")
SEED = Policy(maxretry=20, findtime=10, bantime=120, ignore=networks(["127.0.0.0/8", "::1", "198.51.100.0/24"]))


def run(policy: Policy, events: list[tuple[float, object]]) -> list[tuple[float, str, float]]:
    """Feed (time, address) failures; return (time, address, until) of each ban."""
    tracker = Tracker({"j": policy})
    bans = []
    for moment, address in events:
        ban = tracker.record("j", address, moment)
        if ban is not None:
            bans.append((ban.time, str(ban.address), ban.until))
    return bans


@pytest.mark.parametrize(
    "events, expected",
    [
        # the seed: 20 within 10 s -> ban for 120 s, at the 20th failure
        ([(1000 + i * 0.5, A) for i in range(20)], [(1009.5, "192.0.2.1", 1129.5)]),
        # 19 never ban
        ([(1000 + i * 0.1, A) for i in range(19)], []),
        # 20 spread over exactly 10 s: the first has left the window when the 20th comes
        ([(1000 + i * (10 / 19), A) for i in range(20)], []),
        # two addresses do not add up
        ([(1000 + i * 0.1, A if i % 2 else B) for i in range(38)], []),
        # a slow trickle never bans: at most 10 in any 10 s
        ([(1000 + i, A) for i in range(200)], []),
        # failures during the ban do not re-ban; after it ends the count starts afresh
        ([(1000 + i * 0.1, A) for i in range(40)] + [(1130 + i * 0.1, A) for i in range(20)],
         [(1001.9, "192.0.2.1", 1121.9), (1131.9, "192.0.2.1", 1251.9)]),
        # ignored addresses and networks never ban
        ([(1000 + i * 0.1, ipaddress.ip_address("127.0.0.5")) for i in range(50)], []),
        ([(1000 + i * 0.1, ipaddress.ip_address("198.51.100.77")) for i in range(50)], []),
        # IPv4-mapped IPv6 counts as its IPv4 address
        ([(1000 + i * 0.1, A if i % 2 else MAPPED) for i in range(20)], [(1001.9, "192.0.2.1", 1121.9)]),
        # IPv6
        ([(1000 + i * 0.1, V6) for i in range(20)], [(1001.9, "2001:db8::1", 1121.9)]),
    ],
)
def test_seed_policy(events, expected):
    assert [(round(t, 6), a, round(u, 6)) for t, a, u in run(SEED, events)] == [
        (round(t, 6), a, round(u, 6)) for t, a, u in expected
    ]


def test_out_of_order_lines_count_in_their_own_window():
    policy = Policy(maxretry=3, findtime=10, bantime=60)
    # stamped 100, 112, then a late line stamped 105: 100-112 is too wide, 105-112 lacks a third
    assert run(policy, [(100, A), (112, A), (105, A)]) == []
    # a late line that completes a window bans
    assert run(policy, [(100, A), (108, A), (104, A)]) == [(104, "192.0.2.1", 164)]


def test_maxretry_one_bans_at_once():
    assert run(Policy(maxretry=1, findtime=10, bantime=5), [(7, A)]) == [(7, "192.0.2.1", 12)]


def test_mark_banned_suppresses_until_the_end():
    tracker = Tracker({"j": Policy(maxretry=2, findtime=10, bantime=60)})
    tracker.mark_banned("j", A, until=500)
    assert tracker.record("j", A, 100) is None and tracker.record("j", A, 101) is None
    assert tracker.record("j", A, 500) is None and tracker.record("j", A, 501).time == 501


def test_forget_clears_window_and_ban():
    tracker = Tracker({"j": Policy(maxretry=2, findtime=10, bantime=60)})
    tracker.record("j", A, 1)
    tracker.forget("j", A)
    assert tracker.record("j", A, 2) is None


def test_expire_drops_quiet_windows_and_ended_bans():
    tracker = Tracker({"j": Policy(maxretry=3, findtime=10, bantime=60)})
    tracker.record("j", A, 100)
    tracker.record("j", B, 105)
    tracker.mark_banned("j", V6, until=150)
    assert tracker.expire(110) == 1 and tracker.tracked() == 1
    assert tracker.expire(151) == 2 and list(tracker.bans()) == []


def test_capacity_evicts_the_quietest_address_first():
    tracker = Tracker({"j": Policy(maxretry=3, findtime=100, bantime=60, capacity=2)})
    tracker.record("j", A, 1)
    tracker.record("j", B, 2)
    tracker.record("j", A, 3)  # A is now the most recent
    tracker.record("j", V6, 4)  # over capacity: B, the quietest, goes
    assert {str(a) for _, a, _ in tracker.windows()} == {"192.0.2.1", "2001:db8::1"}
    assert tracker.record("j", A, 5).failures == 3  # the persistent attacker was kept


def test_address_keys_fold_mapped_ipv4():
    assert address_key(A) == address_key(MAPPED) != address_key(V6)


def test_a_million_distinct_addresses_stay_bounded_and_cannot_hide_an_attacker():
    tracker = Tracker({"j": Policy(maxretry=20, findtime=3600, bantime=60, capacity=200_000)})
    attacker = ipaddress.ip_address("203.0.113.66")
    bans = []
    for n in range(1_000_000):
        tracker.record("j", ipaddress.IPv4Address(0x0A000000 + n), 1000 + n * 0.001)
        if n % 40_000 == 0:  # the attacker keeps failing, a flood of fresh addresses around him
            ban = tracker.record("j", attacker, 1000 + n * 0.001)
            bans += [ban] if ban else []
        assert tracker.tracked() <= 200_000 if n % 100_000 == 0 else True
    assert tracker.tracked() <= 200_000
    assert [str(b.address) for b in bans] == ["203.0.113.66"]


def test_expire_drops_ended_bans_behind_a_longer_one():
    """Bans are swept oldest first and the sweep stops at the first that runs on; a longer
    ban (a repeat offender's, a restored one) must not shield the ended ones behind it."""
    tracker = Tracker({"j": Policy(maxretry=1, findtime=10, bantime=60)})
    tracker.mark_banned("j", V6, until=1000)  # restored at start: far longer than bantime
    tracker.record("j", A, 100)  # until 160
    tracker.record("j", B, 130)  # until 190
    assert tracker.expire(150) == 0
    assert tracker.expire(170) == 1 and {str(a) for _, a, _ in tracker.bans()} == {str(V6), str(B)}
    assert tracker.expire(200) == 1 and [str(a) for _, a, _ in tracker.bans()] == [str(V6)]
    assert tracker.record("j", A, 201) is not None  # ended: banned again, until 261
    assert tracker.expire(300) == 1 and [str(a) for _, a, _ in tracker.bans()] == [str(V6)]
    assert tracker.expire(1001) == 1 and list(tracker.bans()) == []


def test_an_ended_ban_is_never_taken_for_a_running_one_while_it_waits_for_the_sweep():
    tracker = Tracker({"j": Policy(maxretry=1, findtime=10, bantime=60)})
    tracker.mark_banned("j", V6, until=150)  # less than bantime left at 100: in order, it stops the sweep
    tracker.record("j", A, 50)  # until 110, behind it
    assert tracker.expire(120) == 0  # held up behind V6, at most one bantime
    assert tracker.record("j", A, 121) is not None  # yet A's ban is over: a new failure bans again
    assert tracker.expire(151) == 1
