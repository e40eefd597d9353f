"""File sources for ``test`` and ``replay``: read logs (plain, .gz, or - for stdin) line by line."""

from __future__ import annotations

import gzip
import os
import sys
import time
from pathlib import Path
from typing import Iterator


def read_lines(path: str) -> Iterator[tuple[int, str]]:
    """Yield (1-based number, text without newline) of every line; bad UTF-8 becomes U+FFFD."""
    if path == "-":
        handle = sys.stdin.buffer
    elif path.endswith(".gz"):
        handle = gzip.open(path, "rb")
    else:
        handle = open(path, "rb")
    try:
        for number, raw in enumerate(handle, 1):
            yield number, raw.decode("utf-8", "replace").rstrip("\r\n")
    finally:
        if handle is not sys.stdin.buffer:
            handle.close()


def file_time(path: str) -> float:
    """Return the file's modification time: the 'now' that dates year-less stamps in it."""
    try:
        return os.stat(Path(path)).st_mtime
    except OSError:
        return time.time()
