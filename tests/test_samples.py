"""Every grammar against its annotated sample file; every rule must have a sample."""

from __future__ import annotations

import ipaddress
from datetime import datetime

import pytest

from omprog_ban.grammars import GRAMMARS
from tests.samples import SAMPLES, read

# Year-less syslog stamps take the year of "now": 2026-01-10 puts Dec 7 in 2025.
NOW = datetime.fromisoformat("2026-01-10T00:00:00+00:00").timestamp()

CASES = [sample for name in sorted(GRAMMARS) for sample in read(SAMPLES / f"{name}.txt")]


@pytest.mark.parametrize("sample", CASES, ids=lambda s: f"{s.path.stem}:{s.number}")
def test_sample(sample):
    failure = GRAMMARS[sample.path.stem].parse(sample.text, NOW)
    if sample.expect is None:
        assert failure is None, f"must not match, got {failure}"
        return
    assert failure is not None, "must match"
    assert failure.rule == sample.expect["rule"]
    assert failure.address == ipaddress.ip_address(sample.expect["host"])
    if "time" in sample.expect:
        want = sample.expect["time"]
        got = failure.time
        if want is None:
            assert got is None
        else:
            assert got == pytest.approx(datetime.fromisoformat(want).timestamp(), abs=1e-3)
    for name, value in sample.expect.get("fields", {}).items():
        assert failure.fields.get(name) == value, name


@pytest.mark.parametrize("name", sorted(GRAMMARS))
def test_every_rule_has_a_sample(name):
    grammar = GRAMMARS[name]
    covered = {s.expect["rule"] for s in read(SAMPLES / f"{name}.txt") if s.expect}
    assert covered == set(grammar.rules)


@pytest.mark.parametrize("name", sorted(GRAMMARS))
def test_every_grammar_has_injection_cases(name):
    text = (SAMPLES / f"{name}.txt").read_text()
    assert "Injection" in text and "none" in text
