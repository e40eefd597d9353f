"""The benchmarks: seeded logs are reproducible, and every harness works end to end. Figures are never asserted."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from bench import generate
from tests.lab import ROOT

BENCHES = ("replay", "test --grammar", "rsyslog", "latency", "flood", "memory")


def test_generated_logs_depend_only_on_seed_and_size(tmp_path):
    first = {path.name: path.read_bytes() for _, _, path in generate.write_all(tmp_path / "a", 500, seed=3)}
    again = {path.name: path.read_bytes() for _, _, path in generate.write_all(tmp_path / "b", 500, seed=3)}
    other = {path.name: path.read_bytes() for _, _, path in generate.write_all(tmp_path / "c", 500, seed=4)}
    assert first == again
    assert len(first) == 10 and all(text.count(b"\n") == 500 for text in first.values())
    assert all(first[name] != other[name] for name in first)


@pytest.mark.integration
def test_bench_smoke_runs_every_benchmark_and_prints_the_table(tmp_path):
    done = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--out", str(tmp_path / "out")],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    header = r"^\| bench +\| case +\| size +\| omprog-ban +\| reference +\| ratio +\| notes +\|$"
    assert re.search(header, done.stdout, re.MULTILINE), done.stdout
    for bench in BENCHES:
        assert re.search(rf"^\| {bench}", done.stdout, re.MULTILINE), f"no {bench} row:\n{done.stdout}"
    assert (tmp_path / "out" / "results.md").read_text().startswith("| bench")
