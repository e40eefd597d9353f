"""Seeded logs for the benchmarks: each service in a normal and a flood mix.

A log is two streams merged on time: benign clients (Poisson arrivals, a few
of their lines are failures: typos, broken links) and attackers (each sends a
burst of failures at its own pace; when one stops, a new address takes its
place after a pause). The same seed, service, mix and size always give the
same bytes; the file's mtime is set to its last stamp, which dates year-less
syslog stamps the same way on every run.

    python -m bench.generate --out bench/out/logs --lines 100000 --seed 7

Addresses come from documentation and benchmarking ranges only: benign clients
from 203.0.113.0/24 and 2001:db8:cafe::/64, attackers of the normal mix from
198.51.100.0/24 and 2001:db8:bad::/48, flood attackers from 198.18.0.0/15
(RFC 2544, 131,072 addresses) and 2001:db8:f100::/48.
"""

from __future__ import annotations

import argparse
import heapq
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from random import Random
from typing import Iterator

from bench.formats import FORMATS

SERVICES = tuple(FORMATS)
START = 1741593600.0  # 2025-03-10T08:00:00Z


@dataclass(frozen=True)
class Mix:
    """The shape of one log: how many benign lines and attackers, how fast."""

    benign_rate: float  # benign lines per second
    benign_failures: float  # share of benign lines that are failures
    attackers: int  # attackers active at once
    attack_rate: float  # failures per second of one attacker
    burst: tuple[int, int]  # failures one attacker sends (inclusive range)
    pause: float  # mean seconds before a stopped attacker is replaced
    ranges: tuple[str, str]  # where attackers come from: IPv4, IPv6
    v6_share: float  # share of attackers (and benign clients) on IPv6


MIXES = {
    # Mostly benign, some failures, now and then one attacker looping at 4/s.
    "normal": Mix(20, 0.03, 1, 4.0, (30, 120), 300.0, ("198.51.100.0/24", "2001:db8:bad::/48"), 0.2),
    # Most lines are attacks: 200 attackers at a time, thousands of distinct addresses.
    "flood": Mix(100, 0.03, 200, 10.0, (20, 60), 0.5, ("198.18.0.0/15", "2001:db8:f100::/48"), 0.3),
}
BENIGN_RANGES = ("203.0.113.0/24", "2001:db8:cafe::/64")


def random_address(rng: Random, network: str) -> str:
    """Return a random host address of ``network`` (never its first or last)."""
    net = ipaddress.ip_network(network)
    return str(net.network_address + rng.randrange(1, net.num_addresses - 1))


def distinct_addresses(count: int, seed: int, v6_share: float = 0.2, ranges: tuple[str, str] = MIXES["flood"].ranges) -> list[str]:
    """Return ``count`` distinct attacker addresses, ``v6_share`` of them IPv6, in a seeded order."""
    rng = Random(f"{seed}-distinct")
    v6 = round(count * v6_share)
    v4_net, v6_net = (ipaddress.ip_network(r) for r in ranges)
    if count - v6 > v4_net.num_addresses - 2:
        raise ValueError(f"{ranges[0]} holds fewer than {count - v6} addresses")
    found = [str(v4_net.network_address + n) for n in rng.sample(range(1, v4_net.num_addresses - 1), count - v6)]
    seen: set[str] = set()
    while len(seen) < v6:
        seen.add(random_address(rng, str(v6_net)))
    found += sorted(seen)
    rng.shuffle(found)
    return found


def _benign(rng: Random, mix: Mix) -> Iterator[tuple[float, bool, str]]:
    v4 = [random_address(rng, BENIGN_RANGES[0]) for _ in range(240)]
    v6 = [random_address(rng, BENIGN_RANGES[1]) for _ in range(60)]
    moment = START
    while True:
        moment += rng.expovariate(mix.benign_rate)
        address = rng.choice(v6 if rng.random() < mix.v6_share else v4)
        yield moment, rng.random() < mix.benign_failures, address


def _attacks(rng: Random, mix: Mix) -> Iterator[tuple[float, bool, str]]:
    serial = iter(range(1 << 62))  # breaks ties between attackers due at the same moment

    def newcomer(moment: float) -> list:
        """Return [next moment, serial, failures left, address] of an attacker that starts after a pause."""
        address = random_address(rng, mix.ranges[1] if rng.random() < mix.v6_share else mix.ranges[0])
        return [moment + rng.expovariate(1 / mix.pause), next(serial), rng.randint(*mix.burst), address]

    active = [newcomer(START) for _ in range(mix.attackers)]
    heapq.heapify(active)
    while True:
        attacker = active[0]
        moment, _, left, address = attacker
        yield moment, True, address
        if left > 1:
            heapq.heapreplace(active, [moment + rng.expovariate(mix.attack_rate), attacker[1], left - 1, address])
        else:
            heapq.heapreplace(active, newcomer(moment))


def lines(service: str, mix: str, count: int, seed: int) -> Iterator[tuple[float, str]]:
    """Yield ``count`` (moment, line) of ``service``'s log in ``mix``, in time order."""
    shape = MIXES[mix]
    make = FORMATS[service](Random(f"{seed}-{service}-{mix}-text"), mix)
    events = heapq.merge(_benign(Random(f"{seed}-{service}-{mix}-benign"), shape),
                         _attacks(Random(f"{seed}-{service}-{mix}-attacks"), shape))
    for _, (moment, failure, address) in zip(range(count), events):
        yield moment, (make.failure if failure else make.benign)(moment, address)


def write(directory: Path, service: str, mix: str, count: int, seed: int) -> Path:
    """Write ``service``'s log in ``mix`` to ``directory``; return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{service}-{mix}.log"
    last = START
    with open(path, "w") as handle:
        for last, text in lines(service, mix, count, seed):
            handle.write(text + "\n")
    os.utime(path, (last, last))
    return path


def write_all(directory: Path, count: int, seed: int) -> list[tuple[str, str, Path]]:
    """Write every service in every mix; return (service, mix, path) of each."""
    return [(service, mix, write(directory, service, mix, count, seed)) for service in SERVICES for mix in MIXES]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.generate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench/out/logs"))
    parser.add_argument("--lines", type=int, default=100_000, help="lines per file (default 100000)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    for service, mix, path in write_all(args.out, args.lines, args.seed):
        print(f"{service:14} {mix:7} {path}")


if __name__ == "__main__":
    main()
