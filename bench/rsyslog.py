"""rsyslog throughput: the shipped omprog action with ``omprog-ban run`` vs a child that only answers OK.

Three configs, each against the OK-only child under the same config: the
shipped action (``useTransactions="on"``, batches of up to 1,024, each message
answered DEFER_COMMIT); ``useTransactions="off"`` with ``queue.dequeueBatchSize="1"``
(one OK per message, answered from the relay's inbox; batches of one keep
rsyslog's queue whole when it stops with a hung child); and ``"off"`` with the
shipped batches of 1,024 (faster, but rsyslog 8.2302 drops the rest of a
dequeued batch in that case). Each is measured in ROUNDS paired rounds (the
OK-only child, then omprog-ban, back to back: this machine's speed drifts within
minutes); the round with the median ratio is shown, the spread in the notes.

A private rsyslogd (``tests.lab.Rsyslog``: the shipped rsyslog.d files, imfile
on a private AMPS log, pre-filter, template, queue) runs in the foreground
under ``taskset -c 1`` (the child inherits the pin) inside a fresh network
namespace, so omprog-ban bans into a real nft there. N AMPS failure lines
(the flood mix: thousands of attackers, so bans happen too) are in the log
before rsyslogd starts; both runs read the same file.

Throughput is counted by the child, from its first line on (start-up excluded):
- the OK-only child notes the time of its first and its N-th line:
  rate = (N - 1) / (t_N - t_1);
- omprog-ban appends each failure to its ledger with the time its line was
  read, before the OK: rate = (N - 1) / (t_N - t_1) from the first and last
  records (``status.json``'s line counter tells when all N are in).

``python -m bench.rsyslog [--lines N]``
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from bench import generate
from bench.table import Row, count, figure, render
from bench.workspace import HERE, TABLE, write_config
from omprog_ban import ledger
from tests.lab import PROGRAM, Namespace, Rsyslog, wait_for

OK_CHILD = """\
import json, sys, time
progress, target = sys.argv[1], int(sys.argv[2])
sys.stdout.write("OK\\n"); sys.stdout.flush()
count, first = 0, None
for line in sys.stdin:
    count += 1
    sys.stdout.write("OK\\n"); sys.stdout.flush()
    if first is None:
        first = time.time()
    if count == target:
        with open(progress + ".new", "w") as handle:
            json.dump({"first": first, "done": time.time(), "lines": count}, handle)
        __import__("os").replace(progress + ".new", progress)
"""


ROUNDS = 3


class PinnedRsyslog(Rsyslog):
    """tests.lab.Rsyslog started under ``taskset -c 1``, optionally with another omprog child."""

    def __init__(self, workdir: Path, namespace: Namespace, config: Path, binary: str | None = None,
                 per_message: int = 0) -> None:
        super().__init__(workdir, namespace, config)
        text = self.conf.read_text()
        if binary is not None:
            shipped = f"{PROGRAM} run --config {config}"
            if shipped not in text:
                raise RuntimeError(f"the shipped action no longer runs {shipped!r}")
            text = text.replace(shipped, binary)
        if 'useTransactions="on"' not in text or 'queue.dequeueBatchSize="1024"' not in text:
            raise RuntimeError('the shipped action no longer says useTransactions="on", queue.dequeueBatchSize="1024"')
        if per_message:  # useTransactions="off", batches of ``per_message``
            text = text.replace('useTransactions="on"', 'useTransactions="off"').replace(
                'queue.dequeueBatchSize="1024"', f'queue.dequeueBatchSize="{per_message}"')
        self.conf.write_text(text)

    def start(self) -> "PinnedRsyslog":
        """Check the config and start rsyslogd pinned to CPU 1."""
        check = subprocess.run(["rsyslogd", "-N1", "-f", str(self.conf)], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"rsyslogd -N1: {check.stderr}{check.stdout}")
        self.process = self.namespace.popen(["taskset", "-c", "1", "rsyslogd", "-n", "-f", str(self.conf), "-i", str(self.pidfile)],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_for(lambda: self.pidfile.exists(), 10):
            raise RuntimeError("rsyslogd did not start")
        return self


def failure_lines(count_: int, seed: int) -> list[str]:
    """Return ``count_`` AMPS failure lines of the flood mix (the pre-filter passes each one)."""
    found = []
    for _, text in generate.lines("amps", "flood", count_ * 2, seed):
        if text.endswith(("auth.", "name in use.")):
            found.append(text)
            if len(found) == count_:
                return found
    raise RuntimeError("the flood mix ran out of failures")


def _fresh(directory: Path) -> Path:
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    return directory


def _run(workdir: Path, lines: list[str], binary: str | None, done, timeout: float, per_message: int = 0):
    namespace = Namespace("obb")
    daemon = PinnedRsyslog(workdir, namespace, write_config(workdir / "omprog-ban.toml", workdir / "state", ("amps",)),
                           binary, per_message)
    daemon.amps_log.write_text("".join(line + "\n" for line in lines))
    try:
        daemon.start()
        result = wait_for(done, timeout, 0.05)
        if not result:
            raise RuntimeError(f"rsyslog run in {workdir} did not finish within {timeout:.0f} s; see {daemon.internal}")
        banned = sum(len(namespace.nft_elements(TABLE, f"amps_v{v}")) for v in (4, 6)) if binary is None else 0
        return result, banned
    finally:
        daemon.stop()
        namespace.close()


def ok_only(workdir: Path, lines: list[str], timeout: float, per_message: int = 0) -> float:
    """Return lines/s through rsyslog to the OK-only child."""
    _fresh(workdir)
    script, progress = workdir / "ok-child.py", workdir / "progress.json"
    script.write_text(OK_CHILD)

    def done():
        return json.loads(progress.read_text()) if progress.exists() else None

    result, _ = _run(workdir, lines, f"{sys.executable} {script} {progress} {len(lines)}", done, timeout, per_message)
    return (result["lines"] - 1) / (result["done"] - result["first"])


def omprog_ban(workdir: Path, lines: list[str], timeout: float, per_message: int = 0) -> tuple[float, int]:
    """Return lines/s through rsyslog to ``omprog-ban run`` with real nft, and how many bans the kernel holds."""
    _fresh(workdir)
    state = workdir / "state"
    first: list[float] = []

    def done():
        if not first:  # the ledger is compacted past 16 MiB: note its first record while it is there
            first.extend(record.time for record in _records(state / "ledger")[:1])
        try:
            status = json.loads((state / "status.json").read_text())
        except (OSError, ValueError):
            return False
        return sum(jail["lines"] for jail in status["jails"].values()) >= len(lines)

    _, banned = _run(workdir, lines, None, done, timeout, per_message)
    if not first:
        raise RuntimeError(f"omprog-ban's ledger in {state} recorded no failure")
    last = max(record.time for record in _records(state / "ledger")[-100:])
    return (len(lines) - 1) / (last - first[0]), banned


def _records(path: Path) -> list:
    """Return the ledger's records: each failure with the time its line was read."""
    return ledger.read(path)


def run(workdir: Path, lines: int, seed: int = 7, rounds: int = ROUNDS) -> list[Row]:
    """Run both children on the same ``lines`` failures under each config, ``rounds`` paired rounds
    each; return the table's rows."""
    text = failure_lines(lines, seed)
    timeout = 60 + lines / 2000
    rows = []
    for per_message, mode in ((0, 'shipped: useTransactions="on", batches of 1,024, DEFER_COMMIT'),
                              (1, 'useTransactions="off", batches of 1: one OK per message (inbox)'),
                              (1024, 'useTransactions="off", batches of 1,024 (rsyslog drops a batch at stop if the child hangs)')):
        suffix = f"-per-message-{per_message}" if per_message else ""
        results = []
        for _ in range(rounds):
            reference = ok_only(workdir / f"rsyslog-ok{suffix}", text, timeout, per_message)
            ours, banned = omprog_ban(workdir / f"rsyslog-omprog-ban{suffix}", text, timeout, per_message)
            results.append((ours / reference, ours, reference, banned))
        results.sort()
        ratio, ours, reference, banned = results[len(results) // 2]
        spread = f"rounds {results[0][0]:.2f}-{results[-1][0]:.2f}x; " if rounds > 1 else ""
        rows.append(Row("rsyslog", f"imfile -> omprog, taskset -c 1, {mode}", count(lines), f"{figure(ours)} lines/s",
                        f"OK-only child {figure(reference)} lines/s", ratio, f"{spread}{count(banned)} bans in nft"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.rsyslog", description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--out", type=Path, default=HERE / "out")
    args = parser.parse_args()
    print(render(run(args.out, args.lines, args.seed, args.rounds)))


if __name__ == "__main__":
    main()
