"""Shared pyparsing tokens: addresses, timestamps and the prefixes log carriers add.

Every token is a ``pp.Regex`` (lexical, fast) with a ``set_name``. Address tokens
convert to :mod:`ipaddress` objects in their parse action and raise
``pp.ParseException`` for text that is not an address, so ``999.1.1.1`` or
``1.2.3.4.5`` is a non-match, never a crash.
"""

from __future__ import annotations

import calendar
import ipaddress
import socket as _socket
import time as _time
from datetime import datetime, timedelta, timezone
from typing import Callable, Mapping

import pyparsing as pp

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
IPV4_PATTERN = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
# Loose on purpose: ipaddress decides; the lookarounds stop at a token boundary.
IPV6_PATTERN = r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?::" + IPV4_PATTERN + r")?"
IPV6_WITH_V4_TAIL = r"[0-9A-Fa-f:]{2,30}:" + IPV4_PATTERN

MONTHS = {name: number for number, name in enumerate(calendar.month_abbr) if name}


def _to_address(_text: str, location: int, tokens: pp.ParseResults):
    found = to_address(tokens[0])
    if found is None:
        raise pp.ParseException(_text, location, f"not an address: {tokens[0]!r}")
    return found


def address(name: str = "address") -> pp.ParserElement:
    """Return a token for an IPv4 or IPv6 address, converted to an ipaddress object."""
    token = pp.Regex(rf"(?:{IPV4_PATTERN}(?![\d.])|{IPV6_WITH_V4_TAIL}(?![\d.])|{IPV6_PATTERN}(?![\w:.]))")
    return token.set_parse_action(_to_address).set_name(name)(name)


def to_address(text: str):
    """Return ``text`` as an ipaddress object, or None when it is not a client address.

    The unspecified address (``0.0.0.0``, ``::``) is never a client: None too.
    Answers are memoised (bounded: the memo is dropped whole when full), since an
    attacker's address comes back on every line it causes.
    """
    found = _ADDRESSES.get(text, _UNKNOWN)
    if found is _UNKNOWN:
        six = ":" in text
        try:  # the C parser, then an int: ipaddress's own parse is ten times dearer (a flood is all new addresses)
            packed = int.from_bytes(_socket.inet_pton(_socket.AF_INET6 if six else _socket.AF_INET, text), "big")
            found = ipaddress.IPv6Address(packed) if six else ipaddress.IPv4Address(packed)
        except (OSError, ValueError):  # what inet_pton refuses, ipaddress decides (it takes a scope: fe80::1%eth0)
            try:  # the right class at once: ip_address would try IPv4 first and fail on every IPv6
                found = ipaddress.IPv6Address(text) if six else ipaddress.IPv4Address(text)
            except ValueError:
                found = None
        if found is not None and found.is_unspecified:
            found = None
        if len(_ADDRESSES) >= MEMO:
            _ADDRESSES.clear()
        _ADDRESSES[text] = found
    return found


MEMO = 65536
_UNKNOWN = object()
_ADDRESSES: dict = {}


# --- timestamps -----------------------------------------------------------------

ISO_TIME = r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?"
SYSLOG_TIME = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ \d]\d \d\d:\d\d:\d\d"
NAMED_TIME = r"\d\d-(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)-\d{4} \d\d:\d\d:\d\d(?:\.\d+)?"
# Apache's error log (``Sun Nov 05 09:34:27 2017``, 2.4 adds microseconds; local time)
# and its access log (common log format, ``04/Jul/2019:08:07:22 +0200``).
APACHE_TIME = (
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"[ \d]\d \d\d:\d\d:\d\d(?:\.\d{1,6})? \d{4}"
)
CLF_TIME = r"\d\d/(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}"


def iso_seconds(text: str) -> float | None:
    """Return ISO 8601 ``text`` as epoch seconds (local time when it has no zone).

    The whole-second part and the zone are converted once and memoised; lines of
    one second share them, so only the fraction is new per line. The second and
    zone of the last stamp with a fraction are kept apart too: a stamp in the
    same second (a flood's next line) is then told by ``startswith`` and
    ``endswith``, without building its key (a fifth less per call).
    """
    head, zone, base = _LAST_SECOND
    if text.startswith(head) and text.endswith(zone):
        digits = text[20:len(text) - len(zone)]
        if digits.isdigit() and digits.isascii():  # as the path below takes them
            return base + float("." + digits)
    if text[19:20] == ".":
        zone = text[20:].lstrip("0123456789")
        end = len(text) - len(zone)
        key = text[:19] + zone
        base = _STAMPS.get(key)
        if base is not None:
            _LAST_SECOND[:] = [text[:20], zone, base]
            return base + float(text[19:end]) if end > 20 else base
        fraction = float(text[19:end]) if end > 20 else 0.0
    else:
        zone, fraction, key = text[19:], 0.0, text
        base = _STAMPS.get(key)
        if base is not None:
            return base
    try:
        base = datetime.fromisoformat(text[:19] + ("+00:00" if zone == "Z" else zone)).timestamp()
    except ValueError:
        return None
    if len(_STAMPS) >= MEMO:
        _STAMPS.clear()
    _STAMPS[key] = base
    if fraction:
        _LAST_SECOND[:] = [text[:20], zone, base]
    return base + fraction


_LAST_SECOND: list = ["\0", "", 0.0]  # "YYYY-MM-DDTHH:MM:SS.", zone, its epoch seconds
_STAMPS: dict[str, float] = {}


def syslog_seconds(text: str, now: float) -> float | None:
    """Return an RFC 3164 stamp (``Aug 13 12:40:37``, no year) as epoch seconds.

    The year is the one of ``now``; a stamp more than a day in the future is taken
    from the year before (a December line read in January). Each stamp is
    converted once per year it is tried in (memoised, bounded), and the year of
    ``now`` is looked up once per year, not per line.
    """
    year = _year_of(now)
    for candidate in (year, year - 1):
        seconds = _SYSLOG.get((candidate, text), _UNKNOWN)
        if seconds is _UNKNOWN:
            if len(_SYSLOG) >= MEMO:
                _SYSLOG.clear()
            seconds = _SYSLOG[candidate, text] = _syslog_in(candidate, text)
        if seconds is not None and seconds <= now + 86400:
            return seconds
    return None


def _syslog_in(year: int, text: str) -> float | None:
    """Return the RFC 3164 stamp ``text`` in ``year`` (local time), None when that date does not exist."""
    month, day, clock = text.split()
    try:  # Feb 29 in a year without one: None
        return datetime(year, MONTHS[month], int(day), *map(int, clock.split(":"))).timestamp()
    except ValueError:
        return None


def _year_of(now: float) -> int:
    """Return the local year of ``now``; the bounds of the last year asked are kept."""
    start, end, year = _YEAR
    if not start <= now < end:
        year = _time.localtime(now).tm_year
        _YEAR[:] = [datetime(year, 1, 1).timestamp(), datetime(year + 1, 1, 1).timestamp(), year]
    return year


_SYSLOG: dict = {}
_YEAR: list = [0.0, 0.0, 0]


def _memoised(convert):
    """Remember ``convert``'s answers by stamp text (bounded): a flood's lines share their seconds."""
    memo: dict = {}

    def remembered(text: str):
        found = memo.get(text, _UNKNOWN)
        if found is _UNKNOWN:
            if len(memo) >= MEMO:
                memo.clear()
            found = memo[text] = convert(text)
        return found

    remembered.__doc__, remembered.__name__ = convert.__doc__, convert.__name__
    return remembered


_DIGITS = "0123456789"


def _fractional(convert):
    """Remember ``convert``'s answers by the stamp without its fraction of a second, and add
    the fraction: lines of one second share the conversion, though their stamps all differ.
    The last second is kept apart too: a stamp in it is told by ``startswith``, without a key
    (named's flood: 1.9 -> 0.6 µs a stamp)."""
    whole_seconds = _memoised(convert)
    last = ["\0", 0.0]  # the last stamp's whole seconds with the dot after them, as epoch seconds

    def converted(text: str) -> float | None:
        dot = text.find(".")
        if dot < 0:
            return whole_seconds(text)
        fraction = text[dot:]
        if fraction[1:].isdigit() and fraction.isascii():  # the usual stamp: ASCII digits end it
            if not text.startswith(last[0]):  # not the second of the stamp before (a flood's next line)
                base = whole_seconds(text[:dot])
                if base is None:
                    return None
                last[:] = [text[:dot + 1], base]
            return last[1] + float(fraction)
        end = len(text) - len(text[dot + 1:].lstrip(_DIGITS))  # past the ASCII digits at C speed,
        while end < len(text) and text[end].isdigit():  # then any other digit ``\d`` took
            end += 1
        base = whole_seconds(text[:dot] + text[end:])
        return None if base is None else base + (float(text[dot:end]) if end > dot + 1 else 0.0)

    converted.__doc__, converted.__name__, converted.__wrapped__ = convert.__doc__, convert.__name__, convert
    return converted


@_fractional
def named_seconds(text: str) -> float | None:
    """Return BIND's file-channel stamp (``13-Aug-2013 12:40:37.123``) as epoch seconds."""
    date, clock = text.split()
    day, month, year = date.split("-")
    return _local_seconds(year, month, day, clock)


@_fractional
def apache_seconds(text: str) -> float | None:
    """Return Apache's error-log stamp (``Sun Nov 05 09:34:27.123456 2017``, local) as epoch seconds."""
    _weekday, month, day, clock, year = text.split()
    return _local_seconds(year, month, day, clock)


def _local_seconds(year: str, month: str, day: str, clock: str) -> float | None:
    """Return a local date and ``HH:MM:SS[.fraction]`` as epoch seconds; None for a date that does not exist."""
    whole, _, fraction = clock.partition(".")
    hour, minute, second = map(int, whole.split(":"))
    try:
        moment = datetime(int(year), MONTHS[month], int(day), hour, minute, second)
    except ValueError:
        return None
    return moment.timestamp() + (float("0." + fraction) if fraction else 0.0)


@_memoised
def clf_seconds(text: str) -> float | None:
    """Return a common-log-format stamp (``04/Jul/2019:08:07:22 +0200``) as epoch seconds."""
    day, month, rest = text.split("/", 2)
    year, hour, minute, rest = rest.split(":", 3)
    second, zone = rest.split()
    offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5])) * (-1 if zone[0] == "-" else 1)
    try:
        moment = datetime(int(year), MONTHS[month], int(day), int(hour), int(minute), int(second))
        return moment.replace(tzinfo=timezone(offset)).timestamp()
    except ValueError:  # 31/Feb, an offset of a day or more
        return None


def marked(result: Mapping[str, str | None], markers: Mapping[str, str]) -> str:
    """Return the rule of the first marker group (an empty named group that opens an
    alternative) the parse filled; a grammar built that way always fills one."""
    for marker, rule in markers.items():
        if result.get(marker) is not None:
            return rule
    raise ValueError("no rule marker in the parse")


# --- carrier prefixes -----------------------------------------------------------
# What rsyslog, journald or a daemon's own file writer put before the message.
# Possessive quantifiers (``\S*+``) where the next character can never be taken
# by the repeat (a space after ``\S``): the same language, no backtracking when
# an alternative fails late (every line without this carrier tries them all).

_TAG = r"(?P<tag>[^\s\[:]{1,64}+)(?:\[(?P<pid>\d{1,10}+)\])?: "
RFC5424 = pp.Regex(
    r"<\d{1,3}>1 (?P<iso_time>\S++) (?P<host>\S++) (?P<app>\S++) \S++ \S++ "
    r"(?:-|(?:\[(?:[^\]\\]|\\.)*\])+) ?"
).set_name("RFC 5424 header")
RFC3164 = pp.Regex(
    rf"(?:<\d{{1,3}}>)?(?P<syslog_time>{SYSLOG_TIME}) (?:(?P<host>[^\s\[]\S*+) )?{_TAG}"
).set_name("RFC 3164 header")
RSYSLOG_FILE = pp.Regex(rf"(?P<iso_time>\d{{4}}-\d\d-\d\dT\S++) (?P<host>[^\s\[]\S*+) {_TAG}").set_name(
    "rsyslog file header"
)
JOURNAL_SHORT = pp.Regex(r"(?P<host>[^\s\[]\S*+) (?P<tag>[^\s\[:]{1,64}+)\[(?P<pid>\d{1,10}+)\]: ").set_name(
    "journal short header"
)

# A guard before the four: every carrier starts with "<" (RFC 5424, RFC 3164 with
# its priority) or a month name and a space (RFC 3164), or else with a word, a
# space and a character that is neither a space nor "[" (the host of the last
# two), and then either that word is an ISO stamp (the rsyslog file) or the next
# word runs into "[" (the journal's ``host tag[pid]: ``). It accepts every line
# one of them accepts (the same language; tests compare with and without it) and
# turns away at once a line without a carrier, such as a daemon's own file
# ("2017-12-07T16:55:49.9 [26] info:", "10-Mar-2025 08:00:00.004 security:",
# "[Sun Nov 05 ...] [core:error]", "192.0.2.7 - - [04/Jul/2019:..."), which would
# otherwise try all four. Measured in instructions a line of the regex (callgrind,
# flood logs): against the first word test alone, named -11 %, Apache error -9 %,
# access -7 %, AMPS and Elgg unchanged; the first word test alone took a third
# off AMPS's regex.
_CARRIER_GUARD = pp.Regex(
    r"(?=<|(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"|(?=\S++ [^\s\[])(?:\d{4}-\d\d-\d\dT\S*+ [^\s\[]|(?!\d{4}-\d\d-\d\dT)[^\s\[]\S*+ [^\s\[:]{1,64}+\[))"
).set_name("carrier guard")

syslog_header = pp.Opt(_CARRIER_GUARD + (RFC5424 | RFC3164 | RSYSLOG_FILE | JOURNAL_SHORT)).set_name("syslog header")


# The daemons' own stamps, checked before the carriers' (iso_time, syslog_time).
_OWN_STAMPS = (("apache_time", apache_seconds), ("clf_time", clf_seconds), ("named_time", named_seconds))
STAMPS = tuple(name for name, _ in _OWN_STAMPS) + ("iso_time", "syslog_time")  # what event_seconds reads


def event_seconds(result: Mapping[str, str | None], now: float | None) -> float | None:
    """Return the log's own time from any stamp the parse found, else the carrier's, or None.

    ``now`` dates year-less stamps; None means the caller decides on the time it
    received the line (live), so no stamp is converted at all.
    """
    if now is None:
        return None
    for name, seconds in _OWN_STAMPS:
        stamp = result.get(name)
        if stamp:
            return seconds(stamp)
    return _carrier_seconds(result, now)


def event_reader(own: str | None = None) -> Callable[[Mapping[str, str | None], float | None], float | None]:
    """Return ``event_seconds`` for a grammar whose only daemon stamp is ``own``
    (``apache_time``, ``clf_time`` or ``named_time``; None: none, its stamps are
    ``iso_time`` or ``syslog_time``): the stamps it cannot hold are not looked for."""
    if own is None:
        def read(result: Mapping[str, str | None], now: float | None) -> float | None:
            return None if now is None else _carrier_seconds(result, now)
        return read
    seconds = dict(_OWN_STAMPS)[own]

    def read_own(result: Mapping[str, str | None], now: float | None) -> float | None:
        if now is None:
            return None
        stamp = result.get(own)
        return seconds(stamp) if stamp else _carrier_seconds(result, now)
    return read_own


def _carrier_seconds(result: Mapping[str, str | None], now: float) -> float | None:
    stamp = result.get("iso_time")
    if stamp:
        return iso_seconds(stamp)
    stamp = result.get("syslog_time")
    if stamp:
        return syslog_seconds(stamp, now)
    return None
