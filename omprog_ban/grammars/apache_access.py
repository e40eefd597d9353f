"""Apache httpd access log, combined and vhost_combined: every request is a record.

Sample lines, as Apache writes them and as rsyslog hands them over::

    192.0.2.1 - alice [04/Jul/2019:08:07:22 +0200] "GET /x HTTP/1.1" 404 5976 "-" "curl/8.0"
    example.org:443 192.0.2.1 - - [04/Jul/2019:08:07:22 +0200] "POST /software HTTP/1.0" 403 5976 "https://example.org/" "Mozilla/5.0"
    Jul  4 08:07:22 web apache2[99]: 2001:db8::7 - - [04/Jul/2019:08:07:22 +0200] "-" 408 0 "-" "-"

The only rule, ``request``, matches every parsed request; jails pick what counts
by ``status``, ``method``, ``path`` and the other fields. They hold the text as
logged (Apache's ``\\"``, ``\\\\`` and ``\\xhh`` escapes kept, ``-`` where Apache
writes it); ``vhost`` is ``%v`` without its port, "" on combined lines, and
``referer`` and ``user_agent`` are "" in the common format.

The address is the first field (combined) or the second (vhost_combined, after
``%v:%p``). A first field that looks like an address is always the client, so an
``IdentityCheck`` reply in the second field cannot pose as the client; only another
first field ending in ``:port`` is a vhost. Request line, referer and user agent
are quoted with every inner ``"`` escaped, and the basic-auth user (spaces and
brackets allowed) is escaped the same way, so none of them can end early and
shift a field: a fake log line inside any of them stays inside. A line whose
client field is a host name, or that lost its address (the seed's vhost line
``example.org:443 - - [...]``), is no match. Limitation: a vhost named by a bare
IPv6 address reads as a combined line.
"""

from __future__ import annotations

from typing import Mapping

import pyparsing as pp

from omprog_ban.grammars import tokens
from omprog_ban.grammars.base import Grammar
from omprog_ban.model import Failure, new

_ADDRESS = r"[0-9A-Fa-f:.]{2,45}"
# Apache escapes every " and \ inside quotes (\", \\, \xhh). Possessive: a quoted
# field ends at the first unescaped quote and is never re-entered.
_QUOTED = r'[^"\\]*+(?:\\.[^"\\]*+)*+'
# The basic-auth user is escaped the same way but not quoted, and may hold spaces
# and brackets: it ends at the first ' [STAMP] "', which it cannot contain itself.
_USER = rf'""|(?:[^"\\\[ ]++|\\.| (?!\[{tokens.CLF_TIME}\] ")|\[)*+'
_RECORD = (
    rf' (?P<ident>\S+) (?P<user>{_USER}) \[(?P<clf_time>{tokens.CLF_TIME})\] '
    rf'"(?P<request>{_QUOTED})" (?P<status>\d{{3}}) (?:\d+|-)'
    rf'(?: "(?P<referer>{_QUOTED})" "(?P<user_agent>{_QUOTED})")?(?: .*)?'
)

# A first field that looks like an address is the client (combined); only other
# fields of the form name:port are a vhost.
_IP_LIKE = rf"(?:{tokens.IPV4_PATTERN}|{tokens.IPV6_PATTERN}) "
vhost_combined = pp.Regex(
    rf"(?!{_IP_LIKE})(?P<vhost>[^\s\"]{{1,255}}):\d{{1,5}} (?P<client>{_ADDRESS}){_RECORD}"
).set_name("vhost_combined record")
combined = pp.Regex(rf"(?P<client>{_ADDRESS}){_RECORD}").set_name("combined record")

element = (tokens.syslog_header + (vhost_combined | combined)).set_name("Apache access log")


def request_parts(request: str) -> tuple[str, str]:
    """Return the method and target of a logged request line; ("", "") for ``-`` or garbage."""
    method, _, rest = request.partition(" ")
    if not rest:
        return "", ""
    target, _, protocol = rest.rpartition(" ")
    if not protocol.startswith("HTTP/"):  # HTTP/0.9, or a target with spaces and no protocol
        target = rest
    return method, target


_event_seconds = tokens.event_reader("clf_time")  # only the stamps this grammar can hold are looked for

def convert(result: Mapping[str, str | None], now: float) -> Failure | None:
    """Return the record of a parsed request (every request is one), None when its address is none."""
    address = tokens.to_address(result["client"])
    if address is None:  # 999.1.1.1: not an address Apache wrote
        return None
    method, path = request_parts(result["request"])
    fields = {
        "method": method,
        "path": path,
        "status": result["status"],
        "user_agent": result.get("user_agent") or "",
        "referer": result.get("referer") or "",
        "vhost": result.get("vhost") or "",
        "user": result["user"],
    }
    return new(Failure, ("apache-access", "request", address, _event_seconds(result, now), fields))

GRAMMAR = Grammar(
    name="apache-access",
    rules=("request",),
    fields=("method", "path", "status", "user_agent", "referer", "vhost", "user"),
    keywords=('] "',),
    element=element,
    convert=convert,
    reads=("client", "request", "status", "user_agent", "referer", "vhost", "user"),
)
