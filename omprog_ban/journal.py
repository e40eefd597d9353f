"""The journald source: the only module that imports ``systemd.journal``.

A thin veneer over systemd-python's ``journal.Reader``. :class:`Journal` opens
the local system journal or a directory of journal files, pre-filters with the
jails' matches, positions itself (head, tail, or just after a cursor) and hands
out entries as :class:`~omprog_ban.model.LogLine` values::

    text      MESSAGE (bytes that are not UTF-8 are decoded with replacement)
    received  _SOURCE_REALTIME_TIMESTAMP, else __REALTIME_TIMESTAMP, in epoch seconds
    key       the entry's cursor
    meta      every other field of the entry as a string (SYSLOG_IDENTIFIER,
              _SYSTEMD_UNIT, _EXE, _UID, _TRANSPORT, _COMM...); a field the entry
              carries several times is joined with newlines, so it never equals
              a single configured value

The journal orders entries from several files by time: an entry stamped
before the reader's position (a remote host whose clock is behind, in a file
journal-remote creates later) is history to it and is not read.

The follower's place (:class:`CursorFile`, used by ``omprog_ban.commands.journal``)
-----------------------------------------------------------------------------------

No ban is lost and no entry is counted twice, with a cursor written once a
second, not once an entry:

1. Entries are handled one at a time, in journal order. ``Pipeline.handle``
   appends an entry's failures to the ledger, keyed by the entry's cursor,
   before it tries their bans; a crash after that leaves the bans owed, and the
   next start applies them (``Pipeline.restore``).
2. The cursor file holds ``cursor``, the last entry whose ``handle`` returned,
   and ``counted``, the pipeline's ``last_key`` at that moment. It is written
   (``cursor.new``, then rename) at most once a second, and at exit;
   ``dry-run.cursor`` with ``--dry-run``.
3. At start, the ledger's last key K (``Pipeline.last_key`` after restore) is
   compared with ``counted``. Different: failures were counted after the cursor
   was written, and every entry up to K was handled (1.), so reading resumes
   just after K. Equal: nothing was counted since, and it resumes after
   ``cursor``. Entries past that point that a crashed run had handled carried
   no failure (K would be later), so handling them again changes nothing.
4. Bans wait in the pipeline's ``pending`` until the reader is drained (or
   1,024 entries were counted): then one nft transaction applies them all.
   A batch nft refuses is tried again after a pause, and the cursor is not
   saved while a ban is pending; a crash meanwhile leaves the bans owed (1.).

Cost: a save (write, rename) takes 0.1-0.15 ms here, so once a second is
nothing. Once an entry, ``--once`` over 100,000 entries took 16.8 s instead of
1.3 s. Like the ledger, the file survives the death of the process, not of the
host (which loses the kernel's sets as well): there is no fsync.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, NamedTuple

from omprog_ban.model import LogLine


def _reader_class() -> Callable[..., Any]:
    from systemd import journal  # the binding, wrapped here and nowhere else

    return journal.Reader


def _converters() -> dict[str, Callable[[Any], Any]]:
    # The Reader's defaults turn fields into datetimes, UUIDs and ints; the
    # pipeline compares strings, so every field stays text, decoded in C (a
    # Python converter per field costs a tenth of the throughput). A value that
    # is not UTF-8 arrives as bytes (the Reader catches the UnicodeDecodeError)
    # and entry_line() decodes it with replacement.
    from systemd import journal

    converters: dict[str, Callable[[Any], Any]] = {name: bytes.decode for name in journal.DEFAULT_CONVERTERS}
    converters.update({"__REALTIME_TIMESTAMP": int, "__MONOTONIC_TIMESTAMP": tuple, "__CURSOR": str})
    return converters


class Journal:
    """Read matching journal entries in journal order, as LogLines.

    ``directory``: a directory of ``*.journal`` files (journal-remote's output, a
    copied ``/var/log/journal/<machine-id>``), or None for the local system
    journal. ``matches``: one mapping of field -> value per jail; the fields of
    one mapping must all match (AND), the mappings are alternatives (OR), so the
    journal's indexes drop everything no jail reads before Python sees it.
    ``reader``: the factory, called ``reader(path=..., converters=...)``; the
    default is ``systemd.journal.Reader``.
    """

    def __init__(self, directory: str | Path | None = None, matches: Iterable[Mapping[str, str]] = (),
                 reader: Callable[..., Any] | None = None) -> None:
        factory = reader if reader is not None else _reader_class()
        path = None if directory is None else str(directory)
        self._reader = factory(path=path, converters=_converters())
        self.where = "the system journal" if directory is None else f"journal files in {directory}"
        for number, match in enumerate(matches):
            if number:
                self._reader.add_disjunction()
            self._reader.add_match(**match)

    def next(self) -> LogLine | None:
        """Return the next matching entry and move past it; None when there is none yet."""
        entry = self._reader.get_next()
        return entry_line(entry) if entry else None

    def wait(self, timeout: float) -> None:
        """Block until the journal changes or ``timeout`` seconds pass (a signal ends it too)."""
        self._reader.wait(timeout)

    def seek_head(self) -> None:
        """Go before the oldest entry: ``next`` returns it."""
        self._reader.seek_head()

    def seek_tail(self) -> str | None:
        """Go to the newest matching entry; return its cursor (None: no entry yet).

        ``next`` returns only entries appended from now on.
        """
        self._reader.seek_tail()
        entry = self._reader.get_previous()
        if not entry:
            # Nothing matches yet. From the tail, sd_journal treats entries of a file
            # it discovers later as history and skips them; from the head it reads
            # them, and here the head is the tail.
            self._reader.seek_head()
            return None
        return entry.get("__CURSOR")

    def seek(self, cursor: str) -> bool:
        """Go to the entry at ``cursor`` so that ``next`` returns the one after it.

        Return False, with the position undefined, when the cursor is malformed or
        names no entry of this journal (a wiped journal, another machine's, an
        entry vacuumed away): the caller must seek elsewhere.
        """
        try:
            self._reader.seek_cursor(cursor)
            if not self._reader.get_next():
                return False
            return bool(self._reader.test_cursor(cursor))
        except (ValueError, OSError):  # a malformed cursor; or no current entry (EADDRNOTAVAIL)
            return False

    def close(self) -> None:
        """Close the journal files."""
        self._reader.close()


def entry_line(entry: Mapping[str, Any]) -> LogLine:
    """Return the LogLine of one journal entry, as ``Reader.get_next`` returns it."""
    meta = {name: value if type(value) is str else _text(value)
            for name, value in entry.items() if name[0:2] != "__" and name != "MESSAGE"}
    return LogLine(
        text=_text(entry.get("MESSAGE", "")),
        received=_seconds(entry),
        key=entry.get("__CURSOR"),
        meta=meta,
    )


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list):
        return "\n".join(_text(item) for item in value)
    return str(value)


def _seconds(entry: Mapping[str, Any]) -> float:
    source = entry.get("_SOURCE_REALTIME_TIMESTAMP")
    if source is not None:
        try:
            return int(_text(source)) / 1e6
        except ValueError:
            pass
    realtime = entry.get("__REALTIME_TIMESTAMP", 0)
    if hasattr(realtime, "timestamp"):  # a Reader with the default converters gives a datetime
        return realtime.timestamp()
    return int(realtime) / 1e6


class Saved(NamedTuple):
    """The follower's place: every entry up to ``cursor`` is done; ``counted`` was
    the pipeline's last counted key (``Pipeline.last_key``) when it was written."""

    cursor: str
    counted: str | None = None


class CursorFile:
    """Keep a :class:`Saved` in one small file, replaced atomically (``x.new``, then rename).

    The file holds one JSON object ``{"cursor": ..., "counted": ...}``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def load(self) -> Saved | None:
        """Return what was saved, None when nothing was; raise ValueError for a damaged file."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            raise ValueError(f"cannot read {self.path}: {error}") from None
        cursor = data.get("cursor") if isinstance(data, dict) else None
        if not isinstance(cursor, str) or not cursor:
            raise ValueError(f"{self.path} holds no cursor")
        counted = data.get("counted")
        return Saved(cursor, counted if isinstance(counted, str) and counted else None)

    def save(self, saved: Saved) -> None:
        """Replace the file with ``saved``: a reader sees the old or the new, never a mix."""
        fresh = self.path.with_name(self.path.name + ".new")
        fresh.write_text(json.dumps(saved._asdict()) + "\n", encoding="utf-8")
        os.replace(fresh, self.path)
