"""BIND named: refused queries, transfers and updates, NOTAUTH requests, rate-limited clients.

Sample lines, as named writes them (file channel or syslog, 9.9 and 9.11+)::

    client 192.0.2.1#4321: view external: query (cache) 'example.com/A/IN' denied
    13-Aug-2013 12:40:37.123 security: info: client @0x7f1234567890 192.0.2.1#53 (example.com): query (cache) 'example.com/ANY/IN' denied (allow-query-cache did not match)
    Aug 27 16:59:00 ns named[28098]: client @0x7f6450002ef0 192.0.2.1#23332 (example.com): bad zone transfer request: 'example.com/IN': non-authoritative zone (NOTAUTH)
    client @0x7f12 192.0.2.1#53 (example.com): rate limit drop response to 192.0.2.0/24 for example.com IN ANY  (00800c00)

named writes ``client [@0xOBJECT ]ADDRESS#PORT[/key KEY][ (QNAME)][: view VIEW]: ``
before every client message; the address is taken there and nowhere else. Query
names are the client's, but named escapes spaces, parentheses and backslashes in
them (``\\032``, ``\\(``), so a name like ``198.51.100.9#53.evil.example`` or
``\\(198.51.100.9\\)`` stays inside its field. Rate-limit lines name the client's
prefix (``192.0.2.0/24``); the rule still takes the client address. Those clients
may be spoofed UDP sources (reflection victims): keep rate-limit bans short.
``would rate limit`` (log-only mode) counts as rate-limit too.

``notauth`` covers the two messages BIND writes when a client asks it for a zone it
does not serve: ``bad zone transfer request: 'ZONE/IN': non-authoritative zone
(NOTAUTH)`` and ``received notify for zone 'ZONE': not authoritative``. Updates
refused with NOTAUTH (usually one's own key-signed DHCP or ACME updater) are left out.
"""

from __future__ import annotations

from typing import Mapping

import pyparsing as pp

from omprog_ban.grammars import tokens
from omprog_ban.grammars.base import Grammar
from omprog_ban.model import Failure, new

_SEVERITY = r"(?:critical|error|warning|notice|info|debug(?: \d{1,2})?|dynamic)"
_QNAME = r"[^\s()\\]*+(?:\\.[^\s()\\]*+)*+"  # as dns_name_format escapes it
_ACL = r"(?: \([^()]{0,80}\))?"  # BIND 9.16+: (allow-query-cache did not match)

client = pp.Regex(
    rf"(?:(?P<named_time>{tokens.NAMED_TIME}) )?(?:[a-z][a-z0-9-]{{0,31}}: )?(?:{_SEVERITY}: )?"
    r"client (?:@0x[0-9A-Fa-f]{1,16} )?(?P<peer>[0-9A-Fa-f:.]{2,45})#\d{1,5}(?:/key [^\s()]{1,255}?)?"
    rf"(?: \((?P<client_qname>{_QNAME})\))?(?:: view (?P<view>[^:]{{1,64}}))?: "
).set_name("named client prefix")

# The quoted names are the client's and may hold quotes: greedy names end at the
# LAST quote the fixed text allows, which is the one named wrote. The empty group
# first names the rule.
query_denied = pp.Regex(
    rf"(?P<query_denied>)query(?: \(cache\))? '(?P<question>.*/[\w-]+/[\w-]+)' denied{_ACL}"
).set_name("query denied")
transfer_denied = pp.Regex(
    rf"(?P<transfer_denied>)zone transfer '(?P<question>.*/[\w-]+/[\w-]+)' denied{_ACL}"
).set_name("zone transfer denied")
update_denied = pp.Regex(
    rf"(?P<update_denied>)update(?: forwarding)? '(?P<zone_class>.*/[\w-]+)' denied{_ACL}"
).set_name("update denied")
notauth = pp.Regex(
    r"(?P<notauth>)(?:bad zone transfer request: '(?P<zone_class>.*/[\w-]+)': "
    r"non-authoritative zone \(NOTAUTH\)"
    r"|received notify for zone '(?P<zone>.*?)'(?:: TSIG '[^']*')?: not authoritative\s*$)"
).set_name("not authoritative")
# The logged prefix (192.0.2.0/24) is RRL's bucket, never the address.
rate_limit = pp.Regex(
    r"(?P<rate_limit>)(?:would )?rate limit (?:drop|slip) "
    r"(?:\w[\w -]{0,40} error |error |referral |NODATA |NXDOMAIN |all )?"
    r"responses? to [0-9A-Fa-f:.]{2,45}/\d{1,3}"
    r"(?: for (?P<limited_qname>\S{1,1100}?)(?: [\w-]+(?: (?P<limited_type>[\w-]+))?)?  \([0-9a-f]{1,8}\))?"
).set_name("rate limit")

message = (query_denied | rate_limit | transfer_denied | update_denied | notauth).set_name(
    "named client message"
)

element = (tokens.syslog_header + client + message).set_name("named client log")

RULES = {
    "query_denied": "query-denied",
    "transfer_denied": "transfer-denied",
    "update_denied": "update-denied",
    "notauth": "notauth",
    "rate_limit": "rate-limit",
}


def question(result: Mapping[str, str | None]) -> tuple[str, str]:
    """Return the query name and type a parsed message names ("" for what it lacks)."""
    text = result.get("question")
    if text:
        name, qtype, _class = text.rsplit("/", 2)
        return name, qtype
    text = result.get("zone_class")
    if text:
        return text.rpartition("/")[0], ""
    name = result.get("zone") or result.get("limited_qname") or result.get("client_qname") or ""
    return name, result.get("limited_type") or ""


_event_seconds = tokens.event_reader("named_time")  # only the stamps this grammar can hold are looked for

def convert(result: Mapping[str, str | None], now: float) -> Failure | None:
    """Return the Failure of a parsed line (every rule is one), None when its address is none."""
    address = tokens.to_address(result["peer"])
    if address is None:  # 999.1.1.1: not an address named wrote
        return None
    rule = tokens.marked(result, RULES)
    qname, qtype = question(result)
    return new(Failure, ("named", rule, address, _event_seconds(result, now),
                         {"qname": qname, "qtype": qtype, "view": result.get("view") or ""}))


GRAMMAR = Grammar(
    name="named",
    rules=("query-denied", "transfer-denied", "update-denied", "notauth", "rate-limit"),
    fields=("qname", "qtype", "view"),
    keywords=("denied", "authoritative", "rate limit"),
    element=element,
    convert=convert,
    reads=("peer", "question", "zone_class", "zone", "limited_qname", "client_qname", "limited_type", "view", *RULES),
)
