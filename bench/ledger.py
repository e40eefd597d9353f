"""The price of "what we acknowledge, we keep": appending a counted failure durably.

Three ways to make a record outlive the process before the OK goes out, timed
side by side on the same records (a typical AMPS failure, ~80 bytes):

- ``mmap``: omprog-ban's ledger (``omprog_ban.ledger.Ledger``): a memory copy
  into a shared file mapping; the pages belong to the page cache and survive
  SIGKILL.
- ``write(2)``: one system call per record on an ``O_APPEND`` descriptor; also
  survives SIGKILL.
- ``write + fdatasync``: survives a host crash too (which takes the kernel's
  sets with it, so omprog-ban does not pay for it).

``python -m bench.ledger [--records N]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

from omprog_ban.ledger import Ledger, Record

from bench.table import Row, count, figure, render
from bench.workspace import HERE

RECORD = Record("F", 1795305624.037799, "amps", "198.51.100.77", "0123456789ABCDEF0123456789ABCDEF")


def per_record(workdir: Path, records: int) -> dict[str, float]:
    """Return microseconds per appended record for each way."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    data = ("\t".join(["F", f"{RECORD.time:.6f}", RECORD.jail, RECORD.address, RECORD.extra]) + "\n").encode()
    ledger = Ledger(workdir / "ledger")  # the same bytes each way: formatting is not what is compared
    started = time.perf_counter()
    for _ in range(records):
        ledger.append_bytes(data)
    found = {"mmap": time.perf_counter() - started}
    ledger.close()
    fd = os.open(workdir / "plain", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    started = time.perf_counter()
    for _ in range(records):
        os.write(fd, data)
    found["write(2)"] = time.perf_counter() - started
    synced = max(50, records // 100)  # a disk flush per record is slow: time fewer
    started = time.perf_counter()
    for _ in range(synced):
        os.write(fd, data)
        os.fdatasync(fd)
    found["write + fdatasync"] = (time.perf_counter() - started) * records / synced
    os.close(fd)
    return {way: seconds / records * 1e6 for way, seconds in found.items()}


def run(workdir: Path, records: int) -> list[Row]:
    """Measure; return the table's rows: the mmap ledger against each other way (ratio: times cheaper)."""
    micros = per_record(workdir / "ledger", records)
    ours = f"mmap {figure(micros['mmap'])} µs/record"
    return [Row("ledger", f"append a failure before its OK: mmap ledger vs {way} ({'survives a host crash' if 'sync' in way else 'survives SIGKILL too'})",
                f"{count(records)} records", ours, f"{way} {figure(micros[way])} µs/record",
                micros[way] / micros["mmap"], notes="ratio: how many times cheaper the ledger is")
            for way in micros if way != "mmap"]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ledger", description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--out", type=Path, default=HERE / "out")
    args = parser.parse_args()
    print(render(run(args.out, args.records)))


if __name__ == "__main__":
    main()
