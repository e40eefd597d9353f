"""omprog-ban replay and test against fail2ban-regex, on the same files in one run.

- ``omprog-ban replay``: in a fresh interpreter (no memo warm from an earlier
  run), the replay command's own loop (``commands.replay.replay``: ``Pipeline``
  with its ``Collect`` backend) on one jail of bench/jails.toml; timed
  from the first line read to the last line handled (config loading and
  imports excluded; printing the bans too).
- ``omprog-ban test --grammar G FILE``: the command itself (``cli.main``) in a
  fresh interpreter, output captured; its time on an empty file is subtracted.
- ``fail2ban-regex -r FILE FILTER``: a subprocess; the time is its own
  ``[processed in X sec]`` (its start-up excluded, like ours). Below 0.1 s that
  figure is too coarse and the wall time less the wall time on an empty file
  is taken instead.

Each file gets ``--repeat`` rounds (3): our replay, fail2ban-regex, our test,
back to back. Each of ours is divided by its round's fail2ban-regex rate: runs
seconds apart, where the fastest of each side could come from minutes apart on
a machine whose speed drifts (on session 4's VM the same replay took 0.81 s to
1.41 s within a minute). The round with the median ratio is shown, the spread
in the notes. Both sides also report how many lines counted as failures, as a
check that the filters are equivalent. ``python -m bench.replay [--lines N]``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench import generate
from bench.table import Row, count, rate, render
from omprog_ban import cli, config as configuration
from omprog_ban.commands.replay import Collect, replay
from omprog_ban.pipeline import Pipeline

HERE = Path(__file__).resolve().parent
JAILS = HERE / "jails.toml"
STOCK = Path("/etc/fail2ban/filter.d")


@dataclass(frozen=True)
class Service:
    """One log: the omprog-ban jail and grammar that read it, and the fail2ban filter that does the same."""

    jail: str
    grammar: str
    filter: Path


SERVICES = {
    "amps": Service("amps", "amps", HERE / "filters" / "amps.conf"),
    "apache-error": Service("apache-fourofour", "apache-error", HERE / "filters" / "apache-fourofour.conf"),
    "apache-access": Service("apache-404", "apache-access", HERE / "filters" / "apache-access-404.conf"),
    "elgg": Service("elgg", "elgg", HERE / "filters" / "elgg.conf"),
    "named": Service("named-refused", "named", STOCK / "named-refused.conf"),
}
F2B_LINES = re.compile(r"Lines: (\d+) lines, (\d+) ignored, (\d+) matched, (\d+) missed\s*\[processed in ([\d.]+) sec\]")


@dataclass(frozen=True)
class Timing:
    """Lines processed, seconds taken, and how many lines counted as failures (bans: replay only)."""

    lines: int
    seconds: float
    failures: int
    bans: int = 0


def ensure_fail2ban() -> None:
    """Install Debian's fail2ban if fail2ban-regex is missing, without ever starting its service."""
    if shutil.which("fail2ban-regex"):
        return
    policy = Path("/usr/sbin/policy-rc.d")
    ours = not policy.exists()
    if ours:  # invoke-rc.d asks it: 101 means "do not start anything"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "fail2ban"], check=True, env=env,
                       stdout=subprocess.DEVNULL)
    finally:
        if ours:
            policy.unlink()


def jail_config(service: str, state_dir: Path) -> configuration.Config:
    """Return bench/jails.toml with only ``service``'s jail."""
    config = configuration.load(JAILS, state_dir=str(state_dir))
    name = SERVICES[service].jail
    return dataclasses.replace(config, jails={name: config.jails[name]})


def omprog_replay(config: configuration.Config, path: Path) -> Timing:
    """Run ``path`` through the replay pipeline (grammar, jail, engine, dry backend); time it."""
    backend = Collect()
    pipeline = Pipeline(config, backend, ledger=None, log_time=True)
    start = time.perf_counter()
    lines = replay(pipeline, [str(path)], lambda ban, path, number: None)
    seconds = time.perf_counter() - start
    return Timing(lines, seconds, sum(c.counted for c in pipeline.counters.values()), len(backend.bans))


def _test_command(grammar: str, path: Path) -> tuple[float, str]:
    output = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(output):
        code = cli.main(["test", "--grammar", grammar, str(path)])
    seconds = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(f"omprog-ban test --grammar {grammar} {path} exited {code}")
    return seconds, output.getvalue()


def omprog_test(grammar: str, path: Path, empty: Path) -> Timing:
    """Run ``omprog-ban test --grammar`` on ``path``; time it less its time on an empty file."""
    startup, _ = _test_command(grammar, empty)
    seconds, output = _test_command(grammar, path)
    found = re.search(r"Lines: (\d+) read, (\d+) matched", output)
    if found is None:
        raise RuntimeError(f"omprog-ban test printed no summary: {output[-300:]!r}")
    return Timing(int(found[1]), max(seconds - startup, 1e-9), int(found[2]))


def _fail2ban(path: Path, filter_path: Path) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(["fail2ban-regex", "-r", "--print-no-missed", "--print-no-ignored", str(path), str(filter_path)],
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"fail2ban-regex {path} {filter_path} exited {done.returncode}: {done.stderr[-500:]}")
    return seconds, done.stdout


def fail2ban_regex(path: Path, filter_path: Path, empty: Path) -> Timing:
    """Run fail2ban-regex on ``path``; return its processing time (see the module's docstring)."""
    wall, output = _fail2ban(path, filter_path)
    found = F2B_LINES.search(output)
    if found is None:
        raise RuntimeError(f"fail2ban-regex printed no summary: {output[-500:]!r}")
    lines, _ignored, matched, _missed, processed = found.groups()
    seconds = float(processed)
    if seconds < 0.1:
        startup, _ = _fail2ban(empty, filter_path)
        seconds = max(wall - startup, 1e-9)
    return Timing(int(lines), seconds, int(matched))


def fresh(kind: str, service: str, path: Path, workdir: Path) -> Timing:
    """Time ``omprog_replay`` (kind "replay") or ``omprog_test`` ("test") in a fresh interpreter,
    as fail2ban-regex runs: no memo (addresses, stamps) is warm from an earlier run."""
    done = subprocess.run([sys.executable, "-m", "bench.replay", "--time", kind, service, str(path), "--out", str(workdir)],
                          capture_output=True, text=True, cwd=HERE.parent)
    if done.returncode != 0:
        raise RuntimeError(f"bench.replay --time {kind} {service} {path}: {done.stderr[-500:]}")
    return Timing(**json.loads(done.stdout))


def _time_one(kind: str, service: str, path: Path, workdir: Path) -> Timing:
    spec = SERVICES[service]
    if kind == "replay":
        return omprog_replay(jail_config(service, workdir / "state"), path)
    empty = workdir / "empty.log"
    empty.write_text("")
    return omprog_test(spec.grammar, path, empty)


def run(workdir: Path, lines: int, seed: int = 7, repeat: int = 3) -> list[Row]:
    """Generate the logs into ``workdir``, time every reader on each; return the table's rows.

    ``repeat`` rounds per file; a round runs our replay, fail2ban-regex and our
    test back to back, and each of ours is divided by that round's fail2ban-regex
    rate: a ratio from runs seconds apart, on a machine whose speed drifts. The
    round with the median ratio is the one shown (its rates and ratio); the
    spread of the ratios over the rounds is in the notes.
    """
    ensure_fail2ban()
    logs = workdir / "logs"
    workdir.mkdir(parents=True, exist_ok=True)
    empty = workdir / "empty.log"
    empty.write_text("")
    rows = []
    for service, mix, path in generate.write_all(logs, lines, seed):
        spec = SERVICES[service]
        rounds = []
        for _ in range(repeat):
            replayed = fresh("replay", service, path, workdir)
            peer = fail2ban_regex(path, spec.filter, empty)
            rounds.append({"replay": replayed, "fail2ban": peer, "test": fresh("test", service, path, workdir)})
        case = f"{service} {mix}"
        for kind in ("replay", "test"):
            paired = sorted((((r[kind].lines / r[kind].seconds) / (r["fail2ban"].lines / r["fail2ban"].seconds),
                              r[kind], r["fail2ban"]) for r in rounds), key=lambda item: item[0])
            ratio, ours, peer = paired[len(paired) // 2]
            spread = f"ratio {paired[0][0]:.2f}-{paired[-1][0]:.2f} over {len(paired)} rounds"
            if kind == "replay":
                notes = f"failures {count(ours.failures)} / fail2ban {count(peer.failures)}; {count(ours.bans)} bans; {spread}"
                name = "replay"
            else:
                notes = f"grammar matched {count(ours.failures)}; {spread}"
                name = f"test --grammar {spec.grammar}"
            rows.append(Row(name, case, count(ours.lines), rate(ours.lines, ours.seconds),
                            f"fail2ban-regex {rate(peer.lines, peer.seconds)}", ratio, notes))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.replay", description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=100_000, help="lines per file (default 100000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=HERE / "out")
    parser.add_argument("--repeat", type=int, default=3, help="runs per reader and file; the fastest counts")
    parser.add_argument("--time", nargs=3, metavar=("KIND", "SERVICE", "FILE"),
                        help="internal: time one run of replay or test in this (fresh) interpreter; print it as JSON")
    args = parser.parse_args()
    os.environ["TZ"] = "UTC"
    time.tzset()
    if args.time:
        kind, service, path = args.time
        print(json.dumps(dataclasses.asdict(_time_one(kind, service, Path(path), args.out))))
        return
    print(render(run(args.out, args.lines, args.seed, args.repeat)))


if __name__ == "__main__":
    main()
