"""Operating it, end to end: ``run`` under ``unshare -n`` fed on stdin, then ``report``, ``status``,
the metrics file and the kernel's set; repeat offenders' longer bans in a real nft set.

Every nft command runs in a private network namespace (``unshare -n``; commands
join it with ``nsenter``), so the host's ruleset is never touched.
"""

from __future__ import annotations

import json
from pathlib import Path
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from tests.lab import PROGRAM, wait_for

pytestmark = pytest.mark.integration
LINE = "07-0013 client[x](192.0.2.7:5) disconnected: auth.\n"
REPEAT_CONFIG = """\
[nft]
table = "obtest"
[jails.amps]
grammar = "amps"
maxretry = 2
findtime = "10s"
bantime = 60
bantime_increment = { factor = 2, max = "1h" }
"""


def cli(*argv: str) -> subprocess.CompletedProcess:
    """Run an omprog-ban command that reads only files (no nft) and wait."""
    return subprocess.run([str(PROGRAM), *argv], capture_output=True, text=True, timeout=30)


def in_namespace(pid: int, *argv: str) -> subprocess.CompletedProcess:
    """Run ``argv`` in the network namespace of ``pid`` and wait."""
    return subprocess.run(["nsenter", "-t", str(pid), "-n", *argv], capture_output=True, text=True, timeout=30)


def elements(pid: int, table: str = "omprog_ban") -> list[dict]:
    """Return the amps_v4 set's elements as ``nft -j`` shows them."""
    done = in_namespace(pid, "nft", "-j", "list", "set", "inet", table, "amps_v4")
    assert done.returncode == 0, done.stderr
    found = []
    for item in json.loads(done.stdout)["nftables"]:
        found += [e["elem"] for e in item.get("set", {}).get("elem", []) if isinstance(e, dict)]
    return found


def serve(argv: list[str]) -> subprocess.Popen:
    """Start ``omprog-ban run`` in a fresh network namespace; wait for its start-up OK."""
    process = subprocess.Popen(["unshare", "-n", str(PROGRAM), "run", *argv], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    assert process.stdout.readline() == "OK\n", process.stderr.read()
    return process


def feed(process: subprocess.Popen, lines: list[str]) -> None:
    """Write ``lines`` and read one OK per line."""
    process.stdin.write("".join(lines))
    process.stdin.flush()
    assert [process.stdout.readline() for _ in lines] == ["OK\n"] * len(lines)


def stop(process: subprocess.Popen) -> int:
    """Close stdin (rsyslog's way of stopping it) and return the exit code."""
    process.stdin.close()
    try:
        return process.wait(20)
    finally:
        if process.poll() is None:
            process.kill()


def test_run_then_report_status_and_metrics_show_the_ban(tmp_path):
    state, prom = tmp_path / "state", tmp_path / "omprog_ban.prom"
    common = ["--config", "default", "--state-dir", str(state)]
    process = serve([*common, "--metrics-file", str(prom)])
    try:
        feed(process, [LINE] * 25)  # the default AMPS jail: 20 in 10 s -> 120 s
        assert [(e["val"], e["timeout"]) for e in elements(process.pid)] == [("192.0.2.7", 120)]
        committed = lambda: json.loads(cli("report", "--json", *common).stdout)["bans"] == 1  # noqa: E731
        assert wait_for(committed, 6, 0.2), "history not committed by maintain()"
        report = json.loads(cli("report", "--json", *common).stdout)
        assert [(o["address"], o["bans"], o["share"], o["jails"]) for o in report["offenders"]] == [
            ("192.0.2.7", 1, 100.0, ["amps"])]
        assert report["jails"] == [{"jail": "amps", "bans": 1, "share": 100.0, "addresses": 1}]
        done = cli("status", "--json", *common)
        status = json.loads(done.stdout)
        assert done.returncode == 0, status["warnings"]
        worker = int(Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()[0])
        assert (status["running"], status["pid"], status["warnings"]) == (True, worker, [])  # run's worker writes it
        amps = status["jails"]["amps"]
        assert (amps["lines"], amps["candidates"], amps["matched"], amps["counted"], amps["bans"]) == (25, 25, 25, 25, 1)
        assert status["age"] < 5 and amps["last_match"] > time.time() - 60
        text = prom.read_text()
        assert 'omprog_ban_bans_total{jail="amps"} 1\n' in text
        assert 'omprog_ban_lines_total{jail="amps"} 25\n' in text
        assert "omprog_ban_ban_batch_seconds_count 1\n" in text
        assert "omprog_ban_nft_errors_total 0\n" in text
        table = cli("report", *common).stdout
        assert "192.0.2.7" in table and "100.0%" in table
    finally:
        assert stop(process) == 0, process.stderr.read()
    done = cli("status", "--json", *common)
    assert done.returncode == 1  # the writer is gone
    assert json.loads(done.stdout)["running"] is False
    assert json.loads(cli("report", "--json", *common).stdout)["bans"] == 1


def test_a_repeat_offender_gets_twice_the_bantime_in_the_kernel(tmp_path):
    """A manual ban (recorded as such) then an automatic one: 60 s * 2**1 = 120 s in the set."""
    config = tmp_path / "omprog-ban.toml"
    config.write_text(REPEAT_CONFIG)
    common = ["--config", str(config), "--state-dir", str(tmp_path / "state")]
    holder = subprocess.Popen(["unshare", "-n", "sleep", "600"])
    try:
        time.sleep(0.2)
        done = in_namespace(holder.pid, str(PROGRAM), "ban", "192.0.2.7", "--jail", "amps", "--time", "1", *common)
        assert done.returncode == 0, done.stdout + done.stderr
        assert wait_for(lambda: elements(holder.pid, "obtest") == [], 5, 0.2), "the 1 s manual ban did not expire"
        process = subprocess.Popen(["nsenter", "-t", str(holder.pid), "-n", str(PROGRAM), "run", *common],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        assert process.stdout.readline() == "OK\n", process.stderr.read()
        try:
            feed(process, [LINE] * 2)
            assert [(e["val"], e["timeout"]) for e in elements(holder.pid, "obtest")] == [("192.0.2.7", 120)]
        finally:
            assert stop(process) == 0, process.stderr.read()
    finally:
        holder.kill()
        holder.wait()
    rows = sqlite3.connect(tmp_path / "state" / "history.sqlite").execute(
        "SELECT jail, address, bantime, failures, reason FROM bans ORDER BY time").fetchall()
    assert rows == [("amps", "192.0.2.7", 1.0, 0, "manual"), ("amps", "192.0.2.7", 120.0, 2, "2 failures, ban #2")]


ESCALATE = textwrap.dedent("""
    import ipaddress, json, sys
    from omprog_ban import config
    from omprog_ban.model import LogLine
    from omprog_ban.runtime import Runtime
    cfg = config.load(sys.argv[1], state_dir=sys.argv[2])
    now = [1000.0]
    runtime = Runtime(cfg, clock=lambda: now[0], lock_wait=0)
    runtime.start()
    timeouts = []
    for start in (1000.0, 1100.0, 1300.0):  # each after the previous ban ended (engine time)
        for moment in (start, start + 1):
            now[0] = moment
            runtime.pipeline.handle(LogLine("07-0013 client[x](192.0.2.7:5) disconnected: auth.", moment))
        timeouts += [e.timeout for e in runtime.backend.elements()]
        runtime.backend.unban(ipaddress.ip_address("192.0.2.7"), "amps")  # as if the kernel expired it
    runtime.close()
    print(json.dumps(timeouts))
""")


def test_each_ban_doubles_up_to_the_cap_with_engine_time(tmp_path):
    """Three automatic bans through a Runtime with a real nft table (times injected): 60, 120, 240."""
    config = tmp_path / "omprog-ban.toml"
    config.write_text(REPEAT_CONFIG)
    done = subprocess.run(["unshare", "-n", sys.executable, "-c", ESCALATE, str(config), str(tmp_path / "state")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [60, 120, 240]
