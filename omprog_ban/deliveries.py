"""Deliveries: which messages were counted, so that a resend counts nothing.

rsyslog delivers a message until it has our ``OK`` for it (or for the commit
of its transaction), and sometimes after. A message we counted may come again:

- right away, when the reply was an error or the process died before it;
- a whole queue later. rsyslog 8.2302 puts a message back at the *end* of its
  queue when it could not send ``BEGIN TRANSACTION`` for it (the child had
  died), and yet delivers it in the new child's first transaction: action.c's
  ``processBatchMain`` leaves its state "ready", and queue.c's
  ``DeleteProcessedBatch`` enqueues every "ready" message again. With the
  shipped ``queue.size`` that is up to 200,000 messages later, more when the
  queue spills to disk. The soak (``bench/soak.py``) saw messages come back
  85,000 and 200,000 messages later, when only the last 32,768-65,536 keys
  were remembered, and the bystanders they carried were banned.

So two memories, both of delivery keys (rsyslog's uuid, a journal cursor):

``recent``
    The keys of the last RECENT counted messages (the older half is dropped
    at once when full). A resend in a race (an ``OK`` written as the process
    died) comes soon and is found here.
``pinned``
    The keys of counted messages that may come again however late: a batch
    answered with an error, the first keys a fresh process counts (``watch``),
    what a process had not settled when it died, and the last batch it
    confirmed (its ``OK`` was written, but the relay that forwards it to
    rsyslog may have died first). They stay until a resend of theirs is
    confirmed outside a fresh process's watch; only when PINNED of them are
    held does the oldest go. Nothing is pinned while every reply is ``OK`` and
    no process dies.

The source tells which: ``settle(True)`` once the messages counted since the
last settle are confirmed (their ``OK`` written, or answered by the relay),
``settle(False)`` when they may come again. Each settle returns the ledger
entries that record it (markers ``C``/``P``, and ``R`` for a pin released), so
that a new process knows which keys to pin (see ``restore``): those before a
``P``, those after the last marker (what the dead one had not settled), and
those before the last ``C`` (what it settled last).
"""

from __future__ import annotations

from typing import Iterable

RECENT = 65536  # keys of the last counted messages: more than any batch rsyslog resends at once
# Keys of messages that may come again. rsyslog retries a refused batch on the
# spot and keeps retrying it (``action.resumeRetryCount="-1"``): an outage pins
# one batch, not the queue. A crash pins a few batches (the first WATCHED keys
# after it, what was not settled, the last batch confirmed), and those pins that
# are never resent stay until PINNED newer ones push them out: 40 fresh starts.
# A pin is its key (the same string as in ``recent`` while it is there): a dict
# entry, 32 bytes (tracemalloc), and the uuid's own 81 once ``recent`` has let it
# go: 14.8 MB at most. The hot path looks it up as it is (no conversion).
PINNED = 131072
# A fresh process pins the first WATCHED keys it counts (``watch``): twice the
# shipped queue.dequeueBatchSize (1,024), the most a batch rsyslog retries holds.
WATCHED = 2048


class Deliveries:
    """The keys of counted messages: ``recent`` ones and ``pinned`` ones that may come again."""

    def __init__(self) -> None:
        self.recent: dict[str, None] = {}
        self.pinned: dict[str, None] = {}  # the same dict throughout: the hot path binds it
        self.open: list[str] = []  # keys counted since the last settle
        self.retried: list[str] = []  # pinned keys resent since the last settle
        self.watching = 0  # keys still to pin whatever their settle (``watch``)
        self.last: list[str] = []  # the keys of the last confirmed settle (see ``restore``)

    def watch(self, limit: int = WATCHED) -> None:
        """Pin the next ``limit`` keys counted (at least), confirmed or not.

        For a process rsyslog started after its child died. rsyslog 8.2302, when it
        cannot send ``BEGIN TRANSACTION`` for a message (the child is dead), leaves
        the message "ready" (action.c ``processBatchMain``), delivers it with the rest
        of the batch to the new child all the same, and at the end of the batch puts
        it back at the end of its queue (queue.c ``DeleteProcessedBatch``): it comes
        again up to a queue's depth later, ``OK`` or not. The batch comes as one
        transaction, or, when that one's commit fails, in groups down to one
        message a transaction (``actionTryRemoveHardErrorsFromBatch``), possibly
        to yet another child; rsyslog moves on only when the batch is done, so the
        first keys a fresh process counts hold all of it that it counts. (A first
        version stopped at the first settle of more than one key: the soak, traced,
        showed the retried batch coming as settles of 1, 1, 3, 5, 1, 1, 3 keys.)
        Pinned keys resent meanwhile stay pinned, confirmed or not: that resend may
        be the one rsyslog delivers again later (a batch of resends only, such as
        the last batch a dead process had confirmed, counts no key).
        """
        self.watching = limit

    def resent(self, key: str) -> bool:
        """Return whether ``key`` was counted before (a resend: count nothing).

        A pinned key found again is noted, so that the settle of its resend
        releases it (or pins it again). ``Pipeline._count`` calls this only
        for a pinned key, and looks in ``recent`` itself otherwise.
        """
        if key in self.pinned:
            self.retried.append(key)
            return True
        return key in self.recent

    def count(self, key: str) -> None:
        """Note that the message with ``key`` was counted."""
        recent = self.recent
        recent[key] = None
        self.open.append(key)
        if len(recent) > RECENT:  # drop the older half at once: O(1) amortised
            self.recent = dict.fromkeys(list(recent)[RECENT // 2:])
        if len(self.open) > PINNED:  # a source that never settles: keep the newest
            del self.open[:PINNED // 2]

    def settle(self, confirmed: bool) -> list[tuple[str, str]]:
        """Close the messages counted since the last settle: ``confirmed`` (their ``OK`` is
        written, and rsyslog will not deliver them again) releases the pins of those
        resent; otherwise their keys are pinned.

        Return the ledger entries that record it, for ``restore``: ``("R", key)`` for
        each pin released, then the marker ``("C", "")`` or ``("P", "")`` when keys
        were counted; nothing when nothing was open.
        """
        opened, retried = self.open, self.retried
        if not opened and not retried:
            return []
        if self.watching:
            confirmed = False
            self.watching = max(0, self.watching - len(opened))
        elif confirmed and opened:
            self.last = opened
        entries: list[tuple[str, str]] = []
        pinned = self.pinned
        if confirmed:
            for key in retried:
                if pinned.pop(key, False) is None:
                    entries.append(("R", key))
        else:
            for key in retried:  # pinned again, as new: its resend was refused too
                pinned.pop(key, None)
            pinned.update(dict.fromkeys(opened))
            pinned.update(dict.fromkeys(retried))
            _cap(pinned)
        self.open, self.retried = [], []
        if opened:
            entries.append(("C" if confirmed else "P", ""))
        return entries

    def restore(self, entries: Iterable[tuple[str, str]]) -> None:
        """Rebuild from a ledger's entries in order: ``("F", key)`` for a counted message,
        and what ``settle`` returned. Pinned are the keys left after the last marker
        (the process that counted them had not settled them) and those of the last
        confirmed settle: that process wrote their ``OK``, yet rsyslog gets it from
        the relay, which may have died before it passed it on; rsyslog then resends
        the batch, and may deliver it once more a queue later (see ``watch``). A
        group of more than WATCHED keys is no batch but a compaction's recent keys
        (the dead process settled nothing after it): not pinned. A ledger without
        any marker was written before markers existed (every start compacts, and a
        compaction writes them): its keys are only recent, as that version kept them."""
        marked = False
        for kind, key in entries:
            if kind == "F":
                self.count(key)
            elif kind == "R":
                self.pinned.pop(key, None)
            else:
                marked = True
                self.settle(kind == "C")
        self.settle(not marked)
        if marked and len(self.last) <= WATCHED:
            self.pinned.update(dict.fromkeys(self.last))
            _cap(self.pinned)
        self.last = []

    def compacted(self, last_key: str | None) -> list[tuple[str, str]]:
        """Return the entries that rebuild this memory with ``restore``: the recent keys, the
        pinned ones, those of the last confirmed settle, the open ones. ``last_key`` comes
        last among the keys (``restore``'s caller takes the last key read as the last
        counted): in the last settle's group when it belongs to it, else in its own."""
        pinned = self.pinned
        # The last confirmed settle is written last among the settled keys, so that
        # ``restore`` finds it again (``last_key`` closes it when it belongs to it).
        last = [key for key in self.last if key != last_key and key not in pinned]
        skip = set(last)
        entries = [("F", key) for key in self.recent if key != last_key and key not in pinned and key not in skip]
        entries.append(("C", ""))
        entries.extend(("F", key) for key in pinned if key != last_key)
        entries.append(("P", ""))
        closes = bool(last_key) and not self.open and last_key not in pinned  # last_key settled as confirmed
        if last:
            entries.extend(("F", key) for key in last)
            if closes and last_key in self.last:
                entries.extend((("F", last_key), ("C", "")))
                return entries
            entries.append(("C", ""))
        entries.extend(("F", key) for key in self.open if key != last_key)
        if last_key:
            entries.append(("F", last_key))
            if not self.open:  # settled: close it as it was settled
                entries.append(("C", "") if closes else ("P", ""))
        return entries


def _cap(pinned: dict) -> None:
    """Drop the oldest pins beyond PINNED."""
    excess = len(pinned) - PINNED
    if excess > 0:
        for key in list(pinned)[:excess]:
            del pinned[key]
