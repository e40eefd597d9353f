"""The inbox: what the relay answered OK before the worker counted it, kept through a kill."""

from __future__ import annotations

from omprog_ban.inbox import CAPACITY, LAG, SEGMENT, Inbox


def test_lines_kept_are_pending_until_dropped_and_a_torn_last_line_is_not(tmp_path):
    inbox = Inbox(tmp_path / "inbox")
    inbox.open()
    inbox.keep(b'{"msg":"a","uuid":"1"}\n', 1)
    inbox.keep(b'{"msg":"b","uuid":"2"}\n{"msg":"c","uuid":"3"}\n', 2)
    inbox.keep(b'{"msg":"torn', 0)  # a kill in the middle of a copy: never answered
    assert (tmp_path / "inbox" / "000000000000.seg").stat().st_size == CAPACITY  # zeros after the lines
    reader = Inbox(tmp_path / "inbox")  # another process: the next worker
    assert reader.pending() == [(0, [b'{"msg":"a","uuid":"1"}\n', b'{"msg":"b","uuid":"2"}\n', b'{"msg":"c","uuid":"3"}\n'])]
    reader.drop(0)
    assert reader.pending() == []
    inbox.close()


def test_a_segment_is_full_at_segment_lines_or_capacity_and_numbers_go_on_after_what_is_on_disk(tmp_path):
    inbox = Inbox(tmp_path)
    inbox.open()
    assert inbox.number == 0 and not inbox.add(b"x" * CAPACITY + b"\n")  # a byte over
    assert all(inbox.add(b"x\n") for _ in range(SEGMENT))
    assert not inbox.add(b"x\n")  # SEGMENT lines
    assert inbox.rotate() == 0 and inbox.number == 1 and inbox.add(b"x" * (CAPACITY - 1) + b"\n")  # CAPACITY bytes
    assert not inbox.add(b"\n")
    inbox.close()
    again = Inbox(tmp_path)  # a relay started after a crash: never writes over a segment left behind
    again.open()
    assert again.number == 2
    again.close()
    assert [number for number, _ in Inbox(tmp_path).pending()] == [0, 1, 2]


def test_the_relay_is_ahead_while_the_segment_lag_back_is_not_counted(tmp_path):
    inbox = Inbox(tmp_path)
    inbox.open()
    for _ in range(LAG - 1):
        assert not inbox.ahead()
        inbox.rotate()
    assert inbox.ahead()  # segment 0 is still there: the worker is LAG segments behind
    inbox.drop(0)
    assert not inbox.ahead()
    inbox.close()
