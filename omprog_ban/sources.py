"""File sources for ``test`` and ``replay``: read logs (plain, .gz, or - for stdin) line by line."""

from __future__ import annotations

import gzip
import os
import sys
import time
from pathlib import Path
from typing import Iterator

BLOCK = 1 << 20


def read_lines(path: str) -> Iterator[tuple[int, str]]:
    """Yield (1-based number, text without newline) of every line; bad UTF-8 becomes U+FFFD."""
    for first, texts in read_blocks(path):
        yield from enumerate(texts, first)


def read_blocks(path: str) -> Iterator[tuple[int, list[str]]]:
    """Yield (number of the first line, texts without newlines) for each block of whole lines.

    The file is read and decoded a block of whole lines at a time (a multi-byte
    character never spans a newline), not line by line; bad UTF-8 becomes U+FFFD.
    A block is what one read returned (at most BLOCK bytes): a terminal user
    sees each line at once.
    """
    if path == "-":
        handle = sys.stdin.buffer
    elif path.endswith(".gz"):
        handle = gzip.open(path, "rb")
    else:
        handle = open(path, "rb")
    number = 1
    rest = b""
    try:
        while True:
            block = handle.read1(BLOCK)
            if not block:
                break
            cut = block.rfind(b"\n") + 1
            if not cut:  # no line ends in this block: keep reading
                rest += block
                continue
            text, rest = (rest + block[:cut]).decode("utf-8", "replace"), block[cut:]
            lines = text.split("\n")
            lines.pop()  # the empty text after the block's last newline
            if "\r" in text:
                lines = [line.rstrip("\r\n") for line in lines]
            yield number, lines
            number += len(lines)
        if rest:
            yield number, [rest.decode("utf-8", "replace").rstrip("\r\n")]
    finally:
        if handle is not sys.stdin.buffer:
            handle.close()


def file_time(path: str) -> float:
    """Return the file's modification time: the 'now' that dates year-less stamps in it."""
    try:
        return os.stat(Path(path)).st_mtime
    except OSError:
        return time.time()
