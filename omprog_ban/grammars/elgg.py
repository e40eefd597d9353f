"""Elgg login attempts, as the fail2ban-oriented Elgg login plugin writes them to syslog.

Sample lines, as the plugin logs them (auth.log) and as rsyslog hands them over::

    Mar 22 18:24:43 web elgg(web.example.com)[16483]: Authentication failure for fakeuser from 192.0.2.4
    Mar 22 18:25:05 web elgg(web.example.com)[16483]: Accepted password for admin from 192.0.2.4
    Authentication failure for someone else from 2001:db8::4

The user name is whatever the client typed: it may hold spaces, ``from
198.51.100.9`` or a whole fake log line. The plugin writes the client address last,
so the greedy name plus the end anchor pins the address to the LAST ``from
ADDRESS``, which must end the line. ``Accepted password`` parses but is no failure.
"""

from __future__ import annotations

import pyparsing as pp

from omprog_ban.grammars import tokens
from omprog_ban.grammars.base import Grammar
from omprog_ban.model import Failure

attempt = pp.Regex(
    r"(?P<outcome>Authentication failure|Accepted password) for (?P<user>.*) from "
    r"(?P<client>[0-9A-Fa-f:.]{2,45})\s*$"
).set_name("Elgg login attempt")


def _address(text: str, location: int, tokens_: pp.ParseResults) -> None:
    found = tokens.to_address(tokens_["client"])
    if found is None:
        raise pp.ParseException(text, location, "client address is not an address")
    tokens_["address"] = found


attempt.add_parse_action(_address)

element = (tokens.syslog_header + attempt).set_name("Elgg login")


def convert(result: pp.ParseResults, now: float) -> Failure | None:
    """Return a Failure for an authentication failure, None for an accepted password."""
    if result["outcome"] != "Authentication failure":
        return None
    return Failure(
        grammar="elgg",
        rule="auth",
        address=result["address"],
        time=tokens.event_seconds(result, now),
        fields={"user": result["user"]},
    )


GRAMMAR = Grammar(
    name="elgg",
    rules=("auth",),
    fields=("user",),
    keywords=("Authentication failure for ",),
    element=element,
    convert=convert,
)
