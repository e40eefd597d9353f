"""Every grammar stays fast and calm on long, adversarial and malformed lines.

A line is attacker-shaped text: 64 KiB of one grammar's own keywords and
delimiters (``[client ``, ``from ``, ``#53 ``...), behind the prefixes that get
the parse furthest, must be rejected or parsed in under 10 ms (best of 3 runs,
to ride out scheduler noise) and never raise. Long genuine lines must still
yield their true address; invalid UTF-8 (decoded with replacement), NUL bytes
and rsyslog's ``#011`` escapes likewise.
"""

from __future__ import annotations

import ipaddress
import itertools
import time
from datetime import datetime

import pytest

from omprog_ban.grammars import GRAMMARS

NOW = datetime.fromisoformat("2026-01-10T00:00:00+00:00").timestamp()
LIMIT = 0.010  # seconds per line
SIZE = 64 * 1024

# Per grammar: prefixes that reach deep into the grammar, chunks to repeat, and
# suffixes that make the far end of the line look like a real failure.
SHAPES = {
    "amps": (
        ["", "07-0013 ", "07-0013 client[", "Dec  7 16:55:49 host amps[9]: 07-0013 client[x]("],
        ["07-0013 client[", "](192.0.2.1:1) disconnected: ", "[", "(", ")", "](", ":1) ", "disconnected: auth."],
        ["", "](192.0.2.1:1) disconnected: auth.", "](192.0.2.1:1) disconnected: auth. x"],
    ),
    "apache-error": (
        [
            "",
            "[Sun Nov 05 09:34:27 2017] [error] [client 192.0.2.1] ",
            "[Sun Nov 05 09:34:27.123456 2017] [core:error] [pid 1] [client 192.0.2.1:1] AH00128: ",
            "[Sun Nov 05 09:34:27 2017] [error] [client 192.0.2.1] user ",
            "[Sun Nov 05 09:34:27 2017] [error] [client 192.0.2.1] script '",
            "[Sun Nov 05 09:34:27.123456 2017] [core:error] [pid 1] ",
        ],
        [
            "[client ",
            "[client 198.51.100.9] ",
            "[client 198.51.100.9:1] AH00128: ",
            "File does not exist: ",
            ", referer: ",
            "user ",
            " not found",
            ': authentication failure for "',
            '": ',
            "' not found or unable to stat",
            "(13)Permission denied: ",
            "[",
            ":",
        ],
        ["", " File does not exist: /x", "' not found or unable to stat", " not found: /x, referer: y"],
    ),
    "apache-access": (
        [
            "",
            "192.0.2.1 - ",
            "192.0.2.1 - - [04/Jul/2019:08:07:22 +0200] \"",
            'example.org:443 192.0.2.1 - - [04/Jul/2019:08:07:22 +0200] "GET / HTTP/1.1" 200 1 "',
        ],
        [
            '] "',
            '"',
            "\\",
            '\\"',
            ' [04/Jul/2019:08:07:22 +0200] "',
            "192.0.2.1 - ",
            '" 200 1 "',
            "a:1 ",
            "1:",
        ],
        ["", ' [04/Jul/2019:08:07:22 +0200] "GET / HTTP/1.1" 200 1 "-" "-"', '" 200 1 "-" "-"'],
    ),
    "elgg": (
        ["", "Authentication failure for ", "Mar 22 18:24:43 web elgg(x)[1]: Authentication failure for "],
        ["from ", "from 192.0.2.1 ", " from 1", "Authentication failure for ", "f", ":"],
        ["", " from 192.0.2.4", " from 999.1.1.1", " from 192.0.2.4 x"],
    ),
    "named": (
        [
            "",
            "client ",
            "client 192.0.2.1#53 (",
            "client @0x7f1234567890 192.0.2.1#53 (example.com): query '",
            "13-Aug-2013 12:40:37.123 security: info: client 192.0.2.1#53: rate limit drop response to "
            "192.0.2.0/24 for ",
            "client 192.0.2.1#53/key ",
        ],
        [
            "#53 ",
            "client ",
            "client 192.0.2.1#53 ",
            "(",
            "\\",
            "\\(",
            "' denied",
            "/A/IN' denied ",
            "/",
            "rate limit drop response to 192.0.2.0/24 for ",
            ": view ",
            "'",
        ],
        ["", "/A/IN' denied", "': not authoritative", "  (00800c00)", "/A/IN' denied (x"],
    ),
}


def repeat(chunk: str, size: int = SIZE) -> str:
    """Return ``chunk`` repeated to exactly ``size`` characters."""
    return (chunk * (size // len(chunk) + 1))[:size]


def adversarial_lines(name: str) -> list[str]:
    prefixes, chunks, suffixes = SHAPES[name]
    lines = [p + repeat(c) + s for p, c, s in itertools.product(prefixes, chunks, suffixes)]
    lines += [repeat(c) for c in chunks]
    return lines


def best_of_three(grammar, line: str) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        grammar.parse(line, NOW)  # must not raise
        best = min(best, time.perf_counter() - start)
    return best


def test_every_grammar_has_shapes():
    assert set(SHAPES) == set(GRAMMARS)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_adversarial_lines_are_fast(name):
    grammar = GRAMMARS[name]
    slow = []
    for line in adversarial_lines(name):
        seconds = best_of_three(grammar, line)
        if seconds >= LIMIT:
            slow.append((round(seconds * 1000, 1), line[:80]))
    assert not slow, f"lines over {LIMIT * 1000:.0f} ms (ms, start): {slow}"


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_adversarial_lines_never_raise_on_the_slow_path(name):
    grammar = GRAMMARS[name]
    for line in adversarial_lines(name)[:40]:
        grammar.match(line, slow=True)


# Genuine failures with one very long attacker-chosen field: the true address still comes out.
LONG = {
    "amps": ("07-0013 client[{}](192.0.2.7:1) disconnected: auth.", "192.0.2.7"),
    "apache-error": (
        "[Sun Nov 05 09:34:27.123456 2017] [core:error] [pid 1] [client 192.0.2.8:1] AH00128: "
        "File does not exist: /var/www/{}, referer: http://example.org/",
        "192.0.2.8",
    ),
    "apache-access": (
        '192.0.2.9 - - [04/Jul/2019:08:07:22 +0200] "GET /{} HTTP/1.1" 414 1 "-" "-"',
        "192.0.2.9",
    ),
    "elgg": ("Authentication failure for {} from 192.0.2.10", "192.0.2.10"),
    "named": ("client @0x7f1234567890 192.0.2.11#53 (x): query '{}/A/IN' denied", "192.0.2.11"),
}
FILLERS = {
    "8 KiB of letters": "a" * 8192,
    "64 KiB of fake clients": repeat("[client 198.51.100.9:1] from 198.51.100.9 #53 "),
    "invalid UTF-8": (b"\xff\xfe\xc3(\xed\xa0\x80 198.51.100.9 " * 8).decode("utf-8", errors="replace"),
    "NUL bytes": "a\x00b\x00[client 198.51.100.9]\x00",
    "rsyslog escapes": "a#011b#012c#015 from 198.51.100.9#011",
}


def test_every_grammar_has_a_long_line():
    assert set(LONG) == set(GRAMMARS)


@pytest.mark.parametrize("name", sorted(LONG))
@pytest.mark.parametrize("filler", sorted(FILLERS))
def test_long_and_malformed_fields_keep_the_true_address(name, filler):
    template, host = LONG[name]
    line = template.format(FILLERS[filler])
    grammar = GRAMMARS[name]
    assert best_of_three(grammar, line) < LIMIT
    failure = grammar.parse(line, NOW)
    assert failure is not None and failure.address == ipaddress.ip_address(host)
    assert grammar.convert(grammar.match(line, slow=True), NOW) == failure  # pyparsing agrees


@pytest.mark.parametrize("name", sorted(GRAMMARS))
@pytest.mark.parametrize("junk", ["\x00", "\ufffd", "#011", "\t", " " * 5000, "\x00" * 70000])
def test_junk_alone_or_around_a_keyword_is_no_failure(name, junk):
    grammar = GRAMMARS[name]
    for line in (junk, junk + grammar.keywords[0] + junk, grammar.keywords[0] + junk):
        assert best_of_three(grammar, line) < LIMIT
        assert grammar.parse(line, NOW) is None
