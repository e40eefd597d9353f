"""Apache httpd error log: missing files and scripts, auth failures, denials, bad requests.

Sample lines, as Apache 2.2 and 2.4 write them and as rsyslog hands them over::

    [Sun Nov 05 09:34:27 2017] [error] [client 192.0.2.1] File does not exist: /var/www/admin
    [Sun Nov 05 09:34:27.123456 2017] [core:info] [pid 1:tid 2] [client 192.0.2.1:5555] AH00128: File does not exist: /var/www/x
    [Sat Jul 20 21:39:11.978080 2013] [auth_basic:error] [pid 17512] [client 2001:db8::1:51390] AH01617: user bob: authentication failure for "/basic": Password Mismatch
    Feb 15 16:23:00 srv httpd[22034]: [authz_core:error] [pid 22034] [client 192.0.2.1:58585] AH01630: client denied by server configuration: /home/www/

The client bracket is the only address taken. Apache writes it in a fixed prefix
(stamp, level, pid, file(line) at debug levels, status) before any request data,
so the grammar anchors it there: a ``[client 198.51.100.9]`` inside a path, user
name or referer (fail2ban CVE-2013-2178) is message text, never an address. 2.4
writes ``[module:level]`` and always a port (``[client 2001:db8::1:5555]``: the last
``:N`` is the port); 2.2 writes ``[level]`` and no port (``[client 2001:db8::1]``).
2.4 says ``[remote ...]`` instead of ``[client ...]`` when the connection has no
scoreboard handle; for request errors, all these rules, it is still the user
agent's address. A line without an address (``[client]``, logs stripped of their
IPs) is no match.

``path`` is the file, script or URI the message names (the URI of a bad request
line, "" when Apache logs none); Apache appends ``, referer: ...`` to request
errors and the first such suffix is cut off. ``module`` and ``code`` (``AH00128``)
are "" on 2.2 lines.
"""

from __future__ import annotations

from typing import Mapping

import pyparsing as pp

from omprog_ban.grammars import tokens
from omprog_ban.grammars.base import Grammar
from omprog_ban.model import Failure, new

# The address text is loose on purpose: tokens.to_address decides.
_ADDRESS = r"[0-9A-Fa-f:.]{2,45}"
_STAMP = rf"(?:\[(?P<apache_time>{tokens.APACHE_TIME})\] )?"
_FILE_LINE = r"(?:[\w.-]{1,64}\(\d{1,6}\): )?"  # debug and trace levels only
_STATUS = r"(?:\([^()]{1,24}\)[^:\[\]]{0,160}: )?"  # (13)Permission denied:

client_24 = pp.Regex(
    rf"{_STAMP}\[(?P<module>[\w.-]{{0,40}}):[a-z]{{3,6}}\d?\] (?:\[pid \d{{1,10}}(?::tid \d{{1,20}})?\] )?"
    rf"{_FILE_LINE}{_STATUS}\[(?:client|remote) (?:\[(?P<bracketed>{_ADDRESS})\]|(?P<plain>{_ADDRESS}))"
    r":\d{1,5}\] (?:(?P<code>AH\d{5}): )?"
).set_name("Apache 2.4 prefix")
client_22 = pp.Regex(
    rf"{_STAMP}\[(?:emerg|alert|crit|error|warn|notice|info|debug)\] {_FILE_LINE}"
    rf"\[client (?P<plain>{_ADDRESS})\] {_STATUS}"
).set_name("Apache 2.2 prefix")

# One regex per rule, each opening on the daemon's own words; the tail after the
# keyword is attacker text and always matches (linear time, no backtracking into
# it). The empty group first names the rule.
not_found = pp.Regex(
    r"(?P<not_found>)(?:(?:File does not exist|script not found or unable to stat): (?P<path>.*)"
    r"|script '(?P<quoted_path>.*?)' not found or unable to stat.*|Got error 'Primary script unknown.*)"
).set_name("not found")
auth = pp.Regex(
    r"(?P<auth>)(?:(?:(?:Digest: )?user .*?(?: not found(?:: )?|: password mismatch: )"
    r"|client used wrong authentication scheme: )(?P<path>.*)"
    r"|(?:Digest: )?user .*?: (?:authentication|authorization) failure for \"(?P<quoted_path>.*?)\":.*)"
).set_name("auth failure")
denied = pp.Regex(r"(?P<denied>)client denied by server configuration: (?P<path>.*)").set_name("denied")
bad_request = pp.Regex(
    r"(?P<bad_request>)(?:Invalid (?:URI|method) in request (?P<request>.*)|request failed: URI too long.*)"
).set_name("bad request")

message = (not_found | denied | auth | bad_request).set_name("Apache error message")

element = (tokens.syslog_header + (client_24 | client_22) + message).set_name("Apache error log")

RULES = {"not_found": "not-found", "auth": "auth", "denied": "denied", "bad_request": "bad-request"}


def path(result: Mapping[str, str | None]) -> str:
    """Return the file, script or URI a parsed message names, without the referer suffix."""
    request = result.get("request")
    if request is not None:  # METHOD URI [PROTOCOL]: keep the URI
        parts = request.partition(", referer: ")[0].split(" ")
        return parts[1] if len(parts) > 1 else ""
    return (result.get("quoted_path") or result.get("path") or "").partition(", referer: ")[0]


_event_seconds = tokens.event_reader("apache_time")  # only the stamps this grammar can hold are looked for

def convert(result: Mapping[str, str | None], now: float) -> Failure | None:
    """Return the Failure of a parsed line (every rule is one), None when its address is none."""
    address = tokens.to_address(result.get("bracketed") or result.get("plain") or "")
    if address is None:  # 999.1.1.1, a host name: not an address Apache wrote
        return None
    rule = tokens.marked(result, RULES)
    return new(Failure, ("apache-error", rule, address, _event_seconds(result, now),
                         {"path": path(result), "module": result.get("module") or "", "code": result.get("code") or ""}))


GRAMMAR = Grammar(
    name="apache-error",
    rules=("not-found", "auth", "denied", "bad-request"),
    fields=("path", "module", "code"),
    keywords=(
        "does not exist",
        "not found",  # also in every "script ... not found or unable to stat"
        "Primary script unknown",
        "failure for",
        "password mismatch",
        "wrong authentication scheme",
        "denied by server",
        "in request",
        "URI too long",
    ),
    element=element,
    convert=convert,
    reads=("bracketed", "plain", "request", "quoted_path", "path", "module", "code", *RULES),
)
