"""A flood: 100,000 distinct addresses cross their threshold at once; how long until all are in the kernel?

``omprog-ban run`` on pipes in a private network namespace with a real nft,
one ban per message (maxretry 1, a new address each), sent back to back as
fast as the child answers; driver and child share CPU 1, as rsyslogd and its
child do under ``taskset -c 1``. First in rsyslog's transactions, as the
shipped action sends them: after ``BEGIN TRANSACTION``, a message answered
``DEFER_COMMIT`` means the child batches, and the messages go in transactions
of 1,024 (``COMMIT TRANSACTION`` is answered OK once the batch is in the kernel
or the spool); then one message at a time, as with ``useTransactions="off"``
(the relay answers each OK from its inbox; the worker bans what it has read in
one nft transaction); then in transactions again, to a jail with
``bantime_increment`` (three of the default jails have it: each ban's length
depends on the address's earlier bans in the history, asked once per batch). A
child that answers OK instead of DEFER_COMMIT does not batch: its first and
third rows are not shown.

The clock runs from the first message written to the last reply, which follows
the last kernel commit: the answer to one more message, without a uuid, sent
after the flood (such a message is answered by the worker, after everything
before it is counted and applied; an OK from the inbox or a commit answered
from the spool come before the bans are in). Right after it the sets are listed (``nft -j list set``,
on the other core) to check that all are there. A poller listing them during
the run was tried and dropped: 100,000 elements take a while to list, and
doing that beside the flood changed its time by a third either way.

``python -m bench.flood [--addresses N]``
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from bench.generate import distinct_addresses
from bench.latency import in_kernel
from bench.table import Row, count, figure, rate, render
from bench.workspace import HERE, ONE_STRIKE, Child, amps_message, pinned, run_argv, write_config
from tests.lab import Namespace

BATCH = 1024


def _send(child: Child, message: str, expected: str) -> None:
    reply = child.send(message)
    if reply != expected:
        raise RuntimeError(f"{message[:60]!r} answered {reply!r}, expected {expected!r}")


def _flood(child: Child, messages: list[str], transactions: bool) -> bool:
    """Send every message, then one the worker answers after all the bans; return True when they went in transactions."""
    if transactions:
        child.send("BEGIN TRANSACTION")  # OK either way: a child that does not batch takes it for a log line
    batched = child.send(messages[0]) == "DEFER_COMMIT"
    if batched:
        for index in range(1, len(messages)):
            if index % BATCH == 0:
                _send(child, "COMMIT TRANSACTION", "OK")
                _send(child, "BEGIN TRANSACTION", "OK")
            _send(child, messages[index], "DEFER_COMMIT")
        _send(child, "COMMIT TRANSACTION", "OK")
    else:
        for message in messages[1:]:
            _send(child, message, "OK")
    _send(child, "not a failure: the end of the flood", "OK")  # no uuid: the worker's answer, after the bans
    return batched


ESCALATING = ONE_STRIKE + 'bantime_increment = { factor = 2, max = "1w" }\n'  # as the default's elgg jail


def measure(workdir: Path, addresses: int, seed: int = 7, transactions: bool = True, jail: str = ONE_STRIKE) -> dict:
    """Ban ``addresses`` new addresses (in transactions if asked and the child batches); return timings and counts."""
    shutil.rmtree(workdir, ignore_errors=True)
    config = write_config(workdir / "omprog-ban.toml", workdir / "state", ("none",), jail)
    messages = [amps_message(address, serial) for serial, address in enumerate(distinct_addresses(addresses, seed))]
    namespace = Namespace("obf")
    child = None
    try:
        with pinned():
            child = Child(namespace.command(run_argv(config)), workdir / "omprog-ban.log")
            if child.reply() != "OK":
                raise RuntimeError(f"omprog-ban run did not start; see {workdir / 'omprog-ban.log'}")
            start = time.perf_counter()
            batched = _flood(child, messages, transactions)
            answered = time.perf_counter() - start
        listed = time.perf_counter()
        held = in_kernel(namespace)
        return {"answered": answered, "held": held, "listing": time.perf_counter() - listed, "batched": batched}
    finally:
        if child is not None:
            child.close()
        namespace.close()


def run(workdir: Path, addresses: int, seed: int = 7) -> list[Row]:
    """Flood ``addresses`` bans in transactions as the shipped action sends them (when the child
    batches), then one message at a time, then in transactions again to a jail with
    ``bantime_increment`` (as three of the default jails have); return the rows."""
    rows = []
    for transactions, jail in ((True, ONE_STRIKE), (False, ONE_STRIKE), (True, ESCALATING)):
        result = measure(workdir / "flood", addresses, seed, transactions, jail)
        if transactions and not result["batched"]:
            continue  # a child that does not batch: the next run shows it
        mode = (f"rsyslog transactions of {BATCH:,} messages (the shipped action)" if transactions
                else "one OK per message (useTransactions=\"off\"), from the relay's inbox")
        if jail is ESCALATING:
            mode += ", the jail with bantime_increment (each ban asks the history for earlier ones)"
        rows.append(Row("flood", f"{count(addresses)} new addresses (maxretry 1): {mode}", f"{count(addresses)} bans",
                        f"all in nft after {figure(result['answered'])} s ({rate(addresses, result['answered'], 'bans/s')})",
                        notes=f"nft -j list set right after: {count(result['held'])} (listing took {figure(result['listing'])} s)"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.flood", description=__doc__.split("\n\n")[0])
    parser.add_argument("--addresses", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=HERE / "out")
    args = parser.parse_args()
    print(render(run(args.out, args.addresses, args.seed)))


if __name__ == "__main__":
    main()
