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


# Lines whose bytes test the template's escaping: quotes, backslashes, a raw TAB, control
# characters, invalid UTF-8, what looks like the template's own fields or a JSON object.
AWKWARD = [
    b'07-0013 client[say "hi"](192.0.2.1:1) disconnected: auth.',
    b"back\\slash \\t \\u0041 \\\\ and a \\",
    b"a raw\tTAB\tor\ttwo\tand more",
    b"0123456789ABCDEF0123456789ABCDEF\tfake\tfields\there\t198.51.100.7",
    b'{"msg": "07-0013 client[x](198.51.100.8:1) disconnected: auth.", "uuid": "0"}',
    b"control \x01\x02\x1b[31m characters",
    b"caf\xc3\xa9 \xe2\x9c\x93 and a bad byte \xff here",
    b"  two leading spaces",
    b"x" * 6000,
]


def test_the_shipped_template_frames_as_a_json_object_does(tmp_path, server):
    """The shipped template (TAB-separated, each field escaped as a JSON string) gives the same
    LogLine as a jsonf object of the same properties, for what rsyslog 8.2302 itself writes."""
    from omprog_ban.framing import frame

    fields, objects, source = tmp_path / "fields.out", tmp_path / "json.out", tmp_path / "awkward.log"
    source.touch()
    extra = f'''
template(name="as-json" type="list" option.jsonf="on") {{
    property(outname="msg" name="msg" format="jsonf")
    property(outname="uuid" name="uuid" format="jsonf")
    property(outname="programname" name="programname" format="jsonf")
    property(outname="hostname" name="hostname" format="jsonf")
    property(outname="timereported" name="timereported" dateFormat="rfc3339" format="jsonf")
}}
ruleset(name="capture") {{
    action(type="omprog" binary="/bin/cat" output="{fields}" template="omprog-ban-fields")
    action(type="omprog" binary="/bin/cat" output="{objects}" template="as-json")
}}
input(type="imfile" File="{source}" Tag="awkward:" ruleset="capture")
'''
    daemon = Rsyslog(tmp_path, server, write_config(tmp_path / "omprog-ban.toml", tmp_path / "state"), extra)
    daemon.start()
    try:
        with open(source, "ab") as handle:
            handle.write(b"".join(line + b"\n" for line in AWKWARD))

        def written():
            return all(path.exists() and path.read_bytes().count(b"\n") >= len(AWKWARD) for path in (fields, objects))
        assert wait_for(written, 10), "rsyslog did not write both outputs"
    finally:
        daemon.stop()
    shipped = [frame(line, 1.0) for line in fields.read_bytes().splitlines(keepends=True)]
    reference = [frame(line, 1.0) for line in objects.read_bytes().splitlines(keepends=True)]
    assert len(shipped) == len(reference) == len(AWKWARD)
    for ours, theirs in zip(shipped, reference):
        assert ours.key is not None and len(ours.key) == 32
        assert (ours.text, ours.key, ours.meta) == (theirs.text, theirs.key, theirs.meta)
        assert ours.meta["programname"] == "awkward"
    assert shipped[2].text == "a raw\tTAB\tor\ttwo\tand more"  # imfile passes a TAB on; the message keeps it
    assert shipped[3].text.startswith("0123456789ABCDEF0123456789ABCDEF\tfake")  # the message's "fields" stay in it
    assert shipped[4].text.startswith('{"msg": ') and shipped[4].key != "0"
