"""The contract every service grammar fulfils: text in, Failure or None out."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable, Mapping

import pyparsing as pp

from omprog_ban.grammars import tokens
from omprog_ban.grammars.compiler import Compiled, compile_element
from omprog_ban.model import Failure

Convert = Callable[[Mapping[str, "str | None"], "float | None"], "Failure | None"]


@dataclass(frozen=True)
class Grammar:
    """A named pyparsing grammar for one service.

    ``keywords``: a line containing none of them is not tried (cheap dispatch
    before any parsing; ``mentions(text)`` is that test, a substring search per
    keyword, which beats one regex alternation several times over).
    ``element`` must match the whole line; its results
    names (named groups of its ``pp.Regex`` tokens) reach ``convert`` as plain
    text, and ``convert`` turns them into a Failure (validating the address:
    text that is no address is a non-match), or None when the line parses but
    is no failure (an accepted login, a harmless disconnect).

    ``reads``: the results names ``convert`` reads (the stamps of
    ``tokens.STAMPS`` are always kept). On the hot path the element runs as one
    compiled regex with the same meaning (:mod:`omprog_ban.grammars.compiler`)
    that captures only those; ``slow=True`` forces pyparsing, which returns all.
    Live decisions use the time a line arrived, not its stamp: ``matcher(False)``
    returns a variant that captures no stamp either (a fifth less per line).
    """

    name: str
    rules: tuple[str, ...]
    fields: tuple[str, ...]
    keywords: tuple[str, ...]
    element: pp.ParserElement
    convert: Convert
    reads: tuple[str, ...]
    compiled: Compiled | None = field(init=False, repr=False, compare=False)

    mentions: Callable[[str], bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "mentions", _scanner(self.keywords))
        self.element.parse_with_tabs()  # a tab is data (a client may put one in a name), not 8 spaces
        object.__setattr__(self, "compiled", compile_element(self.element, frozenset(self.reads + tokens.STAMPS)))

    @functools.cached_property
    def live(self) -> Compiled | None:
        """Return the compiled element that captures ``reads`` only, no stamp (compiled when first asked)."""
        return compile_element(self.element, frozenset(self.reads))

    def matcher(self, stamps: bool = True) -> Callable[[str], Mapping[str, str | None] | None]:
        """Return the fastest ``match`` for whole lines: with the stamps (``convert`` with a
        ``now``), or without them (``convert`` with None: live, on the time of arrival)."""
        compiled = self.compiled if stamps else self.live
        return compiled.match if compiled is not None else self.match

    def parse(self, text: str, now: float) -> Failure | None:
        """Return the Failure ``text`` records, or None; never raise on bad input.

        ``now`` (epoch seconds) only supplies the year of year-less stamps.
        """
        if not self.mentions(text):
            return None
        return self.parse_mentioned(text, now)

    def parse_mentioned(self, text: str, now: float) -> Failure | None:
        """Return the Failure of a line that ``mentions`` accepted, or None."""
        fields = self.match(text)
        return None if fields is None else self.convert(fields, now)

    def match(self, text: str, slow: bool = False) -> Mapping[str, str | None] | None:
        """Return the line's results names and their text, or None when it does not parse.

        A results name the line did not reach may be missing or map to None; the
        compiled path returns only ``reads`` and the stamps.
        """
        if self.compiled is not None and not slow:
            return self.compiled.match(text)
        try:
            result = self.element.parse_string(text, parse_all=True)
        except (pp.ParseBaseException, RecursionError):
            return None
        return {name: value for name, value in result.as_dict().items() if isinstance(value, str)}


def _scanner(keywords: tuple[str, ...]) -> Callable[[str], bool]:
    """Return a test: does a text hold one of ``keywords`` (so it is worth parsing)?"""
    if len(keywords) == 1:
        (keyword,) = keywords
        return lambda text: keyword in text

    def mentions(text: str) -> bool:
        for keyword in keywords:
            if keyword in text:
                return True
        return False

    return mentions
