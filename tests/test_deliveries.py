"""Deliveries: a counted message is recognised when rsyslog resends it, however late.

rsyslog puts a batch it gave up on back at the end of its queue; the soak saw
such batches come back 85,000 and 200,000 messages later. These tests send a
refused batch, then more messages than the recent keys hold, then the batch
again: it must count nothing, before and after a restart.
"""

from __future__ import annotations

import pytest

from omprog_ban import config, deliveries
from omprog_ban.deliveries import RECENT, Deliveries
from omprog_ban.ledger import Ledger, read
from omprog_ban.model import LogLine
from omprog_ban.nft import NftError
from omprog_ban.pipeline import Pipeline
from tests.lab import amps_line
from tests.test_pipeline import FlakyBackend


def uuid(n: int) -> str:
    """A key as rsyslog's template writes it: 32 upper-case hex digits."""
    return f"{n:032X}"


def flood(memory: Deliveries, start: int, count: int) -> None:
    """Count ``count`` confirmed messages with fresh keys, in batches of 1,024."""
    for n in range(start, start + count):
        memory.count(uuid(n))
        if n % 1024 == 1023:
            memory.settle(True)
    memory.settle(True)


@pytest.mark.parametrize("settled, later, found", [
    # a refused batch is held however many messages follow it
    (False, RECENT * 2, True),
    # a confirmed one is held among the recent keys only
    (True, 10, True),
    (True, RECENT * 2, False),
])
def test_a_batch_is_recognised_as_long_as_rsyslog_may_resend_it(settled, later, found):
    memory = Deliveries()
    batch = [uuid(10**9 + n) for n in range(1024)]
    for key in batch:
        memory.count(key)
    memory.settle(settled)
    flood(memory, 0, later)
    assert all(memory.resent(key) for key in batch) is found
    assert any(memory.resent(key) for key in batch) is found


def test_a_pin_goes_once_the_resend_is_confirmed_and_stays_while_it_is_refused():
    memory = Deliveries()
    memory.count(uuid(1))
    assert memory.settle(False) == [("P", "")]
    assert memory.resent(uuid(1))
    assert memory.settle(False) == []  # refused again: still pinned, nothing new to record
    assert uuid(1) in memory.pinned
    assert memory.resent(uuid(1))
    assert memory.settle(True) == [("R", uuid(1))]
    assert memory.pinned == {}


def test_the_oldest_pins_go_beyond_the_cap(monkeypatch):
    monkeypatch.setattr(deliveries, "PINNED", 100)
    memory = Deliveries()
    for n in range(150):
        memory.count(uuid(n))
    memory.settle(False)
    assert len(memory.pinned) == 100
    assert uuid(49) not in memory.pinned and uuid(50) in memory.pinned


def test_a_fresh_process_pins_the_first_keys_it_counts_whatever_their_settles():
    """Watched: the retried batch comes in groups of any size, OK or not; all pinned, then no more."""
    memory = Deliveries()
    memory.watch(limit=10)
    n = 0
    for size in (1, 3, 1, 5):  # 10 keys in groups of any size, confirmed
        for _ in range(size):
            memory.count(uuid(n))
            n += 1
        assert memory.settle(True)[-1] == ("P", "")
    memory.count(uuid(n))
    assert memory.settle(True) == [("C", "")]
    assert set(memory.pinned) == {uuid(k) for k in range(10)}


@pytest.mark.parametrize("entries, pinned", [
    # what a process counted after its last settle is pinned by the next one, and
    # what it settled last as confirmed (the relay may have died before passing the OK on)
    ([("F", "a"), ("C", ""), ("F", "b")], {"a", "b"}),
    ([("F", "a"), ("C", ""), ("F", "b"), ("C", "")], {"b"}),
    ([("F", "a"), ("F", "b"), ("C", "")], {"a", "b"}),
    ([("F", "a"), ("P", ""), ("F", "b"), ("C", "")], {"a", "b"}),
    ([("F", "a"), ("P", ""), ("R", "a"), ("F", "b"), ("C", "")], {"b"}),
    ([("F", "a"), ("C", ""), ("F", "b"), ("P", "")], {"a", "b"}),
    ([("F", "a"), ("C", ""), ("F", "b"), ("C", ""), ("F", "c"), ("P", "")], {"b", "c"}),
    # a ledger from before the markers: every start compacts, and a compaction writes them
    ([("F", "a"), ("F", "b")], set()),
])
def test_restore_pins_what_was_refused_or_never_settled_or_settled_last(entries, pinned):
    memory = Deliveries()
    memory.restore(entries)
    assert set(memory.pinned) == pinned
    assert set(memory.recent) == {key for kind, key in entries if kind == "F"}


def test_restore_does_not_pin_a_compactions_recent_keys():
    """A confirmed group larger than any batch is a compaction's memory, not the dead process's last batch."""
    keys = [uuid(n) for n in range(deliveries.WATCHED + 1)]
    memory = Deliveries()
    memory.restore([*(("F", key) for key in keys), ("C", "")])
    assert memory.pinned == {}
    assert all(memory.resent(key) for key in keys)


def test_a_fresh_process_keeps_pinned_keys_it_is_sent_again_while_it_watches():
    """A first transaction of resends only (the dead process's last batch) counts no key; its
    confirmed settle must not release the pins, since rsyslog may deliver it once more."""
    memory = Deliveries()
    memory.restore([("F", uuid(1)), ("F", uuid(2)), ("C", "")])
    memory.watch()
    assert memory.resent(uuid(1)) and memory.resent(uuid(2))
    assert memory.settle(True) == []
    assert set(memory.pinned) == {uuid(1), uuid(2)}
    memory.watch(0)  # the watch over: a confirmed resend releases the pin
    assert memory.resent(uuid(1))
    assert memory.settle(True) == [("R", uuid(1))]
    assert set(memory.pinned) == {uuid(2)}


@pytest.mark.parametrize("last_key_in_last", [True, False])
def test_a_compaction_keeps_the_last_confirmed_batch_last(last_key_in_last):
    """compacted -> restore: the last confirmed batch is pinned, the older recent keys are not."""
    memory = Deliveries()
    flood(memory, 0, 3000)  # ends with a confirmed batch of 3000 % 1024 = 952 keys
    last = [uuid(n) for n in range(2048, 3000)]
    assert memory.last == last
    last_key = last[-1] if last_key_in_last else uuid(3000)
    if not last_key_in_last:  # a message counted and settled as refused after the batch
        memory.count(last_key)
        memory.settle(False)
    again = Deliveries()
    again.restore(memory.compacted(last_key))
    assert set(again.pinned) == set(last) | ({last_key} if not last_key_in_last else set())
    assert set(again.recent) == {uuid(n) for n in range(3000 + (not last_key_in_last))}


def line(address: str, port: int, key: str) -> LogLine:
    return LogLine(amps_line(address, port=port), 1000.0, key)


def test_a_refused_batch_resent_after_a_flood_and_a_restart_counts_nothing(tmp_path):
    """The soak's bystanders: nine failures, one of them resent late, must stay nine."""
    backend = FlakyBackend(failures=0)
    pipeline = Pipeline(config.load(None), backend, Ledger(tmp_path / "ledger"))
    bystander = [line("192.0.2.9", port, uuid(10**9 + port)) for port in range(9)]
    pipeline.handle_many(bystander[:8], defer=True)
    pipeline.settle(True)
    backend.refusing = True  # the ruleset is flushed: the batch's commit is answered with an error
    attacker = [line("203.0.113.5", port, uuid(2 * 10**9 + port)) for port in range(40)]
    pipeline.handle_many(bystander[8:] + attacker, defer=True)
    with pytest.raises(NftError):
        pipeline.flush()
    pipeline.settle(False)
    backend.refusing = False
    others = [line(f"198.51.100.{n % 200}", n, uuid(n)) for n in range(RECENT + 1000)]
    for start in range(0, len(others), 1024):
        pipeline.handle_many(others[start:start + 1024], defer=True)
        pipeline.settle(True)
    pipeline.flush()
    pipeline.compact(now=1001.0)
    assert "P" in {record.kind for record in read(tmp_path / "ledger")}

    again = Pipeline(config.load(None), FlakyBackend(failures=0), Ledger(tmp_path / "ledger"))
    again.restore(now=1001.0)
    counted = again.counters["amps"].counted
    again.handle_many(bystander[8:], defer=True)  # rsyslog's late resend
    again.settle(True)
    assert again.counters["amps"].counted == counted
    assert sum(1 for record in read(tmp_path / "ledger") if record.kind == "F" and record.address == "192.0.2.9") == 9
    # the bystander's pin is released (its resend was confirmed); the attacker's, never resent, stays,
    # as do those of the last batch the process before confirmed (its OK may not have reached rsyslog)
    last_batch = others[len(others) // 1024 * 1024:]
    assert set(again.deliveries.pinned) == {line.key for line in attacker + last_batch}


def test_a_batch_whose_ok_the_relay_never_passed_on_counts_once_however_often_it_comes(tmp_path):
    """The worker answered the commit ``OK`` and marked it confirmed, but the relay died before
    rsyslog read it: rsyslog resends the batch to the new process at once, and (action.c leaves
    a message it could not send ``BEGIN`` for "ready") may deliver it again a queue later."""
    pipeline = Pipeline(config.load(None), FlakyBackend(failures=0), Ledger(tmp_path / "ledger"))
    bystander = [line("192.0.2.9", port, uuid(10**9 + port)) for port in range(9)]
    pipeline.handle_many(bystander, defer=True)
    pipeline.flush()
    pipeline.settle(True)  # the commit's OK written; the process is killed here

    again = Pipeline(config.load(None), FlakyBackend(failures=0), Ledger(tmp_path / "ledger"))
    again.restore(now=1001.0)
    again.deliveries.watch()  # as ``run`` does when rsyslog started it
    counted = again.counters["amps"].counted
    again.handle_many(bystander, defer=True)  # the resend, at once
    again.flush()
    again.settle(True)
    others = [line(f"198.51.100.{n % 200}", n, uuid(n)) for n in range(RECENT + 1000)]
    for start in range(0, len(others), 1024):
        again.handle_many(others[start:start + 1024], defer=True)
        again.settle(True)
    again.flush()
    again.handle_many(bystander, defer=True)  # and once more, a queue later
    again.settle(True)
    assert again.counters["amps"].counted == counted + len(others)
    assert sum(1 for record in read(tmp_path / "ledger") if record.kind == "F" and record.address == "192.0.2.9") == 9
    assert not any(ban.address.exploded == "192.0.2.9" for ban in again.pending)
