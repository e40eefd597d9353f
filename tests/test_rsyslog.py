"""End to end through a real rsyslogd: imfile -> omprog -> omprog-ban -> nft, in private namespaces."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from tests.lab import CLIENT4, SERVER4, Namespace, Rsyslog, amps_line, link, wait_for, write_config

pytestmark = pytest.mark.integration


@pytest.fixture
def server():
    namespace = Namespace("obs")
    yield namespace
    namespace.close()


@pytest.fixture
def rsyslog(tmp_path, server):
    config = write_config(tmp_path / "omprog-ban.toml", tmp_path / "state")
    daemon = Rsyslog(tmp_path, server, config)
    try:
        yield daemon.start()  # rsyslog starts omprog-ban with the first message
    finally:
        daemon.stop()


def test_twenty_failures_ban_the_address_within_a_second(rsyslog, server):
    rsyslog.write_amps([amps_line("198.51.100.99")])  # rsyslog starts the child with its first message
    assert wait_for(lambda: _status_counted(rsyslog) == 1, 10)
    rsyslog.write_amps([amps_line("192.0.2.7", "auth" if i % 2 else "name in use", port=40000 + i) for i in range(20)])
    started = time.monotonic()
    elements = wait_for(lambda: server.nft_elements(), 3, 0.02)
    assert time.monotonic() - started < 1.0
    assert [e["val"] for e in elements] == ["192.0.2.7"]
    assert elements[0]["timeout"] == 120
    assert 110 <= elements[0]["expires"] <= 120
    listed = server.run([str(rsyslog_program()), "list", "--json", "--config", str(rsyslog.config)])
    assert '"address": "192.0.2.7"' in listed.stdout and '"jail": "amps"' in listed.stdout


def rsyslog_program():
    from tests.lab import PROGRAM

    return PROGRAM


def test_nineteen_failures_other_reasons_and_injected_names_ban_nobody(rsyslog, server):
    lines = [amps_line("192.0.2.8", port=i) for i in range(19)]
    lines += [amps_line("192.0.2.9", "connection closed", port=i) for i in range(25)]
    lines += [amps_line("192.0.2.10", "slow client", client="x](198.51.100.9:1) disconnected: auth.", port=i) for i in range(25)]
    lines += [amps_line("192.0.2.11", "heartbeat", client=amps_line("198.51.100.10"), port=i) for i in range(25)]
    rsyslog.write_amps(lines)
    marker = amps_line("203.0.113.99", "connection closed")
    rsyslog.write_amps([marker])
    time.sleep(1.5)
    assert server.nft_elements() == []
    assert server.nft_elements(set_name="amps_v6") == []


def test_ipv6_and_mapped_addresses(rsyslog, server):
    rsyslog.write_amps([amps_line("2001:db8::5", port=i) for i in range(20)])
    rsyslog.write_amps([amps_line("::ffff:192.0.2.77", port=i) for i in range(10)] + [amps_line("192.0.2.77", port=i) for i in range(10)])
    assert wait_for(lambda: server.nft_elements(set_name="amps_v6"), 3)[0]["val"] == "2001:db8::5"
    assert wait_for(lambda: server.nft_elements(), 3)[0]["val"] == "192.0.2.77"


def test_port_9007_is_dropped_and_others_are_not(tmp_path, rsyslog, server):
    client = Namespace("obc")
    servers = []
    try:
        link(server, client)
        for port in (9007, 8080):
            servers.append(server.popen(["python3", "-m", "http.server", str(port), "--bind", SERVER4, "--directory", str(tmp_path)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

        def fetch(port: int) -> str:
            done = client.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "2", f"http://{SERVER4}:{port}/"], check=False)
            return done.stdout

        assert wait_for(lambda: fetch(9007) == "200", 5) and wait_for(lambda: fetch(8080) == "200", 5)  # both up
        rsyslog.write_amps([amps_line(CLIENT4, port=i) for i in range(20)])
        assert wait_for(lambda: server.nft_elements(), 3)
        assert fetch(9007) == "000"  # timed out: dropped
        assert fetch(8080) == "200"
    finally:
        for process in servers:
            process.terminate()
            process.wait()
        client.close()


def test_sigkill_mid_stream_loses_no_failure(rsyslog, server):
    rsyslog.write_amps([amps_line("192.0.2.20", port=i) for i in range(12)])
    assert wait_for(lambda: _status_counted(rsyslog) >= 12, 5)
    first = rsyslog.child()
    os.kill(first, signal.SIGKILL)
    # rsyslog restarts the child for the next message; 12 + 8 = 20 failures ban.
    rsyslog.write_amps([amps_line("192.0.2.20", port=100 + i) for i in range(8)])
    elements = wait_for(lambda: server.nft_elements(), 8)
    assert [e["val"] for e in elements] == ["192.0.2.20"]
    assert rsyslog.child() not in (None, first)


def _status(rsyslog) -> str:
    path = rsyslog.config.parent / "state" / "status.json"
    return path.read_text() if path.exists() else ""


def _status_counted(rsyslog) -> int:
    import json

    text = _status(rsyslog)
    return json.loads(text)["jails"]["amps"]["counted"] if text else 0


def test_stop_and_start_keep_bans_and_rule_count(rsyslog, server):
    rsyslog.write_amps([amps_line("192.0.2.30", port=i) for i in range(20)])
    assert wait_for(lambda: server.nft_elements(), 3)
    rules = server.rule_count()
    rsyslog.stop()
    assert [e["val"] for e in server.nft_elements()] == ["192.0.2.30"]
    rsyslog.start()
    rsyslog.write_amps([amps_line("192.0.2.31", "connection closed")])
    rsyslog.write_amps([amps_line("192.0.2.32", port=i) for i in range(20)])
    assert wait_for(lambda: len(server.nft_elements()) == 2, 5)
    assert sorted(e["val"] for e in server.nft_elements()) == ["192.0.2.30", "192.0.2.32"]
    assert server.rule_count() == rules == 4  # blocklist v4/v6 + amps v4/v6
