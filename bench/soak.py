"""Soak: a steady attack through a real rsyslogd for minutes, with faults thrown in at random.

Every few seconds the omprog-ban child is killed (SIGKILL) or the ruleset is
flushed underneath it. Attackers send exactly ``maxretry`` failures, bystanders
one fewer; at the end the kernel must hold exactly the attackers, and every one
with the time it had left. The short version of this runs in CI
(tests/test_faults.py); this one is for a longer look. ``--per-message``: with
``useTransactions="off"`` and batches of one, so the relay answers from its inbox.

``python -m bench.soak --minutes 5 [--per-message]``
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.lab import Namespace, Rsyslog, amps_line, wait_for, write_config  # noqa: E402

JAIL = """
[jails.amps]
grammar = "amps"
maxretry = 10
findtime = "1h"
bantime = "2h"
ports = [9007]
"""


def soak(minutes: float, seed: int, per_message: bool = False) -> int:
    """Run the soak; return 0 when the kernel holds exactly the attackers."""
    pace = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="omprog-ban-soak-"))
    server = Namespace("obsoak")
    rsyslog = Rsyslog(work, server, write_config(work / "c.toml", work / "state", JAIL))
    if per_message:
        text = rsyslog.conf.read_text()
        assert 'useTransactions="on"' in text and 'queue.dequeueBatchSize="1024"' in text
        rsyslog.conf.write_text(text.replace('useTransactions="on"', 'useTransactions="off"')
                                .replace('queue.dequeueBatchSize="1024"', 'queue.dequeueBatchSize="1"'))
    attackers, bystanders, kills, flushes = set(), set(), 0, 0
    try:
        rsyslog.start()
        deadline, wave = time.monotonic() + minutes * 60, 0
        while time.monotonic() < deadline:
            wave += 1
            batch_attackers = {f"10.{wave // 250}.{wave % 250}.{n}" for n in range(1, 21)}
            batch_bystanders = {f"10.{wave // 250}.{wave % 250}.{n}" for n in range(100, 120)}
            lines = [amps_line(a, port=i) for a in batch_attackers for i in range(10)]
            lines += [amps_line(b, port=i) for b in batch_bystanders for i in range(9)]
            pace.shuffle(lines)
            for start in range(0, len(lines), 25):
                rsyslog.write_amps(lines[start:start + 25])
                time.sleep(pace.uniform(0, 0.02))
                fault = pace.random()
                if fault < 0.02 and (child := rsyslog.child() if fault < 0.01 else rsyslog.worker()):
                    os.kill(child, signal.SIGKILL)  # run's relay or its worker, half and half
                    kills += 1
                elif fault < 0.03:
                    server.run(["nft", "flush", "ruleset"])
                    flushes += 1
            attackers |= batch_attackers
            bystanders |= batch_bystanders
        held = lambda: {e["val"] for e in server.nft_elements()}  # noqa: E731
        wait_for(lambda: held() == attackers, 60, 0.5)
        final = held()
        print(f"soak: {'one OK per message' if per_message else 'transactions'}, {minutes:g} min, {wave} waves, {len(attackers)} attackers, {len(bystanders)} bystanders, "
              f"{kills} SIGKILLs, {flushes} ruleset flushes")
        print(f"soak: attackers missing {len(attackers - final)}, bystanders banned {len(final & bystanders)}")
        if final != attackers:
            _explain(work, sorted(attackers - final), sorted(final & bystanders))
        return 0 if final == attackers else 1
    finally:
        rsyslog.stop()
        server.close()


def _explain(work: Path, missing: list[str], banned: list[str]) -> None:
    """Print what the ledger counted for each address the kernel got wrong, and where the files are."""
    from omprog_ban import ledger

    counted: dict[str, int] = {}
    for record in ledger.read(work / "state" / "ledger"):
        if record.kind == "F":
            counted[record.address] = counted.get(record.address, 0) + 1
    for label, addresses, sent in (("missing attacker", missing, 10), ("banned bystander", banned, 9)):
        for address in addresses[:20]:
            print(f"soak: {label} {address}: sent {sent} failures, the ledger counts {counted.get(address, 0)}")
    print(f"soak: kept for a look: {work} (amps.log, omprog-ban.log, rsyslog.log, state/)")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--per-message", action="store_true", help='useTransactions="off", batches of one')
    args = parser.parse_args()
    sys.exit(soak(args.minutes, args.seed, args.per_message))


if __name__ == "__main__":
    main()
