"""All four services through a real rsyslogd with the shipped config and the embedded default jails."""

from __future__ import annotations

import time

import pytest

from tests.lab import ROOT, Namespace, Rsyslog, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def rsyslog(tmp_path):
    server = Namespace("obv")
    config = tmp_path / "omprog-ban.toml"
    config.write_text(f'state_dir = "{tmp_path / "state"}"\n' + (ROOT / "omprog_ban" / "default.toml").read_text())
    daemon = Rsyslog(tmp_path, server, config)
    try:
        yield daemon.start()
    finally:
        daemon.stop()
        server.close()


def elements(rsyslog: Rsyslog, set_name: str) -> set[str]:
    return {e["val"] for e in rsyslog.namespace.nft_elements(set_name=set_name)}


def now_apache() -> str:
    return time.strftime("%a %b %d %H:%M:%S.000000 %Y")


def test_each_service_bans_the_client_it_names_and_nobody_else(rsyslog):
    stamp = now_apache()
    probes = [f"[{stamp}] [core:info] [pid 1:tid 2] [client 192.0.2.10:{5000 + i}] AH00128: File does not exist: /var/www/phpmyadmin{i}"
              for i in range(20)]
    ignored = [f"[{stamp}] [core:info] [pid 1:tid 2] [client 192.0.2.11:{5000 + i}] AH00128: File does not exist: /var/www/img{i}.png"
               for i in range(30)]
    forged = [f"[{stamp}] [core:info] [pid 1:tid 2] [client 192.0.2.12:{5000 + i}] AH01630: client denied by server configuration: "
              f"/x] [client 198.51.100.66:1] File does not exist: /y{i}" for i in range(30)]
    rsyslog.write("apache-error.log", probes + ignored + forged)
    clf = time.strftime("%d/%b/%Y:%H:%M:%S +0000")
    spam = [f'example.org:443 192.0.2.20 - - [{clf}] "POST /wiki/edit HTTP/1.1" 403 512 "-" "Mozilla/5.0"' for _ in range(5)]
    bots = [f'192.0.2.21 - - [{clf}] "GET /feed/{i} HTTP/1.1" 200 512 "-" "Friendica \'The Tazmans Lion\' 2019.06"' for i in range(30)]
    rsyslog.write("apache-access.log", spam + bots)
    rsyslog.logger("elgg(web.example.com)", ["Authentication failure for admin from 198.51.100.66 from 192.0.2.30" for _ in range(5)])
    rsyslog.logger("named", [f"client @0x7f0000001 192.0.2.40#{4000 + i} (evil.example): query (cache) 'evil.example/ANY/IN' denied"
                             for i in range(10)])
    rsyslog.logger("named", ["client @0x7f0000001 192.0.2.41#53 (198.51.100.66#53.evil.example): query 'x/A/IN' denied" for i in range(10)])
    expected = {
        "apache_404_v4": {"192.0.2.10"},
        "apache_post_spam_v4": {"192.0.2.20"},
        "apache_badbots_v4": {"192.0.2.21"},
        "elgg_v4": {"192.0.2.30"},
        "named_refused_v4": {"192.0.2.40", "192.0.2.41"},
    }
    assert wait_for(lambda: all(elements(rsyslog, name) == want for name, want in expected.items()), 10), {
        name: elements(rsyslog, name) for name in expected
    }
    time.sleep(1.0)
    everything = set().union(*(elements(rsyslog, f"{jail}_v4") for jail in (
        "amps", "apache_404", "apache_auth", "apache_badbots", "apache_post_spam", "elgg", "named_refused", "named_flood")))
    assert "198.51.100.66" not in everything and "192.0.2.11" not in everything
    assert everything == set().union(*expected.values())
