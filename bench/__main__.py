"""Run every benchmark and print one table: ``python -m bench [--smoke] [--out DIR]`` (``./dev bench``).

The full run takes about three minutes on two cores; ``--smoke`` runs a tiny
version of everything in well under a minute (CI does, through
tests/test_bench_smoke.py). Needs root: rsyslogd and nft run in private
network namespaces. fail2ban is installed with apt if missing (never started).
The table is also written to OUT/results.md with the machine it ran on.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench import flood, latency, ledger, memory, replay, rsyslog
from bench.table import Row, render
from bench.workspace import HERE


@dataclass(frozen=True)
class Sizes:
    """How big each benchmark runs."""

    replay_lines: int  # per log file (ten files)
    rsyslog_lines: int
    latency_bans: int
    flood_addresses: int
    memory_addresses: int
    ledger_records: int
    replay_repeat: int  # paired rounds: replay (per reader and file) and rsyslog; the median ratio counts


FULL = Sizes(100_000, 200_000, 10_000, 100_000, 1_000_000, 200_000, 3)
SMOKE = Sizes(2_000, 2_000, 200, 2_000, 20_000, 2_000, 1)


def machine() -> str:
    """Return one line on what the figures were measured on."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine())
    versions = []
    for argv in (["rsyslogd", "-v"], ["nft", "--version"], ["fail2ban-regex", "--version"]):
        try:
            output = subprocess.run(argv, capture_output=True, text=True).stdout
        except OSError:
            output = ""
        found = re.search(r"\d+\.\d+(?:\.\d+)*", output)
        versions.append(f"{argv[0]} {found[0] if found else 'missing'}")
    return f"{os.cpu_count()} x {cpu}, Linux {platform.release()}, Python {platform.python_version()}, " + ", ".join(versions)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a tiny version of everything (CI)")
    parser.add_argument("--out", type=Path, default=HERE / "out", help="work directory (default bench/out)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench: needs root (rsyslogd and nft run in private network namespaces)", file=sys.stderr)
        return 77
    os.environ["TZ"] = "UTC"  # the logs' stamps without a zone are UTC, for us and for fail2ban
    time.tzset()
    sizes = SMOKE if args.smoke else FULL
    steps = [
        ("replay", lambda: replay.run(args.out, sizes.replay_lines, args.seed, sizes.replay_repeat)),
        ("rsyslog", lambda: rsyslog.run(args.out, sizes.rsyslog_lines, args.seed, sizes.replay_repeat)),
        ("latency", lambda: latency.run(args.out, sizes.latency_bans, args.seed)),
        ("flood", lambda: flood.run(args.out, sizes.flood_addresses, args.seed)),
        ("memory", lambda: memory.run(args.out, sizes.memory_addresses)),
        ("ledger", lambda: ledger.run(args.out, sizes.ledger_records)),
    ]
    rows: list[Row] = []
    started = time.monotonic()
    for name, step in steps:
        print(f"bench: {name}...", file=sys.stderr, flush=True)
        rows.extend(step())
    table = render(rows)
    about = f"{'smoke' if args.smoke else 'full'} run, seed {args.seed}, {time.monotonic() - started:.0f} s; {machine()}"
    print(table)
    print(about)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text(table + "\n\n" + about + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
