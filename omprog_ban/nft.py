"""The nftables backend: the only module that imports the libnftables binding.

omprog-ban owns one ``inet`` table. Each jail has a set per family with
``flags timeout`` (``<set>_v4``, ``<set>_v6``) and, when subnet bans are on, an
interval set per family (``<set>_net4``, ``<set>_net6``); one rule per family in
the ``input`` chain drops the jail's protocols and ports from its sets. A ban is
an element with a timeout: the kernel expires it. Every command is JSON data,
except the one a flood repeats: adding bans is written as nft's own syntax,
which libnftables parses in half the time of the same elements in JSON
(measured: 3.7 against 6.8 us an element). Nothing from a log line gets into
that text as it came: every address is an ipaddress object before it gets here,
written back by ``text`` (so libnftables never resolves a host name), and table
and set names are identifiers the config checked. A table named like a keyword
of nft's syntax (``counter``; set names end in ``_v4``, ``_v6``, ...) is a syntax
error in that form; then the backend goes back to JSON for good.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from omprog_ban.config import Jail
from omprog_ban.model import Ban, Network, text

log = logging.getLogger("omprog-ban")

CHAIN = "input"
BLOCKLIST = "blocklist"


class NftError(Exception):
    """libnftables refused a command; the text is nft's own error."""


@dataclass(frozen=True)
class Element:
    """One banned address or prefix as the kernel holds it."""

    jail: str
    address: str
    expires: float | None  # seconds left; None for elements without timeout
    timeout: float | None


def set_names(jail: Jail) -> dict[str, str]:
    """Return the jail's sets by kind: v4, v6 and, with subnet bans, net4 and net6."""
    names = {"v4": f"{jail.set}_v4", "v6": f"{jail.set}_v6"}
    if jail.subnet is not None:
        names.update(net4=f"{jail.set}_net4", net6=f"{jail.set}_net6")
    return names


def _context():
    import nftables  # the binding, wrapped here and nowhere else

    context = nftables.Nftables()
    context.set_json_output(True)
    context.set_handle_output(False)
    return context


class Nft:
    """Apply bans to the kernel through one libnftables context.

    ``context`` is anything with the binding's ``json_cmd`` (tests may pass
    their own); the default is a real ``nftables.Nftables()``.
    """

    def __init__(self, table: str, context: Any = None, jails: Iterable[Jail] = ()) -> None:
        self.table = table
        self._context = context if context is not None else _context()
        self._text = hasattr(self._context, "cmd")  # bans in nft's own syntax (see the module's docstring)
        self.adopt(jails)

    def adopt(self, jails: Iterable[Jail]) -> None:
        """Know ``jails`` and their sets, without touching the kernel."""
        self._jails: dict[str, Jail] = {jail.name: jail for jail in jails}
        self._sets: dict[str, dict[str, str]] = {name: set_names(jail) for name, jail in self._jails.items()}  # looked up per ban
        self._set_of: dict[str, str] = {name: jail for jail, names in self._sets.items() for name in names.values()}

    def run(self, commands: list[dict[str, Any]]) -> dict[str, Any]:
        """Run ``commands`` as one transaction; return nft's output; raise NftError."""
        rc, output, error = self._context.json_cmd({"nftables": commands})
        if rc != 0:
            raise NftError((error or f"nft returned {rc}").strip())
        return output or {}

    def ensure(self, jails: Iterable[Jail], max_set_size: int = 262144, blocklist: Sequence[Network] = ()) -> None:
        """Create the table, sets and rules; keep existing elements; never duplicate rules."""
        self.adopt(jails)
        family_table = {"family": "inet", "table": self.table}
        commands: list[dict[str, Any]] = [
            {"add": {"table": {"family": "inet", "name": self.table}}},
            {"add": {"chain": {**family_table, "name": CHAIN, "type": "filter", "hook": "input", "prio": -10, "policy": "accept"}}},
            {"flush": {"chain": {**family_table, "name": CHAIN}}},
        ]
        for kind, family in (("4", "ipv4_addr"), ("6", "ipv6_addr")):
            name = f"{BLOCKLIST}_v{kind}"
            commands.append({"add": {"set": {**family_table, "name": name, "type": family, "flags": ["interval"]}}})
            commands.append(_rule(self.table, name, kind, None, "blocklist"))
        for jail in self._jails.values():
            for kind, name in set_names(jail).items():
                flags = ["interval", "timeout"] if kind.startswith("net") else ["timeout"]
                family = "ipv4_addr" if kind.endswith("4") else "ipv6_addr"
                commands.append({"add": {"set": {**family_table, "name": name, "type": family, "flags": flags, "size": max_set_size}}})
                commands.append(_rule(self.table, name, kind[-1], jail, f"jail {jail.name}"))
        if blocklist:
            commands.append({"flush": {"set": {**family_table, "name": f"{BLOCKLIST}_v4"}}})
            commands.append({"flush": {"set": {**family_table, "name": f"{BLOCKLIST}_v6"}}})
            commands.extend(_element_commands("add", self.table, _blocklist_elements(blocklist)))
        self.run(commands)

    def exists(self) -> bool:
        """Return True when omprog-ban's table and chain are in the kernel.

        ``list chains`` reads no set elements, so the check stays under a
        millisecond with 100,000 bans (``list chain`` would load them all, ~0.3 s).
        A flushed ruleset or a deleted table is what it catches.
        """
        try:
            output = self.run([{"list": {"chains": {"family": "inet"}}}])
        except NftError:
            return False
        return any(item.get("chain", {}).get("table") == self.table and item["chain"].get("name") == CHAIN
                   for item in output.get("nftables", []))

    def ban(self, bans: Sequence[Ban]) -> None:
        """Add every ban as a set element with its timeout, all in one transaction."""
        if not bans:
            return
        if self._text:
            by_name: dict[str, list[str]] = {}
            sets = self._sets
            for ban in bans:
                address = ban.address
                kind = _KIND.get(address.__class__)  # an address (a prefix is rare): no property, no isinstance
                if kind is None:
                    name, value = self.set_for(ban.jail, address), _value_text(address)
                else:
                    name, value = sets[ban.jail][kind], text(address)
                by_name.setdefault(name, []).append(f"{value} timeout {max(1, round(ban.bantime))}s")
            script = "\n".join(f"add element inet {self.table} {name} {{ {', '.join(elements)} }}"
                                for name, elements in by_name.items())
            rc, _, error = self._context.cmd(script)  # one buffer, one transaction
            if rc == 0:
                return
            if "syntax error" not in (error or ""):
                raise NftError((error or f"nft returned {rc}").strip())
            log.warning("nft reads the table's name as a keyword of its syntax; bans go as JSON from now on: %s",
                        error.strip().splitlines()[0])
            self._text = False
        by_set: dict[str, list[dict[str, Any]]] = {}
        for ban in bans:
            by_set.setdefault(self.set_for(ban.jail, ban.address), []).append(
                {"elem": {"val": _value(ban.address), "timeout": max(1, round(ban.bantime))}}
            )
        self.run(_element_commands("add", self.table, by_set))

    def unban(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address | Network, jail: str | None = None) -> list[str]:
        """Remove ``address`` from the jail's sets (or every jail's); return the jails it left.

        Each delete is its own transaction: one that fails (the element already
        expired: nft 1.0.6 has no ``destroy``) must not abort the others.
        """
        removed = []
        for name in self._jails if jail is None else [jail]:
            try:
                self.run(_element_commands("delete", self.table, {self.set_for(name, address): [_value(address)]}))
                removed.append(name)
            except NftError as error:
                if "No such file" not in str(error) and "does not exist" not in str(error):
                    raise
        return removed

    def set_for(self, jail: str, address: Any) -> str:
        """Return the name of the set of ``jail`` that holds ``address``."""
        names = self._sets[jail]
        if isinstance(address, (ipaddress.IPv4Network, ipaddress.IPv6Network)) and address.num_addresses > 1:
            return names["net4" if address.version == 4 else "net6"]
        return names["v4" if address.version == 4 else "v6"]

    def elements(self) -> list[Element]:
        """Return every element of omprog-ban's sets, read from the kernel."""
        output = self.run([{"list": {"table": {"family": "inet", "name": self.table}}}])
        found = []
        for item in output.get("nftables", []):
            entry = item.get("set")
            if not entry:
                continue
            name = entry["name"]
            jail = BLOCKLIST if name.startswith(BLOCKLIST + "_") else self._jail_of(name)
            for element in entry.get("elem", []):
                found.append(_element(jail, element))
        return found

    def _jail_of(self, set_name: str) -> str:
        if set_name in self._set_of:
            return self._set_of[set_name]
        return set_name.rsplit("_", 1)[0]


def _rule(table: str, set_name: str, family: str, jail: Jail | None, comment: str) -> dict[str, Any]:
    expr: list[dict[str, Any]] = []
    if jail is not None:
        protocols = list(jail.protocols)
        expr.append(_match({"meta": {"key": "l4proto"}}, protocols[0] if len(protocols) == 1 else {"set": protocols}))
        if jail.ports:
            ports = [_port(port) for port in jail.ports]
            expr.append(_match({"payload": {"protocol": "th", "field": "dport"}}, ports[0] if len(ports) == 1 else {"set": ports}))
    expr.append(_match({"payload": {"protocol": "ip" if family == "4" else "ip6", "field": "saddr"}}, f"@{set_name}"))
    expr += [{"counter": None}, {"drop": None}]
    return {"add": {"rule": {"family": "inet", "table": table, "chain": CHAIN, "comment": comment, "expr": expr}}}


def _match(left: dict[str, Any], right: Any) -> dict[str, Any]:
    return {"match": {"op": "==", "left": left, "right": right}}


def _port(port: int | str) -> Any:
    if isinstance(port, str):
        low, high = map(int, port.split("-"))
        return {"range": [low, high]}
    return port


def _value(address: Any) -> Any:
    if isinstance(address, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
        if address.num_addresses == 1:
            return str(address.network_address)
        return {"prefix": {"addr": str(address.network_address), "len": address.prefixlen}}
    return text(address)


_KIND = {ipaddress.IPv4Address: "v4", ipaddress.IPv6Address: "v6"}  # the set of an address, by its class


def _value_text(address: Any) -> str:
    """Return ``address`` (an ipaddress object) as an element in nft's syntax: ``ADDR`` or ``ADDR/LEN``."""
    if isinstance(address, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
        if address.num_addresses == 1:
            return str(address.network_address)
        return f"{address.network_address}/{address.prefixlen}"
    return text(address)


def _element_commands(verb: str, table: str, by_set: dict[str, list[Any]]) -> list[dict[str, Any]]:
    return [{verb: {"element": {"family": "inet", "table": table, "name": name, "elem": elems}}} for name, elems in by_set.items() if elems]


def _blocklist_elements(blocklist: Sequence[Network]) -> dict[str, list[Any]]:
    by_set: dict[str, list[Any]] = {f"{BLOCKLIST}_v4": [], f"{BLOCKLIST}_v6": []}
    for network in ipaddress.collapse_addresses([n for n in blocklist if n.version == 4]):
        by_set[f"{BLOCKLIST}_v4"].append(_value(network))
    for network in ipaddress.collapse_addresses([n for n in blocklist if n.version == 6]):
        by_set[f"{BLOCKLIST}_v6"].append(_value(network))
    return by_set


def _element(jail: str, element: Any) -> Element:
    timeout = expires = None
    if isinstance(element, dict) and "elem" in element:
        timeout, expires = element["elem"].get("timeout"), element["elem"].get("expires")
        element = element["elem"]["val"]
    if isinstance(element, dict) and "prefix" in element:
        address = f"{element['prefix']['addr']}/{element['prefix']['len']}"
    elif isinstance(element, dict) and "range" in element:
        low, high = element["range"]
        address = ",".join(str(n) for n in ipaddress.summarize_address_range(ipaddress.ip_address(low), ipaddress.ip_address(high)))
    else:
        address = str(element)
    return Element(jail, address, expires, timeout)
