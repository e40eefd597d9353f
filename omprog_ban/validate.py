"""Checkers for config values: each returns the typed value or raises ConfigError(path, problem, fix)."""

from __future__ import annotations

import difflib
import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Iterable

from omprog_ban.model import Network

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
DURATION_FIX = 'write an integer number of seconds or a string like "90s", "10m", "2h", "1d", "1w"'


class ConfigError(Exception):
    """A config value that cannot be used: which key, what is wrong, how to fix it."""

    def __init__(self, path: str, problem: str, fix: str) -> None:
        super().__init__(f"{path or 'config'}: {problem}; fix: {fix}")
        self.path, self.problem, self.fix = path, problem, fix


@dataclass(frozen=True)
class FieldFilter:
    """A test on one grammar field: a set of exact values, or a regex searched in the field."""

    name: str
    values: frozenset[str] | None = None
    pattern: re.Pattern[str] | None = None

    def holds(self, fields: dict[str, str]) -> bool:
        """Return True when the field is present and matches."""
        value = fields.get(self.name)
        if value is None:
            return False
        if self.values is not None:
            return value in self.values
        return self.pattern.search(value) is not None


def known_keys(data: dict[str, Any], allowed: Iterable[str], path: str) -> None:
    """Raise for the first key of ``data`` not in ``allowed``, suggesting the closest one."""
    allowed = sorted(allowed)
    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"use one of: {', '.join(allowed)}"
            raise ConfigError(_join(path, key), "unknown key", f"remove it or {hint}" if close else hint)


def table(data: dict[str, Any], key: str, path: str) -> dict[str, Any]:
    """Return ``data[key]`` as a table (empty when missing)."""
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(_join(path, key), f"is a {type(value).__name__}, not a table", f"write it as [{_join(path, key)}] or {{ ... }}")
    return value


def identifier(value: Any, path: str, what: str = "name") -> str:
    """Return ``value`` if it is a safe nft identifier."""
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise ConfigError(path, f"{value!r} is not a valid {what}", "use a letter then letters, digits, '_' or '-' (at most 64)")
    return value


def string(value: Any, path: str) -> str:
    """Return ``value`` if it is a non-empty string."""
    if not isinstance(value, str) or not value:
        raise ConfigError(path, f"{value!r} is not a string", "write it in quotes")
    return value


def boolean(value: Any, path: str) -> bool:
    """Return ``value`` if it is a TOML boolean."""
    if not isinstance(value, bool):
        raise ConfigError(path, f"{value!r} is not a boolean", "write true or false")
    return value


def integer(value: Any, path: str, low: int, high: int) -> int:
    """Return ``value`` if it is an integer in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(path, f"{value!r} is not an integer from {low} to {high}", f"write a whole number from {low} to {high}")
    return value


def number(value: Any, path: str, low: float, high: float) -> float:
    """Return ``value`` if it is a number in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ConfigError(path, f"{value!r} is not a number from {low:g} to {high:g}", f"write a number from {low:g} to {high:g}")
    return float(value)


def duration(value: Any, path: str) -> float:
    """Return ``value`` (seconds, or "90s", "10m", "2h", "1d", "1w") as positive seconds."""
    if isinstance(value, bool):
        raise ConfigError(path, f"{value!r} is not a duration", DURATION_FIX)
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        found = _DURATION.match(value) if isinstance(value, str) else None
        if not found:
            raise ConfigError(path, f"{value!r} is not a duration", DURATION_FIX)
        seconds = float(found[1]) * _UNITS[found[2]]
    if not 0 < seconds <= 10 * 365 * 86400:
        raise ConfigError(path, f"{value!r} is not between one second and ten years", DURATION_FIX)
    return seconds


def rate(value: Any, path: str) -> float:
    """Return a rate like "500/s" or "1000/m" as events per second."""
    found = re.match(r"^\s*(\d+(?:\.\d+)?)\s*/\s*([smh])\s*$", value) if isinstance(value, str) else None
    if not found or float(found[1]) <= 0:
        raise ConfigError(path, f"{value!r} is not a rate", 'write a count per unit, like "500/s" or "2000/m"')
    return float(found[1]) / _UNITS[found[2]]


def networks(values: Any, path: str) -> tuple[Network, ...]:
    """Return a list of addresses and CIDRs as networks."""
    if not isinstance(values, list):
        raise ConfigError(path, "is not a list", 'write a list like ["127.0.0.0/8", "::1"]')
    found = []
    for index, entry in enumerate(values):
        try:
            found.append(ipaddress.ip_network(entry, strict=False))
        except (ValueError, TypeError):
            raise ConfigError(f"{path}[{index}]", f"{entry!r} is not an address or CIDR", 'write "192.0.2.1", "192.0.2.0/24" or "2001:db8::/32"')
    return tuple(found)


def choices(values: Any, path: str, allowed: Iterable[str]) -> list[str]:
    """Return a non-empty list whose every entry is one of ``allowed``."""
    allowed = tuple(allowed)
    if not isinstance(values, list) or not values:
        raise ConfigError(path, "is not a non-empty list", f"write a list of: {', '.join(allowed)}")
    for index, entry in enumerate(values):
        if entry not in allowed:
            raise ConfigError(f"{path}[{index}]", f"unknown value {entry!r}", f"use one of: {', '.join(allowed)}")
    return values


def ports(values: Any, path: str) -> tuple[int | str, ...]:
    """Return a list of ports (1-65535) or "low-high" ranges."""
    if not isinstance(values, list):
        raise ConfigError(path, "is not a list", "write a list like [80, 443] or [\"8000-8100\"]")
    found: list[int | str] = []
    for index, entry in enumerate(values):
        where = f"{path}[{index}]"
        if isinstance(entry, str) and re.match(r"^\d+-\d+$", entry):
            low, high = map(int, entry.split("-"))
            if not 1 <= low < high <= 65535:
                raise ConfigError(where, f"range {entry!r} is out of 1-65535 or empty", "write LOW-HIGH with 1 <= LOW < HIGH <= 65535")
            found.append(entry)
        else:
            found.append(integer(entry, where, 1, 65535))
    return tuple(found)


def field_filters(data: Any, path: str, fields: Iterable[str]) -> tuple[FieldFilter, ...]:
    """Return ``when``/``unless`` filters: field -> list of exact values, or regex string."""
    fields = tuple(fields)
    data = table({"x": data}, "x", path)
    found = []
    for name, test in data.items():
        where = _join(path, name)
        if name not in fields:
            raise ConfigError(where, "the grammar has no such field", f"filter on one of: {', '.join(fields) or '(none)'}")
        if isinstance(test, list):
            if not test or not all(isinstance(x, (str, int)) and not isinstance(x, bool) for x in test):
                raise ConfigError(where, "is not a list of exact values", 'write strings or integers, like ["POST"] or [403]')
            found.append(FieldFilter(name, values=frozenset(str(x) for x in test)))
        elif isinstance(test, str):
            try:
                found.append(FieldFilter(name, pattern=re.compile(test)))
            except re.error as error:
                raise ConfigError(where, f"regex does not compile: {error}", "fix the pattern (TOML 'single quotes' keep backslashes)")
        else:
            raise ConfigError(where, f"{test!r} is neither a list nor a regex string", "write a list of exact values or a regex string")
    return tuple(found)


def string_table(data: Any, path: str) -> dict[str, str]:
    """Return a table of journal field names to string values."""
    data = table({"x": data}, "x", path)
    for key, value in data.items():
        if not re.match(r"^[A-Z0-9_]+$", key):
            raise ConfigError(_join(path, key), "is not a journal field name", "use an upper-case field like SYSLOG_IDENTIFIER or _SYSTEMD_UNIT")
        string(value, _join(path, key))
    return dict(data)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
