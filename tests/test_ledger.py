"""The ledger keeps whole records only: a copy torn by a kill never turns into a record."""

import mmap
import os

from omprog_ban.ledger import Ledger, Record, ban_line, failure_line

KEY = "413C024C3D4643ECA0843B5485E2A1F0"


def _records(path):
    ledger = Ledger(path)
    try:
        return list(ledger.replay())
    finally:
        ledger.close()


def test_a_record_torn_in_its_key_is_dropped_not_closed_off(tmp_path):
    # A kill in mid-copy once left "F ... 413C024C3D4643ECA0843B54" (a uuid cut short): closed off with a
    # newline it read as a failure under a key rsyslog never sent, and the resent message counted again.
    path = tmp_path / "ledger"
    ledger = Ledger(path)
    ledger.append_bytes(failure_line(1.0, "amps", "192.0.2.7", "A" * 32).encode())
    ledger.append_bytes(failure_line(2.0, "amps", "198.51.100.110", KEY).encode()[:-9])  # torn
    ledger.close()
    assert [record.extra for record in _records(path)] == ["A" * 32]
    again = Ledger(path)
    again.append_bytes(failure_line(3.0, "amps", "198.51.100.110", KEY).encode())  # the resend
    again.close()
    assert [(record.time, record.extra) for record in _records(path)] == [(1.0, "A" * 32), (3.0, KEY)]


def test_bytes_a_torn_copy_left_further_on_never_join_a_later_record(tmp_path):
    # A copy need not go front to back: a kill may leave a record's head and its tail with a hole
    # between. Were that tail kept, a later append torn right at the hole would join it into a record.
    path = tmp_path / "ledger"
    ledger = Ledger(path)
    head = failure_line(1.0, "amps", "192.0.2.7", "A" * 32).encode()
    ledger.append_bytes(head)
    ledger.close()
    torn = failure_line(2.0, "amps", "198.51.100.110", KEY).encode()
    with open(path, "r+b") as handle, mmap.mmap(handle.fileno(), 0) as view:
        view[len(head):len(head) + 8] = torn[:8]
        view[len(head) + 20:len(head) + len(torn)] = torn[20:]  # ... and its end, newline included
    ledger = Ledger(path)
    ledger.append_bytes(failure_line(3.0, "amps", "198.51.100.110", KEY).encode()[:20])  # torn at the hole
    ledger.close()
    assert [(record.time, record.extra) for record in _records(path)] == [(1.0, "A" * 32)]
    assert os.path.getsize(path) >= 32 << 20  # still mapped at full size, sparse


def test_whole_records_survive_reopening(tmp_path):
    path = tmp_path / "ledger"
    ledger = Ledger(path)
    ledger.append([Record("B", 5.0, "amps", "192.0.2.7", "120")])
    ledger.close()
    assert _records(path) == [Record("B", 5.0, "amps", "192.0.2.7", "120")]


def test_the_fast_record_lines_read_back_as_the_records_they_stand_for(tmp_path):
    """``failure_line`` and ``ban_line`` skip building a Record: what they write must replay as one."""
    path = tmp_path / "ledger"
    ledger = Ledger(path)
    ledger.append_bytes((failure_line(5.25, "amps", "2001:db8::1", KEY) + ban_line(5.25, "amps", "2001:db8::1", 120.0)
                         + ban_line(6.5, "web", "198.51.100.0/24", 0.5)).encode())
    ledger.append([Record("B", 7.0, "amps", "192.0.2.7", "3600")])
    ledger.close()
    assert _records(path) == [Record("F", 5.25, "amps", "2001:db8::1", KEY), Record("B", 5.25, "amps", "2001:db8::1", "120"),
                              Record("B", 6.5, "web", "198.51.100.0/24", "0.5"), Record("B", 7.0, "amps", "192.0.2.7", "3600")]
