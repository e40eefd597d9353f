"""The front of ``run``: answer rsyslog at once where the protocol allows, work on another core.

``omprog-ban run`` is two processes. The one rsyslog started (the relay) reads
stdin and keeps rsyslog's round trip short; the one it forks (the worker) runs
the whole pipeline (:func:`omprog_ban.omprog.serve`) on what the relay hands it
through a pipe, and answers what needs an answer through another.

The relay answers by itself only what it may promise without the worker:

- ``BEGIN TRANSACTION``: ``OK``;
- a message inside a transaction: ``DEFER_COMMIT`` ("received, not yet
  committed": rsyslog still holds it and resends the whole batch unless the
  commit is answered ``OK``);

and passes on the worker's answer, which follows the worker's durable work, for:

- ``COMMIT TRANSACTION``: ``OK`` once every failure of the batch is in the
  ledger and every ban in the kernel, or the nft error; or, when the worker is
  behind and the rest of the batch is in hand, once that rest is in the spool
  (:mod:`omprog_ban.spool`), to be counted right after;
- a message outside a transaction.

The start-up ``OK`` is the relay's, once the config is checked: a worker that
then cannot start (the state directory locked, nft refusing the table) ends the
relay with its exit code, and rsyslog starts a new ``run``.

So an ``OK`` means what it means without the relay, and the worker's per-message
work runs beside rsyslog instead of inside its round trip. Each side polls for
the other's next line a little before it sleeps (``SPIN``): a wake-up across
CPUs is the dearest part of a round trip on small VMs. The relay keeps the
CPU affinity it inherited (next to rsyslogd, where a round trip is cheapest);
the worker drops it: it runs on the CPUs rsyslogd was not pinned to (any CPU
when rsyslogd was not pinned).

Bytes go to the worker verbatim, and what the relay read is in the worker's
pipe before the relay answers any of it. That is what keeps a transaction exact
when a process dies, given what rsyslog (8.2302) does: it resends a batch whose
commit failed, but not the messages it had had ``DEFER_COMMIT`` for when a later
one goes unanswered.

- The relay killed: every message it answered is in the pipe; the worker reads
  to EOF, counts them, applies the bans and exits. rsyslog resends from the
  unanswered message on, and what was counted already is known by its uuid.
- The worker killed: the relay answers the rest of the batch as before and fails
  its commit, so rsyslog resends the whole batch; then the relay exits. A batch
  it had committed from the spool is counted by the next worker, first.
- The worker killed between batches: the relay notices at once (it waits for
  rsyslog's next line and the worker's end together) and starts ``run`` afresh
  in its own process (``exec``, the same pipes to rsyslog, no second start-up
  ``OK``), so a batch answered from the spool is counted now, not whenever
  rsyslog next has a message.

Either way rsyslog then starts a new ``run``.
"""

from __future__ import annotations

import fcntl
import logging
import os
import select
import signal
import sys
import time
from typing import Callable

log = logging.getLogger("omprog-ban")

BEGIN, COMMIT = b"BEGIN TRANSACTION", b"COMMIT TRANSACTION"
GONE = b"omprog-ban: the worker is gone, the batch was not committed\n"  # an error answer: rsyslog resends
PIPE_SIZE = 1 << 20  # the hand-over pipe's capacity (F_SETPIPE_SZ); the default is 64 KiB
_F_SETPIPE_SZ = 1031
# How long the relay polls for the worker's answer before it sleeps: waking it on
# another CPU costs more. Long enough for one message and its nft transaction;
# rsyslog waits for this answer anyway, so the CPU it polls on has nothing else to do.
SPIN = 200e-6


class WorkerGone(Exception):
    """The worker closed its end: it exited or was killed."""


class WorkerGoneIdle(WorkerGone):
    """The worker ended between batches, with nothing of rsyslog's in hand."""


RESTARTED = "OMPROG_BAN_RELAY_RESTARTED"  # set across the relay's re-exec: rsyslog had its start-up OK


def run_split(worker: Callable[[int, int], int], stdin_fd: int = 0, stdout_fd: int = 1) -> int:
    """Fork ``worker(input_fd, answer_fd)``, relay between rsyslog and it; return the exit code.

    The worker's return value is its exit code; the relay returns it (1 when the
    worker was killed, or went away while the relay still had lines for it).
    """
    to_worker, from_relay = _pipe()
    from_worker, to_relay = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker
        code = 1
        try:
            os.close(from_relay)
            os.close(from_worker)
            _detach(stdin_fd, stdout_fd)
            code = worker(to_worker, to_relay)
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
        Relay(stdin_fd, stdout_fd, from_relay, from_worker).run(greet=not os.environ.get(RESTARTED))
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

    def __init__(self, stdin_fd: int, stdout_fd: int, to_worker: int, from_worker: int) -> None:
        self.stdin_fd, self.stdout_fd = stdin_fd, stdout_fd
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
        in_batch = False
        head = b""  # the first bytes of the line being read (enough to tell a mark)
        while True:
            if not in_batch and not head:
                self.wait_idle()
            chunk = os.read(self.stdin_fd, 1 << 16)
            if not chunk:
                break
            self.held += chunk
            replies = []
            start = 0
            while (end := chunk.find(b"\n", start)) >= 0:
                line = head + chunk[start:min(end, start + 32)] if head else chunk[start:min(end, start + 32)]
                head, start = b"", end + 1
                if line == BEGIN:
                    in_batch = True
                    replies.append(b"OK\n")
                elif line == COMMIT:
                    in_batch = False
                    try:
                        replies.append(self.verdict())
                    except WorkerGone:
                        self.stdout(b"".join(replies) + GONE)
                        raise
                elif in_batch:
                    replies.append(b"DEFER_COMMIT\n")
                else:
                    replies.append(self.verdict())
            if start < len(chunk) and len(head) < 32:
                head += chunk[start:start + 32]
            try:
                self.hand_over()  # before any answer: an answered line is never only in the relay
            except WorkerGone:
                if not in_batch:
                    raise
            if replies:
                self.stdout(b"".join(replies) if len(replies) > 1 else replies[0])
        self.hand_over()

    def wait_idle(self) -> None:
        """Between batches: return when rsyslog writes; raise WorkerGoneIdle if the worker ends first."""
        while True:
            ready = {fd for fd, _ in self._idle.poll()}
            if self.stdin_fd in ready:
                return
            chunk = os.read(self.from_worker, 4096)
            if not chunk:
                self.gone = True
                raise WorkerGoneIdle()
            self.answers += chunk  # nothing is owed an answer here; kept in order all the same

    def verdict(self) -> bytes:
        """Hand over what is held and return the worker's answer to its last line."""
        if self.gone:
            raise WorkerGone()
        self.hand_over()
        return self.answer()

    def hand_over(self) -> None:
        """Write the held lines to the worker (or drop them once it is gone)."""
        data, self.held = self.held, bytearray()
        if self.gone:
            return
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.to_worker, view):]
        except BrokenPipeError:
            self.gone = True
            raise WorkerGone() from None

    def answer(self) -> bytes:
        """Return the worker's next answer line (with its newline)."""
        while (end := self.answers.find(b"\n")) < 0:
            until = time.perf_counter() + SPIN  # the worker is on another CPU: poll before sleeping
            while time.perf_counter() < until and not self._poll.poll(0):
                pass
            chunk = os.read(self.from_worker, 4096)
            if not chunk:
                self.gone = True
                raise WorkerGone()
            self.answers += chunk
        line, self.answers = self.answers[:end + 1], self.answers[end + 1:]
        return line

    def stdout(self, data: bytes) -> None:
        """Write ``data`` to rsyslog."""
        while data:
            data = data[os.write(self.stdout_fd, data):]
