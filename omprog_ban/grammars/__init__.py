"""The registry of service grammars: adding a service is one module and one entry here."""

from __future__ import annotations

from omprog_ban.grammars import amps, apache_access, apache_error, elgg, named
from omprog_ban.grammars.base import Grammar

GRAMMARS: dict[str, Grammar] = {
    grammar.name: grammar
    for grammar in (amps.GRAMMAR, apache_error.GRAMMAR, apache_access.GRAMMAR, elgg.GRAMMAR, named.GRAMMAR)
}

__all__ = ["GRAMMARS", "Grammar"]
