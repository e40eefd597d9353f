"""rsyslog's omprog protocol: ``OK`` once ready, then exactly one reply line per message.

A message is one line on stdin: the plain log line (imfile, ``%msg%``) or a JSON
object from the shipped template (``msg`` plus ``uuid`` and other properties).
The reply is ``OK`` once the failures it carried are in the ledger and the bans
it triggered are in the kernel, or sooner once the message itself is durable:
a transaction's commit once its messages are in the spool, and, relayed, a
message the relay answered from its inbox (see ``serve`` and
:mod:`omprog_ban.relay`). An nft failure replies with an error line (to the
next message or commit when the answer came sooner), which makes rsyslog
suspend the action and resend the message. A
line that matches nothing, or is malformed, is still answered ``OK``. EOF or
SIGTERM ends with 0. Lines become LogLines in :mod:`omprog_ban.framing`.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Callable

from omprog_ban.framing import MAX_LINE, LineReader, frame
from omprog_ban.inbox import Inbox
from omprog_ban.model import LogLine
from omprog_ban.nft import NftError
from omprog_ban.deliveries import RECENT
from omprog_ban.relay import CAREFUL, FAST, OWED
from omprog_ban.spool import Spool

log = logging.getLogger("omprog-ban")
# Relayed, the next line comes from the relay on another CPU: waking a sleeping
# process there costs more than polling a little first (see omprog_ban.relay).
# The relay's turn (answer rsyslog, read its next line, hand it over) takes
# some tens of microseconds.
SPIN = 50e-6


def serve(
    handle: Callable[..., object],
    flush: Callable[[], None],
    maintain: Callable[[float], None],
    stdin_fd: int,
    stdout_fd: int,
    clock: Callable[[], float] = time.time,
    interval: float = 2.0,
    relayed: bool = False,
    handle_many: Callable[..., object] | None = None,
    spool: Spool | None = None,
    token: bytes = b"",
    inbox: Inbox | None = None,
    owed: bool = False,
    tick: Callable[[float], None] | None = None,
    settle: Callable[[bool], None] = lambda confirmed: None,
) -> int:
    """Answer rsyslog until EOF: ``OK`` or an error line per message; return the exit code.

    ``handle(line, defer=...)`` processes one LogLine (raising NftError when the
    kernel refused a ban); ``flush()`` applies deferred bans; ``maintain(now)``
    runs between messages at least every ``interval`` seconds.

    With ``useTransactions="on"`` rsyslog wraps batches in ``BEGIN TRANSACTION``
    and ``COMMIT TRANSACTION``: each message in between is answered
    ``DEFER_COMMIT`` once its failures are in the ledger, and the batch's bans go
    to the kernel in one nft transaction at the commit, which is answered ``OK``
    only after the kernel accepted them.

    ``handle_many(lines, defer=True)``, when given, takes the messages of a
    transaction that are already read in one call (each still answered).

    ``relayed``: the lines come from :mod:`omprog_ban.relay`, which answered
    ``BEGIN TRANSACTION`` and each message inside a transaction itself; only the
    start-up, commits and messages outside a transaction are answered here.

    ``spool`` (relayed, with ``handle_many``): when the rest of a batch and its
    ``COMMIT`` are already read, every one of those messages carries a uuid and
    no ban the kernel refused is owed, the commit is answered
    ``OK`` as soon as those messages are in the spool; they are counted and
    their bans applied right after, while rsyslog prepares its next batch (see
    :mod:`omprog_ban.spool`). A kernel refusal then keeps the bans pending, so
    the next commit takes the path above and answers the error.

    ``token`` and ``inbox`` (relayed, with ``handle_many``): the relay's fast
    mode (see :mod:`omprog_ban.relay`). Between its ``FAST`` and ``CAREFUL``
    markers every message was answered ``OK`` by the relay once it was in the
    inbox: it is counted here with no answer, and its bans applied as soon as
    all that was read is counted, or FLUSH_GAP after the first of them while
    more is in hand (in a flood the bans of many messages share a transaction). A segment marker
    says that a segment's lines all came: its bans are applied, then it is
    removed. When the kernel refuses bans, a note (``OWED``) tells the relay
    to be careful, so that the next commit or message carries the error to
    rsyslog. ``owed``: bans were owed at the start (the note goes first).

    ``tick(now)`` runs between messages every TICK seconds (outside a
    transaction): light upkeep that should not wait for ``maintain``.

    ``settle(confirmed)`` is told, once the reply for what was counted since
    the last call is written, whether it was ``OK`` (or the relay's): a message
    or a commit answered with an error may come back from rsyslog however late,
    and must still be recognised (see :mod:`omprog_ban.deliveries`).
    """
    reader = LineReader(stdin_fd, SPIN if relayed else 0.0)
    _write(stdout_fd, b"OK\n")
    if owed:
        _note_owed(token, stdout_fd)
    next_maintenance = next_tick = clock() + interval
    skipping = in_batch = fast = warned = False  # owed (above): the last flush was refused, its bans wait
    flush_at = None  # fast mode: when the bans counted since the last flush go to the kernel
    while True:
        wait = next_maintenance - clock() if flush_at is None else min(next_maintenance, flush_at) - clock()
        raw = reader.readline(max(0.0, wait))
        now = clock()
        if now >= next_maintenance and not in_batch:
            maintain(now)
            next_maintenance = now + interval
        elif tick is not None and now >= next_tick and not in_batch:
            tick(now)
            next_tick = now + TICK
        if flush_at is not None and (now >= flush_at or raw is None):
            flush_at = None
            owed = _flush_fast(flush, token, stdout_fd)
        if raw is None:
            continue
        if raw == b"":
            return 0
        if token and raw.startswith(token):  # the relay's marker
            mark = raw[len(token):]
            if mark == FAST:
                fast = True
            elif mark == CAREFUL:
                fast = False
            elif mark.startswith(b" S ") and inbox is not None:  # a segment whole: ban, then let it go
                flush_at = None
                owed = _flush_fast(flush, token, stdout_fd)
                inbox.drop(int(mark[3:]))
            continue
        if fast:
            group = [frame(line, now) for line in (raw, *reader.read_plain(MARKS, token, FAST_BLOCK - 1))]
            _reply(handle_many, group, defer=True)
            settle(True)  # the relay answered them OK
            if not warned and any(line.key is None for line in group):
                warned = True
                log.error("the relay answered a message with no uuid OK (a custom template?); after a crash it "
                          "could be counted twice: use the shipped template")
            # Ban as soon as all that was read is counted; while more is in hand, FLUSH_GAP after
            # the first ban waiting (in a flood the bans of many messages share a transaction).
            if reader.peek() is None:
                flush_at = None
                owed = _flush_fast(flush, token, stdout_fd)
            elif flush_at is None:
                flush_at = now + FLUSH_GAP
            continue
        if skipping:  # the tail of an over-long line: it was answered with its head
            skipping = not raw.endswith(b"\n")
            continue
        skipping = not raw.endswith(b"\n") and len(raw) >= MAX_LINE
        if raw == BEGIN:
            in_batch, reply = True, "OK"
            if relayed:
                continue
        elif raw == COMMIT:
            in_batch, reply = False, _reply(flush)
            owed = reply != "OK"
            _answer(stdout_fd, reply)
            settle(not owed)
            continue
        elif in_batch and relayed and spool is not None and handle_many is not None and raw.endswith(b"\n"):
            answered = _count_batch(reader, raw, clock, spool, handle_many, flush, owed, stdout_fd, token)
            if answered is not None:  # the commit is answered OK (its bans may be owed)
                in_batch, owed = False, not answered
                settle(True)
            continue
        elif in_batch:
            more = reader.read_until(MARKS) if handle_many is not None else []
            if more:
                group = [frame(raw, now), *(frame(line, now) for line in more)]
                reply = _reply(handle_many, group, defer=True)
            else:
                reply = _reply(handle, frame(raw, now), defer=True)
            if relayed:  # answered DEFER_COMMIT already; what went wrong shows at the commit
                continue
            reply = "DEFER_COMMIT" if reply == "OK" else reply
            if more:
                _write(stdout_fd, (reply + "\n").encode() * (1 + len(more)))
                continue
        else:
            reply = _reply(handle, frame(raw, now))
            owed = reply != "OK"
            _answer(stdout_fd, reply)
            settle(not owed)
            continue
        _answer(stdout_fd, reply)


def _count_batch(reader: LineReader, raw: bytes, clock: Callable[[], float], spool: Spool,
                 handle_many: Callable[..., object], flush: Callable[[], None], owed: bool,
                 stdout_fd: int, token: bytes = b"") -> bool | None:
    """Count the batch's messages read so far, a slice at a time.

    Return None while the commit is not answered, else whether the batch's
    bans went into the kernel.

    Before each slice, what the relay handed over since is read: when the batch's
    ``COMMIT`` is in it, the messages not counted yet may be spooled and the
    commit answered at once (see ``serve``). Otherwise ``serve`` reads the
    ``COMMIT`` next and answers it after the flush.
    """
    lines = [raw]  # read, not counted yet
    group = [frame(raw, clock())]  # the same, framed as they are read: at the commit only the spool write is left
    while lines:
        reader.fill()
        more = reader.read_until(MARKS)
        if more:
            now = clock()
            lines += more
            group += [frame(line, now) for line in more]
        if reader.peek() == COMMIT:
            if len(group) <= EARLY and not owed and all(line.key for line in group):
                reader.readline(0.0)  # the COMMIT, answered here
                return _commit_early(spool, lines, group, handle_many, flush, stdout_fd, token)
            _reply(handle_many, group, defer=True)
            return None
        part, lines, group = group[:SLICE], lines[SLICE:], group[SLICE:]
        _reply(handle_many, part, defer=True)
    return None


def _commit_early(spool: Spool, raw: list[bytes], group: list[LogLine], handle_many: Callable[..., object],
                  flush: Callable[[], None], stdout_fd: int, token: bytes = b"") -> bool:
    """Spool the batch's uncounted messages, answer its commit ``OK``, then count them and ban;
    return whether the bans went into the kernel."""
    spool.keep(raw)
    _write(stdout_fd, b"OK\n")
    applied = False
    try:
        handle_many(group, defer=True)
        flush()
        applied = True
    except NftError as error:  # the bans stay pending: the next commit waits for them and answers this
        log.error("nft refused bans of a committed batch; they stay owed and hold the next commit: %s", error)
        _note_owed(token, stdout_fd)  # the relay may be answering from the inbox: it must wait again
    except Exception:  # a bug must not kill the pipe; logged, as _reply does
        log.exception("could not process a committed batch of %d messages", len(group))
    spool.clear()
    return applied


def _flush_fast(flush: Callable[[], None], token: bytes, stdout_fd: int) -> bool:
    """Apply the bans counted from the inbox; return whether the kernel refused some (they stay owed,
    and the relay is told to be careful)."""
    try:
        flush()
        return False
    except NftError as error:
        log.error("nft refused bans; they stay owed, and the next commit waits for them: %s", error)
    except Exception:  # a bug must not kill the pipe; logged, as _reply does
        log.exception("could not apply bans")
    _note_owed(token, stdout_fd)
    return True


def _note_owed(token: bytes, stdout_fd: int) -> None:
    """Tell the relay (when relayed: a token) that bans are owed, so that it waits for the worker's answers."""
    if token:
        _write(stdout_fd, token + OWED)


def _answer(fd: int, reply: str) -> None:
    _write(fd, b"OK\n" if reply == "OK" else (reply + "\n").encode())


def _write(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


BEGIN, COMMIT = b"BEGIN TRANSACTION\n", b"COMMIT TRANSACTION\n"
MARKS = (BEGIN, COMMIT)
SLICE = 64  # messages counted between two looks for the commit
FAST_BLOCK = 256  # fast messages counted in one call
TICK = 0.25  # seconds between two ticks
FLUSH_GAP = 0.002  # fast mode, messages in hand: the longest a ban waits for others to share its nft transaction
EARLY = RECENT // 2  # most messages a commit answered from the spool may hold: a resend must find all their keys


def _reply(action: Callable[..., object], *args, **kwargs) -> str:
    try:
        action(*args, **kwargs)
    except NftError as error:
        log.error("nft refused a ban, rsyslog will resend: %s", error)
        return "nft error: " + " ".join(str(error).split())[:400]
    except Exception:  # a bug must not kill the pipe; the line is answered and logged
        log.exception("could not process a message; answered OK: %r", getattr(args[0], "text", "")[:200] if args else "")
    return "OK"
