"""The test lab: private network namespaces, a veth pair, and a private rsyslogd.

Nothing here touches the host's ruleset or network: every nft command and every
packet stays inside namespaces this module creates and deletes.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = Path(sys.executable).with_name("omprog-ban")
SERVER4, CLIENT4 = "10.199.77.1", "10.199.77.2"
SERVER6, CLIENT6 = "fd00:77::1", "fd00:77::2"


class Namespace:
    """A named network namespace, deleted on close()."""

    def __init__(self, prefix: str = "ob") -> None:
        self.name = f"{prefix}-{secrets.token_hex(3)}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.run(["ip", "link", "set", "lo", "up"])

    def command(self, argv: list[str]) -> list[str]:
        """Return ``argv`` prefixed to run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, argv: list[str], check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        """Run ``argv`` in the namespace and wait."""
        return subprocess.run(self.command(argv), check=check, capture_output=True, text=True, **kwargs)

    def popen(self, argv: list[str], **kwargs) -> subprocess.Popen:
        """Start ``argv`` in the namespace."""
        return subprocess.Popen(self.command(argv), **kwargs)

    def nft_elements(self, table: str = "omprog_ban", set_name: str = "amps_v4") -> list[dict]:
        """Return the elements of one set as nft's JSON shows them ([] when absent)."""
        done = self.run(["nft", "-j", "list", "set", "inet", table, set_name], check=False)
        if done.returncode != 0:
            return []
        found = []
        for item in json.loads(done.stdout)["nftables"]:
            for element in item.get("set", {}).get("elem", []):
                found.append(element["elem"] if isinstance(element, dict) and "elem" in element else {"val": element})
        return found

    def rule_count(self, table: str = "omprog_ban") -> int:
        """Return how many rules the table's chains hold."""
        done = self.run(["nft", "-j", "list", "table", "inet", table], check=False)
        if done.returncode != 0:
            return 0
        return sum(1 for item in json.loads(done.stdout)["nftables"] if "rule" in item)

    def close(self) -> None:
        """Delete the namespace (its processes should be gone)."""
        subprocess.run(["ip", "netns", "del", self.name], check=False)


def link(server: Namespace, client: Namespace) -> None:
    """Join two namespaces with a veth pair on private /30 and /64 networks."""
    a, b = f"v{secrets.token_hex(3)}", f"v{secrets.token_hex(3)}"
    subprocess.run(["ip", "link", "add", a, "netns", server.name, "type", "veth", "peer", "name", b, "netns", client.name], check=True)
    for ns, dev, v4, v6 in ((server, a, SERVER4, SERVER6), (client, b, CLIENT4, CLIENT6)):
        ns.run(["ip", "addr", "add", f"{v4}/30", "dev", dev])
        ns.run(["ip", "addr", "add", f"{v6}/64", "dev", dev, "nodad"])
        ns.run(["ip", "link", "set", dev, "up"])


def wait_for(predicate, timeout: float = 5.0, step: float = 0.05):
    """Return predicate()'s first truthy value within ``timeout``, else its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(step)


class Rsyslog:
    """A private rsyslogd in the foreground, running the shipped rsyslog.d config.

    The shipped files are used as they are, with only their host paths (program,
    config, log, AMPS log) pointed into ``workdir``.
    """

    def __init__(self, workdir: Path, namespace: Namespace, config: Path, extra: str = "") -> None:
        self.workdir = Path(workdir)
        self.namespace = namespace
        self.config = config
        self.amps_log = self.workdir / "amps.log"
        self.socket = self.workdir / "log.sock"
        self.output = self.workdir / "omprog-ban.log"
        self.internal = self.workdir / "rsyslog.log"
        self.pidfile = self.workdir / "rsyslogd.pid"
        self.conf = self.workdir / "rsyslog.conf"
        self.process: subprocess.Popen | None = None
        for name in ("amps.log", "apache-error.log", "apache-access.log"):
            (self.workdir / name).touch()
        parts = [
            f'global(workDirectory="{self.workdir}" processInternalMessages="on")',
            'module(load="imuxsock" SysSock.Use="off")',
            f'input(type="imuxsock" Socket="{self.socket}" ruleset="omprog-ban-filter" '
            'ratelimit.interval="1" ratelimit.burst="100000")',
        ]
        for shipped in sorted((ROOT / "rsyslog.d").glob("*.conf")):
            parts.append(self.localise(shipped.read_text()))
        parts.append(extra)
        parts.append(f'*.* action(type="omfile" file="{self.internal}")')
        self.conf.write_text("\n".join(parts) + "\n")

    def localise(self, text: str) -> str:
        """Point the shipped config's host paths into the work directory."""
        text = text.replace("/usr/local/bin/omprog-ban", str(PROGRAM))
        text = text.replace("/etc/omprog-ban.toml", str(self.config))
        text = text.replace("/var/log/omprog-ban.log", str(self.output))
        text = text.replace("/var/log/apache2/error.log", str(self.workdir / "apache-error.log"))
        text = text.replace("/var/log/apache2/access.log", str(self.workdir / "apache-access.log"))
        return text.replace("/var/log/amps/ban.log", str(self.amps_log))

    def start(self) -> "Rsyslog":
        """Check the config, start rsyslogd and wait for omprog-ban's child to run."""
        check = subprocess.run(["rsyslogd", "-N1", "-f", str(self.conf)], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr + check.stdout
        self.process = self.namespace.popen(
            ["rsyslogd", "-n", "-f", str(self.conf), "-i", str(self.pidfile)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        assert wait_for(lambda: self.pidfile.exists(), 10), "rsyslogd did not start"
        return self

    def write_amps(self, lines: list[str]) -> None:
        """Append lines to the AMPS log that imfile follows."""
        self.write("amps.log", lines)

    def write(self, name: str, lines: list[str]) -> None:
        """Append lines to a log file that imfile follows (amps.log, apache-error.log, apache-access.log)."""
        with open(self.workdir / name, "a") as handle:
            handle.write("".join(line + "\n" for line in lines))

    def logger(self, tag: str, lines: list[str]) -> None:
        """Send lines through rsyslog's private syslog socket, as a service's syslog() would."""
        for line in lines:
            subprocess.run(["logger", "-u", str(self.socket), "-t", tag, "--", line], check=True)

    def child(self) -> int | None:
        """Return the pid of the omprog-ban child rsyslogd started (the relay, not its worker), or None.

        Only once it has forked its worker, which it does right before its start-up
        OK: rsyslog 8.2302 stops the action for good when a child dies before that
        OK (README, Failure modes), so a test that kills "the child" kills one past it.
        """
        found = self._runs()
        relays = [pid for pid, parent in found.items() if parent not in found]
        started = [pid for pid in relays if pid in found.values()]
        if started:
            time.sleep(0.02)  # the OK follows the fork at once
        return started[0] if started else None

    def worker(self) -> int | None:
        """Return the pid of the worker the omprog-ban child forked, or None."""
        found = self._runs()
        return next((pid for pid, parent in found.items() if parent in found), None)

    def _runs(self) -> dict[int, int]:
        """Return {pid: parent pid} of every ``omprog-ban run`` process with this config."""
        found = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if len(cmdline) > 2 and cmdline[1].endswith(b"omprog-ban") and b"run" in cmdline and str(self.config).encode() in cmdline:
                try:
                    found[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
        return found

    def log_text(self) -> str:
        """Return what omprog-ban wrote to its log so far."""
        return self.output.read_text() if self.output.exists() else ""

    def stop(self) -> None:
        """SIGTERM rsyslogd and wait for it and its child."""
        if self.process is None:
            return
        pid = int(self.pidfile.read_text()) if self.pidfile.exists() else self.process.pid
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        wait_for(lambda: self.child() is None, 10)
        self.process = None


def amps_line(address: str, reason: str = "auth", client: str = "loader", port: int = 50000) -> str:
    """Return one AMPS 07-0013 line as AMPS writes it."""
    host = f"[{address}]" if ":" in address else address
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.0000000+00:00", time.gmtime())
    return f"{stamp} [26] info: 07-0013 client[{client}]({host}:{port}) disconnected: {reason}."


SEED_AMPS = """
[defaults]
ignoreip = ["127.0.0.0/8", "::1"]
[jails.amps]
grammar = "amps"
rules = ["auth", "name-in-use"]
maxretry = 20
findtime = "10s"
bantime = "2m"
ports = [9007]
protocol = "tcp"
"""


def write_config(path: Path, state_dir: Path, body: str = "") -> Path:
    """Write an omprog-ban TOML config: the seed AMPS jail unless ``body`` says otherwise."""
    body = body or SEED_AMPS
    path.write_text(f'state_dir = "{state_dir}"\n[nft]\ntable = "omprog_ban"\n' + body)
    return path
