"""The journal follower against real journal files written by systemd-journal-remote.

Every test reads files that journal-remote wrote (no journald, no mocked
Reader). Bans are read from ``--dry-run``'s JSON lines on stdout, except in
the test that runs nft inside a private network namespace.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from omprog_ban.journal import CursorFile, Journal
from tests import journalfiles as jf
from tests.lab import Namespace

pytestmark = pytest.mark.integration
PROGRAM = str(Path(sys.executable).with_name("omprog-ban"))
HOUR = 3600.0

# maxretry 20 in an hour: restart tests must not depend on how fast the machine is.
SLOW_WINDOW = """
[jails.amps]
grammar = "amps"
rules = ["auth", "name-in-use"]
maxretry = 20
findtime = "1h"
bantime = "2m"
ports = [9007]
journal = { SYSLOG_IDENTIFIER = "amps" }
"""


_started: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_follower_left():
    """Kill followers a failed test left running."""
    yield
    while _started:
        process = _started.pop()
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture
def journal_dir(tmp_path):
    directory = tmp_path / "journal"
    directory.mkdir()
    return directory


@pytest.fixture
def state_dir(tmp_path):
    return tmp_path / "state"


def config_file(tmp_path: Path, body: str = SLOW_WINDOW) -> str:
    path = tmp_path / "omprog-ban.toml"
    path.write_text(body)
    return str(path)


def once(journal_dir: Path, state_dir: Path, config: str = "default", *extra: str) -> subprocess.CompletedProcess:
    """Run ``journal --once --dry-run`` and return it; it must exit 0."""
    done = subprocess.run([PROGRAM, "journal", "--once", "--dry-run", "--config", config, "--state-dir", str(state_dir),
                           "--directory", str(journal_dir), *extra], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done


def stamp(entry: dict[str, str]) -> float:
    return int(entry["__REALTIME_TIMESTAMP"]) / 1e6


def bans(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


class Follower:
    """``omprog-ban journal --dry-run`` as a live subprocess; its output collected by threads."""

    def __init__(self, journal_dir: Path, state_dir: Path, config: str = "default", prefix: list[str] | None = None,
                 dry_run: bool = True) -> None:
        argv = [*(prefix or []), PROGRAM, "journal", "--config", config, "--state-dir", str(state_dir),
                "--directory", str(journal_dir), *(["--dry-run"] if dry_run else [])]
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _started.append(self.process)
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.readers = [threading.Thread(target=self._collect, args=(stream, sink), daemon=True)
                        for stream, sink in ((self.process.stdout, self.stdout), (self.process.stderr, self.stderr))]
        for reader in self.readers:
            reader.start()
        assert self.wait(lambda: any("following" in line for line in self.stderr), 15), self.log()

    @staticmethod
    def _collect(stream, sink) -> None:
        for line in stream:
            sink.append(line)

    def bans(self) -> list[dict]:
        return [json.loads(line) for line in list(self.stdout) if line.strip()]

    def wait(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            if self.process.poll() is not None:
                return bool(predicate())
            time.sleep(0.002)
        return bool(predicate())

    def log(self) -> str:
        return "".join(self.stderr)

    def stop(self, how: int = signal.SIGTERM) -> int:
        self.process.send_signal(how)
        code = self.process.wait(10)
        for reader in self.readers:  # they end at EOF, with the last lines taken
            reader.join(5)
        return code


# --- the veneer over journal.Reader -------------------------------------------------------------


def test_reader_gives_loglines_with_string_fields_and_entry_time(journal_dir):
    when = time.time() - HOUR
    raw = dict(jf.entry("line one\nline two \xff", when), _SOURCE_REALTIME_TIMESTAMP=str(int((when - 2) * 1e6)))
    jf.write(journal_dir, [jf.entry("hello", when, SYSLOG_IDENTIFIER="other"), raw])
    source = Journal(journal_dir, [{"SYSLOG_IDENTIFIER": "amps"}])
    line = source.next()
    assert line.text == "line one\nline two \xff"
    assert line.received == pytest.approx(when - 2, abs=1e-5)  # _SOURCE_REALTIME_TIMESTAMP wins
    assert line.meta["_UID"] == "996" and line.meta["_SYSTEMD_UNIT"] == "amps.service"
    assert line.meta["_TRANSPORT"] == "syslog" and line.meta["_BOOT_ID"] == jf.BOOT_ID
    assert "MESSAGE" not in line.meta and not any(name.startswith("__") for name in line.meta)
    assert line.key.startswith("s=") and source.next() is None
    assert source.seek(line.key) and source.next() is None
    assert source.seek_tail() == line.key
    assert not source.seek("not a cursor")
    source.close()


def test_invalid_utf8_message_is_decoded_with_replacement(journal_dir):
    jf.write(journal_dir, [{**jf.entry("x"), "MESSAGE": b"07-0013 caf\xe9\n"}])
    line = Journal(journal_dir).next()
    assert line.text == "07-0013 caf\ufffd\n"


# --- --once ---------------------------------------------------------------------------------------


def test_once_bans_twenty_failures_once_at_the_entry_time(journal_dir, state_dir):
    start = time.time() - HOUR  # an hour-old backlog: windows are counted in entry time
    noise = [jf.entry("07-0013 client[x](192.0.2.8:5) disconnected: connection closed.", start),
             jf.entry(jf.amps_failure("192.0.2.9"), start, SYSLOG_IDENTIFIER="other"),
             jf.entry("unrelated", start)]
    entries = noise + jf.failures(20, "192.0.2.7", start + 1, step=0.2)
    jf.write(journal_dir, entries)
    done = once(journal_dir, state_dir)
    found = bans(done.stdout)
    assert [(ban["jail"], ban["host"], ban["bantime"]) for ban in found] == [("amps", "192.0.2.7", 120.0)]
    assert found[0]["time"] == pytest.approx(start + 1 + 19 * 0.2, abs=1e-5)
    assert "from the head" in done.stderr


def test_nineteen_in_the_window_ban_nobody(journal_dir, state_dir):
    start = time.time() - HOUR
    # 20 failures, but spread over 20 s: never 20 within the 10 s window.
    jf.write(journal_dir, jf.failures(20, "192.0.2.7", start, step=1.0))
    assert bans(once(journal_dir, state_dir).stdout) == []


def test_restart_resumes_after_the_last_entry(tmp_path, journal_dir, state_dir):
    config = config_file(tmp_path)
    jf.write(journal_dir, jf.failures(15))
    assert bans(once(journal_dir, state_dir, config).stdout) == []
    jf.write(journal_dir, jf.failures(5))
    found = bans(once(journal_dir, state_dir, config).stdout)
    assert [(ban["host"], ban["failures"]) for ban in found] == [("192.0.2.7", 20)]
    done = once(journal_dir, state_dir, config)
    assert bans(done.stdout) == [] and "after the saved cursor" in done.stderr


def test_a_cursor_saved_before_counted_failures_does_not_count_them_twice(tmp_path, journal_dir, state_dir):
    """A crash after counting but before the cursor was written: the ledger's key wins."""
    config = config_file(tmp_path)
    entries = jf.failures(20, start=time.time() - 60, step=1.0)
    jf.write(journal_dir, entries[:5])
    once(journal_dir, state_dir, config)
    stale = (state_dir / "dry-run.cursor").read_text()
    jf.write(journal_dir, entries[5:15])
    once(journal_dir, state_dir, config)
    (state_dir / "dry-run.cursor").write_text(stale)  # as if the last 10 were counted after the last save
    jf.write(journal_dir, entries[15:])
    done = once(journal_dir, state_dir, config)
    found = bans(done.stdout)
    # Counted twice, the 20th count would come at entry 10 (15 + 5 recounted), ten seconds early.
    assert [(ban["failures"], ban["time"]) for ban in found] == [(20, pytest.approx(stamp(entries[19])))]
    assert "after the last counted entry" in done.stderr


def test_foreign_cursor_warns_and_starts_at_the_tail(tmp_path, journal_dir, state_dir):
    other = tmp_path / "other-journal"
    other.mkdir()
    jf.write(other, [jf.entry("from another machine")])
    once(other, state_dir)
    jf.write(journal_dir, jf.failures(20, "192.0.2.7"))
    done = once(journal_dir, state_dir)
    assert bans(done.stdout) == []
    assert "is not in journal files in" in done.stderr and "starting at the tail" in done.stderr
    again = once(journal_dir, state_dir)  # the cursor now belongs to this journal
    assert "not in" not in again.stderr and "after the saved cursor" in again.stderr
    jf.write(journal_dir, jf.failures(20, "198.51.100.3"))
    assert [ban["host"] for ban in bans(once(journal_dir, state_dir).stdout)] == ["198.51.100.3"]


def test_entries_in_two_files_count_together(journal_dir, state_dir):
    entries = jf.failures(20, "192.0.2.7", step=0.1)
    jf.write(journal_dir, entries[0::2], name="a")
    jf.write(journal_dir, entries[1::2], name="b")
    found = bans(once(journal_dir, state_dir).stdout)
    assert [(ban["host"], ban["failures"]) for ban in found] == [("192.0.2.7", 20)]


def test_untrusted_sender_is_not_banned(tmp_path, journal_dir, state_dir):
    """A local user's ``logger -t amps`` writes SYSLOG_IDENTIFIER=amps, but not the unit."""
    config = config_file(tmp_path, SLOW_WINDOW + 'trusted = { _SYSTEMD_UNIT = "amps.service" }\n')
    forged = jf.failures(20, "198.51.100.9", _SYSTEMD_UNIT="session-1.scope", _UID="1000", _COMM="logger",
                         _EXE="/usr/bin/logger", _PID="777", SYSLOG_PID="777")
    jf.write(journal_dir, forged + jf.failures(20, "192.0.2.7"))
    assert [ban["host"] for ban in bans(once(journal_dir, state_dir, config).stdout)] == ["192.0.2.7"]


NAMED_TRUSTED = """
[jails.named]
grammar = "named"
maxretry = 10
findtime = "1h"
bantime = "10m"
ports = [53]
protocol = ["udp", "tcp"]
journal = { SYSLOG_IDENTIFIER = "named" }
trusted = { _SYSTEMD_UNIT = "named.service" }
"""


def test_a_users_logger_t_named_bans_nobody(tmp_path, journal_dir, state_dir):
    """``logger -t named "client 8.8.8.8#53: query 'x/A/IN' denied"`` from a login session."""
    def denied(address: str, **fields: str) -> list[dict[str, str]]:
        return [jf.entry(f"client {address}#53: query 'x/A/IN' denied", SYSLOG_IDENTIFIER="named", **fields)
                for _ in range(10)]
    forged = denied("8.8.8.8", _SYSTEMD_UNIT="session-1.scope", _TRANSPORT="syslog", _UID="1000", _COMM="logger",
                    _EXE="/usr/bin/logger")
    real = denied("198.51.100.53", _SYSTEMD_UNIT="named.service", _TRANSPORT="stdout", _COMM="named",
                  _EXE="/usr/sbin/named")
    jf.write(journal_dir, forged + real)
    found = bans(once(journal_dir, state_dir, config_file(tmp_path, NAMED_TRUSTED)).stdout)
    assert [(ban["jail"], ban["host"]) for ban in found] == [("named", "198.51.100.53")]


def test_each_jail_counts_only_what_its_own_match_selects(tmp_path, journal_dir, state_dir):
    second = SLOW_WINDOW.replace("[jails.amps]", "[jails.amps_b]").replace('"amps" }', '"amps-b" }')
    third = SLOW_WINDOW.replace("[jails.amps]", "[jails.amps_file]").split("journal =")[0]
    config = config_file(tmp_path, SLOW_WINDOW + second + third)
    jf.write(journal_dir, jf.failures(20, "192.0.2.7", SYSLOG_IDENTIFIER="amps-b") + jf.failures(10, "192.0.2.8"))
    done = once(journal_dir, state_dir, config)
    assert [(ban["jail"], ban["host"]) for ban in bans(done.stdout)] == [("amps_b", "192.0.2.7")]
    assert "jail amps_file has no journal match" in done.stderr


@pytest.mark.parametrize("extra, problem", [
    ('trusted = { SYSLOG_IDENTIFIER = "named" }\n', "jails.amps.trusted.SYSLOG_IDENTIFIER: contradicts journal"),
    ("", "no jail has a journal match"),
], ids=["trusted-contradicts-journal", "no-journal-jail"])
def test_config_the_follower_cannot_serve_exits_78(tmp_path, journal_dir, state_dir, extra, problem):
    body = SLOW_WINDOW + extra if extra else SLOW_WINDOW.split("journal =")[0]
    done = subprocess.run([PROGRAM, "journal", "--once", "--dry-run", "--config", config_file(tmp_path, body),
                           "--state-dir", str(state_dir), "--directory", str(journal_dir)],
                          capture_output=True, text=True)
    assert done.returncode == 78 and problem in done.stderr, done.stderr


# --- live following -------------------------------------------------------------------------------


def test_follower_bans_appended_failures_within_a_second(journal_dir, state_dir):
    jf.write(journal_dir, jf.failures(20, "198.51.100.1"))  # history: a live follower starts at the tail
    with jf.Appender(journal_dir) as appender:
        follower = Follower(journal_dir, state_dir)
        try:
            entries = jf.failures(20, "192.0.2.7")
            appender.append(entries[:19])
            time.sleep(0.3)
            assert follower.bans() == []
            sent = time.monotonic()
            appender.append(entries[19:])
            assert follower.wait(lambda: follower.bans(), 2.0), follower.log()
            latency = time.monotonic() - sent
        finally:
            assert follower.stop() == 0
    assert [(ban["host"], ban["failures"]) for ban in follower.bans()] == [("192.0.2.7", 20)]
    assert latency < 1.0
    print(f"\nfollower latency, last failure written -> ban printed: {latency * 1000:.1f} ms")


def test_stopped_follower_resumes_where_it_stopped(tmp_path, journal_dir, state_dir):
    config = config_file(tmp_path)
    entries = jf.failures(20)
    with jf.Appender(journal_dir) as appender:
        follower = Follower(journal_dir, state_dir, config)
        appender.append(entries[:15])
        assert follower.wait(lambda: (state_dir / "dry-run.ledger").read_text().count("amps\t192.0.2.7") >= 15, 5)
        assert follower.stop() == 0 and follower.bans() == []
        appender.append(entries[15:])  # written while nobody follows
        time.sleep(0.2)
        follower = Follower(journal_dir, state_dir, config)
        try:
            assert follower.wait(lambda: follower.bans(), 3), follower.log()
            time.sleep(0.3)
        finally:
            assert follower.stop() == 0
    assert [(ban["host"], ban["failures"]) for ban in follower.bans()] == [("192.0.2.7", 20)]
    assert "after the saved cursor" in follower.log()


def test_killed_follower_counts_nothing_twice(tmp_path, journal_dir, state_dir):
    config = config_file(tmp_path)
    entries = jf.failures(20, start=time.time() - 30, step=1.0)
    ledger = state_dir / "dry-run.ledger"
    with jf.Appender(journal_dir) as appender:
        follower = Follower(journal_dir, state_dir, config)
        appender.append(entries[:15])
        assert follower.wait(lambda: ledger.read_text().count("amps\t192.0.2.7") >= 15, 5)
        follower.stop(signal.SIGKILL)
        saved = CursorFile(state_dir / "dry-run.cursor").load()
        last_key = ledger.read_text().splitlines()[-1].split("\t")[-1]
        assert saved is None or saved.cursor != last_key, "the cursor caught up: the crash path was not exercised"
        appender.append(entries[15:])
    done = once(journal_dir, state_dir, config)
    found = bans(done.stdout)
    assert [(ban["failures"], ban["time"]) for ban in found] == [(20, pytest.approx(stamp(entries[19])))]
    assert "after the last counted entry" in done.stderr


def test_follower_reads_across_real_rotation(tmp_path, journal_dir, state_dir):
    """journal-remote rotates a file at 1/80 of the file system: a 64 MiB tmpfs rotates every ~800 KiB.

    The tmpfs lives in a private mount namespace (the follower's); journal-remote joins it with nsenter.
    """
    mount = ["unshare", "-m", "sh", "-c", f'mount -t tmpfs -o size=64M tmpfs {journal_dir} && exec "$0" "$@"']
    follower = Follower(journal_dir, state_dir, prefix=mount)
    try:
        enter = ["nsenter", "-t", str(follower.process.pid), "-m"]
        with jf.Appender(journal_dir, prefix=enter, compress=False) as appender:
            for _ in range(20):  # each failure followed by ~300 KiB of other entries
                filler = [jf.entry("filler " + os.urandom(1500).hex(), SYSLOG_IDENTIFIER="filler") for _ in range(100)]
                appender.append([jf.entry(jf.amps_failure("192.0.2.7")), *filler])
            assert follower.wait(lambda: follower.bans(), 10), follower.log()
        files = subprocess.run([*enter, "ls", str(journal_dir)], capture_output=True, text=True).stdout.split()
    finally:
        assert follower.stop() == 0
    assert len([name for name in files if name.startswith("live@")]) >= 3, files
    assert [(ban["host"], ban["failures"]) for ban in follower.bans()] == [("192.0.2.7", 20)]


# --- the kernel, in a private network namespace -------------------------------------------------


def test_bans_land_in_nft_inside_a_private_namespace(journal_dir, state_dir):
    jf.write(journal_dir, jf.failures(20, "192.0.2.7"))
    namespace = Namespace("obj")
    try:
        argv = [PROGRAM, "journal", "--once", "--config", "default", "--state-dir", str(state_dir),
                "--directory", str(journal_dir)]
        done = namespace.run(argv, check=False)
        assert done.returncode == 0, done.stderr
        assert [element["val"] for element in namespace.nft_elements()] == ["192.0.2.7"]
        assert 100 <= namespace.nft_elements()[0]["expires"] <= 120
        jf.write(journal_dir, jf.failures(19, "192.0.2.8"))
        again = namespace.run(argv, check=False)  # resumes: 19 new failures ban nobody, the ban stays
        assert again.returncode == 0 and "after the saved cursor" in again.stderr, again.stderr
        assert [element["val"] for element in namespace.nft_elements()] == ["192.0.2.7"]
    finally:
        namespace.close()


def test_a_flushed_ruleset_is_restored_by_the_ban_that_finds_it_gone(journal_dir, state_dir):
    status = state_dir / "status.json"

    def upkeeps() -> int:  # each upkeep (once a second) rewrites status.json
        return status.stat().st_mtime_ns if status.exists() else 0

    namespace = Namespace("obj")
    try:
        with jf.Appender(journal_dir) as appender:
            follower = Follower(journal_dir, state_dir, prefix=namespace.command([]), dry_run=False)
            try:
                appender.append(jf.failures(20, "192.0.2.7"))
                assert follower.wait(lambda: namespace.nft_elements(), 3), follower.log()
                # Right after an upkeep, so that the next one (which would restore the
                # table too) comes after the ban that meets the missing table.
                before = upkeeps()
                assert follower.wait(lambda: upkeeps() != before, 3)
                namespace.run(["nft", "flush", "ruleset"])
                appender.append(jf.failures(20, "192.0.2.8"))
                both = ["192.0.2.7", "192.0.2.8"]
                assert follower.wait(lambda: sorted(e["val"] for e in namespace.nft_elements()) == both, 5), \
                    follower.log()
            finally:
                assert follower.stop() == 0
        assert "nft refused" not in follower.log()  # the ban put the table back and went in
        assert "restoring it and every active ban" in follower.log()
    finally:
        namespace.close()
