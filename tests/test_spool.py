"""The spool keeps what a committed batch had not counted yet, across the death of the worker."""

import os
import subprocess

from omprog_ban.spool import Spool
from tests.test_relay import Run, message


def test_keep_pending_clear_and_a_torn_line(tmp_path):
    spool = Spool(tmp_path / "spool")
    assert spool.pending() == []
    spool.keep([b"a\n", b"b\n"])
    spool.keep([b"c\n"])
    assert spool.pending() == [b"a\n", b"b\n", b"c\n"]
    spool.close()
    with open(tmp_path / "spool", "ab") as handle:
        handle.write(b"torn by a ki")  # a kill in mid-copy
    again = Spool(tmp_path / "spool")
    assert again.pending() == [b"a\n", b"b\n", b"c\n"]
    again.clear()
    assert again.pending() == [] and os.path.getsize(tmp_path / "spool") == 0
    again.close()


def test_a_new_worker_counts_what_the_spool_holds_once(tmp_path):
    run = Run(tmp_path).ready()
    assert run.send("BEGIN TRANSACTION") == "OK"
    assert [run.send(message("192.0.2.12", n)) for n in range(10)] == ["DEFER_COMMIT"] * 10
    assert run.send("COMMIT TRANSACTION") == "OK"
    assert run.send("plain, after the batch") == "OK"  # the worker answers it after the batch is counted
    run.process.kill()
    run.process.wait()
    subprocess.run(["pkill", "-KILL", "-f", f"--state-dir {tmp_path}"], check=False)
    # As a worker killed right after an early commit leaves it: five counted already, five not, one torn.
    spool = Spool(tmp_path / "dry-run.spool")
    spool.keep([(message("192.0.2.12", n) + "\n").encode() for n in range(5, 15)] + [b'{"msg": "torn'])
    spool.close()
    again = Run(tmp_path).ready()
    try:
        assert again.counted() >= {f"u{n}" for n in range(15)}
        assert again.failures() == 15  # the window holds each failure once: u5..u9 were known by their uuids
        assert again.spooled() == set()
    finally:
        again.process.stdin.close()
        again.process.wait(10)
