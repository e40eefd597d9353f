"""The values passed between pipeline stages: LogLine -> Failure -> Ban.

All three are immutable and equal by value. A LogLine is built for every line,
a Failure for every failure and, in a flood, a Ban for nearly every message, so
they are named tuples: built in about half the time of a frozen dataclass (whose
``__init__`` goes through ``object.__setattr__``), and read as fast as slots.
"""

from __future__ import annotations

import ipaddress
import socket
from types import MappingProxyType
from typing import Mapping, NamedTuple, Union

Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

EMPTY: Mapping[str, str] = MappingProxyType({})


class LogLine(NamedTuple):
    """One log message as a source framed it.

    ``received`` is wall-clock seconds when the source read it; ``key`` identifies
    a delivery (rsyslog's uuid, a journal cursor) so that a resent message is not
    counted twice; ``meta`` holds what the source knows beside the text (rsyslog
    properties, journal fields).
    """

    text: str
    received: float
    key: str | None = None
    meta: Mapping[str, str] = EMPTY


class Failure(NamedTuple):
    """A failure a grammar found: who (the daemon-written address), what rule, when.

    ``time`` is the log's own timestamp in epoch seconds, or None when the line
    has none. ``fields`` holds the grammar's named fields (path, user, qname...),
    which jails may filter on but which never provide the address. The grammars
    build it with ``new(Failure, (...))``, as the hot paths build LogLines: the
    class's own ``__new__`` is a Python function (0.2-0.3 µs more a value).
    """

    grammar: str
    rule: str
    address: Address
    time: float | None = None
    fields: Mapping[str, str] = EMPTY


new = tuple.__new__  # ``new(LogLine, (text, received, key, meta))``: every field given, in order


class Ban(NamedTuple):
    """A decision: drop ``address`` for ``bantime`` seconds, starting at ``time``."""

    jail: str
    address: Address | Network
    bantime: float
    time: float
    failures: int = 0
    reason: str = ""

    @property
    def until(self) -> float:
        """Return the epoch second at which the ban ends."""
        return self.time + self.bantime


def canonical(address: Address) -> Address:
    """Return ``address`` with IPv4-mapped IPv6 folded into its IPv4 address."""
    if address.version == 6 and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def text(address: Address | Network) -> str:
    """Return ``address`` as canonical text, memoised (bounded): a ban writes it several times.

    The memo is keyed by the address's int, one memo per family: an ``ipaddress``
    object hashes in Python, at twice the price of ``int``.
    """
    memo = _TEXTS.get(address.__class__)
    if memo is None:  # a network (a subnet ban): rare
        return str(address)
    number = address._ip  # the object's own int: ``int()`` would run its ``__int__`` in Python
    found = memo.get(number)
    if found is None:
        if len(memo) >= 65536:
            memo.clear()
        # Through the C formatter, a fifth of the price of ``str`` (a flood brings
        # thousands of new addresses a second). It writes what ``str`` writes (RFC 5952:
        # lower case, the first longest run of two or more zero groups as ``::``) except
        # in ::/96 and ::ffff:0:0/96, which it ends in a dotted quad (::1.2.3.4,
        # ::ffff:1.2.3.4): those go through ``str``.
        if memo is _V4:
            found = _ntop(_AF_INET, number.to_bytes(4, "big"))
        elif number >> 32 in (0, 0xFFFF):
            found = str(address)
        else:
            found = _ntop(_AF_INET6, number.to_bytes(16, "big"))
        memo[number] = found
    return found


_V4: dict[int, str] = {}
_TEXTS: dict[type, dict[int, str]] = {ipaddress.IPv4Address: _V4, ipaddress.IPv6Address: {}}
_ntop, _AF_INET, _AF_INET6 = socket.inet_ntop, socket.AF_INET, socket.AF_INET6
