"""The front of ``run``: answer rsyslog at once where the protocol allows, work on another core.

``omprog-ban run`` is two processes. The one rsyslog started (the relay) reads
stdin and keeps rsyslog's round trip short; the one it forks (the worker) runs
the whole pipeline (:func:`omprog_ban.omprog.serve`) on what the relay hands it
through a pipe, and answers what needs an answer through another.

The relay answers by itself only what it may promise without the worker:

- a message outside a transaction that carries rsyslog's uuid (the shipped
  template, ``useTransactions="off"``): ``OK`` once its line is in the inbox
  (:mod:`omprog_ban.inbox`), which outlives both processes; the worker counts it
  a moment later and applies its bans (fast mode);
- ``BEGIN TRANSACTION``: ``OK``;
- a message inside a transaction: ``DEFER_COMMIT`` ("received, not yet
  committed": rsyslog still holds it and resends the whole batch unless the
  commit is answered ``OK``);

and passes on the worker's answer, which follows the worker's durable work, for:

- ``COMMIT TRANSACTION``: ``OK`` once every failure of the batch is in the
  ledger and every ban in the kernel, or the nft error; or, when the worker is
  behind and the rest of the batch is in hand, once that rest is in the spool
  (:mod:`omprog_ban.spool`), to be counted right after;
- any other message (no uuid, over LONGEST bytes, or while a ban the kernel
  refused is owed): ``OK`` once its failures are in the ledger and its bans in
  the kernel, or the nft error, which suspends the action: rsyslog resends it.

Fast mode is the relay's state, and the worker is told of each change by a
marker line in the hand-over pipe (a random per-run token, then ``F`` fast,
``C`` careful, ``S n`` inbox segment n is whole); the worker's note ``OWED``
(bans the kernel refused) sends the relay back to careful until the worker
answers ``OK`` again, so the refusal reaches rsyslog on the next message.
rsyslog that sends transactions keeps the relay careful: a message answered
``OK`` inside a transaction would commit itself, and rsyslog would then wrap
every message in a transaction of its own (measured slower). After a start the
relay is careful until a message outside a transaction has had the worker's
``OK``: rsyslog may go on with a batch it began in the child before, with no
``BEGIN`` here; a ``COMMIT`` makes the relay careful for good (a soak with
transactions banned bystanders when such a ``COMMIT`` reached a worker in
fast mode).

So an ``OK`` means what it means without the relay, and the worker's per-message
work runs beside rsyslog instead of inside its round trip. Each side polls for
the other's next line a little before it sleeps (``SPIN``): a wake-up across
CPUs is the dearest part of a round trip on small VMs. The relay keeps the
CPU affinity it inherited (next to rsyslogd, where a round trip is cheapest);
the worker drops it: it runs on the CPUs rsyslogd was not pinned to (any CPU
when rsyslogd was not pinned).

Bytes go to the worker verbatim (with the markers between lines), and what the
relay read is in the worker's pipe before the relay answers any of it; a line
answered from the inbox is in the inbox before that. That is what keeps an
``OK`` exact when a process dies, given what rsyslog (8.2302) does: it resends
a batch whose commit failed, but not the messages it had had ``DEFER_COMMIT``
for when a later one goes unanswered.

- The relay killed: every message it answered is in the pipe (and those of
  fast mode in the inbox); the worker reads to EOF, counts them, applies the
  bans and exits. rsyslog resends from the unanswered message on, and what was
  counted already is known by its uuid.
- The worker killed: in a transaction the relay answers the rest of the batch as
  before and fails its commit, so rsyslog resends the whole batch; in fast mode
  the next message finds it gone and is not answered. Then the relay exits. A
  batch committed from the spool and the messages answered from the inbox are
  counted by the next worker, first.
- The worker killed between messages or batches: the relay notices at once (it
  waits for rsyslog's next line and the worker's end together) and starts
  ``run`` afresh in its own process (``exec``, the same pipes to rsyslog, no
  second start-up ``OK``), so what the spool and the inbox hold is counted now,
  not whenever rsyslog next has a message.

Either way rsyslog then starts a new ``run``.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import select
import signal
import sys
import time
from pathlib import Path
from typing import Callable

from omprog_ban.inbox import LONGEST, Inbox

log = logging.getLogger("omprog-ban")

BEGIN, COMMIT = b"BEGIN TRANSACTION", b"COMMIT TRANSACTION"
DEFERRED = b"DEFER_COMMIT\n"
GONE = b"omprog-ban: the worker is gone, the batch was not committed\n"  # an error answer: rsyslog resends
PIPE_SIZE = 1 << 20  # the hand-over pipe's capacity (F_SETPIPE_SZ); the default is 64 KiB
_F_SETPIPE_SZ = 1031
# How long the relay polls for the worker's answer before it sleeps: waking it on
# another CPU costs more. Long enough for one message and its nft transaction;
# rsyslog waits for this answer anyway, so the CPU it polls on has nothing else to do.
SPIN = 200e-6


FAST, CAREFUL, OWED = b" F\n", b" C\n", b" OWED\n"  # after the token: the relay's markers, the worker's note


def keyed(chunk: bytes, begin: int, end: int) -> bool:
    """Whether the line ``chunk[begin:end]`` (no newline) carries rsyslog's uuid, as
    :func:`omprog_ban.framing.frame` reads it, as far as a look without parsing tells.

    The shipped template's line: 32 hex digits and a TAB, then three more TABs
    (exactly what ``frame`` takes). Or a JSON object with a non-empty string
    uuid: inside a JSON string every quote is escaped, so ``"uuid":`` with a
    bare quote before the colon is a key; a line cut short does not end with
    the object's ``}``. The worker reads that line with a JSON parser and warns
    about one it finds no uuid in (a custom template that nests one).
    """
    if _FIELDS(chunk, begin, end):
        return True
    at = chunk.find(b'"uuid":', begin, end)
    if at < 0 or chunk[begin] != 0x7B or chunk[end - 1] != 0x7D:
        return False
    at += 7
    while chunk[at] == 0x20:
        at += 1
    return chunk[at] == 0x22 and chunk[at + 1] != 0x22


_FIELDS = re.compile(rb"[0-9A-Fa-f]{32}\t[^\t]*\t[^\t]*\t[^\t]*\t").match


class WorkerGone(Exception):
    """The worker closed its end: it exited or was killed."""


class WorkerGoneIdle(WorkerGone):
    """The worker ended between batches, with nothing of rsyslog's in hand."""


RESTARTED = "OMPROG_BAN_RELAY_RESTARTED"  # set across the relay's re-exec: rsyslog had its start-up OK


def run_split(worker: Callable[[int, int, bytes], int], stdin_fd: int = 0, stdout_fd: int = 1,
              inbox: Path | None = None) -> int:
    """Fork ``worker(input_fd, answer_fd, token)``, relay between rsyslog and it; return the exit code.

    The worker's return value is its exit code; the relay returns it (1 when the
    worker was killed, or went away while the relay still had lines for it).
    ``inbox``: the directory of :class:`omprog_ban.inbox.Inbox` (fast mode), or
    None (always careful). ``token`` starts each marker the relay puts between
    rsyslog's lines and each note the worker puts before its answers: random
    per run, so no line rsyslog sends can pass for one.
    """
    token = b"\x1eomprog-ban-" + os.urandom(8).hex().encode()
    to_worker, from_relay = _pipe()
    from_worker, to_relay = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker
        code = 1
        try:
            os.close(from_relay)
            os.close(from_worker)
            _detach(stdin_fd, stdout_fd)
            code = worker(to_worker, to_relay, token)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        except BrokenPipeError:  # the relay died (rsyslog starts another run): nothing to answer to
            log.warning("the relay is gone; the worker exits")
        except BaseException:  # noqa: BLE001 - the worker's last words, then its code
            log.exception("the worker failed")
        finally:
            logging.shutdown()
            os._exit(code)
    os.close(to_worker)
    os.close(to_relay)
    code, idle = 1, False
    try:
        box = Inbox(inbox) if inbox is not None else None
        try:
            Relay(stdin_fd, stdout_fd, from_relay, from_worker, box, token).run(greet=not os.environ.get(RESTARTED))
        finally:
            if box is not None:
                box.close()
    except WorkerGoneIdle:
        idle = True
    except WorkerGone:
        log.error("the worker is gone; exiting so that rsyslog starts a new one")
    finally:
        os.close(from_relay)  # EOF: the worker applies what it holds and exits
        code, killed = _wait(pid)
        os.close(from_worker)
    if idle and killed:
        _restart()
    if idle:
        log.error("the worker ended (exit %d) between batches; exiting so that rsyslog starts a new one", code)
    return code


def _restart() -> None:
    """Start ``run`` afresh in this process (same pid, same pipes to rsyslog), without a second start-up OK.

    A worker killed between batches may have answered a commit from the spool
    and left it uncounted; rsyslog, with nothing more to send, would start no
    new ``run`` and the bans would wait for its next message. The new worker
    counts the spool first.
    """
    log.error("the worker was killed between batches; starting a new one")
    logging.shutdown()
    os.execve(sys.executable, sys.orig_argv, {**os.environ, RESTARTED: "1"})  # the command line rsyslog ran


def _pipe() -> tuple[int, int]:
    read_end, write_end = os.pipe()
    try:
        fcntl.fcntl(write_end, _F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:  # over /proc/sys/fs/pipe-max-size: the default size works too
        pass
    return read_end, write_end


def _detach(stdin_fd: int, stdout_fd: int) -> None:
    """In the worker: let go of rsyslog's pipes and of the CPU pin inherited with them."""
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, stdin_fd)
    os.dup2(null, stdout_fd)
    os.close(null)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's ^C is for the relay: the worker ends at EOF
    try:
        os.sched_setaffinity(0, worker_cpus(os.sched_getaffinity(0), os.cpu_count() or 1))
    except OSError:  # a cpuset that allows fewer: keep what we have
        pass


def worker_cpus(inherited: set[int], count: int) -> set[int]:
    """Return the CPUs the worker runs on: those rsyslog was not pinned to, or all when it was not pinned.

    rsyslogd pinned to some CPUs keeps them busy; the worker works beside it,
    not in its way. Unpinned (the usual case), the scheduler decides.
    """
    every = set(range(count))
    return (every - inherited) or every


def _wait(pid: int) -> tuple[int, bool]:
    """Return the worker's exit code (1 when a signal ended it) and whether a signal did."""
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            if os.WIFEXITED(status):
                return os.waitstatus_to_exitcode(status), False
            return 1, os.WIFSIGNALED(status)
        except InterruptedError:
            continue
        except ChildProcessError:
            return 1, False


class Relay:
    """Read rsyslog's lines, hand them to the worker, answer each one exactly once."""

    def __init__(self, stdin_fd: int, stdout_fd: int, to_worker: int, from_worker: int,
                 inbox: Inbox | None = None, token: bytes = b"") -> None:
        self.stdin_fd, self.stdout_fd = stdin_fd, stdout_fd
        self.inbox, self.token = inbox, token
        self.fast = False  # answering messages OK from the inbox (the worker knows: markers)
        self.allowed = inbox is not None  # may go fast at the next clean point: no ban owed
        self.batches = False  # rsyslog sends transactions (useTransactions="on"): never fast
        self.to_worker, self.from_worker = to_worker, from_worker
        self.held = bytearray()  # lines read but not yet handed to the worker
        self.answers = b""  # the worker's answers read but not yet passed on
        self._poll = select.poll()
        self._poll.register(from_worker, select.POLLIN)
        self._idle = select.poll()  # between batches: rsyslog's next line, or the worker's end
        self._idle.register(stdin_fd, select.POLLIN)
        self._idle.register(from_worker, select.POLLIN)
        self.gone = False  # the worker died inside a transaction: its commit gets GONE

    def run(self, greet: bool = True) -> None:
        """Relay until EOF on stdin; raise WorkerGone if the worker ends first.

        A worker that dies inside a transaction is not given away by a missing
        answer in the middle of it (rsyslog would not resend the messages it had
        answered DEFER_COMMIT): the rest of the batch is answered as before, and
        its commit with an error, so rsyslog resends the whole batch.
        """
        # The start-up OK at once: the config is checked, and the lines wait in the pipe
        # while the worker starts (rsyslog 8.2302 with forceSingleInstance stops the
        # action for good if a child dies before its OK; one that dies after it is
        # started again). The worker's own start-up OK is read and dropped here.
        if greet:  # not after a restart in place: rsyslog had it
            self.stdout(b"OK\n")
        self.answer()
        # Careful until a message outside a transaction has had the worker's OK: after a restart
        # rsyslog may go on with a batch it began in the child before (no BEGIN comes).
        self.allowed = False
        in_batch = False
        head = b""  # the first bytes of a long line being read (enough to tell a mark)
        tail = b""  # a line not read to its end yet (up to LONGEST bytes): not answered, so it may wait here
        read, write, stdin_fd, stdout_fd, idle = os.read, os.write, self.stdin_fd, self.stdout_fd, self._idle.poll
        while True:
            if not in_batch and not head and not tail:  # between messages (part of one held: read on)
                if not self.fast and self.allowed and not self.batches and self.inbox is not None:
                    self.go_fast()
                ready = idle()  # rsyslog's next line, usually; else the worker's note or end first
                if ready[0][0] != stdin_fd and (len(ready) == 1 or ready[1][0] != stdin_fd):
                    self.wait_idle()
            chunk = read(stdin_fd, 1 << 16)
            if not chunk:
                self.held += tail
                break
            if tail:  # a line cut by the read before: whole now, or longer
                chunk, tail = tail + chunk, b""
            elif not head and (size := len(chunk)) != 18 and size != 19 and chunk.find(b"\n") == size - 1:
                # The usual case, kept short (it runs on rsyslog's CPU, once a message): one whole
                # line, as rsyslog writes them, and not a mark (BEGIN and COMMIT are 18 and 19 bytes).
                if in_batch:  # handed over, then deferred (a worker gone meanwhile fails the commit)
                    self.give(chunk, True)
                    if (written := write(stdout_fd, DEFERRED)) != len(DEFERRED):  # whole, on a pipe
                        self.stdout(DEFERRED[written:])
                    continue
                if self.fast and self.take(chunk, 0, size):  # in the inbox, handed over, answered
                    self.give(chunk, False)
                    if (written := write(stdout_fd, b"OK\n")) != 3:
                        self.stdout(b"OK\n"[written:])
                    continue
            replies = []
            start = 0
            while (end := chunk.find(b"\n", start)) >= 0:
                whole = not head  # the line began in this chunk
                line = head + chunk[start:min(end, start + 32)] if head else chunk[start:min(end, start + 32)]
                begin, head, start = start, b"", end + 1
                if line == BEGIN:
                    if self.fast:
                        self.careful()
                    self.batches = True  # rsyslog sends transactions: their messages are deferred, never fast
                    in_batch = True
                    replies.append(b"OK\n")
                elif line == COMMIT:
                    if self.fast:  # a batch rsyslog began in a child before this one (no BEGIN came here)
                        self.careful()
                    self.batches = True
                    in_batch = False
                    self.held += chunk[begin:start]
                    try:
                        replies.append(self.verdict())
                    except WorkerGone:
                        self.stdout(b"".join(replies) + GONE)
                        raise
                    continue
                elif in_batch:
                    replies.append(DEFERRED)
                elif self.fast and whole and self.take(chunk, begin, start):
                    replies.append(b"OK\n")
                else:
                    if self.fast:  # a message the inbox does not take: careful from here on
                        self.careful()
                    self.held += chunk[begin:start]
                    replies.append(self.verdict())
                    continue
                self.held += chunk[begin:start]
            if start < len(chunk):  # a line that goes on in the next chunk
                if not head and len(chunk) - start <= LONGEST:
                    tail = chunk[start:]
                else:  # a long line goes on in pieces, answered once whole
                    if self.fast and not head:  # the inbox takes whole lines only: careful, before it
                        self.careful()
                    self.held += chunk[start:]
                    if len(head) < 32:
                        head += chunk[start:start + 32]
            try:
                self.hand_over()  # before any answer: an answered line is never only in the relay
            except WorkerGone:
                if not in_batch:
                    raise
            if replies:
                self.stdout(b"".join(replies) if len(replies) > 1 else replies[0])
        self.hand_over()

    def take(self, chunk: bytes, begin: int, end: int) -> bool:
        """Fast mode: put the line ``chunk[begin:end]`` in the inbox (the caller hands it over next),
        or return False when the inbox does not take it (no ban owed, a uuid, at most LONGEST bytes)."""
        size = end - begin
        if not (self.allowed and size <= LONGEST and keyed(chunk, begin, end - 1)):
            return False
        if not self.inbox.add(chunk[begin:end] if size != len(chunk) else chunk):
            self._rotate()  # its marker goes after the last segment's lines, before this one
            self.inbox.add(chunk[begin:end])
        return True

    def wait_idle(self) -> None:
        """Between batches: return when rsyslog writes; raise WorkerGoneIdle if the worker ends first."""
        while True:
            ready = self._idle.poll()
            if ready[0][0] == self.stdin_fd or (len(ready) > 1 and ready[1][0] == self.stdin_fd):
                return
            self._read_worker(WorkerGoneIdle)  # nothing is owed an answer here but notes; kept in order all the same
            self._notes()

    def verdict(self) -> bytes:
        """Hand over what is held and return the worker's answer to its last line."""
        if self.gone:
            raise WorkerGone()
        self.hand_over()
        return self.answer()

    def give(self, line: bytes, in_batch: bool) -> None:
        """Hand ``line`` over after what is held (with nothing held: one write, no copy into ``held``).

        A worker gone inside a batch is noted (its commit fails); outside one it raises WorkerGone.
        """
        if self.held or self.gone:
            self.held += line
            try:
                self.hand_over()
            except WorkerGone:
                if not in_batch:
                    raise
            return
        try:
            written = os.write(self.to_worker, line)
        except BrokenPipeError:
            self.gone = True
            if in_batch:
                return
            raise WorkerGone() from None
        if written != len(line):  # a signal cut a blocking write short
            self.held += line[written:]
            try:
                self.hand_over()
            except WorkerGone:
                if not in_batch:
                    raise

    def hand_over(self) -> None:
        """Write the held lines to the worker (or drop them once it is gone)."""
        data, self.held = self.held, bytearray()
        if self.gone or not data:
            return
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.to_worker, view):]
        except BrokenPipeError:
            self.gone = True
            raise WorkerGone() from None

    def answer(self) -> bytes:
        """Return the worker's next answer line (with its newline); notes on the way are taken."""
        while True:
            while (end := self.answers.find(b"\n")) < 0:
                until = time.perf_counter() + SPIN  # the worker is on another CPU: poll before sleeping
                while time.perf_counter() < until and not self._poll.poll(0):
                    pass
                self._read_worker(WorkerGone)
            line, self.answers = self.answers[:end + 1], self.answers[end + 1:]
            if self.token and line.startswith(self.token):
                self._note(line)
                continue
            self.allowed = self.inbox is not None and line == b"OK\n"
            return line

    def _read_worker(self, gone: type[WorkerGone]) -> None:
        """Add what the worker wrote to ``answers``; raise ``gone`` when it closed its end."""
        chunk = os.read(self.from_worker, 4096)
        if not chunk:
            self.gone = True
            raise gone()
        self.answers += chunk

    def _notes(self) -> None:
        """Take the worker's notes from the head of what it wrote (never an answer: none is owed here)."""
        while self.token and self.answers.startswith(self.token) and (end := self.answers.find(b"\n")) >= 0:
            line, self.answers = self.answers[:end + 1], self.answers[end + 1:]
            self._note(line)

    def _note(self, line: bytes) -> None:
        if line == self.token + OWED:  # nft refused bans: careful until a commit is answered OK
            self.allowed = False

    def go_fast(self) -> None:
        """Answer messages from the inbox from now on (the worker is told first)."""
        if not self.inbox.opened:  # the first time: the worker has counted what a dead one left there
            self.inbox.open()
        self.held += self.token + FAST
        self.fast = True

    def careful(self) -> None:
        """Stop answering from the inbox (the worker is told)."""
        self.held += self.token + CAREFUL
        self.fast = False

    def _rotate(self) -> None:
        """Start the inbox's next segment once the worker is less than LAG segments behind;
        tell the worker that the last one is whole."""
        while self.inbox.ahead():
            if self._poll.poll(1):
                self._read_worker(WorkerGone)
                self._notes()
        self.held += self.token + b" S %d\n" % self.inbox.rotate()

    def stdout(self, data: bytes) -> None:
        """Write ``data`` to rsyslog."""
        while data:
            data = data[os.write(self.stdout_fd, data):]
