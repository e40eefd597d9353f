"""The dry-run backend: decides nothing away, touches no kernel, prints each ban."""

from __future__ import annotations

import json
import sys
from typing import Any, Iterable, Sequence, TextIO

from omprog_ban.config import Jail
from omprog_ban.model import Ban, Network
from omprog_ban.nft import Element


class DryRun:
    """A backend that touches no kernel: it writes each ban as a JSON line to ``stream``.

    It answers ``elements`` like a kernel that kept what it was given: the bans
    it printed (and, after ``remember``, those a dry-run ledger shows), so a
    restarted dry run does not print the running bans again.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.table = "dry-run"
        self.running: dict[tuple[str, str], float] = {}
        self.now = 0.0

    def ensure(self, jails: Iterable[Jail], max_set_size: int = 0, blocklist: Sequence[Network] = ()) -> None:
        """Nothing to create."""

    def exists(self) -> bool:
        """Always there."""
        return True

    def remember(self, records: Iterable[Any], now: float) -> None:
        """Take the running bans from ledger records (B adds, U removes) as of ``now``."""
        for record in records:
            if record.kind == "B":
                self.running[(record.jail, record.address)] = record.time + float(record.extra or 0)
            elif record.kind == "U":
                self.running.pop((record.jail, record.address), None)
        self.now = now

    def ban(self, bans: Sequence[Ban]) -> None:
        """Write one JSON object per ban: time, jail, host, bantime."""
        for ban in bans:
            self.running[(ban.jail, str(ban.address))] = ban.until
            self.stream.write(json.dumps({"time": ban.time, "jail": ban.jail, "host": str(ban.address), "bantime": ban.bantime, "failures": ban.failures}) + "\n")
        self.stream.flush()

    def unban(self, address: Any, jail: str | None = None) -> list[str]:
        """Forget ``address``."""
        gone = [key for key in self.running if key[1] == str(address) and jail in (None, key[0])]
        for key in gone:
            del self.running[key]
        return [key[0] for key in gone]

    def elements(self) -> list[Element]:
        """Return the bans given or remembered that still run."""
        return [Element(jail, address, until - self.now, None)
                for (jail, address), until in self.running.items() if until > self.now]
