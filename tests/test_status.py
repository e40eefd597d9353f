"""``omprog-ban status``: the counters of status.json, the writer's state and the warnings."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from omprog_ban import cli
from omprog_ban.commands import status
from tests.lab import wait_for

T = 1768003200.0  # 2026-01-10 00:00:00 UTC (the tests run with TZ=UTC)

# The seed: web logs lost their IP numbers; candidate lines keep coming, nothing matches, bans stop.
STATUS = {
    "time": T, "pid": 4242, "nft_errors": 0, "restores": 1,
    "jails": {
        "amps": {"lines": 1200, "candidates": 40, "matched": 40, "counted": 38, "bans": 1, "last_match": T - 5, "tracked": 3},
        "web": {"lines": 5000, "candidates": 310, "matched": 0, "counted": 0, "bans": 0, "last_match": 0.0, "tracked": 0},
    },
}
LOST = ("jail web: 310 candidate lines but no address extracted: this jail cannot ban; "
        "has the log format changed or lost its addresses? check a recent line against the jail's grammar")


def test_table_warns_of_candidates_without_matches():
    data = status.collect(STATUS, T + 1.5, alive=lambda pid: pid == 4242)
    data["status"] = "/var/lib/omprog-ban/status.json"
    assert status.table(data) == f"""\
writer pid 4242: running, status written 1.5s ago (/var/lib/omprog-ban/status.json)
nft errors 0, table restores 1, uuids pinned 0

JAIL                  LINES CANDIDATES    MATCHED    COUNTED   BANS TRACKED  LAST MATCH
amps                   1200         40         40         38      1       3  2026-01-09 23:59:55 UTC
web                    5000        310          0          0      0       0  never

WARNING: {LOST}"""


def test_no_warning_when_every_jail_matches_or_sees_nothing():
    quiet = {**STATUS, "jails": {
        "amps": STATUS["jails"]["amps"],
        "web": {"lines": 5000, "candidates": 0, "matched": 0, "counted": 0, "bans": 0, "last_match": 0.0, "tracked": 0},
    }}
    assert status.collect(quiet, T + 1.5, alive=lambda pid: True)["warnings"] == []


def test_stale_and_dead_writers():
    assert status.collect(STATUS, T + 100, alive=lambda pid: True)["warnings"] == [
        "the status is 100s old (rewritten every ~2s): the writer (pid 4242) may be stuck", LOST]
    dead = status.collect(STATUS, T + 100, alive=lambda pid: False)
    assert dead["running"] is False
    assert dead["warnings"][0] == "the writer (pid 4242) is not running: these counters are from a stopped instance"


def test_running_probes_the_process():
    gone = subprocess.Popen(["sleep", "0"])
    gone.wait()
    other = subprocess.Popen(["sleep", "30"])  # alive, but not omprog-ban: a reused pid
    ours = subprocess.Popen(["bash", "-c", "exec -a omprog-ban sleep 30"])  # argv[0] is omprog-ban
    try:
        for process, argv0 in ((other, b"sleep\0"), (ours, b"omprog-ban\0")):  # until each has exec'd
            assert wait_for(lambda: Path(f"/proc/{process.pid}/cmdline").read_bytes().startswith(argv0), 5, 0.01)
        assert [status.running(p.pid) for p in (gone, other, ours)] == [False, False, True]
    finally:
        for process in (other, ours):
            process.kill()
            process.wait()


def test_command_json_and_exit_codes(tmp_path, capsys):
    (tmp_path / "status.json").write_text(json.dumps(STATUS))
    code = cli.main(["status", "--config", "default", "--state-dir", str(tmp_path), "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 1  # warnings
    assert data["jails"]["web"]["candidates"] == 310
    assert data["pid"] == 4242 and data["status"] == str(tmp_path / "status.json")
    assert LOST in data["warnings"]
    empty = tmp_path / "empty"
    assert cli.main(["status", "--config", "default", "--state-dir", str(empty)]) == status.EX_NOINPUT


def test_pins_near_their_cap_are_a_warning():
    from omprog_ban.deliveries import PINNED

    assert status.collect({**STATUS, "pinned": PINNED // 2}, T + 1.5, alive=lambda pid: True)["warnings"] == [LOST]
    warnings = status.collect({**STATUS, "pinned": PINNED - 5}, T + 1.5, alive=lambda pid: True)["warnings"]
    assert warnings[0].startswith(f"{PINNED - 5} uuids pinned (at most {PINNED}, the oldest go first)")
