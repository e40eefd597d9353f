"""Report the top offenders from the ban history: bans, share of all bans, mean interval; per jail totals.

Reads ``history.sqlite`` in the state directory read-only, so it works while
``run`` holds the state directory. ``--since 1d`` limits it to the last day.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from omprog_ban import cli, history, validate

NAME = "report"
HELP = "top offenders and per jail totals from the ban history"


def add_arguments(parser) -> None:
    """Add report's options."""
    parser.add_argument("--since", metavar="D", help='only bans in the last D ("1d", "12h", seconds; default: all kept)')
    parser.add_argument("--top", metavar="N", type=int, default=20, help="offenders to show (default 20; 0: all)")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")


def main(args) -> int:
    """Print the report; exit 64 on a bad --since."""
    config = cli.load_config(args)
    now = time.time()
    try:
        since = now - validate.duration(args.since, "--since") if args.since else None
    except validate.ConfigError as error:
        print(f"omprog-ban: {error}")
        return cli.EX_USAGE
    data = collect(Path(config.state_dir) / history.FILE, since, args.top or None)
    print(json.dumps(data, indent=1) if args.json else table(data))
    return 0


def collect(path: Path, since: float | None, top: int | None = None) -> dict[str, Any]:
    """Return the report on the history at ``path`` (bans at or after ``since``) as plain data.

    Shares are percentages of all bans in the report, rounded to 2 places;
    ``interval`` is the mean seconds between an address's bans (None for one ban).
    """
    data: dict[str, Any] = {"history": str(path), "since": since, "bans": 0, "addresses": 0,
                            "first": None, "last": None, "offenders": [], "jails": []}
    if not path.exists():
        return data
    store = history.History(path, read_only=True)
    try:
        start = since or 0.0
        total, addresses, first, last = store.totals(start)
        data.update(bans=total, addresses=addresses, first=first, last=last)
        data["offenders"] = [
            {"address": o.address, "bans": o.bans, "share": _share(o.bans, total), "interval": o.interval,
             "first": o.first, "last": o.last, "jails": list(o.jails)}
            for o in store.offenders(start, top)
        ]
        data["jails"] = [
            {"jail": j.jail, "bans": j.bans, "share": _share(j.bans, total), "addresses": j.addresses}
            for j in store.jails(start)
        ]
    finally:
        store.close()
    return data


def table(data: dict[str, Any]) -> str:
    """Return the report as the text a person reads."""
    if not data["bans"]:
        window = f" since {_when(data['since'])}" if data["since"] is not None else ""
        return f"no bans{window} in {data['history']}"
    lines = [f"{data['bans']} bans of {data['addresses']} addresses from {_when(data['first'])} to {_when(data['last'])}", ""]
    lines.append(f"{'ADDRESS':<40} {'BANS':>6} {'BANS%':>6} {'INTERVAL':>9}  JAILS")
    for offender in data["offenders"]:
        interval = _duration(offender["interval"]) if offender["interval"] is not None else "-"
        lines.append(f"{offender['address']:<40} {offender['bans']:>6} {offender['share']:>5.1f}% {interval:>9}  "
                     + ",".join(offender["jails"]))
    shown = len(data["offenders"])
    if shown < data["addresses"]:
        lines.append(f"... and {data['addresses'] - shown} more addresses (--top 0 shows all)")
    lines += ["", f"{'JAIL':<24} {'BANS':>6} {'BANS%':>6} {'ADDRESSES':>9}"]
    for jail in data["jails"]:
        lines.append(f"{jail['jail']:<24} {jail['bans']:>6} {jail['share']:>5.1f}% {jail['addresses']:>9}")
    return "\n".join(lines)


def _share(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 2) if whole else 0.0


def _duration(seconds: float) -> str:
    """Return ``seconds`` in the largest unit that keeps it readable: 45s, 12.5m, 1.04h, 3.2d."""
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.2f}h"
    return f"{seconds / 86400:.1f}d"


def _when(moment: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(moment))
