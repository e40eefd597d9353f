"""How each service writes a line: one benign and one failure line per service, as the daemons log them.

Every maker takes the moment (epoch seconds, written in UTC) and the client
address as text; the rest (paths, names, ports, pids) comes from its seeded
``random.Random``. The formats are those of ``tests/samples/*.txt``:

    amps           2025-03-10T08:00:00.1234567+00:00 [26] info: 07-0013 client[loader](192.0.2.7:50336) disconnected: auth.
    apache-error   [Mon Mar 10 08:00:00.123456 2025] [core:info] [pid 812:tid 1403] [client 192.0.2.1:5555] AH00128: File does not exist: /var/www/html/x
    apache-access  192.0.2.2 - - [10/Mar/2025:08:00:00 +0000] "GET /x HTTP/1.1" 404 196 "-" "curl/8.5.0"   (vhost_combined: "example.org:443 " first)
    elgg           Mar 10 08:00:00 web elgg(web.example.com)[16483]: Authentication failure for admin from 192.0.2.4
    named          10-Mar-2025 08:00:00.123 security: info: client @0x7f12 192.0.2.1#4321 (example.com): query (cache) 'example.com/ANY/IN' denied
"""

from __future__ import annotations

import ipaddress
import time
from random import Random

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
SCANNED = ("wp-login.php", "xmlrpc.php", ".env", ".git/config", "phpmyadmin/index.php", "admin", "cgi-bin/luci",
           "vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php", "boaform/admin/formLogin", "actuator/health",
           "wp-content/plugins/wp-file-manager/readme.txt", "owa/auth/logon.aspx", "solr/admin/info/system", "HNAP1")
PAGES = ("", "index.html", "about/", "blog/2025/03/release-notes", "css/site.css", "js/app.js", "img/logo.png",
         "feed.xml", "docs/install.html", "search?q=nftables")
AGENTS = ("Mozilla/5.0 (X11; Linux x86_64; rv:123.0) Gecko/20100101 Firefox/123.0",
          "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36",
          "curl/8.5.0", "Go-http-client/1.1", "python-requests/2.31.0", "Wget/1.21.3")
USERS = ("admin", "root", "alice", "bob", "editor", "test", "John Q. Public", "info", "webmaster")
ZONES = ("example.com", "example.org", "example.net")


def _utc(moment: float) -> time.struct_time:
    return time.gmtime(moment)


def _fraction(moment: float, digits: int) -> str:
    return f"{int((moment % 1) * 10**digits):0{digits}d}"


def iso_stamp(moment: float) -> str:
    """AMPS: 2025-03-10T08:00:00.1234567+00:00 (seven fraction digits)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", _utc(moment)) + f".{_fraction(moment, 7)}+00:00"


def apache_stamp(moment: float) -> str:
    """Apache 2.4 error log: Mon Mar 10 08:00:00.123456 2025."""
    t = _utc(moment)
    return f"{DAYS[t.tm_wday]} {MONTHS[t.tm_mon - 1]} {t.tm_mday:02d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{_fraction(moment, 6)} {t.tm_year}"


def clf_stamp(moment: float) -> str:
    """Apache access log: 10/Mar/2025:08:00:00 +0000."""
    t = _utc(moment)
    return f"{t.tm_mday:02d}/{MONTHS[t.tm_mon - 1]}/{t.tm_year}:{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"


def syslog_stamp(moment: float) -> str:
    """RFC 3164: Mar 10 08:00:00 (day padded with a space)."""
    t = _utc(moment)
    return f"{MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"


def named_stamp(moment: float) -> str:
    """BIND file channel: 10-Mar-2025 08:00:00.123."""
    t = _utc(moment)
    return f"{t.tm_mday:02d}-{MONTHS[t.tm_mon - 1]}-{t.tm_year} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{_fraction(moment, 3)}"


class Amps:
    """AMPS's ban.log target: 07-0013 disconnects only."""

    def __init__(self, rng: Random, mix: str) -> None:
        self.rng = rng

    def _line(self, moment: float, address: str, client: str, reason: str) -> str:
        host = f"[{address}]" if ":" in address else address
        return (f"{iso_stamp(moment)} [{self.rng.randint(20, 40)}] info: 07-0013 "
                f"client[{client}]({host}:{self.rng.randint(32768, 60999)}) disconnected: {reason}.")

    def benign(self, moment: float, address: str) -> str:
        client = self.rng.choice(("queue-reader", "daily-report", "fast-message-loader", "risk-view", "pnl-publisher"))
        reason = self.rng.choices(("connection closed", "slow client", "heartbeat timeout"), (90, 5, 5))[0]
        return self._line(moment, address, f"{client}-{self.rng.randint(1, 9999)}", reason)

    def failure(self, moment: float, address: str) -> str:
        return self._line(moment, address, f"loader-{self.rng.randint(1, 99)}", self.rng.choice(("auth", "name in use")))


class ApacheError:
    """Apache 2.4's error.log at LogLevel info: 404s of files, and the usual noise."""

    def __init__(self, rng: Random, mix: str) -> None:
        self.rng = rng

    def _prefix(self, moment: float, module: str) -> str:
        return f"[{apache_stamp(moment)}] [{module}] [pid {self.rng.randint(800, 9000)}:tid {self.rng.randint(10**14, 10**15)}]"

    def _client(self, address: str) -> str:
        return f"[client {address}:{self.rng.randint(1024, 65535)}]"

    def benign(self, moment: float, address: str) -> str:
        kind = self.rng.randrange(10)
        if kind < 5:  # browsers asking for what does not exist and never counts
            path = self.rng.choice(("favicon.ico", "robots.txt", "img/banner.png", "img/photo.jpg"))
            return f"{self._prefix(moment, 'core:info')} {self._client(address)} AH00128: File does not exist: /var/www/html/{path}"
        if kind < 8:
            return (f"{self._prefix(moment, 'ssl:info')} {self._client(address)} AH01964: Connection to child "
                    f"{self.rng.randint(0, 63)} established (server example.org:443)")
        if kind < 9:
            return (f"{self._prefix(moment, 'php:warn')} {self._client(address)} PHP Warning:  Undefined array key "
                    f"\"page\" in /var/www/html/index.php on line {self.rng.randint(10, 400)}, referer: https://example.org/")
        return f"{self._prefix(moment, 'mpm_event:notice')} AH00489: Apache/2.4.62 (Debian) configured -- resuming normal operations"

    def failure(self, moment: float, address: str) -> str:
        path = self.rng.choice(SCANNED)
        return f"{self._prefix(moment, 'core:info')} {self._client(address)} AH00128: File does not exist: /var/www/html/{path}"


class ApacheAccess:
    """Apache's access log: ``combined`` (access.log) in the normal mix, ``vhost_combined`` in the flood."""

    def __init__(self, rng: Random, mix: str) -> None:
        self.rng = rng
        self.vhost = mix == "flood"

    def _line(self, moment: float, address: str, method: str, path: str, status: int, agent: str) -> str:
        vhost = f"{self.rng.choice(ZONES)}:443 " if self.vhost else ""
        size = self.rng.randint(150, 60000) if status == 200 else self.rng.randint(150, 500)
        referer = self.rng.choice(("-", "https://example.org/", "https://duckduckgo.com/"))
        return (f'{vhost}{address} - - [{clf_stamp(moment)}] "{method} /{path} HTTP/1.1" {status} {size} '
                f'"{referer}" "{agent}"')

    def benign(self, moment: float, address: str) -> str:
        status = self.rng.choices((200, 304, 301), (85, 10, 5))[0]
        return self._line(moment, address, self.rng.choice(("GET", "GET", "GET", "HEAD", "POST")), self.rng.choice(PAGES),
                          status, self.rng.choice(AGENTS[:2]))

    def failure(self, moment: float, address: str) -> str:
        return self._line(moment, address, self.rng.choice(("GET", "POST")), self.rng.choice(SCANNED), 404,
                          self.rng.choice(AGENTS))


class Elgg:
    """/var/log/auth.log with the Elgg login plugin's lines among sshd, CRON and sudo."""

    def __init__(self, rng: Random, mix: str) -> None:
        self.rng = rng

    def _prefix(self, moment: float, tag: str) -> str:
        return f"{syslog_stamp(moment)} web {tag}[{self.rng.randint(300, 32000)}]:"

    def benign(self, moment: float, address: str) -> str:
        kind = self.rng.randrange(10)
        if kind < 4:
            return f"{self._prefix(moment, 'elgg(web.example.com)')} Accepted password for {self.rng.choice(USERS)} from {address}"
        if kind < 6:
            return (f"{self._prefix(moment, 'sshd')} Accepted publickey for deploy from {address} port "
                    f"{self.rng.randint(1024, 65535)} ssh2: ED25519 SHA256:q9Yb1x0Fh5PzWv3kTtJ0mKp8sXyZ0cRr3bW5nLqTg2E")
        if kind < 9:
            return f"{self._prefix(moment, 'CRON')} pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)"
        return f"{self._prefix(moment, 'sudo')}     alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/systemctl reload apache2"

    def failure(self, moment: float, address: str) -> str:
        return f"{self._prefix(moment, 'elgg(web.example.com)')} Authentication failure for {self.rng.choice(USERS)} from {address}"


class Named:
    """BIND 9.18's security and query-errors channels in one file (print-time, print-category, print-severity)."""

    def __init__(self, rng: Random, mix: str) -> None:
        self.rng = rng

    def _client(self, moment: float, category: str, address: str, qname: str) -> str:
        return (f"{named_stamp(moment)} {category}: info: client @0x7f{self.rng.getrandbits(40):010x} "
                f"{address}#{self.rng.randint(1024, 65535)} ({qname}):")

    def benign(self, moment: float, address: str) -> str:
        zone = self.rng.choice(ZONES)
        kind = self.rng.randrange(10)
        if kind < 6:
            name = f"{self.rng.choice(('www', 'mail', 'api', 'cdn'))}.{zone}"
            return (f"{self._client(moment, 'query-errors', address, name)} query failed (SERVFAIL) for {name}/IN/A "
                    f"at ../../../lib/ns/query.c:{self.rng.randint(5000, 8000)}")
        if kind < 8:
            prefix = ipaddress.ip_network(f"{address}/{56 if ':' in address else 24}", strict=False)
            return (f"{self._client(moment, 'query-errors', address, zone)} rate limit slip response to "
                    f"{prefix} for {zone} IN A  ({self.rng.getrandbits(32):08x})")
        return f"{named_stamp(moment)} general: info: zone {zone}/IN: sending notifies (serial {2025031000 + self.rng.randint(0, 99)})"

    def failure(self, moment: float, address: str) -> str:
        zone = self.rng.choice(ZONES)
        if self.rng.random() < 0.8:
            qtype = self.rng.choice(("ANY", "A", "TXT", "NS"))
            return f"{self._client(moment, 'security', address, zone)} query (cache) '{zone}/{qtype}/IN' denied"
        return f"{self._client(moment, 'security', address, zone)} zone transfer '{zone}/AXFR/IN' denied"


FORMATS = {"amps": Amps, "apache-error": ApacheError, "apache-access": ApacheAccess, "elgg": Elgg, "named": Named}
