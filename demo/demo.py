"""The demo: a real rsyslogd runs omprog-ban on the embedded default config.

Two private network namespaces joined by a veth pair: a "server" where rsyslogd,
omprog-ban, nftables and the services live, and a "client" that attacks. Sample
attacks for all four services (AMPS, Apache error and access logs, Elgg, BIND
named) are written to the logs and the syslog socket rsyslog reads, injection
attempts among them; the bans appear in the kernel, drop the client's packets,
and expire on their own. Nothing outside the two
namespaces is touched. Bans are shortened to 20 s so the expiry shows.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.lab import CLIENT4, PROGRAM, ROOT, SERVER4, Namespace, Rsyslog, amps_line, link, wait_for  # noqa: E402

BANTIME = 20


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def show(namespace: Namespace, argv: list[str]) -> str:
    done = namespace.run(argv, check=False)
    output = (done.stdout + done.stderr).rstrip()
    print("$ " + " ".join(argv if argv[0] != str(PROGRAM) else ["omprog-ban", *argv[1:]]))
    print(output)
    return output


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="omprog-ban-demo-"))
    default = (ROOT / "omprog_ban" / "default.toml").read_text()
    config = work / "omprog-ban.toml"
    config.write_text(f'state_dir = "{work / "state"}"\n' + re.sub(r'bantime = "?[^"\n]*"?', f'bantime = "{BANTIME}s"', default))
    server, client = Namespace("demo-server"), Namespace("demo-client")
    rsyslog = Rsyslog(work, server, config)
    web = []
    try:
        link(server, client)
        say(f"server {SERVER4} runs rsyslogd with rsyslog.d/*.conf and omprog-ban (embedded default, bantime {BANTIME}s)")
        rsyslog.start()
        for port in (9007, 8080):
            web.append(server.popen([sys.executable, "-m", "http.server", str(port), "--bind", SERVER4, "--directory", str(work)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

        def fetch(port: int) -> str:
            done = client.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "2", f"http://{SERVER4}:{port}/"], check=False)
            return done.stdout

        wait_for(lambda: fetch(9007) == "200", 5)
        say(f"client {CLIENT4} reaches AMPS port 9007: HTTP {fetch(9007)}, port 8080: HTTP {fetch(8080)}")

        say("AMPS logs client names that try to frame 198.51.100.9 (injection), and harmless disconnects")
        rsyslog.write_amps([amps_line(CLIENT4, "connection closed", client="x](198.51.100.9:1) disconnected: auth.", port=i) for i in range(30)])
        say(f"AMPS logs 20 'auth' / 'name in use' disconnects from {CLIENT4} within a second")
        started = time.monotonic()
        rsyslog.write_amps([amps_line(CLIENT4, "auth" if i % 2 else "name in use", client="looping-app", port=50000 + i) for i in range(20)])
        wait_for(lambda: server.nft_elements(), 5, 0.01)
        print(f"banned {time.monotonic() - started:.2f}s after the lines were written")
        show(server, ["nft", "list", "set", "inet", "omprog_ban", "amps_v4"])
        say(f"client now: port 9007 -> {fetch(9007) or 'timeout'} (000 = dropped), port 8080 -> HTTP {fetch(8080)}")

        say("Apache: 20 phpMyAdmin probes from 192.0.2.10; 30 image misses from 192.0.2.11 (ignored by the jail's path filter)")
        stamp = time.strftime("%a %b %d %H:%M:%S.000000 %Y")
        rsyslog.write("apache-error.log",
                      [f"[{stamp}] [core:info] [pid 1:tid 2] [client 192.0.2.10:{5000 + i}] AH00128: File does not exist: /var/www/phpmyadmin{i}" for i in range(20)]
                      + [f"[{stamp}] [core:info] [pid 1:tid 2] [client 192.0.2.11:{5000 + i}] AH00128: File does not exist: /var/www/logo{i}.png" for i in range(30)])
        clf = time.strftime("%d/%b/%Y:%H:%M:%S +0000")
        say("Apache access log: 5 refused edit POSTs from 192.0.2.20, 30 feed fetches by a Friendica bot at 192.0.2.21")
        rsyslog.write("apache-access.log",
                      [f'wiki.example:443 192.0.2.20 - - [{clf}] "POST /wiki/edit HTTP/1.1" 403 512 "-" "Mozilla/5.0"' for _ in range(5)]
                      + [f'192.0.2.21 - - [{clf}] "HEAD /feed/{i} HTTP/1.1" 200 0 "-" "Friendica 2019.06"' for i in range(30)])
        say("Elgg (syslog, auth): 5 failed logins from 192.0.2.30, with a user name that tries to frame 198.51.100.9")
        rsyslog.logger("elgg(web.example.com)", ["Authentication failure for admin from 198.51.100.9 from 192.0.2.30"] * 5)
        say("BIND named (syslog): 10 refused ANY queries from 192.0.2.40, a query name that tries to frame 198.51.100.9")
        rsyslog.logger("named", [f"client @0x7f0000001 192.0.2.40#{4000 + i} (198.51.100.9#53.evil.example): "
                                 f"query (cache) '198.51.100.9#53.evil.example/ANY/IN' denied" for i in range(10)])
        wait_for(lambda: len(server.nft_elements(set_name="named_refused_v4")) == 1, 5)
        time.sleep(2.5)  # status.json is rewritten every 2 s
        show(server, [str(PROGRAM), "list", "--config", str(config)])
        print("198.51.100.9 (named only in attacker-controlled fields) is banned nowhere.")
        show(server, [str(PROGRAM), "status", "--config", str(config)])
        print("omprog-ban's own log:")
        print(rsyslog.log_text().rstrip())

        say(f"waiting for the kernel to expire the ban ({BANTIME}s)")
        wait_for(lambda: not server.nft_elements(), BANTIME + 10, 0.5)
        wait_for(lambda: "0 banned" in server.run([str(PROGRAM), "list", "--config", str(config)]).stdout, 10, 0.5)
        show(server, [str(PROGRAM), "list", "--config", str(config)])
        say(f"client after expiry: port 9007 -> HTTP {fetch(9007)}")
        return 0
    finally:
        for process in web:
            process.terminate()
            process.wait()
        rsyslog.stop()
        client.close()
        server.close()


if __name__ == "__main__":
    raise SystemExit(main())
