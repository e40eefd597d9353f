"""Ban latency: from the line written to the element committed in the kernel, at 1,000 bans/s.

``omprog-ban run`` is driven on pipes as rsyslog's omprog drives it (one
message, then wait for the reply), inside a private network namespace with a
real nft. The jail bans at the first failure (maxretry 1) and every message
carries a new address, so every message is a ban. The messages are paced at
1,000 a second (message i is not written before t0 + i/1000); a late reply
delays the next one, as it would in rsyslog. Driver and child share CPU 1, as
rsyslogd and its child do under ``taskset -c 1``.

The child answers a message OK once it is durable (from the relay's inbox),
before its ban is in the kernel; so the kernel is asked instead: ``nft
monitor new elements`` (line-buffered) prints each element as its transaction
commits, and a thread notes when each address shows up. Latency = that moment
less the moment its message was written. The monitor runs on CPU 0, beside the
worker: on CPU 1 it took turns with the driver and the relay, and its own
delay showed in the figures (p99 5-8 ms against 3 ms). The first WARM bans (the child's
first transactions, first history rows) are sent the same way but kept apart:
the notes give their maximum.

``python -m bench.latency [--bans N]``
"""

from __future__ import annotations

import argparse
import ipaddress
import shutil
import subprocess
import threading
import time
from pathlib import Path

from bench.generate import distinct_addresses
from bench.table import Row, count, figure, rate, render
from bench.workspace import HERE, ONE_STRIKE, TABLE, Child, amps_message, pinned, run_argv, write_config
from tests.lab import Namespace

RATE = 1000.0
WARM = 200


def percentile(values: list[float], share: float) -> float:
    """Return the value below which ``share`` of ``values`` lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def in_kernel(namespace: Namespace, set_stem: str = "one_strike") -> int:
    """Return how many elements the jail's two sets hold."""
    return sum(len(namespace.nft_elements(TABLE, f"{set_stem}_v{v}")) for v in (4, 6))


def measure(workdir: Path, bans: int, seed: int = 7) -> tuple[list[float], float, int]:
    """Return each ban's latency (s), the first WARM of them included, the elapsed time, and how
    many elements the kernel holds after."""
    shutil.rmtree(workdir, ignore_errors=True)
    config = write_config(workdir / "omprog-ban.toml", workdir / "state", ("none",), ONE_STRIKE)
    addresses = [str(ipaddress.ip_address(text)) for text in distinct_addresses(bans, seed)]
    messages = [amps_message(address, serial) for serial, address in enumerate(addresses)]
    namespace = Namespace("obl")
    child = monitor = None
    seen: dict[str, float] = {}
    try:
        monitor = namespace.popen(["taskset", "-c", "0", "stdbuf", "-oL", "nft", "monitor", "new", "elements"], stdout=subprocess.PIPE)
        threading.Thread(target=_watch, args=(monitor.stdout, seen), daemon=True).start()
        with pinned():
            child = Child(namespace.command(run_argv(config)), workdir / "omprog-ban.log")
            if child.reply() != "OK":
                raise RuntimeError(f"omprog-ban run did not start; see {workdir / 'omprog-ban.log'}")
            sent = []
            start = time.perf_counter()
            for serial, message in enumerate(messages):
                delay = start + serial / RATE - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                sent.append(time.perf_counter())
                reply = child.send(message)
                if reply != "OK":
                    raise RuntimeError(f"message {serial} answered {reply!r}")
            deadline = time.perf_counter() + 10
            while len(seen) < bans and time.perf_counter() < deadline:
                time.sleep(0.01)
            elapsed = time.perf_counter() - start
        missing = [address for address in addresses if address not in seen]
        if missing:
            raise RuntimeError(f"{len(missing)} bans never showed in nft monitor, e.g. {missing[:3]}")
        return [seen[address] - moment for address, moment in zip(addresses, sent)], elapsed, in_kernel(namespace)
    finally:
        if child is not None:
            child.close()
        if monitor is not None:
            monitor.terminate()
            monitor.wait()
        namespace.close()


def _watch(stream, seen: dict[str, float]) -> None:
    """Note when each element first shows in ``nft monitor`` lines (``add element inet T S { ADDRESS ...``)."""
    for line in stream:
        _, brace, rest = line.partition(b"{ ")
        if brace:
            address = str(ipaddress.ip_address(rest.split(b" ", 1)[0].decode()))
            seen.setdefault(address, time.perf_counter())


def run(workdir: Path, bans: int, seed: int = 7) -> list[Row]:
    """Measure ``bans`` bans at 1,000/s; return the table's row."""
    latencies, elapsed, held = measure(workdir / "latency", bans + WARM, seed)
    ms = [1000 * value for value in latencies[WARM:]]
    warm = 1000 * max(latencies[:WARM])
    figures = f"p50 {figure(percentile(ms, 0.5))} / p99 {figure(percentile(ms, 0.99))} / max {figure(max(ms))} ms"
    return [Row("latency", f"write -> element committed (nft monitor), paced at {RATE:,.0f} bans/s", f"{count(bans)} bans", figures,
                notes=f"achieved {rate(bans + WARM, elapsed, 'bans/s')}; {count(held)} elements in nft after; "
                             f"the {WARM} before them: max {figure(warm)} ms")]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bans", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=HERE / "out")
    args = parser.parse_args()
    print(render(run(args.out, args.bans, args.seed)))


if __name__ == "__main__":
    main()
