"""What the live benchmarks share: configs written from bench/jails.toml, the program, a pipe driver.

Everything that touches nft runs in a private network namespace (``tests.lab.Namespace``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import subprocess
import time
from pathlib import Path

from bench.formats import iso_stamp
from tests.lab import PROGRAM

HERE = Path(__file__).resolve().parent
JAILS = HERE / "jails.toml"
TABLE = "omprog_bench"

# Every line a ban: the amps grammar with maxretry 1, and bans that outlast the run.
ONE_STRIKE = """
[jails.one-strike]
grammar = "amps"
maxretry = 1
findtime = "10s"
bantime = "1h"
ports = [9007]
"""


def write_config(path: Path, state_dir: Path, jails: tuple[str, ...] = (), extra: str = "") -> Path:
    """Write bench/jails.toml with only ``jails`` (all when empty) plus ``extra``, state in ``state_dir``."""
    head, *sections = re.split(r"(?m)^(?=\[jails\.)", JAILS.read_text())
    kept = [s for s in sections if not jails or re.match(r"\[jails\.([\w-]+)\]", s)[1] in jails]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'state_dir = "{state_dir}"\n' + head + "".join(kept) + extra)
    return path


def amps_message(address: str, serial: int) -> str:
    """Return one AMPS auth failure as rsyslog's shipped template sends it (imfile: msg is the whole line)."""
    host = f"[{address}]" if ":" in address else address
    now = time.time()
    text = f"{iso_stamp(now)} [26] info: 07-0013 client[loader]({host}:{40000 + serial % 20000}) disconnected: auth."
    reported = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now))
    return "\t".join((f"{serial:032X}", "amps", "bench", reported, json.dumps(text, ensure_ascii=False)[1:-1]))


class Child:
    """``omprog-ban run`` on pipes, as rsyslog's omprog drives it: one line, then wait for its reply."""

    def __init__(self, argv: list[str], stderr: Path) -> None:
        self._stderr = open(stderr, "wb")
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr)
        self._out = self.process.stdout.fileno()
        self._in = self.process.stdin.fileno()
        self._buffer = b""

    def reply(self, timeout: float = 30.0) -> str:
        """Return the next reply line (without newline); raise TimeoutError or EOFError."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._out], [], [], left)[0]:
                raise TimeoutError(f"no reply within {timeout} s")
            chunk = os.read(self._out, 65536)
            if not chunk:
                raise EOFError("the child closed its stdout")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    def send(self, line: str) -> str:
        """Write one message and return its reply."""
        os.write(self._in, line.encode() + b"\n")
        return self.reply()

    def close(self) -> int:
        """Close stdin (EOF: the child exits 0) and wait."""
        self.process.stdin.close()
        try:
            code = self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.process.stdout.close()
        self._stderr.close()
        return code


@contextlib.contextmanager
def pinned():
    """Run this process, and the children it starts meanwhile, on the last CPU (like ``taskset -c 1 rsyslogd``).

    A driver and its child on one core answer each other without cross-core
    wake-ups, which on this kind of VM are the dearest part of a round trip
    (LAB.md: the OK-only ceiling is 3-4x higher pinned).
    """
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {max(before)})
    try:
        yield max(before)
    finally:
        os.sched_setaffinity(0, before)


def run_argv(config: Path, *options: str) -> list[str]:
    """Return the command line of ``omprog-ban run`` on ``config``."""
    return [str(PROGRAM), "run", "--config", str(config), *options]


def rss_kib(pid: int | str = "self") -> int:
    """Return the resident set size of ``pid`` in KiB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")
