"""Replay log files through the whole pipeline, on the logs' own time, and print the bans.

Grammars, jails and engine run exactly as in ``run``; the backend is a dry run.
Lines are taken in file order; lines a few seconds out of order (Apache stamps a
request when it starts) still count in their own window. A line without a stamp
takes the time of the line before it.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Callable, Iterable

from omprog_ban import cli
from omprog_ban.model import EMPTY, Ban, LogLine, new
from omprog_ban.pipeline import Pipeline
from omprog_ban.sources import file_time, read_blocks

NAME = "replay"
FLUSH = 1024  # decided bans handed to the (dry) backend at once
HELP = "replay log files through grammars, jails and engine; print the bans"


class Collect:
    """A backend that keeps the bans it is given."""

    def __init__(self) -> None:
        self.bans: list[Ban] = []

    def ban(self, bans) -> None:
        """Keep them."""
        self.bans.extend(bans)

    def elements(self):
        """Nothing is in a kernel."""
        return []


def add_arguments(parser) -> None:
    """Add replay's arguments."""
    parser.add_argument("files", nargs="+", metavar="FILE", help="log files (.gz too; - for stdin)")
    parser.add_argument("--json", action="store_true", help="one JSON object per ban")


def main(args) -> int:
    """Print each ban that would have been applied; exit 0."""
    config = cli.load_config(args)
    backend = Collect()
    pipeline = Pipeline(config, backend, ledger=None, log_time=True)
    lines = replay(pipeline, args.files, lambda ban, path, number: _print(ban, path, number, args.json))
    if not args.json:
        print(f"{lines} lines, {len(backend.bans)} bans")
    return 0


def replay(pipeline: Pipeline, paths: Iterable[str], on_ban: Callable[[Ban, str, int], None]) -> int:
    """Run every line of ``paths``, in order, through ``pipeline`` (on the logs' own time); return how many.

    ``on_ban(ban, path, number)`` hears of each ban with the line that decided
    it; the bans reach the backend in groups (``FLUSH``) and all by the return.
    Lines go to the pipeline a block at a time (``read_blocks``): on the logs'
    own time a line's time is its stamp, or the time of the failure before it,
    so what a line is given as its time of arrival does not matter.
    """
    lines = 0
    for path in paths:
        pipeline.last_time = file_time(path)
        for first, texts in read_blocks(path):
            lines += len(texts)
            received = pipeline.last_time
            for index, ban in pipeline.decide_many([new(LogLine, (text, received, None, EMPTY)) for text in texts]):
                on_ban(ban, path, first + index)
            if len(pipeline.pending) >= FLUSH:
                pipeline.flush()
    pipeline.flush()
    return lines


def _print(ban: Ban, path: str, number: int, as_json: bool) -> None:
    when = datetime.fromtimestamp(ban.time, timezone.utc).astimezone().isoformat()
    if as_json:
        print(json.dumps({"time": when, "jail": ban.jail, "host": str(ban.address), "bantime": ban.bantime,
                          "failures": ban.failures, "file": path, "line": number}))
    else:
        print(f"{when} ban {ban.address} in {ban.jail} for {ban.bantime:g}s ({ban.failures} failures, {path}:{number})")
