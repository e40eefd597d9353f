"""The benchmarks' smoke run: every harness works end to end on this machine. Figures are never asserted."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.lab import ROOT

pytestmark = pytest.mark.integration

BENCHES = ("replay", "test --grammar", "rsyslog", "latency", "flood", "memory")


def test_bench_smoke_runs_every_benchmark_and_prints_the_table(tmp_path):
    done = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--out", str(tmp_path / "out")],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    header = r"^\| bench +\| case +\| size +\| omprog-ban +\| reference +\| ratio +\| notes +\|$"
    assert re.search(header, done.stdout, re.MULTILINE), done.stdout
    for bench in BENCHES:
        assert re.search(rf"^\| {bench}", done.stdout, re.MULTILINE), f"no {bench} row:\n{done.stdout}"
    assert (tmp_path / "out" / "results.md").read_text().startswith("| bench")
