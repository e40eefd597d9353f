"""The values between stages: immutable, equal by value, built with the defaults they declare."""

import ipaddress

import pytest

from omprog_ban.model import Ban, Failure, LogLine

ADDRESS = ipaddress.ip_address("192.0.2.7")


def test_values_are_frozen():
    for value, name in ((LogLine("x", 1.0), "received"), (Failure("amps", "auth", ADDRESS), "address"),
                        (Ban("amps", ADDRESS, 120, 1.0), "bantime")):
        with pytest.raises(AttributeError):
            setattr(value, name, 5.0)
        with pytest.raises(AttributeError):  # no attribute beside the fields either
            setattr(value, "extra", 5.0)


def test_defaults_keywords_and_equality():
    line = LogLine(text="x", received=1.0)
    assert (line.key, dict(line.meta)) == (None, {})
    assert line == LogLine("x", 1.0)
    assert LogLine("x", 1.0, "k") != line
    failure = Failure("amps", "auth", ADDRESS, fields={"client": "c"})
    assert (failure.time, failure.fields["client"]) == (None, "c")
    ban = Ban("amps", ADDRESS, 120, 1.0)
    assert (ban.failures, ban.reason, ban.until) == (0, "", 121.0)
    assert ban == Ban("amps", ADDRESS, 120, 1.0) and hash(ban) == hash(Ban("amps", ADDRESS, 120, 1.0))


def test_replace_and_missing_arguments():
    ban = Ban("amps", ADDRESS, 120, 1.0)._replace(bantime=240)
    assert ban.until == 241.0
    with pytest.raises(TypeError):
        LogLine("x")
    with pytest.raises(TypeError):
        LogLine("x", 1.0, nonsense=1)


def test_an_address_text_is_its_canonical_form():
    from omprog_ban.model import text

    for written in ("192.0.2.7", "0.0.0.1", "255.255.255.255", "10.20.30.40", "2001:db8::1", "::1.2.3.4", "::ffff:0:1"):
        address = ipaddress.ip_address(written)
        assert text(address) == str(address)
        assert text(address) == text(address)  # from the memo, the same


@pytest.mark.parametrize("written", ["2001:db8::1", "2001:0:0:1::1", "2001:db8:0:1:1:1:1:1", "1:0:0:2:0:0:0:3",
                                     "::2:3:4:5:6:7:8", "1::", "::1", "::", "::1.2.3.4", "::ffff:1.2.3.4",
                                     "::fffe:1.2.3.4", "0:0:0:0:1:ffff:102:304", "fe80::1:0:0:0", "ABCD:EF::1"])
def test_an_ipv6_text_is_what_ipaddress_writes(written):
    from omprog_ban.model import text

    address = ipaddress.IPv6Address(written)
    assert text(address) == str(address)


def test_random_ipv6_texts_are_what_ipaddress_writes():
    """The C formatter writes IPv6 for the memo; zero groups in every pattern must come out as ``str`` has them."""
    import random

    from omprog_ban.model import text

    chance = random.Random(6)
    for _ in range(20000):
        groups = [chance.choice((0, 0, 0, 1, 0xFFFF, chance.getrandbits(16))) for _ in range(8)]
        address = ipaddress.IPv6Address(int("".join(f"{group:04x}" for group in groups), 16))
        assert text(address) == str(address)
