"""Subnet bans and the static blocklist: the pure rule, then the real kernel in a private namespace."""

from __future__ import annotations

import ipaddress
import json
import subprocess

import pytest

from omprog_ban.config import Subnet
from omprog_ban.model import Ban
from omprog_ban.subnets import Subnets
from tests.lab import PROGRAM, amps_line


def ban(address: str, at: float) -> Ban:
    return Ban("web", ipaddress.ip_address(address), 600, at)


def test_the_kth_address_of_a_prefix_bans_the_prefix_once():
    subnets = Subnets({"web": Subnet(addresses=3, window=3600)})
    assert subnets.observe(ban("198.51.100.1", 0)) is None
    assert subnets.observe(ban("198.51.100.1", 10)) is None  # the same address twice is one address
    assert subnets.observe(ban("198.51.100.2", 20)) is None
    prefix = subnets.observe(ban("198.51.100.3", 30))
    assert (str(prefix.address), prefix.bantime, prefix.failures) == ("198.51.100.0/24", 600, 3)
    assert subnets.observe(ban("198.51.100.4", 40)) is None  # already banned: never added again


def test_members_outside_the_window_do_not_count_and_ipv6_uses_64():
    subnets = Subnets({"web": Subnet(addresses=2, window=100)})
    assert subnets.observe(ban("2001:db8:1:2::1", 0)) is None
    assert subnets.observe(ban("2001:db8:1:2::2", 150)) is None
    assert str(subnets.observe(ban("2001:db8:1:2:ffff::9", 200)).address) == "2001:db8:1:2::/64"
    assert subnets.observe(ban("2001:db8:1:3::1", 200)) is None


def test_expire_forgets_the_prefixes_whose_members_left_their_window_and_keeps_the_others():
    subnets = Subnets({"web": Subnet(addresses=3, window=100)})
    for n, at in ((1, 0), (2, 10), (3, 50), (4, 60)):  # four prefixes, two members each
        subnets.observe(ban(f"198.51.{n}.1", at))
        subnets.observe(ban(f"198.51.{n}.2", at + 5))
    subnets.observe(ban("198.51.1.2", 70))  # a member of the first prefix banned again: it is recent now
    subnets.expire(now=140)  # the second's members left their window at 115; the others' have not
    assert len(subnets._recent["web"]) == 3
    assert subnets.observe(ban("198.51.2.3", 141)) is None  # it starts again from one member
    assert subnets.observe(ban("198.51.1.3", 142)) is None  # .1 left the window; .2 (at 70) is in it
    assert str(subnets.observe(ban("198.51.1.4", 143)).address) == "198.51.1.0/24"


def test_a_prefix_ban_from_the_kernel_holds_until_it_ends():
    subnets = Subnets({"web": Subnet(addresses=2, window=100)})
    subnets.mark("web", ipaddress.ip_network("198.51.100.0/24"), 500.0)
    assert subnets.observe(ban("198.51.100.1", 10)) is None
    assert subnets.observe(ban("198.51.100.2", 20)) is None  # banned already: never added again
    assert [(jail, str(network), until) for jail, network, until in subnets.bans()] == [("web", "198.51.100.0/24", 500.0)]
    subnets.expire(now=501.0)
    assert list(subnets.bans()) == []
    assert subnets.observe(ban("198.51.100.3", 510)) is None
    assert str(subnets.observe(ban("198.51.100.4", 520)).address) == "198.51.100.0/24"


CONFIG = """
state_dir = "{state}"
blocklist = ["203.0.113.0/24", "203.0.113.7", "2001:db8:bad::/48", "192.0.2.99"]
[jails.amps]
grammar = "amps"
maxretry = 2
findtime = "1m"
bantime = "10m"
ports = [9007]
subnet = {{ addresses = 3, window = "1h" }}
"""


@pytest.mark.integration
def test_prefix_and_blocklist_in_the_kernel(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(CONFIG.format(state=tmp_path / "state"))
    lines = "".join(amps_line(f"198.51.100.{n}", port=p) + "\n" for n in (1, 2, 3, 4) for p in (1, 2))
    script = f"""
{PROGRAM} run --config {config} > /dev/null 2>&1 <<'EOF'
{lines}EOF
nft -j list table inet omprog_ban
"""
    done = subprocess.run(["unshare", "-n", "sh", "-c", script], capture_output=True, text=True, timeout=60)
    sets = {item["set"]["name"]: item["set"].get("elem", []) for item in json.loads(done.stdout)["nftables"] if "set" in item}
    values = {name: [e["elem"]["val"] if isinstance(e, dict) and "elem" in e else e for e in elements] for name, elements in sets.items()}
    assert values["amps_net4"] == [{"prefix": {"addr": "198.51.100.0", "len": 24}}]
    assert sorted(values["amps_v4"]) == ["198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4"]
    assert values["blocklist_v4"] == ["192.0.2.99", {"prefix": {"addr": "203.0.113.0", "len": 24}}]
    assert values["blocklist_v6"] == [{"prefix": {"addr": "2001:db8:bad::", "len": 48}}]
