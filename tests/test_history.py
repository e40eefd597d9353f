"""The ban history (SQLite), the repeat-offender rule and its hook in the Pipeline and Runtime."""

from __future__ import annotations

import ipaddress
import sqlite3

import pytest

from omprog_ban import config as config_module
from omprog_ban.history import History, open_history
from omprog_ban.increment import Escalate, bantime_for
from omprog_ban.model import Ban, LogLine
from omprog_ban.pipeline import Pipeline
from omprog_ban.runtime import Runtime

A = ipaddress.ip_address("192.0.2.7")
B = ipaddress.ip_address("198.51.100.2")
LINE = "07-0013 client[x](192.0.2.7:5) disconnected: auth."


class Backend:
    """A backend that keeps what it is given."""

    def __init__(self) -> None:
        self.applied: list[Ban] = []

    def ban(self, bans):
        self.applied.extend(bans)

    def elements(self):
        return []

    def ensure(self, *args):
        pass

    def exists(self):
        return True


def config(tmp_path, increment=True, retention="90d"):
    jail = {"grammar": "amps", "maxretry": 2, "findtime": 10, "bantime": 60}
    if increment:
        jail["bantime_increment"] = {"factor": 2, "max": 1000}
    data = {"jails": {"amps": jail}, "history": {"retention": retention}}
    return config_module.parse(data, state_dir=str(tmp_path))


# (bantime, factor, max, earlier bans) -> new bantime
@pytest.mark.parametrize("bantime, factor, maximum, earlier, expected", [
    (60, 2, 604800, 0, 60),
    (60, 2, 604800, 1, 120),
    (60, 2, 604800, 2, 240),
    (60, 2, 604800, 3, 480),
    (60, 3, 604800, 2, 540),
    (60, 1.5, 604800, 2, 135),
    (600, 2, 3600, 2, 2400),
    (600, 2, 3600, 3, 3600),        # capped
    (600, 2, 3600, 50, 3600),
    (60, 2, 604800, 100_000, 604800),  # 2**100000 overflows a float: still the cap
    (60, 1, 604800, 5, 60),         # factor 1: no increment
    (7200, 2, 3600, 1, 7200),       # a max below bantime never shortens a ban
    (60, 2, 604800, -1, 60),
])
def test_bantime_for(bantime, factor, maximum, earlier, expected):
    assert bantime_for(bantime, factor, maximum, earlier) == expected


def test_record_is_queued_until_commit(tmp_path):
    history = History(tmp_path / "h.sqlite")
    history.record(Ban("amps", A, 60, 1000.0, 20, "20 failures"))
    reader = sqlite3.connect(tmp_path / "h.sqlite")
    assert reader.execute("SELECT COUNT(*) FROM bans").fetchone() == (0,)
    assert history.count("amps", A, 0.0) == 1  # queued rows count for repeat offenders
    assert history.commit(1001.0) == 1
    assert reader.execute("SELECT * FROM bans").fetchall() == [(1000.0, "amps", "192.0.2.7", 60.0, 20, "20 failures")]
    assert history.queued == []
    history.close()


def test_count_by_jail_address_and_time(tmp_path):
    history = History(tmp_path / "h.sqlite")
    for moment, jail, address in [(100, "amps", A), (200, "amps", A), (300, "amps", B), (400, "ssh", A), (500, "amps", A)]:
        history.record(Ban(jail, address, 60, float(moment)))
    history.commit(600.0)
    history.record(Ban("amps", A, 60, 650.0))
    assert history.count("amps", A, 0.0) == 4
    assert history.count("amps", A, 200.0) == 3
    assert history.count("amps", A, 501.0) == 1
    assert history.count("amps", B, 0.0) == 1
    assert history.count("ssh", B, 0.0) == 0
    history.close(700.0)
    assert History(tmp_path / "h.sqlite", read_only=True).count("amps", A, 0.0) == 4


def test_index_serves_the_repeat_offender_query(tmp_path):
    history = History(tmp_path / "h.sqlite")
    plan = history.db.execute(
        "EXPLAIN QUERY PLAN SELECT COUNT(*) FROM bans WHERE jail = ? AND address = ? AND time >= ?", ("a", "b", 0)
    ).fetchall()
    assert "bans_by_offender" in str(plan)


def test_prune_keeps_retention_and_runs_at_most_every_interval(tmp_path):
    history = History(tmp_path / "h.sqlite", retention=1000, prune_every=300)
    for moment in (0, 500, 1500, 2000):
        history.record(Ban("amps", A, 60, float(moment)))
    history.commit(2000.0)  # the first commit prunes: keeps time >= 1000
    assert history.count("amps", A, 0.0) == 2
    history.record(Ban("amps", B, 60, 900.0))
    history.commit(2299.0)  # next prune is due at 2300: the old row stays for now
    assert history.count("amps", B, 0.0) == 1
    history.commit(2300.0)  # due: keeps time >= 1300
    assert history.count("amps", B, 0.0) == 0
    assert history.count("amps", A, 0.0) == 2


def test_a_broken_history_is_moved_aside(tmp_path):
    path = tmp_path / "history.sqlite"
    path.write_bytes(b"this is not a database, it is a text file of some length" * 100)
    history = open_history(path, 86400)
    assert history.count("amps", A, 0.0) == 0
    assert [p.name.startswith("history.sqlite.broken-") for p in tmp_path.iterdir() if "broken" in p.name] == [True]


def test_pipeline_lengthens_repeat_offenders_and_tells_the_engine(tmp_path):
    cfg = config(tmp_path)
    history = History(tmp_path / "h.sqlite")
    backend = Backend()
    pipeline = Pipeline(cfg, backend, on_ban=history.record, adjust=Escalate(cfg.jails, history.earlier, cfg.history_retention))
    for moment in (0, 1, 100, 101, 180, 181, 300, 301):
        pipeline.handle(LogLine(LINE, float(moment)))
    # 180/181 fall inside the second, longer ban (101 + 120): they count for nothing
    assert [(b.time, b.bantime, b.reason) for b in backend.applied] == [
        (1.0, 60, "2 failures"),
        (101.0, 120, "2 failures, ban #2"),
        (301.0, 240, "2 failures, ban #3"),
    ]


def test_jail_without_increment_keeps_its_bantime(tmp_path):
    cfg = config(tmp_path, increment=False)
    history = History(tmp_path / "h.sqlite")
    backend = Backend()
    pipeline = Pipeline(cfg, backend, on_ban=history.record, adjust=Escalate(cfg.jails, history.earlier, cfg.history_retention))
    for moment in (0, 1, 100, 101):
        pipeline.handle(LogLine(LINE, float(moment)))
    assert [b.bantime for b in backend.applied] == [60, 60]


def test_runtime_records_each_ban_and_commits_at_maintain_and_close(tmp_path):
    cfg = config(tmp_path)
    runtime = Runtime(cfg, backend=Backend(), clock=lambda: 5000.0, lock_wait=0)
    runtime.start()
    for moment in (1000.0, 1001.0):
        runtime.pipeline.handle(LogLine(LINE, moment))
    reader = sqlite3.connect(tmp_path / "history.sqlite")
    assert reader.execute("SELECT COUNT(*) FROM bans").fetchone() == (0,)  # queued only
    runtime.maintain(1002.0)
    assert reader.execute("SELECT time, jail, address, bantime, failures, reason FROM bans").fetchall() == [
        (1001.0, "amps", "192.0.2.7", 60.0, 2, "2 failures")]
    runtime.pipeline.handle(LogLine(LINE, 1100.0))
    runtime.pipeline.handle(LogLine(LINE, 1101.0))
    runtime.close()  # commits what is queued
    assert reader.execute("SELECT time, bantime, reason FROM bans ORDER BY time").fetchall() == [
        (1001.0, 60.0, "2 failures"), (1101.0, 120.0, "2 failures, ban #2")]


def test_restored_bans_are_not_recorded_again(tmp_path):
    cfg = config(tmp_path)
    runtime = Runtime(cfg, backend=Backend(), clock=lambda: 1010.0, lock_wait=0)
    runtime.start()
    runtime.pipeline.handle(LogLine(LINE, 1000.0))
    runtime.pipeline.handle(LogLine(LINE, 1001.0))
    runtime.close()
    again = Runtime(cfg, backend=Backend(), clock=lambda: 1010.0, lock_wait=0)
    again.start()  # the fresh backend lacks the ban: the ledger re-applies it as "restored"
    assert [b.reason for b in again.backend.applied] == ["restored"]
    again.close()
    rows = sqlite3.connect(tmp_path / "history.sqlite").execute("SELECT reason FROM bans").fetchall()
    assert rows == [("2 failures",)]


def test_count_sees_each_row_once_across_records_commits_and_failed_commits(tmp_path):
    """Queued rows are indexed for ``count`` as it asks; a commit (done or failed) must neither
    drop a row from the count nor count one twice."""
    B = ipaddress.ip_address("2001:db8::7")
    history = History(tmp_path / "h.sqlite")
    history.record(Ban("amps", A, 60, 100.0))
    assert history.count("amps", A, 0.0) == 1
    history.record(Ban("amps", A, 60, 200.0))
    history.record(Ban("web", A, 60, 200.0))
    history.record(Ban("amps", B, 60, 200.0))
    assert (history.count("amps", A, 0.0), history.count("amps", A, 150.0), history.count("web", A, 0.0)) == (2, 1, 1)
    assert history.count("amps", B, 0.0) == 1
    history.commit(300.0)
    history.record(Ban("amps", A, 60, 300.0))
    assert history.count("amps", A, 0.0) == 3  # two stored, one queued
    history.db.execute("PRAGMA query_only = ON")  # the next commit fails: its rows go back to the queue
    with pytest.raises(sqlite3.Error):
        history.commit(400.0)
    history.record(Ban("amps", A, 60, 400.0))
    assert history.count("amps", A, 0.0) == 4
    history.db.execute("PRAGMA query_only = OFF")
    assert history.commit(500.0) == 2
    assert (history.count("amps", A, 0.0), history.count("amps", B, 0.0)) == (4, 1)
    history.close()


def test_earlier_answers_a_batch_with_each_address_s_own_since(tmp_path, monkeypatch):
    """A batch of bans asks once (a query per EARLIER_CHUNK addresses); each answer is that
    address's stored and queued bans at or after its own ``since``, duplicates included."""
    from omprog_ban import history as history_module

    monkeypatch.setattr(history_module, "EARLIER_CHUNK", 3)  # several queries for the batch below
    B = ipaddress.ip_address("2001:db8::7")
    history = History(tmp_path / "h.sqlite")
    for moment in (100.0, 200.0, 300.0):
        history.record(Ban("amps", A, 60, moment))
    history.record(Ban("web", A, 60, 300.0))
    history.record(Ban("amps", B, 60, 150.0))
    history.commit(400.0)
    history.record(Ban("amps", A, 60, 400.0))  # queued
    others = [(ipaddress.ip_address(f"198.51.100.{n}"), 0.0) for n in range(1, 8)]
    asks = [(A, 0.0), (B, 0.0), *others, (A, 250.0), (B, 151.0), (A, 401.0)]
    assert history.earlier("amps", asks) == [4, 1, *[0] * 7, 2, 0, 0]
    assert history.earlier("web", [(A, 0.0)]) == [1] and history.earlier("amps", []) == []
    history.db.close()  # a database error: the queued rows still count
    assert history.earlier("amps", [(A, 0.0), (B, 0.0)]) == [1, 0]


def test_count_survives_a_database_error(tmp_path):
    history = History(tmp_path / "h.sqlite")
    history.record(Ban("amps", A, 60, 100.0))
    history.db.close()  # any sqlite3.Error: a vanished file, a full disk
    assert history.count("amps", A, 0.0) == 1  # the queued row still counts


def test_a_flood_holds_history_rows_until_bans_stop_coming(tmp_path):
    """Bans in the kernel come first: while more than HISTORY_BURST rows are queued and
    more keep coming, upkeep leaves them queued (at most HISTORY_HOLD seconds); after
    the flood, upkeeps and ticks write them HISTORY_CHUNK at a time (never one long
    pause), and close writes whatever is left."""
    from omprog_ban import runtime as runtime_module
    from omprog_ban.model import Ban

    cfg = config(tmp_path)
    runtime = Runtime(cfg, backend=Backend(), clock=lambda: 5000.0, lock_wait=0)
    runtime.start()
    reader = sqlite3.connect(tmp_path / "history.sqlite")
    stored = lambda: reader.execute("SELECT COUNT(*) FROM bans").fetchone()[0]  # noqa: E731
    burst, chunk = runtime_module.HISTORY_BURST, runtime_module.HISTORY_CHUNK

    def bans(count, start):
        for number in range(count):
            runtime.history.record(Ban("amps", ipaddress.ip_address(start + number), 60.0, 5000.0, 2, "2 failures"))

    bans(burst + 1, 0x0A000000)
    runtime.maintain(5002.0)
    assert stored() == 0  # a flood: held
    bans(10, 0x0B000000)
    runtime.maintain(5004.0)
    assert stored() == 0  # still coming: held
    runtime.maintain(5006.0)
    assert stored() == chunk  # no new ban since: written, one chunk at a time
    moment = 5006.0
    while len(runtime.history.queued) >= runtime_module.HISTORY_TICK:
        before = stored()
        moment += 0.25
        runtime.tick(moment)
        assert stored() - before == min(chunk, burst + 11 - before)
    runtime.maintain(moment + 2)
    assert stored() == burst + 11 and runtime.history.queued == []
    caught_up = moment + 2
    bans(burst + 1, 0x0C000000)
    runtime.maintain(caught_up + 2)
    assert stored() == burst + 11  # a new flood: held again
    bans(burst, 0x0D000000)
    runtime.maintain(caught_up + runtime_module.HISTORY_HOLD)  # held long enough: written though more come
    assert stored() == burst + 11 + chunk
    bans(10, 0x0E000000)
    runtime.tick(caught_up + runtime_module.HISTORY_HOLD + 0.25)  # and drained by ticks while they come
    assert stored() == burst + 11 + 2 * chunk
    bans(burst + 1, 0x0F000000)
    runtime.close()  # close writes whatever is queued
    assert stored() == 4 * burst + 23


def test_count_stays_exact_across_chunked_commits(tmp_path):
    """Committing the oldest rows a chunk at a time takes just those rows out of the queue's
    index: each count still sees every row once, stored or queued."""
    history = History(tmp_path / "h.sqlite")
    B = ipaddress.ip_address("2001:db8::7")
    for moment in range(10):
        history.record(Ban("amps", A if moment % 3 else B, 60, float(moment)))
    assert (history.count("amps", A, 0.0), history.count("amps", B, 0.0)) == (6, 4)
    for step in range(4):
        assert history.commit(100.0, limit=3) == (3 if step < 3 else 1)
        assert (history.count("amps", A, 0.0), history.count("amps", B, 0.0), history.count("amps", A, 5.0)) == (6 + step, 4, 3 + step)
        history.record(Ban("amps", A, 60, 20.0 + step))
        assert history.count("amps", A, 0.0) == 7 + step
        history.commit(100.0, limit=1)  # the oldest queued row
        assert history.count("amps", A, 0.0) == 7 + step
    history.close()
