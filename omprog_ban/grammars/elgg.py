"""Elgg login attempts, as the fail2ban-oriented Elgg login plugin writes them to syslog.

Sample lines, as the plugin logs them (auth.log) and as rsyslog hands them over::

    Mar 22 18:24:43 web elgg(web.example.com)[16483]: Authentication failure for fakeuser from 192.0.2.4
    Mar 22 18:25:05 web elgg(web.example.com)[16483]: Accepted password for admin from 192.0.2.4
    Authentication failure for someone else from 2001:db8::4

The user name is whatever the client typed: it may hold spaces, ``from
198.51.100.9`` or a whole fake log line. The plugin writes the client address last,
so the greedy name plus the end anchor pins the address to the LAST ``from
ADDRESS``, which must end the line; when that one is no address the line is no
match (never a fallback to an earlier ``from`` inside the name). ``Accepted
password`` parses but is no failure.
"""

from __future__ import annotations

from typing import Mapping

import pyparsing as pp

from omprog_ban.grammars import tokens
from omprog_ban.grammars.base import Grammar
from omprog_ban.model import Failure, new

attempt = pp.Regex(
    r"(?P<outcome>Authentication failure|Accepted password) for (?P<user>.*) from "
    r"(?P<client>[0-9A-Fa-f:.]{2,45})\s*$"
).set_name("Elgg login attempt")

element = (tokens.syslog_header + attempt).set_name("Elgg login")


_event_seconds = tokens.event_reader()  # only the stamps this grammar can hold are looked for

def convert(result: Mapping[str, str | None], now: float) -> Failure | None:
    """Return a Failure for an authentication failure, None for an accepted password."""
    if result["outcome"] != "Authentication failure":
        return None
    address = tokens.to_address(result["client"])
    if address is None:  # 999.1.1.1: no fallback to an earlier "from" in the user name
        return None
    return new(Failure, ("elgg", "auth", address, _event_seconds(result, now),
                         {"user": result["user"]}))


GRAMMAR = Grammar(
    name="elgg",
    rules=("auth",),
    fields=("user",),
    keywords=("Authentication failure for ",),
    element=element,
    convert=convert,
    reads=("outcome", "client", "user"),
)
