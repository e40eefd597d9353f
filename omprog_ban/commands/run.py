"""Serve rsyslog's omprog: read messages on stdin, answer each, ban in nftables.

rsyslog starts this with ``omprog-ban run --config /etc/omprog-ban.toml``. The
config is checked (exit 78) and the nft table verified before the start-up OK.
Two processes serve: a relay on rsyslog's pipes and a worker with the pipeline
(see :mod:`omprog_ban.relay`).
"""

from __future__ import annotations

import gc
import logging
import os
import signal
from pathlib import Path

from omprog_ban import cli, metrics
from omprog_ban.framing import frame
from omprog_ban.inbox import Inbox
from omprog_ban.nft import NftError
from omprog_ban.omprog import serve
from omprog_ban.relay import RESTARTED, run_split
from omprog_ban.runtime import LockedError, Runtime
from omprog_ban.spool import Spool

NAME = "run"
HELP = "serve rsyslog's omprog protocol on stdin/stdout"
INBOX = "inbox"  # the relay's fast-mode segments, in the state directory (see omprog_ban.inbox)
log = logging.getLogger("omprog-ban")


def add_arguments(parser) -> None:
    """Add run's options."""
    parser.add_argument("--dry-run", action="store_true", help="decide but never touch nftables; bans go to stderr as JSON lines")
    metrics.add_argument(parser)


def _stop(_signum, _frame):
    raise SystemExit(0)


def main(args) -> int:
    """Check the config, then relay rsyslog's lines to a worker that serves them until EOF or SIGTERM."""
    config = cli.load_config(args)  # a bad config exits 78 here, before any OK
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    inbox = Path(config.state_dir) / (("dry-run." if args.dry_run else "") + INBOX)
    return run_split(lambda input_fd, answer_fd, token: work(config, args, input_fd, answer_fd, token, inbox),
                     inbox=inbox)


def work(config, args, input_fd: int, answer_fd: int, token: bytes = b"", inbox_dir: Path | None = None) -> int:
    """The worker: set up (exit 75 when another instance holds the state, 69 when nft refuses
    the table), answer the start-up OK, serve the relayed lines; return the exit code."""
    try:
        runtime = Runtime(config, dry_run=args.dry_run, metrics_file=args.metrics_file)
    except LockedError as error:
        log.error("%s", error)
        return 75  # EX_TEMPFAIL: rsyslog restarts us
    try:
        runtime.start()
    except NftError as error:
        log.error("cannot set up table inet %s: %s", config.table, error)
        return cli.EX_UNAVAILABLE
    log.info("ready: %d jail(s) %s, table inet %s%s", len(config.jails), ", ".join(config.jails),
             config.table, " (dry run)" if args.dry_run else "")
    gc.freeze()  # start-up's objects (grammars, config, restored bans) are never scanned again: -2 % a ban in a flood
    spool = Spool(runtime.state_dir / ("dry-run.spool" if args.dry_run else "spool"))
    inbox = Inbox(inbox_dir) if inbox_dir is not None else None
    try:
        _count_spooled(spool, runtime)
        if inbox is not None:
            _count_inbox(inbox, runtime)
        pipeline = runtime.pipeline
        if not os.environ.get(RESTARTED):  # rsyslog started this run: its child before may have died
            pipeline.deliveries.watch()
        return serve(pipeline.handle, pipeline.flush, runtime.maintain, input_fd, answer_fd, relayed=True,
                     handle_many=pipeline.handle_many, spool=spool, token=token, inbox=inbox,
                     owed=bool(pipeline.pending), tick=runtime.tick, settle=pipeline.settle)
    finally:
        spool.close()
        runtime.close()


def _count_inbox(inbox: Inbox, runtime: Runtime) -> None:
    """Count what the relay answered OK and no worker counted (the inbox's segments), oldest first."""
    for number, lines in inbox.pending():
        _count_left(runtime, lines, "the relay answered OK before a worker counted them", True)
        inbox.drop(number)


def _count_spooled(spool: Spool, runtime: Runtime) -> None:
    """Count what a dead worker left in the spool (its batch was committed), before anything else.

    Its keys are pinned: the batch may have been that worker's first, which rsyslog may
    also have put back at the end of its queue (see Deliveries.watch)."""
    _count_left(runtime, spool.pending(), "a committed batch left in the spool", False)
    spool.clear()


def _count_left(runtime: Runtime, lines: list[bytes], what: str, final: bool) -> None:
    """Count ``lines`` a dead process left answered but uncounted, and apply their bans.

    What it had counted already is recognised by the messages' uuids. ``final``:
    rsyslog will not deliver them again (else their keys are pinned). Bans the
    kernel refuses stay pending, so the next commit (or message) waits for them.
    """
    if not lines:
        return
    log.warning("counting %d message(s) %s", len(lines), what)
    now = runtime.clock()
    runtime.pipeline.handle_many([frame(line, now) for line in lines], defer=True)
    runtime.pipeline.settle(final)
    try:
        runtime.pipeline.flush()
    except NftError as error:
        log.error("nft refused bans of messages %s; they stay owed: %s", what, error)
