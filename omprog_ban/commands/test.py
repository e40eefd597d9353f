"""Run the grammars over log files, as fail2ban-regex does: what matches, what is missed.

Every grammar (or the one named) is tried on every line. A line "matches" when a
grammar finds a failure in it. Year-less stamps are dated by the file's mtime.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone

from omprog_ban.grammars import GRAMMARS
from omprog_ban.sources import file_time, read_lines

NAME = "test"
HELP = "try the grammars on log files (like fail2ban-regex)"


def add_arguments(parser) -> None:
    """Add test's arguments."""
    parser.add_argument("files", nargs="+", metavar="FILE", help="log files (.gz too; - for stdin)")
    parser.add_argument("--grammar", choices=sorted(GRAMMARS), help="only this grammar")
    parser.add_argument("--json", action="store_true", help="one JSON object per matched line")
    parser.add_argument("--print-missed", action="store_true", help="print lines no grammar matched")
    parser.add_argument("--print-matched", action="store_true", help="print matched lines")


def main(args) -> int:
    """Print the summary (or JSON lines); exit 0."""
    grammars = [GRAMMARS[args.grammar]] if args.grammar else list(GRAMMARS.values())
    hits: Counter = Counter()
    read = matched = 0
    for path in args.files:
        now = file_time(path)
        for number, text in read_lines(path):
            read += 1
            found = [(grammar, failure) for grammar in grammars if (failure := grammar.parse(text, now)) is not None]
            if found:
                matched += 1
            for grammar, failure in found:
                hits[(grammar.name, failure.rule)] += 1
                if args.json:
                    print(json.dumps({
                        "file": path, "line": number, "grammar": grammar.name, "rule": failure.rule,
                        "host": str(failure.address), "time": _iso(failure.time),
                    }))
            if not args.json and ((found and args.print_matched) or (not found and args.print_missed)):
                print(f"{'+' if found else '-'} {path}:{number}: {text}")
    if not args.json:
        print(f"Lines: {read} read, {matched} matched, {read - matched} missed")
        for grammar in grammars:
            total = sum(count for (name, _), count in hits.items() if name == grammar.name)
            print(f"  {grammar.name}: {total} matched")
            for rule in grammar.rules:
                print(f"    {rule}: {hits[(grammar.name, rule)]}")
    return 0


def _iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, timezone.utc).astimezone().isoformat()
