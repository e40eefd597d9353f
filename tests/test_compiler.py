"""The compiled fast path means exactly what the pyparsing grammar means."""

from __future__ import annotations

import pyparsing as pp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omprog_ban.grammars import GRAMMARS
from omprog_ban.grammars.compiler import compile_element
from tests.samples import SAMPLES, read

LINES = [(name, sample.text) for name in sorted(GRAMMARS) for sample in read(SAMPLES / f"{name}.txt")]


def test_every_grammar_compiles():
    assert {name: GRAMMARS[name].compiled is not None for name in GRAMMARS} == {name: True for name in GRAMMARS}


@pytest.mark.parametrize("name, text", LINES, ids=[f"{n}:{i}" for i, (n, _) in enumerate(LINES)])
def test_fast_and_slow_paths_agree_on_samples(name, text):
    grammar = GRAMMARS[name]
    assert _present(grammar.match(text)) == _present(grammar.match(text, slow=True))


@pytest.mark.parametrize("name", sorted(GRAMMARS))
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_fast_and_slow_paths_agree_on_mutations(name, data):
    grammar = GRAMMARS[name]
    base = data.draw(st.sampled_from([text for n, text in LINES if n == name]))
    cut = data.draw(st.integers(0, len(base)))
    insert = data.draw(st.text(alphabet=st.sampled_from(list(" []():#.'\"/-0123456789abcdefxyz\t")), max_size=12))
    mutated = base[:cut] + insert + base[cut + data.draw(st.integers(0, 6)):]
    assert _present(grammar.match(mutated)) == _present(grammar.match(mutated, slow=True))


def _present(fields):
    return None if fields is None else {name: value for name, value in fields.items() if value is not None and "__" not in name}


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
