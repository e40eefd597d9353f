"""``omprog-ban report`` on a recorded history: the exact table and JSON a user reads."""

from __future__ import annotations

import ipaddress
import json
import sqlite3

import pytest

from omprog_ban import cli
from omprog_ban.commands import report
from omprog_ban.history import History
from omprog_ban.model import Ban

T = 1768003200.0  # 2026-01-10 00:00:00 UTC (the tests run with TZ=UTC)

ROWS = [  # seconds after T, jail, address, reason
    (0, "amps", "198.51.100.7", "20 failures"),
    (3600, "amps", "198.51.100.7", "20 failures"),
    (7200, "amps", "198.51.100.7", "20 failures"),
    (10800, "amps", "198.51.100.7", "20 failures"),
    (600, "amps", "192.0.2.7", "20 failures"),
    (1800, "ssh", "192.0.2.7", "5 failures"),
    (5000, "amps", "2001:db8::1", "20 failures"),
    (9000, "ssh", "203.0.113.0/24", "manual"),
]


@pytest.fixture
def state(tmp_path):
    history = History(tmp_path / "history.sqlite")
    for offset, jail, text, reason in ROWS:
        address = ipaddress.ip_network(text) if "/" in text else ipaddress.ip_address(text)
        history.record(Ban(jail, address, 120, T + offset, 20, reason))
    history.close(T + 20000)
    return tmp_path


def run(capsys, state, *options):
    code = cli.main(["report", "--config", "default", "--state-dir", str(state), *options])
    return code, capsys.readouterr().out


TABLE = """\
8 bans of 4 addresses from 2026-01-10 00:00:00 UTC to 2026-01-10 03:00:00 UTC

ADDRESS                                    BANS  BANS%  INTERVAL  JAILS
198.51.100.7                                  4  50.0%     1.00h  amps
192.0.2.7                                     2  25.0%     20.0m  amps,ssh
203.0.113.0/24                                1  12.5%         -  ssh
2001:db8::1                                   1  12.5%         -  amps

JAIL                       BANS  BANS% ADDRESSES
amps                          6  75.0%         3
ssh                           2  25.0%         2
"""


def test_table(capsys, state):
    assert run(capsys, state) == (0, TABLE)


def test_top_says_how_many_are_left_out(capsys, state):
    code, out = run(capsys, state, "--top", "1")
    assert code == 0
    assert out.splitlines()[2:5] == [
        "ADDRESS                                    BANS  BANS%  INTERVAL  JAILS",
        "198.51.100.7                                  4  50.0%     1.00h  amps",
        "... and 3 more addresses (--top 0 shows all)",
    ]


def test_json(capsys, state):
    code, out = run(capsys, state, "--json", "--top", "2")
    assert code == 0
    assert json.loads(out) == {
        "history": str(state / "history.sqlite"),
        "since": None,
        "bans": 8,
        "addresses": 4,
        "first": 1768003200.0,
        "last": 1768014000.0,
        "offenders": [
            {"address": "198.51.100.7", "bans": 4, "share": 50.0, "interval": 3600.0,
             "first": 1768003200.0, "last": 1768014000.0, "jails": ["amps"]},
            {"address": "192.0.2.7", "bans": 2, "share": 25.0, "interval": 1200.0,
             "first": 1768003800.0, "last": 1768005000.0, "jails": ["amps", "ssh"]},
        ],
        "jails": [
            {"jail": "amps", "bans": 6, "share": 75.0, "addresses": 3},
            {"jail": "ssh", "bans": 2, "share": 25.0, "addresses": 2},
        ],
    }


def test_since_counts_only_later_bans(state):
    data = report.collect(state / "history.sqlite", T + 3000, None)
    assert (data["bans"], data["addresses"]) == (5, 3)
    assert [(o["address"], o["bans"], o["share"]) for o in data["offenders"]] == [
        ("198.51.100.7", 3, 60.0), ("203.0.113.0/24", 1, 20.0), ("2001:db8::1", 1, 20.0)]
    assert [(j["jail"], j["bans"], j["addresses"]) for j in data["jails"]] == [("amps", 4, 2), ("ssh", 1, 1)]


def test_since_in_the_future_and_no_history(capsys, state, tmp_path_factory):
    assert report.table(report.collect(state / "history.sqlite", T + 86400, None)) == \
        f"no bans since 2026-01-11 00:00:00 UTC in {state / 'history.sqlite'}"
    empty = tmp_path_factory.mktemp("empty")
    code, out = run(capsys, empty)
    assert (code, out) == (0, f"no bans in {empty / 'history.sqlite'}\n")
    assert not (empty / "history.sqlite").exists()  # report never creates the file


def test_bad_since_is_a_usage_error(capsys, state):
    assert run(capsys, state, "--since", "soon")[0] == cli.EX_USAGE


def test_reads_while_a_writer_holds_the_database(state):
    writer = sqlite3.connect(state / "history.sqlite")
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO bans VALUES (?, 'amps', '192.0.2.99', 60, 1, 'x')", (T,))
    data = report.collect(state / "history.sqlite", None)  # WAL: readers see the last commit
    assert data["bans"] == 8
    writer.commit()
    assert report.collect(state / "history.sqlite", None)["bans"] == 9
