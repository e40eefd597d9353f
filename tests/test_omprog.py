"""The omprog protocol as rsyslog sees it: transcripts against the real program (dry run)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from omprog_ban.nft import NftError
from tests.lab import amps_line


class Child:
    """omprog-ban run --dry-run on pipes, driven one message at a time, as rsyslog does."""

    def __init__(self, state_dir, *extra: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "omprog_ban", "run", "--dry-run", "--config", "default", "--state-dir", str(state_dir), *extra],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
        )
        assert self.process.stdout.readline() == "OK\n"

    def send(self, line: str) -> str:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        return self.process.stdout.readline().rstrip("\n")

    def bans(self) -> list[dict]:
        self.process.stdin.close()
        assert self.process.wait(10) == 0
        return [json.loads(line) for line in self.process.stderr.read().splitlines() if line.startswith("{")]


def test_one_reply_per_message_whatever_it_holds(tmp_path):
    child = Child(tmp_path)
    messages = [
        amps_line("192.0.2.1"),
        "hello world",
        "",
        "{not json",
        '["a", "list"]',
        '{"msg": 42}',
        json.dumps({"msg": " " + amps_line("192.0.2.1"), "uuid": "u1", "programname": "amps"}),
        "\x00\x01\x02",
        "07-0013 client[" + "](" * 5000,
        "x" * 100_000,
    ]
    assert [child.send(message) for message in messages] == ["OK"] * len(messages)
    assert child.bans() == []


def test_twenty_failures_one_ban_json_on_stderr(tmp_path):
    child = Child(tmp_path)
    for port in range(25):
        assert child.send(json.dumps({"msg": " " + amps_line("192.0.2.7", port=port), "uuid": f"u{port}"})) == "OK"
    bans = child.bans()
    assert [(b["jail"], b["host"], b["bantime"]) for b in bans] == [("amps", "192.0.2.7", 120.0)]


def test_invalid_utf8_is_answered(tmp_path):
    process = subprocess.Popen([sys.executable, "-m", "omprog_ban", "run", "--dry-run", "--config", "default", "--state-dir", str(tmp_path)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, _ = process.communicate(b"OK\n\xff\xfe\xfd\n07-0013 client[\xc3\x28](192.0.2.1:1) disconnected: auth.\n", timeout=10)
    assert out == b"OK\nOK\nOK\nOK\n" and process.returncode == 0


def test_sigterm_exits_zero(tmp_path):
    child = Child(tmp_path)
    assert child.send(amps_line("192.0.2.1")) == "OK"
    child.process.send_signal(signal.SIGTERM)
    assert child.process.wait(10) == 0


def test_resent_message_after_a_crash_is_not_counted_twice(tmp_path):
    first = Child(tmp_path)
    for port in range(19):
        assert first.send(json.dumps({"msg": amps_line("192.0.2.8", port=port), "uuid": f"u{port}"})) == "OK"
    first.process.kill()  # SIGKILL: rsyslog saw OK for u0..u17 at least; say u18 was unconfirmed
    first.process.wait()
    second = Child(tmp_path)
    # rsyslog resends the unconfirmed u18: it must not be the 20th failure
    assert second.send(json.dumps({"msg": amps_line("192.0.2.8", port=18), "uuid": "u18"})) == "OK"
    assert second.bans() == []
    third = Child(tmp_path)
    assert third.send(json.dumps({"msg": amps_line("192.0.2.8", port=19), "uuid": "u19"})) == "OK"
    assert [b["host"] for b in third.bans()] == ["192.0.2.8"]


@pytest.mark.parametrize("count", [19, 20])
def test_failures_survive_sigkill(tmp_path, count):
    first = Child(tmp_path)
    for port in range(10):
        assert first.send(amps_line("192.0.2.9", port=port)) == "OK"
    first.process.send_signal(signal.SIGKILL)
    first.process.wait()
    second = Child(tmp_path)
    for port in range(10, count):
        assert second.send(amps_line("192.0.2.9", port=port)) == "OK"
    assert len(second.bans()) == (1 if count == 20 else 0)


def test_transactions_defer_then_commit_applies_the_batch(tmp_path):
    child = Child(tmp_path)
    assert child.send("BEGIN TRANSACTION") == "OK"
    replies = [child.send(json.dumps({"msg": amps_line(f"192.0.2.{n}", port=i), "uuid": f"t{n}-{i}"}))
               for n in (40, 41) for i in range(20)]
    assert replies == ["DEFER_COMMIT"] * 40
    assert child.send("COMMIT TRANSACTION") == "OK"
    # rsyslog resends a batch whose commit failed: nothing counts twice
    assert child.send("BEGIN TRANSACTION") == "OK"
    assert child.send(json.dumps({"msg": amps_line("192.0.2.40", port=0), "uuid": "t40-0"})) == "DEFER_COMMIT"
    assert child.send("COMMIT TRANSACTION") == "OK"
    assert sorted(b["host"] for b in child.bans()) == ["192.0.2.40", "192.0.2.41"]


def test_a_transaction_cut_short_by_eof_still_applies_its_bans(tmp_path):
    child = Child(tmp_path)
    assert child.send("BEGIN TRANSACTION") == "OK"
    for i in range(20):
        assert child.send(json.dumps({"msg": amps_line("192.0.2.44", port=i), "uuid": f"e{i}"})) == "DEFER_COMMIT"
    assert [b["host"] for b in child.bans()] == ["192.0.2.44"]  # EOF before COMMIT: applied on the way out


def test_messages_of_a_transaction_already_read_go_to_handle_many_in_one_call(tmp_path):
    import os

    from omprog_ban.omprog import serve

    lines = ["BEGIN TRANSACTION", *(f"m{n}" for n in range(50)), "COMMIT TRANSACTION", "alone"]
    source = tmp_path / "in"
    source.write_bytes("".join(line + "\n" for line in lines).encode())
    replies = tmp_path / "out"
    calls: list[list[str]] = []
    singles: list[str] = []
    in_fd, out_fd = os.open(source, os.O_RDONLY), os.open(replies, os.O_WRONLY | os.O_CREAT)
    try:
        serve(lambda line, defer=False: singles.append(line.text), lambda: None, lambda now: None, in_fd, out_fd,
              handle_many=lambda group, defer=False: calls.append([line.text for line in group]))
    finally:
        os.close(in_fd)
        os.close(out_fd)
    assert calls == [[f"m{n}" for n in range(50)]] and singles == ["alone"]
    assert replies.read_text().split("\n")[:-1] == ["OK", "OK", *["DEFER_COMMIT"] * 50, "OK", "OK"]


def _serve_file(tmp_path, lines, flush=lambda: None, settled=None):
    """Serve ``lines`` as the relay hands them over, with a spool; return what handle_many saw and the replies.

    ``settled``: a list that gets, for each settle, whether it confirmed and the replies written by then."""
    import os

    from omprog_ban.omprog import serve
    from omprog_ban.spool import Spool

    source, replies = tmp_path / "in", tmp_path / "out"
    source.write_bytes("".join(line + "\n" for line in lines).encode())
    spool = Spool(tmp_path / "spool")
    seen: list[tuple[list[str], list[str], list[str]]] = []  # (texts, replies so far, spooled) at each call

    def handle_many(group, defer=False):
        seen.append(([line.text for line in group], replies.read_text().split(), spool.pending()))

    in_fd, out_fd = os.open(source, os.O_RDONLY), os.open(replies, os.O_WRONLY | os.O_CREAT)
    try:
        serve(lambda line, defer=False: None, flush, lambda now: None, in_fd, out_fd, relayed=True,
              handle_many=handle_many, spool=spool,
              settle=lambda confirmed: settled is not None and settled.append((confirmed, replies.read_text().split("\n")[:-1])))
    finally:
        os.close(in_fd)
        os.close(out_fd)
    left = spool.pending()
    spool.close()
    return seen, replies.read_text().split("\n")[:-1], left


def _keyed(n):
    return json.dumps({"msg": f"m{n}", "uuid": f"u{n}"})


def test_a_batch_in_hand_is_committed_once_spooled_then_counted(tmp_path):
    lines = ["BEGIN TRANSACTION", *(_keyed(n) for n in range(50)), "COMMIT TRANSACTION", "alone"]
    seen, replies, left = _serve_file(tmp_path, lines)
    assert len(seen) == 1
    texts, replied, spooled = seen[0]
    assert texts == [f"m{n}" for n in range(50)]
    assert replied == ["OK", "OK"]  # the start-up OK and the commit's, before a message was counted
    assert spooled == [(_keyed(n) + "\n").encode() for n in range(50)]  # ... because they were in the spool
    assert replies == ["OK", "OK", "OK"] and left == []  # then "alone"; the spool emptied once they counted


def test_without_uuids_or_with_bans_owed_a_commit_waits_for_the_counting(tmp_path):
    plain = ["BEGIN TRANSACTION", *(f"m{n}" for n in range(5)), "COMMIT TRANSACTION"]
    (tmp_path / "plain").mkdir()
    seen, replies, _ = _serve_file(tmp_path / "plain", plain)
    assert [replied for _, replied, _ in seen] == [["OK"]]  # counted before the commit was answered
    assert [spooled for _, _, spooled in seen] == [[]] and replies == ["OK", "OK"]

    refusals = [NftError("set full")]

    def flush():  # the kernel refuses the first batch's bans once
        if refusals:
            raise refusals.pop()

    keyed = ["BEGIN TRANSACTION", *(_keyed(n) for n in range(5)), "COMMIT TRANSACTION",
             "BEGIN TRANSACTION", *(_keyed(n) for n in range(5, 10)), "COMMIT TRANSACTION"]
    seen, replies, _ = _serve_file(tmp_path, keyed, flush)
    assert [replied for _, replied, _ in seen] == [["OK", "OK"], ["OK", "OK"]]
    # the first commit answered from the spool; its bans refused, the second waits for the flush
    assert [len(spooled) for _, _, spooled in seen] == [5, 0] and replies == ["OK", "OK", "OK"]


def test_each_commit_settles_its_messages_once_its_reply_is_written(tmp_path):
    """A batch whose commit is answered with an error is settled unconfirmed: rsyslog may resend it
    however late, and its keys must stay known (omprog_ban.deliveries)."""
    refusals = [NftError("set full")]

    def flush():
        if refusals:
            raise refusals.pop()

    plain = ["BEGIN TRANSACTION", *(f"m{n}" for n in range(5)), "COMMIT TRANSACTION",
             "BEGIN TRANSACTION", *(f"m{n}" for n in range(5)), "COMMIT TRANSACTION"]
    settled: list = []
    _, replies, _ = _serve_file(tmp_path, plain, flush, settled)
    assert replies == ["OK", "nft error: set full", "OK"]
    assert settled == [(False, ["OK", "nft error: set full"]), (True, replies)]

    (tmp_path / "keyed").mkdir()
    settled = []
    keyed = ["BEGIN TRANSACTION", *(_keyed(n) for n in range(5)), "COMMIT TRANSACTION"]
    _, replies, _ = _serve_file(tmp_path / "keyed", keyed, settled=settled)
    assert replies == ["OK", "OK"] and settled == [(True, ["OK", "OK"])]  # answered from the spool


def test_fast_messages_get_no_answer_their_segment_goes_once_counted_and_a_refusal_is_noted(tmp_path):
    import os

    from omprog_ban.inbox import Inbox
    from omprog_ban.omprog import serve

    token = b"\x1etest"
    inbox = Inbox(tmp_path / "inbox")
    inbox.open()
    inbox.keep(b"".join((_keyed(n) + "\n").encode() for n in range(3)), 3)
    inbox.rotate()  # segment 0 whole, segment 1 open
    inbox.close()
    lines = [token + b" F", *(_keyed(n).encode() for n in range(3)), token + b" S 0", _keyed(3).encode(),
             token + b" C", b"alone"]
    source, replies = tmp_path / "in", tmp_path / "out"
    source.write_bytes(b"".join(line + b"\n" for line in lines))
    counted: list[str] = []
    flushes = []

    def flush():
        flushes.append(len(counted))
        if flushes == [3]:  # the kernel refuses the segment's bans once
            raise NftError("set full")

    def handle_many(group, defer=False):
        counted.extend(line.text for line in group)

    def handle(line, defer=False):  # as the pipeline does: owed bans first, then this line's
        flush()
        counted.append(line.text)

    in_fd, out_fd = os.open(source, os.O_RDONLY), os.open(replies, os.O_WRONLY | os.O_CREAT)
    try:
        serve(handle, flush, lambda now: None, in_fd, out_fd,
              relayed=True, handle_many=handle_many, token=token, inbox=inbox)
    finally:
        os.close(in_fd)
        os.close(out_fd)
    assert counted == ["m0", "m1", "m2", "m3", "alone"]
    assert flushes[0] == 3  # the segment's bans tried before it went (refused: they stay owed)
    assert [number for number, _ in Inbox(tmp_path / "inbox").pending()] == [1]
    # the start-up OK; then no answer to a fast message, the note of the refusal, the worker's answer to "alone"
    assert replies.read_bytes().split(b"\n")[:-1] == [b"OK", token + b" OWED", b"OK"]
