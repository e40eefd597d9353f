"""The demo: a real rsyslogd runs omprog-ban on the embedded default config.

Two private network namespaces joined by a veth pair: a "server" where rsyslogd,
omprog-ban, nftables and the services live, and a "client" that attacks. Sample
attacks are written to the logs rsyslog reads; the bans appear in the kernel,
drop the client's packets, and expire on their own. Nothing outside the two
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
        show(server, [str(PROGRAM), "list", "--config", str(config)])
        show(server, ["nft", "list", "set", "inet", "omprog_ban", "amps_v4"])
        say(f"client now: port 9007 -> {fetch(9007) or 'timeout'} (000 = dropped), port 8080 -> HTTP {fetch(8080)}")
        print("omprog-ban's own log:")
        print(rsyslog.log_text().rstrip())

        say(f"waiting for the kernel to expire the ban ({BANTIME}s)")
        wait_for(lambda: not server.nft_elements(), BANTIME + 10, 0.5)
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
