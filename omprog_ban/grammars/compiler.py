"""Compile a flat pyparsing grammar into one ``re`` pattern with the same meaning.

The grammars stay pyparsing grammars: readable, composable, tested token by
token. On the hot path, though, pyparsing costs microseconds per token; a whole
line as one regular expression costs a fraction of that. This module translates
the subset our grammars use, keeping pyparsing's PEG semantics exactly:

- ``Regex`` and ``Literal`` tokens match once and are never re-entered: atomic
  groups ``(?>...)`` (Python 3.11+);
- ``MatchFirst`` (``|``) takes the first alternative that matches: an atomic
  alternation; ``Opt`` is greedy and final: ``(?>(?:...)?)``;
- ``And`` skips pyparsing's default whitespace before each token;
- named groups are renamed apart (two alternatives may both say ``host``) and
  mapped back, results names become named groups.

Anything else (``Or``, ``Combine``, parse actions, ...) makes ``compile_element``
return None, and the grammar keeps using pyparsing for every line. The grammar
tests run every sample through both paths and a fuzzer checks they agree.
"""

from __future__ import annotations

import re
from typing import Mapping

import pyparsing as pp

_GROUP = re.compile(r"\(\?P<([A-Za-z_]\w*)>")


class Unsupported(Exception):
    """The element uses pyparsing features this compiler does not translate."""


class Compiled:
    """A whole-line pattern and the map from its group names to results names."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.regex = re.compile(pattern)
        # A name used once keeps its own group name; the later uses of a name
        # (other alternatives) are renamed NAME__N and folded back after a match.
        self._renamed = [(group, group.rsplit("__", 1)[0]) for group in self.regex.groupindex if "__" in group]

    def match(self, text: str) -> Mapping[str, str | None] | None:
        """Return the results names and their text (None: not matched) for a whole-line match.

        The mapping also holds the internal ``NAME__N`` keys of renamed groups.
        """
        found = self.regex.match(text)
        if found is None:
            return None
        fields = found.groupdict()
        for group, name in self._renamed:  # the renamed keys stay: cheaper than popping
            value = fields[group]
            if value is not None:
                fields[name] = value
        return fields


def compile_element(element: pp.ParserElement, keep: frozenset[str] | None = None) -> Compiled | None:
    """Return the whole-line regex equivalent of ``element``, or None if it has no exact one.

    ``keep``: the results names the caller reads (None: all). The others become
    non-capturing groups: the same language, fewer groups to fill and copy.
    """
    names = _Names(keep)
    try:
        body = _translate(element, names)
    except Unsupported:
        return None
    return Compiled(body + r"[ \t\r\n]*\Z")


def _translate(element: pp.ParserElement, names: _Names) -> str:
    if element.parseAction:
        raise Unsupported(f"parse action on {element}")
    if isinstance(element, pp.Regex):
        pattern = _rename(element.pattern, names)
        flags = _inline_flags(element.flags)
        core = f"(?>{flags}{pattern})" if not flags else f"(?>(?{flags}:{pattern}))"
    elif isinstance(element, pp.Literal):
        core = f"(?>{re.escape(element.match)})"
    elif isinstance(element, pp.And):
        core = "".join(_translate(part, names) for part in element.exprs)
    elif isinstance(element, pp.MatchFirst):
        core = "(?>" + "|".join(_translate(part, names) for part in element.exprs) + ")"
    elif isinstance(element, pp.Opt):
        core = f"(?>(?:{_translate(element.expr, names)})?)"
    elif isinstance(element, (pp.Suppress, pp.Group)) or type(element) is pp.ParseElementEnhance:
        core = _translate(element.expr, names)
    else:
        raise Unsupported(type(element).__name__)
    if element.resultsName and not isinstance(element, pp.Regex | pp.And | pp.MatchFirst | pp.Opt):
        core = f"({names.fresh(element.resultsName)}{core})"
    elif element.resultsName:
        raise Unsupported("results name on a compound or a Regex")
    if element.skipWhitespace and isinstance(element, (pp.Regex, pp.Literal)):
        if element.whiteChars != set(" \t\r\n"):
            raise Unsupported("custom whitespace")
        core = r"[ \t\r\n]*" + core
    return core


def _rename(pattern: str, names: "_Names") -> str:
    if "(?P=" in pattern:
        raise Unsupported("back-reference")
    return _GROUP.sub(lambda m: "(" + names.fresh(m[1]), pattern)


class _Names:
    """Hand out group openers: ``?P<NAME>`` for a name's first use, ``?P<NAME__N>`` for
    later uses, ``?:`` (not captured) for a name outside ``keep``."""

    def __init__(self, keep: frozenset[str] | None) -> None:
        self.used: set[str] = set()
        self.count = 0
        self.keep = keep

    def fresh(self, name: str) -> str:
        if self.keep is not None and name not in self.keep:
            return "?:"
        if name not in self.used:
            self.used.add(name)
            return f"?P<{name}>"
        self.count += 1
        return f"?P<{name}__{self.count}>"


def _inline_flags(flags: int) -> str:
    letters = ""
    if flags & re.IGNORECASE:
        letters += "i"
    if flags & re.DOTALL:
        letters += "s"
    if flags & re.MULTILINE:
        letters += "m"
    if flags & re.VERBOSE:
        raise Unsupported("verbose regex")
    return letters
