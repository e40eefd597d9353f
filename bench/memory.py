"""Memory: RSS of ``omprog-ban run --dry-run`` at rest, and bytes per address the engine tracks.

- At rest: the child is started on pipes with bench/jails.toml (five jails),
  answers its start-up OK, then sits idle for a second; the PSS of its two
  processes (relay and worker) is summed, and each one's VmRSS is given beside.
- Per address: a fresh interpreter (``python -m bench.memory --worker``)
  builds a ``Tracker`` with the amps jail's policy and records one failure for
  each of N distinct addresses (all inside their window, none banned). Bytes
  per address = VmRSS growth / N; tracemalloc's count of the Python objects
  allocated meanwhile (for N/5 addresses: it is slow), in a second fresh
  interpreter, is given beside it.

``python -m bench.memory [--addresses N]``
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import shutil
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

from bench.table import Row, count, figure, render
from bench.workspace import HERE, JAILS, Child, rss_kib, run_argv, write_config

TRACED_SHARE = 5  # tracemalloc slows recording sevenfold: it counts a fifth of the addresses
FIRST = {4: ipaddress.IPv4Address("198.18.0.0"), 6: ipaddress.IPv6Address("2001:db8:f100::")}


def at_rest(workdir: Path) -> dict[str, int]:
    """Return the memory (KiB) of an idle ``omprog-ban run --dry-run`` after its start-up OK.

    ``run`` is two processes (the relay and the worker it forked): their VmRSS
    each, and the sum of their PSS (a page they share counts once in it).
    """
    shutil.rmtree(workdir, ignore_errors=True)
    config = write_config(workdir / "omprog-ban.toml", workdir / "state")
    child = Child(run_argv(config, "--dry-run"), workdir / "omprog-ban.log")
    try:
        if child.reply() != "OK":
            raise RuntimeError(f"omprog-ban run --dry-run did not start; see {workdir / 'omprog-ban.log'}")
        time.sleep(1.0)
        relay = child.process.pid
        workers = [int(pid) for pid in Path(f"/proc/{relay}/task/{relay}/children").read_text().split()]
        pids = [relay, *workers]
        return {"relay": rss_kib(relay), "worker": sum(rss_kib(pid) for pid in workers),
                "pss": sum(_pss_kib(pid) for pid in pids)}
    finally:
        child.close()


def _pss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    raise RuntimeError(f"no Pss for {pid}")


def track(addresses: int, family: int, traced: bool) -> float:
    """Return bytes per address for ``addresses`` distinct addresses tracked once each (run in a fresh process)."""
    from omprog_ban import config as configuration
    from omprog_ban.engine import Tracker

    tracker = Tracker({"amps": configuration.load(JAILS, state_dir="/nonexistent").jails["amps"].policy})
    first = FIRST[family]
    if traced:
        tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0] if traced else rss_kib() * 1024
    for offset in range(addresses):
        tracker.record("amps", first + offset, 1000.0 + offset * 1e-6)
    after = tracemalloc.get_traced_memory()[0] if traced else rss_kib() * 1024
    if tracker.tracked("amps") != addresses:
        raise RuntimeError(f"tracked {tracker.tracked('amps')} of {addresses}")
    return (after - before) / addresses


def per_address(addresses: int, family: int, traced: bool) -> float:
    """Run ``track`` in a fresh interpreter; return its bytes per address."""
    argv = [sys.executable, "-m", "bench.memory", "--worker", "--addresses", str(addresses), "--family", str(family)]
    done = subprocess.run(argv + (["--traced"] if traced else []), capture_output=True, text=True, cwd=HERE.parent, check=True)
    return json.loads(done.stdout)["bytes"]


def run(workdir: Path, addresses: int) -> list[Row]:
    """Measure both; return the table's rows."""
    rest = at_rest(workdir / "memory")
    rows = [Row("memory", "omprog-ban run --dry-run at rest (5 jails): relay + worker", "-",
                f"{figure(rest['pss'] / 1024)} MiB PSS", notes=f"VmRSS: relay {figure(rest['relay'] / 1024)} MiB, "
                f"worker {figure(rest['worker'] / 1024)} MiB (pages they share count in both)")]
    for family in (4, 6):
        rss = per_address(addresses, family, traced=False)
        traced = per_address(max(1000, addresses // TRACED_SHARE), family, traced=True)
        rows.append(Row("memory", f"Tracker (amps policy), distinct IPv{family} addresses in their window",
                        f"{count(addresses)} addresses", f"{figure(rss)} bytes/address (RSS)",
                        notes=f"tracemalloc: {figure(traced)} bytes/address (on {count(max(1000, addresses // TRACED_SHARE))})"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--addresses", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=HERE / "out")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--family", type=int, choices=(4, 6), default=4, help=argparse.SUPPRESS)
    parser.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps({"bytes": track(args.addresses, args.family, args.traced)}))
    else:
        print(render(run(args.out, args.addresses)))


if __name__ == "__main__":
    main()
