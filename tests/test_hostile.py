"""Hostile input: property-based fuzzing of every grammar and of the stdin protocol."""

from __future__ import annotations

import ipaddress
import os
import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omprog_ban import config
from omprog_ban.grammars import GRAMMARS
from omprog_ban.ledger import Ledger
from omprog_ban.dryrun import DryRun
from omprog_ban.framing import frame
from omprog_ban.omprog import serve
from omprog_ban.pipeline import Pipeline
from tests.samples import SAMPLES, read

SAMPLE_LINES = [sample.text for name in GRAMMARS for sample in read(SAMPLES / f"{name}.txt")]
LINE_TEXT = st.one_of(
    st.text(max_size=400),
    st.binary(max_size=400).map(lambda b: b.decode("utf-8", "replace")),
    st.builds(lambda base, cut, junk: base[:cut] + junk + base[cut:], st.sampled_from(SAMPLE_LINES),
              st.integers(0, 300), st.text(alphabet=" []():#.'\"/\\-0123456789abcdef\x00\t", max_size=40)),
)


@pytest.mark.parametrize("name", sorted(GRAMMARS))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=LINE_TEXT)
def test_grammars_never_raise_and_only_yield_addresses_written_in_the_line(name, text):
    failure = GRAMMARS[name].parse(text, 1.7e9)
    if failure is not None:
        assert failure.rule in GRAMMARS[name].rules
        assert failure.address in _written_addresses(text)


def _written_addresses(text: str) -> set:
    """Every address spelled somewhere in ``text``, with or without a trailing :port."""
    found = set()
    for token in re.findall(r"[0-9A-Fa-f:.]{2,}", text):
        for candidate in (token, token.rsplit(":", 1)[0], token.rstrip(".")):
            try:
                found.add(ipaddress.ip_address(candidate))
            except ValueError:
                pass
    return found


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(messages=st.lists(st.one_of(st.binary(max_size=300).filter(lambda b: b"\n" not in b),
                                   st.sampled_from([b"", b"{}", b"[]", b"null", b'{"msg": 1}', b'{"msg": "x"', b"\x00" * 50,
                                                    b" " * 100, b"\t\t\t", b'"just a string"', b'{"msg": "07-0013 client[" }'])),
                         max_size=25))
def test_protocol_answers_every_message_exactly_once(tmp_path_factory, messages):
    state = tmp_path_factory.mktemp("state")
    pipeline = Pipeline(config.load(None), DryRun(open(os.devnull, "w")), Ledger(state / "ledger"))
    reader_fd, writer_fd = os.pipe()
    out_read, out_write = os.pipe()
    os.write(writer_fd, b"".join(m + b"\n" for m in messages))
    os.close(writer_fd)
    assert serve(pipeline.handle, pipeline.flush, lambda now: None, reader_fd, out_write) == 0
    os.close(out_write)
    replies = b""
    while chunk := os.read(out_read, 1 << 16):
        replies += chunk
    os.close(reader_fd)
    os.close(out_read)
    assert replies == b"".join(_expected(messages))


def _expected(messages):
    """One answer per line: OK, or DEFER_COMMIT inside a transaction (a line may be a mark)."""
    yield b"OK\n"  # start-up
    in_batch = False
    for message in messages:
        if message in (b"BEGIN TRANSACTION", b"COMMIT TRANSACTION"):
            in_batch = message == b"BEGIN TRANSACTION"
            yield b"OK\n"
        else:
            yield b"DEFER_COMMIT\n" if in_batch else b"OK\n"


@pytest.mark.parametrize("size", [1 << 20, 3 << 20])
def test_lines_of_megabytes_get_one_reply_each(tmp_path, size):
    pipeline = Pipeline(config.load(None), DryRun(open(os.devnull, "w")), Ledger(tmp_path / "ledger"))
    reader_fd, writer_fd = os.pipe()
    out_read, out_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the writer: a huge line, then a normal one
        os.close(reader_fd)
        os.write(writer_fd, b"07-0013 client[" + b"](" * (size // 2) + b"\nhello\n")
        os._exit(0)
    os.close(writer_fd)
    started = time.monotonic()
    assert serve(pipeline.handle, pipeline.flush, lambda now: None, reader_fd, out_write) == 0
    os.waitpid(pid, 0)
    os.close(out_write)
    assert os.read(out_read, 100) == b"OK\nOK\nOK\n"
    assert time.monotonic() - started < 5


def test_frame_takes_json_objects_only():
    assert frame(b'{"msg": " hello", "uuid": "U1"}\n', 1.0).key == "U1"
    assert frame(b'{"msg": " hello", "uuid": "U1"}\n', 1.0).text == "hello"
    assert frame(b'["msg"]\n', 1.0).text == '["msg"]'
    assert frame(b'{"msg": 5}\n', 1.0).text == '{"msg": 5}'
    assert frame(b"\xff\xfe\n", 1.0).text == "\ufffd\ufffd"


UUID = "0123456789ABCDEF0123456789abcdef"


def test_frame_takes_the_shipped_templates_fields():
    line = frame(f"{UUID}\tampsd\thost-1\t2026-12-01T07:00:00+00:00\t 07-0013 client[a](192.0.2.1:1)\r\n".encode(), 1.0)
    assert line.text == "07-0013 client[a](192.0.2.1:1)"  # one leading space dropped, as for %msg%
    assert line.key == UUID
    assert line.meta == {"uuid": UUID, "programname": "ampsd", "hostname": "host-1",
                         "timereported": "2026-12-01T07:00:00+00:00"}
    # Each field is a JSON string's body: escapes are decoded, field by field.
    escaped = frame(f'{UUID}\tp\\u0041\th\tt\tsay \\"hi\\" \\\\ a\\tb \\u00e9\n'.encode(), 1.0)
    assert (escaped.text, escaped.meta["programname"]) == ('say "hi" \\ a\tb \u00e9', "pA")
    # What rsyslog never writes is kept as written, and the key still counts.
    assert frame(f"{UUID}\tp\th\tt\tbad \\x escape\n".encode(), 1.0).text == "bad \\x escape"
    assert frame(f'{UUID}\tp\th\tt\ta bare " quote \\n\n'.encode(), 1.0).text == 'a bare " quote \\n'
    assert frame(f"{UUID}\tp\th\tt\tmore\ttabs\there\n".encode(), 1.0).text == "more\ttabs\there"


@pytest.mark.parametrize("raw", [
    "0123456789ABCDEF0123456789ABCDE\tp\th\tt\tmsg",  # 31 digits
    "0123456789ABCDEF0123456789ABCDEG\tp\th\tt\tmsg",  # not hex
    f"{UUID}\tp\th\tonly three tabs",
    f" {UUID}\tp\th\tt\tmsg",
    f"{UUID}0\tp\th\tt\tmsg",
])
def test_a_line_not_of_the_shipped_template_is_plain_text(raw):
    line = frame(raw.encode() + b"\n", 1.0)
    assert (line.text, line.key, line.meta) == (raw.removeprefix(" "), None, {})
