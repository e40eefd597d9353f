"""Load and check the TOML configuration; every error names the key path and the fix.

The whole file is checked before anything starts (before rsyslog's start-up
``OK``): unknown keys, bad durations, unknown grammars or rules, bad CIDRs, field
filters that name no field or do not compile, ports out of range, two jails that
would share an nft set. ``check`` and ``run`` exit 78 (EX_CONFIG) on any of them.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from omprog_ban import validate as v
from omprog_ban.engine import Policy
from omprog_ban.grammars import GRAMMARS
from omprog_ban.model import Network

DEFAULT_PATH = "/etc/omprog-ban.toml"
DEFAULT_STATE_DIR = "/var/lib/omprog-ban"
MAX_SET_SIZE = 262144  # elements per set: a flood of 100,000 fresh addresses fits, with room
ConfigError = v.ConfigError

JAIL_KEYS = {
    "enabled", "grammar", "rules", "maxretry", "findtime", "bantime", "ports", "protocol",
    "ignoreip", "when", "unless", "journal", "trusted", "set", "bantime_increment", "subnet",
    "max_bans_per_minute",
}
TOP_KEYS = {"nft", "defaults", "jails", "state_dir", "never_ban", "blocklist", "history", "shields"}


@dataclass(frozen=True)
class Increment:
    """Repeat offenders: each earlier ban multiplies bantime by ``factor``, up to ``max``."""

    factor: float
    max: float


@dataclass(frozen=True)
class Subnet:
    """Ban the /``prefix4`` or /``prefix6`` once ``addresses`` of it are banned within ``window``."""

    addresses: int
    window: float
    prefix4: int = 24
    prefix6: int = 64


@dataclass(frozen=True)
class Jail:
    """One jail: which grammar's failures count, how many, and what is dropped for how long."""

    name: str
    grammar: str
    rules: frozenset[str]
    maxretry: int
    findtime: float
    bantime: float
    ports: tuple[int | str, ...] = ()
    protocols: tuple[str, ...] = ("tcp",)
    ignoreip: tuple[Network, ...] = ()
    when: tuple[v.FieldFilter, ...] = ()
    unless: tuple[v.FieldFilter, ...] = ()
    journal: dict[str, str] = field(default_factory=dict)
    trusted: dict[str, str] = field(default_factory=dict)
    set: str = ""
    increment: Increment | None = None
    subnet: Subnet | None = None
    max_bans_per_minute: int = 0

    @property
    def filtered(self) -> bool:
        """Return True when failures must pass ``when``, ``unless`` or ``trusted`` to count."""
        return bool(self.when or self.unless or self.trusted)

    @property
    def policy(self) -> Policy:
        """Return the engine's view of this jail."""
        return Policy(self.maxretry, self.findtime, self.bantime, self.ignoreip)

    def admits(self, fields: Mapping[str, str], meta: Mapping[str, str]) -> bool:
        """Return True when a failure's ``fields`` pass ``when`` and ``unless`` and the
        source's ``meta`` has every ``trusted`` value (the rule is checked apart)."""
        if not all(check.holds(fields) for check in self.when):
            return False
        if any(check.holds(fields) for check in self.unless):
            return False
        return all(meta.get(name) == value for name, value in self.trusted.items())


@dataclass(frozen=True)
class Config:
    """The whole checked configuration."""

    table: str
    jails: dict[str, Jail]
    state_dir: Path
    never_ban: tuple[Network, ...] = ()
    blocklist: tuple[Network, ...] = ()
    history_retention: float = 90 * 86400
    max_set_size: int = 262144
    shields_rate: float = 0.0
    shields_factor: float = 1.0
    source: str = ""


def load(path: str | Path | None = None, state_dir: str | None = None) -> Config:
    """Return the checked config from ``path`` (None: the embedded default)."""
    if path is None:
        text, source = resources.files("omprog_ban").joinpath("default.toml").read_text(), "<default>"
    else:
        try:
            text, source = Path(path).read_text(encoding="utf-8"), str(path)
        except OSError as error:
            raise ConfigError("", f"cannot read {path}: {error.strerror}", "give an existing file with --config")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError("", f"not valid TOML: {error}", "fix the syntax at the place named")
    return parse(data, source, state_dir)


def parse(data: dict[str, Any], source: str = "", state_dir: str | None = None) -> Config:
    """Return the Config that ``data`` (parsed TOML) describes; raise ConfigError."""
    v.known_keys(data, TOP_KEYS, "")
    nft = v.table(data, "nft", "")
    v.known_keys(nft, {"table", "max_set_size"}, "nft")
    table = v.identifier(nft.get("table", "omprog_ban"), "nft.table")
    max_set_size = v.integer(nft.get("max_set_size", MAX_SET_SIZE), "nft.max_set_size", 1, 10_000_000)
    defaults = v.table(data, "defaults", "")
    v.known_keys(defaults, JAIL_KEYS - {"grammar", "set"}, "defaults")
    v.networks(defaults.get("ignoreip", []), "defaults.ignoreip")
    jails_data = v.table(data, "jails", "")
    if not jails_data:
        raise ConfigError("jails", "no jail is configured", "add at least one [jails.NAME] table")
    jails: dict[str, Jail] = {}
    sets: dict[str, str] = {}
    for name, body in jails_data.items():
        if not isinstance(body, dict):
            raise ConfigError(f"jails.{name}", "is not a table", f"write [jails.{name}] with its keys")
        merged = {**defaults, **body}
        if "ignoreip" in defaults and "ignoreip" in body:  # additive: a jail never un-ignores
            merged["ignoreip"] = list(defaults["ignoreip"]) + list(body["ignoreip"])
        jail = _jail(name, merged)
        if jail is None:
            continue
        if jail.set in sets:
            raise ConfigError(
                f"jails.{name}.set", f"set name {jail.set!r} is already used by jail {sets[jail.set]!r}",
                "give one of the jails its own 'set' name",
            )
        sets[jail.set] = name
        jails[name] = jail
    if not jails:
        raise ConfigError("jails", "every jail is disabled", "enable at least one jail")
    history = v.table(data, "history", "")
    v.known_keys(history, {"retention"}, "history")
    shields = v.table(data, "shields", "")
    v.known_keys(shields, {"rate", "maxretry_factor"}, "shields")
    return Config(
        table=table,
        jails=jails,
        state_dir=Path(state_dir or v.string(data.get("state_dir", DEFAULT_STATE_DIR), "state_dir")),
        never_ban=v.networks(data.get("never_ban", []), "never_ban"),
        blocklist=v.networks(data.get("blocklist", []), "blocklist"),
        history_retention=v.duration(history.get("retention", "90d"), "history.retention"),
        max_set_size=max_set_size,
        shields_rate=v.rate(shields["rate"], "shields.rate") if "rate" in shields else 0.0,
        shields_factor=v.number(shields.get("maxretry_factor", 1.0), "shields.maxretry_factor", 0.01, 1.0),
        source=source,
    )


def _jail(name: str, data: dict[str, Any]) -> Jail | None:
    path = f"jails.{name}"
    v.known_keys(data, JAIL_KEYS, path)
    v.identifier(name, path, what="jail name")
    if not v.boolean(data.get("enabled", True), f"{path}.enabled"):
        return None
    if "grammar" not in data:
        raise ConfigError(f"{path}.grammar", "is missing", f"name one of: {', '.join(sorted(GRAMMARS))}")
    grammar_name = data["grammar"]
    if grammar_name not in GRAMMARS:
        raise ConfigError(f"{path}.grammar", f"unknown grammar {grammar_name!r}", f"use one of: {', '.join(sorted(GRAMMARS))}")
    grammar = GRAMMARS[grammar_name]
    rules = v.choices(data.get("rules", list(grammar.rules)), f"{path}.rules", grammar.rules)
    if grammar_name == "named" and not data.get("ports"):
        raise ConfigError(f"{path}.ports", "a named jail drops every port: DNS sources are spoofable, so a forged "
                          "query could cut a victim off entirely", "set ports = [53]")
    protocols = data.get("protocol", "tcp")
    protocols = v.choices([protocols] if isinstance(protocols, str) else protocols, f"{path}.protocol", ("tcp", "udp"))
    return Jail(
        name=name,
        grammar=grammar_name,
        rules=frozenset(rules),
        maxretry=v.integer(data.get("maxretry", 5), f"{path}.maxretry", 1, 1_000_000),
        findtime=v.duration(data.get("findtime", "10m"), f"{path}.findtime"),
        bantime=v.duration(data.get("bantime", "10m"), f"{path}.bantime"),
        ports=v.ports(data.get("ports", []), f"{path}.ports"),
        protocols=tuple(protocols),
        ignoreip=v.networks(data.get("ignoreip", []), f"{path}.ignoreip"),
        when=v.field_filters(data.get("when", {}), f"{path}.when", grammar.fields),
        unless=v.field_filters(data.get("unless", {}), f"{path}.unless", grammar.fields),
        journal=v.string_table(data.get("journal", {}), f"{path}.journal"),
        trusted=v.string_table(data.get("trusted", {}), f"{path}.trusted"),
        set=v.identifier(data.get("set", re.sub(r"\W", "_", name)), f"{path}.set", what="set name"),
        increment=_increment(data.get("bantime_increment"), f"{path}.bantime_increment"),
        subnet=_subnet(data.get("subnet"), f"{path}.subnet", name),
        max_bans_per_minute=v.integer(data.get("max_bans_per_minute", 0), f"{path}.max_bans_per_minute", 0, 10**9),
    )


def _increment(data: Any, path: str) -> Increment | None:
    if data is None:
        return None
    data = v.table({"x": data}, "x", path)
    v.known_keys(data, {"factor", "max"}, path)
    return Increment(
        factor=v.number(data.get("factor", 2), f"{path}.factor", 1.0, 1000.0),
        max=v.duration(data.get("max", "1w"), f"{path}.max"),
    )


def _subnet(data: Any, path: str, jail: str) -> Subnet | None:
    if data is None or data is False:
        return None
    data = v.table({"x": data}, "x", path)
    v.known_keys(data, {"addresses", "window", "prefix4", "prefix6"}, path)
    if jail.startswith("named"):
        raise ConfigError(path, "DNS sources are spoofable: a subnet ban would let anyone block a whole range",
                          f"remove {path} from this named jail")
    return Subnet(
        addresses=v.integer(data.get("addresses", 5), f"{path}.addresses", 2, 65536),
        window=v.duration(data.get("window", "1h"), f"{path}.window"),
        prefix4=v.integer(data.get("prefix4", 24), f"{path}.prefix4", 8, 31),
        prefix6=v.integer(data.get("prefix6", 64), f"{path}.prefix6", 16, 127),
    )
