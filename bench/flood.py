"""A flood: 100,000 distinct addresses cross their threshold at once; how long until all are in the kernel?

``omprog-ban run`` on pipes in a private network namespace with a real nft,
one ban per message (maxretry 1, a new address each), sent back to back as
fast as the child answers. rsyslog's transactions are tried first: after
``BEGIN TRANSACTION``, a message answered ``DEFER_COMMIT`` means the child
batches, and messages go in transactions of 1,024 (``COMMIT TRANSACTION``
answered OK = the batch is in the kernel). Any other answer (today: OK) means
one nft transaction per message, and the run goes on that way.

The clock runs from the first message written. "all answered" is when the
last reply came (each reply follows its kernel commit); a poller lists the
sets (``nft -j list set``) every 2 s on the other core and notes when it first
counts them all, and a last listing checks the count.

``python -m bench.flood [--addresses N]``
"""

from __future__ import annotations

import argparse
import shutil
import threading
import time
from pathlib import Path

from bench.generate import distinct_addresses
from bench.latency import in_kernel
from bench.table import Row, count, figure, rate, render
from bench.workspace import HERE, ONE_STRIKE, Child, amps_message, run_argv, write_config
from tests.lab import Namespace

BATCH = 1024
POLL = 0.5


class Poller(threading.Thread):
    """Count the set elements every ``POLL`` seconds; note when the count first reaches ``target``."""

    def __init__(self, namespace: Namespace, target: int, start: float) -> None:
        super().__init__(daemon=True)
        self.namespace, self.target, self.start_time = namespace, target, start
        self.reached: float | None = None
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(POLL):
            if in_kernel(self.namespace) >= self.target:
                self.reached = time.perf_counter() - self.start_time
                return


def _send(child: Child, message: str, expected: str) -> None:
    reply = child.send(message)
    if reply != expected:
        raise RuntimeError(f"{message[:60]!r} answered {reply!r}, expected {expected!r}")


def measure(workdir: Path, addresses: int, seed: int = 7, transactions: bool = True) -> dict:
    """Ban ``addresses`` new addresses (in transactions if asked and the child batches); return timings and counts."""
    shutil.rmtree(workdir, ignore_errors=True)
    config = write_config(workdir / "omprog-ban.toml", workdir / "state", ("none",), ONE_STRIKE)
    messages = [amps_message(address, serial) for serial, address in enumerate(distinct_addresses(addresses, seed))]
    namespace = Namespace("obf")
    child = Child(namespace.command(run_argv(config)), workdir / "omprog-ban.log")
    try:
        if child.reply() != "OK":
            raise RuntimeError(f"omprog-ban run did not start; see {workdir / 'omprog-ban.log'}")
        start = time.perf_counter()
        poller = Poller(namespace, addresses, start)
        poller.start()
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
        answered = time.perf_counter() - start
        poller.join(5 * POLL)
        poller.stopping.set()
        return {"answered": answered, "polled": poller.reached, "held": in_kernel(namespace), "batched": batched}
    finally:
        child.close()
        namespace.close()


def run(workdir: Path, addresses: int, seed: int = 7) -> list[Row]:
    """Flood ``addresses`` bans in transactions (when the child batches), then one per message; return the rows."""
    rows = []
    for transactions in (True, False):
        result = measure(workdir / "flood", addresses, seed, transactions)
        if transactions and not result["batched"]:
            mode = "BEGIN TRANSACTION sent, no DEFER_COMMIT back: one nft transaction per message"
        elif result["batched"]:
            mode = f"rsyslog transactions of {BATCH:,} messages"
        else:
            mode = "one message, one OK, one nft transaction"
        polled = "never" if result["polled"] is None else f"{figure(result['polled'])} s"
        rows.append(Row("flood", f"{count(addresses)} new addresses (maxretry 1): {mode}", f"{count(addresses)} bans",
                        f"all answered in {figure(result['answered'])} s ({rate(addresses, result['answered'], 'bans/s')})",
                        notes=f"nft list first counted all at {polled} (polled every {POLL:g} s); {count(result['held'])} in nft"))
        if not result["batched"]:
            break  # the per-message run was this one
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
