"""Show what each jail has seen, from the status.json that the running instance rewrites every ~2 s.

Per jail: lines seen, candidate lines (they mention the grammar's keyword),
lines matched (an address was extracted), failures counted, bans, last match.
It warns when a jail sees candidate lines but extracts no address at all (a log
format change, or addresses anonymised away: bans silently stop), when the
writer process is gone, and when the status has not been rewritten lately.
Exit 0 without warnings, 1 with any, 66 when there is no status.json yet.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable

from omprog_ban import cli
from omprog_ban.deliveries import PINNED

NAME = "status"
HELP = "per jail counters of the running instance, with warnings"
FILE = "status.json"
EX_NOINPUT = 66
STALE = 15.0  # seconds; the writer rewrites the file every ~2 s


def add_arguments(parser) -> None:
    """Add status's options."""
    parser.add_argument("--json", action="store_true", help="print the status and warnings as one JSON object")


def main(args) -> int:
    """Print the status; exit 1 when there is a warning."""
    config = cli.load_config(args)
    path = Path(config.state_dir) / FILE
    try:
        data = collect(json.loads(path.read_text()), time.time())
    except FileNotFoundError:
        print(f"omprog-ban: no {path}: omprog-ban has not run with this state directory")
        return EX_NOINPUT
    except ValueError as error:
        print(f"omprog-ban: {path} is not valid JSON: {error}")
        return EX_NOINPUT
    data["status"] = str(path)
    print(json.dumps(data, indent=1) if args.json else table(data))
    return 1 if data["warnings"] else 0


def collect(status: dict[str, Any], now: float, alive: Callable[[int], bool] | None = None) -> dict[str, Any]:
    """Return ``status`` (status.json's content) with the writer's state, its age and warnings.

    ``alive(pid)`` tells whether the writer runs (default: a signal-0 probe of an omprog-ban process).
    """
    alive = alive or running
    pid = int(status.get("pid", 0))
    age = now - float(status.get("time", 0.0))
    data = {"time": status.get("time"), "age": round(age, 1), "pid": pid, "running": bool(pid) and alive(pid),
            "nft_errors": status.get("nft_errors", 0), "restores": status.get("restores", 0),
            "pinned": status.get("pinned", 0),
            "shields": status.get("shields", {}), "jails": status.get("jails", {}), "warnings": []}
    warnings = data["warnings"]
    if not data["running"]:
        warnings.append(f"the writer (pid {pid}) is not running: these counters are from a stopped instance")
    elif age > STALE:
        warnings.append(f"the status is {age:.0f}s old (rewritten every ~2s): the writer (pid {pid}) may be stuck")
    if data["pinned"] >= PINNED * 9 // 10:
        warnings.append(f"{data['pinned']} uuids pinned (at most {PINNED}, the oldest go first): after that many "
                        "refused or crashed batches, a message rsyslog delivers again later still could count twice")
    if status.get("shields", {}).get("up"):
        warnings.append(f"shields are up: failures exceed {status['shields']['rate']:g}/s over all jails, "
                        f"maxretry is scaled by {status['shields']['factor']:g}")
    for name, jail in data["jails"].items():
        if jail.get("tripped"):
            warnings.append(f"jail {name}: over max_bans_per_minute: LOG-ONLY, {jail.get('suppressed', 0)} bans held back")
        if jail.get("candidates", 0) > 0 and jail.get("parsed", jail.get("matched", 0)) == 0:
            warnings.append(
                f"jail {name}: {jail['candidates']} candidate lines but no address extracted: "
                "this jail cannot ban; has the log format changed or lost its addresses? "
                "check a recent line against the jail's grammar"
            )
    return data


def running(pid: int) -> bool:
    """Return True when ``pid`` is a live omprog-ban process (not a reused pid)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return True
    return any(Path(arg).name in ("omprog-ban", "omprog_ban") for arg in argv)


def table(data: dict[str, Any]) -> str:
    """Return the status as the text a person reads."""
    state = "running" if data["running"] else "NOT running"
    lines = [f"writer pid {data['pid']}: {state}, status written {data['age']:g}s ago"
             + (f" ({data['status']})" if data.get("status") else ""),
             f"nft errors {data['nft_errors']}, table restores {data['restores']}, uuids pinned {data['pinned']}", "",
             f"{'JAIL':<16} {'LINES':>10} {'CANDIDATES':>10} {'MATCHED':>10} {'COUNTED':>10} {'BANS':>6} {'TRACKED':>7}  LAST MATCH"]
    for name, jail in data["jails"].items():
        last = jail.get("last_match") or 0
        when = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(last)) if last else "never"
        lines.append(f"{name:<16} {jail.get('lines', 0):>10} {jail.get('candidates', 0):>10} {jail.get('matched', 0):>10} "
                     f"{jail.get('counted', 0):>10} {jail.get('bans', 0):>6} {jail.get('tracked', 0):>7}  {when}")
    if data["warnings"]:
        lines.append("")
        lines.extend(f"WARNING: {warning}" for warning in data["warnings"])
    return "\n".join(lines)
