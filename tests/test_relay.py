"""``run`` as two processes: the relay on rsyslog's pipes answers what it may, the worker the rest."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from omprog_ban import ledger
from omprog_ban.inbox import Inbox
from omprog_ban.relay import keyed, worker_cpus
from omprog_ban.spool import Spool
from tests.lab import amps_line, wait_for


class Run:
    """``omprog-ban run --dry-run`` on pipes (optionally under taskset), one line at a time as rsyslog sends."""

    def __init__(self, state_dir: Path, pin: str | None = None) -> None:
        argv = [sys.executable, "-m", "omprog_ban", "run", "--dry-run", "--config", "default", "--state-dir", str(state_dir)]
        self.state_dir = state_dir
        self.process = subprocess.Popen(["taskset", "-c", pin, *argv] if pin else argv, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        assert self.process.stdout.readline() == "OK\n"  # the relay's, at once

    def ready(self) -> "Run":
        """Wait for the worker: a line outside a transaction is answered by it."""
        assert self.send("not a failure") == "OK"
        return self

    def send(self, line: str) -> str:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        return self.process.stdout.readline().rstrip("\n")

    def worker(self) -> int:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        assert len(children) == 1, children
        return int(children[0])

    def failures(self) -> int:
        return sum(record.jail == "amps" for record in self.records())

    def counted(self) -> set[str]:
        """Return the delivery keys the ledger holds (a restart compacts them into key-only records)."""
        return {record.extra for record in self.records() if record.extra}

    def records(self) -> list:
        return [record for record in ledger.read(self.state_dir / "dry-run.ledger") if record.kind == "F"]

    def spooled(self) -> set[str]:
        """Return the uuids of the messages in the spool."""
        spool = Spool(self.state_dir / "dry-run.spool")
        try:
            return {json.loads(line)["uuid"] for line in spool.pending()}
        finally:
            spool.close()


def message(address: str, serial: int) -> str:
    return json.dumps({"msg": " " + amps_line(address, port=serial), "uuid": f"u{serial}"})


def test_a_batch_is_deferred_by_the_relay_and_committed_by_the_worker(tmp_path):
    run = Run(tmp_path)
    assert run.send("BEGIN TRANSACTION") == "OK"
    assert [run.send(message("192.0.2.7", n)) for n in range(25)] == ["DEFER_COMMIT"] * 25
    assert run.send("COMMIT TRANSACTION") == "OK"
    # When OK came back every message was durable: counted in the ledger, or in the spool to be counted
    # next (a worker that is behind answers a whole batch in hand once it is spooled).
    spooled = run.spooled()  # first: a message leaves the spool only once it is in the ledger
    assert run.counted() | spooled == {f"u{n}" for n in range(25)}
    assert run.send(message("192.0.2.8", 99)) == "OK"  # outside a transaction: the worker's answer
    assert run.failures() == 26
    assert run.spooled() == set()
    assert list((tmp_path / "dry-run.inbox").glob("*.seg")) == []  # rsyslog sends transactions: no inbox
    run.process.stdin.close()
    assert run.process.wait(10) == 0
    bans = [json.loads(line) for line in run.process.stderr.read().splitlines() if line.startswith("{")]
    assert [ban["host"] for ban in bans] == ["192.0.2.7"]


def test_worker_cpus_avoid_a_pinned_rsyslog_else_take_any():
    assert worker_cpus({1}, 2) == {0}
    assert worker_cpus({0, 1}, 2) == {0, 1}
    assert worker_cpus({2, 3}, 4) == {0, 1}


def test_the_worker_leaves_the_inherited_cpu_pin_and_the_relay_keeps_it(tmp_path):
    if (os.cpu_count() or 1) < 2:
        return  # one CPU: nothing to leave (the machines CI runs on have two)
    run = Run(tmp_path, pin="1")
    try:
        run.ready()
        assert os.sched_getaffinity(run.process.pid) == {1}
        assert os.sched_getaffinity(run.worker()) == set(range(os.cpu_count())) - {1}
    finally:
        run.process.kill()
        run.process.wait()


def test_a_worker_killed_in_a_batch_fails_the_commit_so_rsyslog_resends_it_whole(tmp_path):
    run = Run(tmp_path).ready()
    assert run.send("BEGIN TRANSACTION") == "OK"
    assert run.send(message("192.0.2.9", 1)) == "DEFER_COMMIT"
    os.kill(run.worker(), signal.SIGKILL)
    # no message of the batch goes unanswered (rsyslog would not resend those before it)
    assert [run.send(message("192.0.2.9", n)) for n in range(2, 200)] == ["DEFER_COMMIT"] * 198
    assert run.send("COMMIT TRANSACTION").startswith("omprog-ban: the worker is gone")  # an error: resent whole
    assert run.process.stdout.readline() == ""  # then the relay ends, and rsyslog starts a new run
    assert run.process.wait(10) != 0
    assert "the worker is gone" in run.process.stderr.read()


def test_the_start_up_ok_comes_before_the_worker_is_ready_and_a_worker_that_cannot_start_ends_the_relay(tmp_path):
    import fcntl

    (tmp_path / "dry-run.lock").touch()
    holder = os.open(tmp_path / "dry-run.lock", os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)  # another instance holds the state directory
    try:
        started = time.monotonic()
        run = Run(tmp_path)  # answers OK at once (its constructor reads it)
        assert time.monotonic() - started < 5
        assert run.process.wait(30) == 75  # the worker waited 10 s for the lock, then gave up: EX_TEMPFAIL
        assert "another omprog-ban holds" in run.process.stderr.read()
    finally:
        os.close(holder)


def test_a_worker_killed_between_messages_never_leaves_an_answer_without_its_count(tmp_path):
    run = Run(tmp_path)
    assert run.send(message("192.0.2.9", 1)) == "OK"
    os.kill(run.worker(), signal.SIGKILL)
    run.process.stdin.write(message("192.0.2.9", 2) + "\n")
    run.process.stdin.flush()
    answer = run.process.stdout.readline()
    if answer == "":  # the message met the dead worker: no OK, the relay ends, rsyslog resends it to the next run
        assert run.process.wait(10) != 0
    else:  # the relay had replaced the worker first (see the next test): counted, or in the inbox, then answered
        assert answer == "OK\n" and run.counted() | inbox_uuids(tmp_path) >= {"u1", "u2"}


@pytest.mark.parametrize("fast", [False, True])
def test_a_worker_killed_while_the_relay_holds_part_of_a_message_loses_nothing(tmp_path, fast):
    # omprog writes a message and its newline apart when the template lacks one (and a long
    # message may come in pieces): the relay must not start afresh with part of a line read.
    run = Run(tmp_path).ready()
    if fast:  # a message outside a transaction with a uuid: answered from the inbox from now on
        assert run.send(message("192.0.2.21", 0)) == "OK"
    text = message("192.0.2.21", 1)
    run.process.stdin.write(text[:40])
    run.process.stdin.flush()
    time.sleep(0.3)  # read by the relay
    worker = run.worker()
    os.kill(worker, signal.SIGKILL)
    time.sleep(0.5)  # the relay sees the worker's end
    run.process.stdin.write(text[40:] + "\n")
    run.process.stdin.flush()
    answer = run.process.stdout.readline()
    if answer == "":  # not answered: the relay ended, and rsyslog resends the message to the next run
        assert run.process.wait(10) != 0
    else:  # answered: then counted, or in the inbox for the next worker
        assert answer == "OK\n"
        assert wait_for(lambda: "u1" in run.counted() | inbox_uuids(tmp_path), 10), run.counted()
        run.process.stdin.close()
        run.process.wait(10)


def test_a_killed_relay_leaves_nothing_it_answered_uncounted(tmp_path):
    run = Run(tmp_path).ready()
    worker = run.worker()
    assert run.send("BEGIN TRANSACTION") == "OK"
    assert [run.send(message("192.0.2.10", n)) for n in range(10)] == ["DEFER_COMMIT"] * 10
    assert run.send("COMMIT TRANSACTION") == "OK"
    assert run.send("BEGIN TRANSACTION") == "OK"
    assert [run.send(message("192.0.2.10", n)) for n in range(10, 15)] == ["DEFER_COMMIT"] * 5  # not committed
    run.process.kill()  # SIGKILL: rsyslog 8.2302 will not resend those five, so the worker must have them
    run.process.wait()
    assert wait_for(lambda: not Path(f"/proc/{worker}").exists() or Path(f"/proc/{worker}/stat").read_text().split()[2] == "Z", 10)
    again = Run(tmp_path)  # the worker read to EOF, counted, exited: the lock is free, a new run starts
    try:
        assert again.failures() == 15
        # rsyslog resends from the message that had no answer; one resent message is known by its uuid
        assert again.send("BEGIN TRANSACTION") == "OK"
        assert again.send(message("192.0.2.10", 14)) == "DEFER_COMMIT"
        assert again.send(message("192.0.2.10", 15)) == "DEFER_COMMIT"
        assert again.send("COMMIT TRANSACTION") == "OK"
        spooled = again.spooled()  # durable at the OK (the spool first, as above)
        assert again.counted() | spooled == {f"u{n}" for n in range(16)}
    finally:
        again.process.stdin.close()
        again.process.wait(10)
    assert again.failures() == 16  # u14 counted once


def test_many_lines_in_one_write_get_one_answer_each_in_order(tmp_path):
    run = Run(tmp_path)
    lines = ["BEGIN TRANSACTION", *(message("192.0.2.11", n) for n in range(5)), "COMMIT TRANSACTION",
             "plain text", "BEGIN TRANSACTION", "COMMIT TRANSACTION"]
    run.process.stdin.write("".join(line + "\n" for line in lines))
    run.process.stdin.flush()
    answers = [run.process.stdout.readline().rstrip("\n") for _ in lines]
    assert answers == ["OK", *["DEFER_COMMIT"] * 5, "OK", "OK", "OK", "OK"]
    started = time.monotonic()
    run.process.stdin.close()
    assert run.process.wait(10) == 0 and time.monotonic() - started < 5


def test_a_worker_killed_between_batches_is_replaced_in_place_and_counts_the_spool(tmp_path):
    run = Run(tmp_path).ready()
    relay, worker = run.process.pid, run.worker()
    # As a worker leaves it when killed right after answering a commit from the spool: nothing more
    # comes from rsyslog, so no new run would start; the relay starts a new worker itself.
    spool = Spool(tmp_path / "dry-run.spool")
    spool.keep([(message("192.0.2.13", n) + "\n").encode() for n in range(20)])
    spool.close()
    os.kill(worker, signal.SIGKILL)
    assert wait_for(lambda: run.failures() == 20 and run.spooled() == set(), 10), run.failures()
    assert run.process.pid == relay and run.process.poll() is None  # the same process rsyslog started
    assert run.worker() != worker
    assert run.send("not a failure") == "OK"  # one answer, no second start-up OK in the way
    run.process.stdin.close()
    assert run.process.wait(10) == 0


def inbox_uuids(state_dir: Path) -> set[str]:
    """Return the uuids of the messages in the inbox (answered OK, maybe not counted yet)."""
    return {json.loads(line)["uuid"] for _, lines in Inbox(state_dir / "dry-run.inbox").pending() for line in lines}


def test_without_transactions_a_message_with_a_uuid_is_answered_once_in_the_inbox_and_survives_sigkills(tmp_path):
    run = Run(tmp_path).ready()
    worker = run.worker()
    os.kill(worker, signal.SIGSTOP)  # a worker that has counted nothing yet: the answers cannot come from it
    try:
        assert [run.send(message("192.0.2.20", n)) for n in range(30)] == ["OK"] * 30
        assert inbox_uuids(tmp_path) == {f"u{n}" for n in range(30)} and run.failures() == 0
    finally:
        os.kill(worker, signal.SIGKILL)
        run.process.kill()  # both die: only the inbox has the thirty messages rsyslog no longer holds
        run.process.wait()
    assert wait_for(lambda: not Path(f"/proc/{worker}").exists() or Path(f"/proc/{worker}/stat").read_text().split()[2] == "Z", 10)
    again = Run(tmp_path).ready()
    try:
        assert again.failures() == 30 and inbox_uuids(tmp_path) == set()  # counted before the start-up OK
        assert again.send(message("192.0.2.20", 29)) == "OK"  # resent: known by its uuid
        assert again.send(message("192.0.2.20", 30)) == "OK"
        assert wait_for(lambda: again.failures() == 31, 5), again.failures()
    finally:
        again.process.stdin.close()
        assert again.process.wait(10) == 0
    bans = [json.loads(line) for line in again.process.stderr.read().splitlines() if line.startswith("{")]
    assert [ban["host"] for ban in bans] == ["192.0.2.20"]  # once, from the thirty counted at the start


def test_a_commit_with_no_begin_after_a_restart_gets_the_workers_answer(tmp_path):
    # rsyslog may go on with a batch it began in the child before: messages, then COMMIT, no BEGIN here
    fake = FakeWorker(tmp_path).start()
    messages = [json.dumps({"msg": f"m{n}", "uuid": f"u{n}"}).encode() for n in range(3)]
    fake.send(messages[0])
    assert fake.read_worker() == messages[0] + b"\n"  # careful at first: the worker answers
    os.write(fake.to_relay, b"OK\n")
    assert fake.read_rsyslog() == b"OK\n"
    fake.send(messages[1])
    assert fake.read_worker() == fake.token + b" F\n"
    assert fake.read_worker() == messages[1] + b"\n"
    assert fake.read_rsyslog() == b"OK\n"  # from the inbox
    fake.send(b"COMMIT TRANSACTION")
    assert fake.read_worker() == fake.token + b" C\n"  # the worker is told before it sees the COMMIT
    assert fake.read_worker() == b"COMMIT TRANSACTION\n"
    os.write(fake.to_relay, b"OK\n")
    assert fake.read_rsyslog() == b"OK\n"
    fake.send(messages[2])  # rsyslog sends transactions: the relay stays careful
    assert fake.read_worker() == messages[2] + b"\n"
    os.write(fake.to_relay, b"OK\n")
    assert fake.read_rsyslog() == b"OK\n"
    os.close(fake.rsyslog_in)
    fake.thread.join(5)
    assert fake.error is None


def test_messages_without_a_uuid_and_transactions_get_the_workers_answer_not_the_inbox(tmp_path):
    run = Run(tmp_path).ready()
    assert run.send(message("192.0.2.21", 1)) == "OK"
    assert run.send(amps_line("192.0.2.21", port=2)) == "OK"  # plain: no key to know a recount by
    assert run.send(message("192.0.2.21", 3)) == "OK"
    assert inbox_uuids(tmp_path) <= {"u1", "u3"}  # (a segment the worker finished is gone)
    assert wait_for(lambda: run.failures() == 3, 5)
    assert run.send("BEGIN TRANSACTION") == "OK"  # rsyslog sends transactions: the relay stays careful
    assert run.send(message("192.0.2.21", 4)) == "DEFER_COMMIT"
    assert run.send("COMMIT TRANSACTION") == "OK"
    assert run.send(message("192.0.2.21", 5)) == "OK"
    assert not inbox_uuids(tmp_path) & {"u4", "u5"}
    assert run.failures() == 5  # the worker's answer came after its count
    run.process.stdin.close()
    assert run.process.wait(10) == 0


class FakeWorker:
    """A Relay on real pipes, run in a thread, with the test playing the worker."""

    def __init__(self, tmp_path: Path) -> None:
        import threading

        from omprog_ban.relay import Relay

        stdin, self.rsyslog_in = os.pipe()
        self.rsyslog_out, stdout = os.pipe()
        self.from_relay, to_worker = os.pipe()
        from_worker, self.to_relay = os.pipe()
        self.token = b"\x1etest-token"
        self.inbox = tmp_path / "inbox"
        self.relay = Relay(stdin, stdout, to_worker, from_worker, Inbox(self.inbox), self.token)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            self.relay.run()
        except BaseException as error:  # noqa: BLE001 - reported by the test
            self.error = error

    def start(self) -> "FakeWorker":
        self.thread.start()
        assert self.read_rsyslog() == b"OK\n"  # the relay's start-up OK
        os.write(self.to_relay, b"OK\n")  # the worker's, read and dropped by the relay
        return self

    def send(self, line: bytes) -> None:
        os.write(self.rsyslog_in, line + b"\n")

    def read_rsyslog(self) -> bytes:
        return _read_line(self.rsyslog_out)

    def read_worker(self) -> bytes:
        return _read_line(self.from_relay)


def _read_line(fd: int) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        data += os.read(fd, 1)
    return data


def test_bans_the_kernel_refused_make_the_relay_wait_for_the_workers_answer_again(tmp_path):
    fake = FakeWorker(tmp_path).start()
    first = json.dumps({"msg": "m0", "uuid": "u0"}).encode()
    fake.send(first)  # the first message after a start: rsyslog may be going on with a batch, so careful
    assert fake.read_worker() == first + b"\n"
    os.write(fake.to_relay, b"OK\n")
    assert fake.read_rsyslog() == b"OK\n"
    keyed = json.dumps({"msg": "m1", "uuid": "u1"}).encode()
    fake.send(keyed)
    assert fake.read_worker() == fake.token + b" F\n"
    assert fake.read_worker() == keyed + b"\n"
    assert fake.read_rsyslog() == b"OK\n"  # from the inbox: the worker said nothing
    os.write(fake.to_relay, fake.token + b" OWED\n")  # the worker: nft refused bans
    time.sleep(0.2)
    second = json.dumps({"msg": "m2", "uuid": "u2"}).encode()
    fake.send(second)
    assert fake.read_worker() == fake.token + b" C\n"  # careful: this one waits for the worker
    assert fake.read_worker() == second + b"\n"
    os.write(fake.to_relay, b"nft error: set full\n")
    assert fake.read_rsyslog() == b"nft error: set full\n"  # rsyslog suspends the action and resends it
    fake.send(second)
    assert fake.read_worker() == second + b"\n"
    os.write(fake.to_relay, b"OK\n")  # the kernel took the bans
    assert fake.read_rsyslog() == b"OK\n"
    third = json.dumps({"msg": "m3", "uuid": "u3"}).encode()
    fake.send(third)
    assert fake.read_worker() == fake.token + b" F\n"  # fast again
    assert fake.read_worker() == third + b"\n"
    assert fake.read_rsyslog() == b"OK\n"
    assert {line for _, lines in Inbox(fake.inbox).pending() for line in lines} == {keyed + b"\n", third + b"\n"}
    os.close(fake.rsyslog_in)
    fake.thread.join(5)
    assert fake.error is None and not fake.thread.is_alive()


def test_only_a_whole_json_object_with_a_uuid_key_goes_to_the_inbox():
    def taken(line: bytes) -> bool:
        line += b"\n"
        return keyed(line, 0, len(line) - 1)

    assert taken(b"0123456789ABCDEF0123456789ABCDEF\tamps\thost\t2026-12-01T07:00:00+00:00\t msg")  # the shipped template
    assert taken(b"0123456789ABCDEF0123456789ABCDEF\t\t\t\t")
    assert not taken(b"0123456789ABCDEF0123456789ABCDEF\tamps\thost\tcut short")
    assert not taken(b"0123456789ABCDEF0123456789ABCDEZ\tamps\thost\tt\tmsg")

    assert taken(b'{"msg":"a", "uuid":"E95D6B03", "programname":"amps"}')  # a jsonf template
    assert taken(b'{"msg":"a", "uuid": "u1"}')
    assert not taken(b'{"msg":"a", "uuid":"E95D6B03", "programname":"am')  # cut short: the worker finds no key
    assert not taken(b'{"msg":"a", "uuid":""}')  # an empty uuid
    assert not taken(b'{"msg":"a \\"uuid\\":\\"u1\\""}')  # a uuid inside the message is no key
    assert not taken(b'<13>Dec  7 host amps: "uuid":"u1"}')  # not JSON


@pytest.mark.parametrize("tabs", range(7))
def test_the_relay_takes_a_line_of_the_shipped_template_exactly_when_the_worker_finds_its_key(tabs):
    """A line answered from the inbox is known by its key after a crash: the relay's look
    and the worker's framing must agree on every line of the template's shape."""
    from omprog_ban.framing import frame

    for head in ("0123456789ABCDEF0123456789ABCDEF", "0123456789abcdef0123456789abcdef", "0123456789ABCDEF0123456789ABCDE",
                 "0123456789ABCDEF0123456789ABCDEF0", "0123456789ABCDEF0123456789ABCDEx", "{\"msg\":\"a\"}"):
        for tail in ("", "x", "\\u0041", "\r", "\xff"):
            line = (head + "\tfield" * tabs + tail).encode("utf-8", "surrogateescape") if tail != "\xff" else \
                (head + "\tfield" * tabs).encode() + b"\xff"
            assert keyed(line + b"\n", 0, len(line)) == (frame(line + b"\n", 1.0).key is not None), line
