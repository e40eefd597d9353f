"""The contract every service grammar fulfils: text in, Failure or None out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pyparsing as pp

from omprog_ban.model import Failure

Convert = Callable[[pp.ParseResults, float], "Failure | None"]


@dataclass(frozen=True)
class Grammar:
    """A named pyparsing grammar for one service.

    ``keywords``: a line containing none of them is not tried (cheap dispatch
    before any parsing). ``element`` must match the whole line. ``convert`` turns
    the parse result into a Failure, or None when the line parses but is no
    failure (an accepted login, a harmless disconnect).
    """

    name: str
    rules: tuple[str, ...]
    fields: tuple[str, ...]
    keywords: tuple[str, ...]
    element: pp.ParserElement
    convert: Convert

    def mentions(self, text: str) -> bool:
        """Return True when ``text`` holds one of the keywords, so it is worth parsing."""
        return any(keyword in text for keyword in self.keywords)

    def parse(self, text: str, now: float) -> Failure | None:
        """Return the Failure ``text`` records, or None; never raise on bad input.

        ``now`` (epoch seconds) only supplies the year of year-less stamps.
        """
        if not self.mentions(text):
            return None
        return self.parse_mentioned(text, now)

    def parse_mentioned(self, text: str, now: float) -> Failure | None:
        """Return the Failure of a line that ``mentions`` accepted, or None."""
        try:
            result = self.element.parse_string(text, parse_all=True)
        except (pp.ParseBaseException, RecursionError):
            return None
        return self.convert(result, now)
