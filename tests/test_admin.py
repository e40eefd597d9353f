"""The admin's commands against a real kernel in a private namespace: ban, list, unban."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.lab import PROGRAM, Namespace, write_config

pytestmark = pytest.mark.integration

JAILS = """
[jails.amps]
grammar = "amps"
ports = [9007]
bantime = "2m"
[jails.web]
grammar = "apache-error"
ports = [80, 443]
subnet = { addresses = 3, window = "1h" }
"""


@pytest.fixture
def lab(tmp_path):
    namespace = Namespace("oba")
    config = write_config(tmp_path / "c.toml", tmp_path / "state", JAILS)

    def command(*argv: str) -> subprocess.CompletedProcess:
        return namespace.run([str(PROGRAM), *argv, "--config", str(config)], check=False)

    yield namespace, command
    namespace.close()


def test_ban_list_unban(lab):
    namespace, command = lab
    assert command("ban", "192.0.2.5", "--jail", "amps").returncode == 0
    assert command("ban", "2001:db8::5", "--jail", "amps", "--time", "1h").returncode == 0
    assert command("ban", "198.51.100.0/24", "--jail", "web", "--time", "10m").returncode == 0
    assert command("ban", "203.0.113.9", "--jail", "web", "--time", "1").returncode == 0
    listed = json.loads(command("list", "--json").stdout)
    found = {(e["jail"], e["address"]): e for e in listed}
    assert found[("amps", "192.0.2.5")]["timeout"] == 120 and 110 <= found[("amps", "192.0.2.5")]["expires"] <= 120
    assert found[("amps", "2001:db8::5")]["timeout"] == 3600
    assert found[("web", "198.51.100.0/24")]["timeout"] == 600
    assert "198.51.100.0/24" in command("list", "--jail", "web").stdout
    time.sleep(1.5)  # 203.0.113.9 has expired in the kernel
    gone = command("unban", "203.0.113.9")
    assert gone.returncode == 0 and "was not banned" in gone.stdout
    assert command("unban", "192.0.2.5").returncode == 0
    left = {e["address"] for e in json.loads(command("list", "--json").stdout)}
    assert left == {"2001:db8::5", "198.51.100.0/24"}


def test_bad_input_is_a_usage_error(lab):
    _, command = lab
    assert command("ban", "999.1.1.1", "--jail", "amps").returncode == 64
    assert command("ban", "192.0.2.1", "--jail", "nope").returncode == 64
    assert command("ban", "192.0.2.0/24", "--jail", "amps").returncode == 64  # no subnet sets in amps
    assert command("unban", "example.com").returncode == 64


def test_a_table_named_like_an_nft_keyword_still_gets_its_bans(tmp_path):
    """Bans are added in nft's own syntax, where ``counter`` is a keyword: the backend falls back to JSON."""
    namespace = Namespace("obk")
    try:
        config = tmp_path / "c.toml"
        config.write_text(f'state_dir = "{tmp_path / "state"}"\n[nft]\ntable = "counter"\n' + JAILS)
        done = namespace.run([str(PROGRAM), "ban", "192.0.2.5", "--jail", "amps", "--config", str(config)], check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "as JSON from now on" in done.stderr
        listed = namespace.run([str(PROGRAM), "list", "--json", "--config", str(config)], check=False)
        assert {(e["jail"], e["address"]) for e in json.loads(listed.stdout)} == {("amps", "192.0.2.5")}
    finally:
        namespace.close()
