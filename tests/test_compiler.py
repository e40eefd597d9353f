"""The compiled fast path means exactly what the pyparsing grammar means."""

from __future__ import annotations

import itertools

import pyparsing as pp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omprog_ban.grammars import GRAMMARS, tokens
from omprog_ban.grammars.compiler import compile_element
from tests.samples import SAMPLES, read

LINES = [(name, sample.text) for name in sorted(GRAMMARS) for sample in read(SAMPLES / f"{name}.txt")]


def test_every_grammar_compiles():
    assert {name: GRAMMARS[name].compiled is not None for name in GRAMMARS} == {name: True for name in GRAMMARS}


@pytest.mark.parametrize("name, text", LINES, ids=[f"{n}:{i}" for i, (n, _) in enumerate(LINES)])
def test_fast_and_slow_paths_agree_on_samples(name, text):
    grammar = GRAMMARS[name]
    _agree(grammar, text)


@pytest.mark.parametrize("name", sorted(GRAMMARS))
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_fast_and_slow_paths_agree_on_mutations(name, data):
    grammar = GRAMMARS[name]
    base = data.draw(st.sampled_from([text for n, text in LINES if n == name]))
    cut = data.draw(st.integers(0, len(base)))
    insert = data.draw(st.text(alphabet=st.sampled_from(list(" []():#.'\"/-0123456789abcdefxyz\t")), max_size=12))
    mutated = base[:cut] + insert + base[cut + data.draw(st.integers(0, 6)):]
    _agree(grammar, mutated)


def _agree(grammar, text):
    """Both paths parse ``text`` alike (the compiled one captures what ``convert`` reads) and convert it alike."""
    fast, slow = grammar.match(text), grammar.match(text, slow=True)
    kept = set(grammar.reads) | set(tokens.STAMPS)
    assert _present(fast) == _present(slow, kept)
    if fast is not None:
        assert grammar.convert(fast, 1.7e9) == grammar.convert(slow, 1.7e9)
    live = grammar.matcher(stamps=False)(text)  # live: no stamp captured, none converted
    assert _present(live) == _present(slow, set(grammar.reads))
    if live is not None:
        assert grammar.convert(live, None) == grammar.convert(slow, None)


def _present(fields, kept=None):
    if fields is None:
        return None
    return {name: value for name, value in fields.items()
            if value is not None and "__" not in name and (kept is None or name in kept)}


def test_only_what_convert_reads_is_captured():
    amps = GRAMMARS["amps"]
    line = "2017-12-07T16:55:49.9395590-08:00 [26] info: 07-0013 client[x](192.0.2.7:5) disconnected: auth."
    assert set(amps.compiled.regex.groupindex) <= {*amps.reads, *tokens.STAMPS} | {f"iso_time__{n}" for n in range(9)}
    assert {"thread", "level"} <= set(amps.match(line, slow=True)) and "thread" not in amps.match(line)
    assert compile_element(pp.Regex(r"(?P<a>x)(?P<b>y)"), frozenset({"b"})).match("xy") == {"b": "y"}


@pytest.mark.parametrize(
    "element, text, expected",
    [
        # MatchFirst commits to its first matching alternative, as pyparsing does
        (pp.Opt(pp.Literal("ab") | pp.Literal("a")) + pp.Literal("b"), "ab", None),
        (pp.Opt(pp.Literal("a") | pp.Literal("ab")) + pp.Literal("b"), "ab", {}),
        # a Regex token is matched once, never re-entered
        (pp.Regex(r"(?P<x>a+)") + pp.Literal("a"), "aaa", None),
        # whitespace is skipped before each token
        (pp.Literal("a") + pp.Regex(r"(?P<y>b)"), "a   b  ", {"y": "b"}),
        # the same group name in two alternatives comes back under its own name
        (pp.Regex(r"(?P<h>x)") | pp.Regex(r"(?P<h>y)"), "y", {"h": "y"}),
    ],
)
def test_peg_semantics(element, text, expected):
    compiled = compile_element(element)
    assert compiled is not None
    found = compiled.match(text)
    assert _present(found) == expected
    try:
        element.parse_string(text, parse_all=True)
        slow = True
    except pp.ParseException:
        slow = False
    assert slow == (expected is not None)


def test_unsupported_features_fall_back_to_pyparsing():
    assert compile_element(pp.Regex("a").add_parse_action(lambda t: t)) is None
    assert compile_element(pp.Or([pp.Literal("a"), pp.Literal("ab")])) is None


UNGUARDED = pp.Opt(tokens.RFC5424 | tokens.RFC3164 | tokens.RSYSLOG_FILE | tokens.JOURNAL_SHORT)
CARRIERS = [
    "<13>1 2017-12-07T16:55:49.939Z host amps 99 - - ",
    "<13>Dec  7 16:55:49 host amps[99]: ",
    "Dec  7 16:55:49 host amps[99]: ",
    "Dec 17 16:55:49 amps: ",
    "2017-12-07T16:55:49.939559+01:00 host amps[99]: ",
    "host named[812]: ",
    "2017-12-07T16:55:49.9395590-08:00 [26] info: ",
    "[Sun Nov 05 09:34:27.123456 2017] [core:error] ",
    "10-Mar-2025 08:00:00.004 security: ",
]


def _header_end(element, text):
    """Where the next token starts (tokens skip leading whitespace) after ``element``."""
    element.parse_with_tabs()
    end = element.try_parse(text, 0)
    return len(text) - len(text[end:].lstrip(" \t\r\n"))


WORDS = ["<13>1", "<13>", "Dec", " 7", "16:55:49", "2017-12-07T16:55:49.939Z", "host", ":host", "[host", "h[o",
         "amps[99]:", "amps:", ":", "-", "[26]", "[x=1]", "info:", "\t", "10-Mar-2025", "08:00:00.004", "2017-12-07T",
         "192.0.2.7", "[Sun", "a[b]:"]


@pytest.mark.parametrize("first", WORDS)
def test_the_carrier_guard_turns_away_no_carrier(first):
    """The guard before the four carrier headers only saves time: with or without
    it, the header takes the same text from any line (the rest parses alike)."""
    for rest in itertools.product(WORDS, repeat=2):
        for space in (" ", "  "):
            text = space.join((first, *rest)) + " 07-0013 client"
            assert _header_end(tokens.syslog_header, text) == _header_end(UNGUARDED, text), text


@settings(max_examples=300, deadline=None)
@given(head=st.sampled_from(CARRIERS + [text for _, text in LINES]), cut=st.integers(0, 60),
       insert=st.text(alphabet=st.sampled_from(list(" \t[]<>:0123456789-TZDecJanhost.")), max_size=8))
def test_the_carrier_guard_on_mutated_lines(head, cut, insert):
    """As above, on carriers and sample lines with text put in."""
    text = head[:cut] + insert + head[cut:]
    assert _header_end(tokens.syslog_header, text) == _header_end(UNGUARDED, text)
