"""Prometheus metrics as a textfile (for node_exporter's textfile collector).

``render`` turns the per-jail counters, the error counts and the nft batch
latency into the text exposition format (``# HELP``/``# TYPE``, names prefixed
``omprog_ban_``); ``write`` puts it in place atomically (``x.new``, then
rename), so a scrape never reads half a file. ``Timed`` wraps a backend and
times every ``ban`` call (one nft transaction) into a ``Histogram``.
Counters start from zero with each process; Prometheus treats that as a reset.
"""

from __future__ import annotations

import os
import time
from bisect import bisect_left
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

# One nft transaction takes about 0.6 ms here; the top buckets catch a stalled kernel.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5)

JAIL_COUNTERS = (
    ("lines", "lines_total", "Log lines offered to the jail."),
    ("candidates", "candidates_total", "Lines that mention the jail's grammar's keyword."),
    ("parsed", "parsed_total", "Candidate lines the grammar parsed, address included (a failure or not)."),
    ("matched", "matches_total", "Candidate lines the grammar turned into a failure with an address."),
    ("counted", "failures_total", "Failures counted towards a ban (after rules, filters, trust)."),
    ("bans", "bans_total", "Bans applied to the kernel (restored ones included)."),
)


class Histogram:
    """Observations counted into cumulative ``buckets`` (upper bounds, seconds) with count and sum."""

    def __init__(self, buckets: Sequence[float] = BUCKETS) -> None:
        self.buckets = tuple(sorted(buckets))
        self.counts = [0] * (len(self.buckets) + 1)  # the last one is +Inf
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count one observation of ``value``."""
        self.counts[bisect_left(self.buckets, value)] += 1
        self.count += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, int]]:
        """Return (le, observations at or below it) for each bucket, +Inf last."""
        result, running = [], 0
        for bound, count in zip([*map(_number, self.buckets), "+Inf"], self.counts):
            running += count
            result.append((bound, running))
        return result


class Timed:
    """Forward everything to ``backend``; time each ``ban`` call (failed ones too) into ``histogram``
    and count the ones that failed (``refused``)."""

    def __init__(self, backend: Any, histogram: Histogram, clock: Callable[[], float] = time.perf_counter) -> None:
        self.backend = backend
        self.histogram = histogram
        self.clock = clock
        self.refused = 0  # ban transactions that raised, wherever they were tried from

    def ban(self, bans: Sequence[Any]) -> None:
        """Apply ``bans`` through the backend, timing the call and counting refusals."""
        start = self.clock()
        try:
            self.backend.ban(bans)
        except Exception:
            self.refused += 1
            raise
        finally:
            self.histogram.observe(self.clock() - start)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)


def render(jails: Mapping[str, Any], tracked: Mapping[str, int], nft_errors: int, restores: int,
           latency: Histogram, pinned: int = 0) -> str:
    """Return the exposition text for ``jails`` (name -> Counters), ``tracked`` and the rest."""
    lines: list[str] = []
    for attribute, name, text in JAIL_COUNTERS:
        _header(lines, name, "counter", text)
        lines.extend(f'omprog_ban_{name}{{jail="{_label(jail)}"}} {getattr(counters, attribute)}' for jail, counters in jails.items())
    _header(lines, "last_match_timestamp_seconds", "gauge", "When the jail's grammar last parsed an address (0: never).")
    lines.extend(f'omprog_ban_last_match_timestamp_seconds{{jail="{_label(jail)}"}} {_number(c.last_match)}' for jail, c in jails.items())
    _header(lines, "tracked_addresses", "gauge", "Addresses with failures in the jail's window.")
    lines.extend(f'omprog_ban_tracked_addresses{{jail="{_label(jail)}"}} {count}' for jail, count in tracked.items())
    _header(lines, "nft_errors_total", "counter", "nft transactions that failed.")
    lines.append(f"omprog_ban_nft_errors_total {nft_errors}")
    _header(lines, "restores_total", "counter", "Times the table had vanished and was rebuilt.")
    lines.append(f"omprog_ban_restores_total {restores}")
    _header(lines, "pinned_uuids", "gauge", "Keys of counted messages that rsyslog may deliver again, held so they count once.")
    lines.append(f"omprog_ban_pinned_uuids {pinned}")
    _header(lines, "ban_batch_seconds", "histogram", "Time spent in one nft ban transaction.")
    lines.extend(f'omprog_ban_ban_batch_seconds_bucket{{le="{bound}"}} {count}' for bound, count in latency.cumulative())
    lines.append(f"omprog_ban_ban_batch_seconds_sum {_number(latency.sum)}")
    lines.append(f"omprog_ban_ban_batch_seconds_count {latency.count}")
    return "\n".join(lines) + "\n"


def write(path: str | Path, text: str) -> None:
    """Replace the file at ``path`` with ``text`` atomically (write ``path.new``, then rename)."""
    path = Path(path)
    fresh = path.with_name(path.name + ".new")
    fresh.write_text(text)
    os.replace(fresh, path)


def add_argument(parser: Any) -> None:
    """Add ``--metrics-file`` to a command that builds a Runtime (``run``, ``journal``)."""
    parser.add_argument("--metrics-file", metavar="PATH",
                        help="write Prometheus metrics to PATH every ~2 s (for node_exporter's textfile collector)")


def _header(lines: list[str], name: str, kind: str, text: str) -> None:
    lines.append(f"# HELP omprog_ban_{name} {text}")
    lines.append(f"# TYPE omprog_ban_{name} {kind}")


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return repr(float(value)) if value != int(value) else str(int(value))
