"""The config: the embedded default, the fixed vocabulary, and a corpus of mistakes."""

from __future__ import annotations

import subprocess
import sys
import tomllib

import pytest

from omprog_ban import config
from tests.lab import SEED_AMPS

GOOD = '[nft]\ntable = "omprog_ban"\n' + SEED_AMPS


def load(text: str) -> config.Config:
    return config.parse(tomllib.loads(text))


def test_issue_vocabulary():
    jail = load(GOOD).jails["amps"]
    assert (jail.maxretry, jail.findtime, jail.bantime, jail.ports, jail.protocols) == (20, 10, 120, (9007,), ("tcp",))
    assert jail.rules == {"auth", "name-in-use"}
    assert [str(n) for n in jail.ignoreip] == ["127.0.0.0/8", "::1/128"]


def test_embedded_default_holds_the_seed_policy():
    jail = config.load(None).jails["amps"]
    assert (jail.maxretry, jail.findtime, jail.bantime, jail.ports) == (20, 10, 120, (9007,))


@pytest.mark.parametrize("text, seconds", [("90", 90), ('"90s"', 90), ('"10m"', 600), ('"2h"', 7200), ('"1d"', 86400), ('"1w"', 604800)])
def test_durations(text, seconds):
    assert load(GOOD.replace('bantime = "2m"', f"bantime = {text}")).jails["amps"].bantime == seconds


def test_protocol_both_and_rules_default_to_all():
    text = GOOD.replace('protocol = "tcp"', 'protocol = ["tcp", "udp"]').replace('rules = ["auth", "name-in-use"]\n', "")
    jail = load(text).jails["amps"]
    assert jail.protocols == ("tcp", "udp") and jail.rules == {"auth", "name-in-use"}


# (mistake as a replacement of GOOD, key path the message must name, words of the fix)
MISTAKES = [
    (("maxretry = 20", "maxretyr = 20"), "jails.amps.maxretyr", "did you mean 'maxretry'"),
    (('findtime = "10s"', 'findtime = "10x"'), "jails.amps.findtime", '"90s"'),
    (('bantime = "2m"', "bantime = -5"), "jails.amps.bantime", "seconds"),
    (('grammar = "amps"', 'grammar = "ampz"'), "jails.amps.grammar", "use one of"),
    (('rules = ["auth", "name-in-use"]', 'rules = ["auth", "bogus"]'), "jails.amps.rules[1]", "use one of: auth, name-in-use"),
    (('ignoreip = ["127.0.0.0/8", "::1"]', 'ignoreip = ["127.0.0.0/33"]'), "defaults.ignoreip[0]", "CIDR"),
    (("ports = [9007]", "ports = [70000]"), "jails.amps.ports[0]", "1 to 65535"),
    (("ports = [9007]", 'ports = ["9000-8000"]'), "jails.amps.ports[0]", "LOW-HIGH"),
    (('protocol = "tcp"', 'protocol = "sctp"'), "jails.amps.protocol[0]", "tcp, udp"),
    (('protocol = "tcp"', "protocol = \"tcp\"\nwhen = { client = '[' }"), "jails.amps.when.client", "regex"),
    (('protocol = "tcp"', 'protocol = "tcp"\nunless = { path = "x" }'), "jails.amps.unless.path", "client"),
    (('table = "omprog_ban"', 'table = "bad name"'), "nft.table", "letter"),
    (('[nft]', '[nft]\nflavour = 1'), "nft.flavour", "table"),
    (("maxretry = 20", "maxretry = 0"), "jails.amps.maxretry", "whole number"),
    (("maxretry = 20", 'maxretry = "20"'), "jails.amps.maxretry", "whole number"),
    (("[jails.amps]", '[jails.other]\ngrammar = "amps"\nset = "amps"\n[jails.amps]'), "jails.amps.set", "own 'set'"),
    (("[jails.amps]", "[jails.\"bad jail\"]"), "jails.bad jail", "letter"),
]


@pytest.mark.parametrize("change, path, fix", MISTAKES, ids=[m[1] for m in MISTAKES])
def test_mistakes_name_the_key_and_the_fix(change, path, fix):
    with pytest.raises(config.ConfigError) as raised:
        load(GOOD.replace(*change))
    assert raised.value.path == path
    assert fix in raised.value.fix or fix in raised.value.problem


def test_check_and_run_exit_78_before_ok(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD.replace('findtime = "10s"', 'findtime = "soon"'))
    for command in (["check"], ["run", "--dry-run", "--state-dir", str(tmp_path / "s")]):
        done = subprocess.run([sys.executable, "-m", "omprog_ban", *command, "--config", str(bad)],
                              input="", capture_output=True, text=True)
        assert done.returncode == 78
        assert done.stdout == ""  # no OK: rsyslog never takes it as started
        assert "jails.amps.findtime" in done.stderr and "fix:" in done.stderr


def test_not_toml_and_missing_file(tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text("[jails\n")
    with pytest.raises(config.ConfigError, match="not valid TOML"):
        config.load(broken)
    with pytest.raises(config.ConfigError, match="cannot read"):
        config.load(tmp_path / "missing.toml")
