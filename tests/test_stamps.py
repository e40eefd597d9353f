"""Year-less syslog stamps: the year comes from "now", and the memo never carries a year over."""

from datetime import datetime, timedelta, timezone

import pytest

from omprog_ban.grammars import tokens


def local(*parts: int) -> float:
    return datetime(*parts).timestamp()


# (stamp, now, expected): in order, so the memo is warm with another year's answer for later rows.
CASES = [
    ("Dec 31 23:59:00", local(2025, 12, 31, 23, 59, 30), local(2025, 12, 31, 23, 59)),
    ("Dec 31 23:59:00", local(2026, 1, 1, 0, 0, 10), local(2025, 12, 31, 23, 59)),  # read in January
    ("Jan  1 00:00:05", local(2026, 1, 1, 0, 0, 10), local(2026, 1, 1, 0, 0, 5)),
    ("Dec 31 23:59:00", local(2026, 12, 31, 23, 59, 59), local(2026, 12, 31, 23, 59)),  # a year on
    ("Jan  2 08:00:00", local(2026, 1, 1, 9, 0), local(2026, 1, 2, 8, 0)),  # under a day ahead: this year
    ("Jan  3 10:00:00", local(2026, 1, 1, 9, 0), local(2025, 1, 3, 10, 0)),  # more than a day ahead: last year
    ("Feb 29 12:00:00", local(2024, 3, 1), local(2024, 2, 29, 12)),
    ("Feb 29 12:00:00", local(2025, 3, 1), local(2024, 2, 29, 12)),  # 2025 has none: the year before
    ("Feb 29 12:00:00", local(2026, 3, 1), None),  # neither 2026 nor 2025 has one
    ("Feb 30 12:00:00", local(2026, 3, 1), None),
]


def test_year_is_taken_from_now_every_time():
    for stamp, now, expected in CASES:
        assert tokens.syslog_seconds(stamp, now) == expected, (stamp, datetime.fromtimestamp(now))


@pytest.mark.parametrize("stamp, now, expected", CASES)
def test_each_case_cold(stamp, now, expected):
    tokens._SYSLOG.clear()
    tokens._YEAR[:] = [0.0, 0.0, 0]
    assert tokens.syslog_seconds(stamp, now) == expected



def instant(zone: float | None, fraction: float = 0.0) -> float:
    """2017-12-07 16:55:49 (+ ``fraction``) at UTC offset ``zone`` hours, local time when None."""
    tz = None if zone is None else timezone(timedelta(hours=zone))
    return datetime(2017, 12, 7, 16, 55, 49, tzinfo=tz).timestamp() + fraction


ISO = [
    ("2017-12-07T16:55:49.9395590-08:00", instant(-8, 0.939559)),
    ("2017-12-07T16:55:49.9395590-08:00", instant(-8, 0.939559)),  # the memo warm: only the fraction is new
    ("2017-12-07T16:55:49.1-08:00", instant(-8, 0.1)),
    ("2017-12-07T16:55:49-08:00", instant(-8)),
    ("2017-12-07T16:55:49.25Z", instant(0, 0.25)),
    ("2017-12-07T16:55:49.\u0663Z", None),  # a digit, but not an ASCII one: no stamp, warm or cold
    ("2017-12-07T16:55:49.5+00:00", instant(0, 0.5)),  # the same instant as Z, written otherwise
    ("2017-12-07T16:55:49.5Z", instant(0, 0.5)),
    ("2017-12-07T16:55:49Z", instant(0)),
    ("2017-12-07 16:55:49.5+0100", instant(1, 0.5)),
    ("2017-12-07T16:55:49.", instant(None)),  # a dot without digits: the whole second
    ("2017-12-07T16:55:49", instant(None)),  # no zone: local time
    ("2017-12-07T16:55:49.123456", instant(None, 0.123456)),
    ("2017-02-30T16:55:49.5Z", None),  # no such day
    ("2017-12-07T16:55:49.5+99:99", None),  # no such offset
]


@pytest.mark.parametrize("warm", [False, True])
def test_iso_stamps_are_the_instant_they_name(warm):
    for stamp, expected in ISO:
        if not warm:
            tokens._STAMPS.clear()
        assert tokens.iso_seconds(stamp) == (None if expected is None else pytest.approx(expected, abs=1e-6)), stamp


def test_each_grammar_reads_its_stamps_as_event_seconds_does():
    """A grammar's own reader skips the daemons' stamps it cannot hold; on every sample,
    parsed either way, it gives what the reader of all stamps gives."""
    import importlib

    from omprog_ban.grammars import GRAMMARS
    from tests.samples import SAMPLES, read

    for name, grammar in GRAMMARS.items():
        module = importlib.import_module(f"omprog_ban.grammars.{name.replace('-', '_')}")
        for sample in read(SAMPLES / f"{name}.txt"):
            for fields in (grammar.match(sample.text), grammar.match(sample.text, slow=True)):
                if fields is not None:
                    for now in (None, local(2026, 3, 1)):
                        assert module._event_seconds(fields, now) == tokens.event_seconds(fields, now), (name, sample.text)


NAMED = [  # in order: each row after the one before it, as a flood's lines come
    ("10-Mar-2025 08:00:00.004", local(2025, 3, 10, 8) + 0.004),
    ("10-Mar-2025 08:00:00.5", local(2025, 3, 10, 8) + 0.5),  # the same second: told by its head
    ("10-Mar-2025 08:00:01.250", local(2025, 3, 10, 8, 0, 1) + 0.25),
    ("10-Mar-2025 08:00:00.004", local(2025, 3, 10, 8) + 0.004),  # back a second
    ("10-Mar-2025 08:00:00", local(2025, 3, 10, 8)),
    ("10-Mar-2025 08:00:00.", local(2025, 3, 10, 8)),  # a dot without digits: the whole second
    ("10-Mar-2025 08:00:00.\u0663", local(2025, 3, 10, 8) + 0.3),  # a digit ``\d`` takes, not an ASCII one
    ("31-Feb-2025 08:00:00.004", None),  # no such day
    ("31-Feb-2025 08:00:00.005", None),  # ... in the same second either
    ("10-Mar-2025 08:00:00.5", local(2025, 3, 10, 8) + 0.5),
]


@pytest.mark.parametrize("warm", [False, True])
def test_named_stamps_are_the_instant_they_name_in_and_out_of_the_last_second(warm):
    convert = tokens._fractional(tokens.named_seconds.__wrapped__)  # its own memo and last second
    for stamp, expected in NAMED:
        if not warm:
            convert = tokens._fractional(tokens.named_seconds.__wrapped__)
        assert convert(stamp) == (None if expected is None else pytest.approx(expected, abs=1e-6)), stamp
        assert tokens.named_seconds(stamp) == convert(stamp)  # the module's, warm with every test before
