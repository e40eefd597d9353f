"""AMPS ``07-0013`` client disconnects (the seed: ban loops on auth / name in use).

Sample lines, as AMPS writes them and as rsyslog hands them over::

    2017-12-07T16:55:49.9395590-08:00 [26] info: 07-0013 client[loader](192.0.2.7:50336) disconnected: auth.
    2017-12-07T16:55:49.9395590-08:00 [26] info: 07-0013 client[x]([2001:db8::1]:50336) disconnected: name in use.
    Dec  7 16:55:49 host amps[99]: 07-0013 client[reader](198.51.100.2:50344) disconnected: connection closed.

The client NAME is chosen by the client and may contain ``](``, a fake
``(198.51.100.9:1) disconnected: auth.`` or a whole log line. AMPS writes the real
address last, right before the final ``disconnected:``; the greedy name plus the
end anchor pins the address to that last occurrence.
"""

from __future__ import annotations

from typing import Mapping

import pyparsing as pp

from omprog_ban.grammars import tokens
from omprog_ban.grammars.base import Grammar
from omprog_ban.model import Failure, new

RULES = {"auth": "auth", "name in use": "name-in-use"}

amps_stamp = pp.Regex(rf"(?P<iso_time>{tokens.ISO_TIME}) \[(?P<thread>\d+)\] (?P<level>[a-z]+): ").set_name(
    "AMPS stamp"
)
message_id = pp.Literal("07-0013").set_name("07-0013")
disconnect = pp.Regex(
    r"client\[(?P<client>.*)\]\((?:\[(?P<bracketed>[0-9A-Fa-f:.]{2,45})\]|(?P<plain>[0-9A-Fa-f:.]{2,45}))"
    r":(?P<port>\d{1,5})\) disconnected: (?P<reason>[^.]{1,64})\.\s*$"
).set_name("client disconnect")


element = (tokens.syslog_header + pp.Opt(amps_stamp) + message_id + disconnect).set_name("AMPS 07-0013")


_event_seconds = tokens.event_reader()  # only the stamps this grammar can hold are looked for

def convert(result: Mapping[str, str], now: float) -> Failure | None:
    """Return a Failure for the auth and name-in-use disconnects, None for others."""
    rule = RULES.get(result["reason"])
    if rule is None:
        return None
    address = tokens.to_address(result.get("bracketed") or result["plain"])
    if address is None:  # 999.1.1.1, a host name: not an address AMPS wrote
        return None
    return new(Failure, ("amps", rule, address, _event_seconds(result, now),
                         {"client": result["client"], "port": result["port"], "reason": result["reason"]}))


GRAMMAR = Grammar(
    name="amps",
    rules=tuple(RULES.values()),
    fields=("client", "port", "reason"),
    keywords=("07-0013",),
    element=element,
    convert=convert,
    reads=("reason", "bracketed", "plain", "client", "port"),
)
