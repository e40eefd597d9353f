"""The Prometheus textfile: exposition text, atomic writes, the timed backend, Runtime's --metrics-file."""

from __future__ import annotations

import pytest

from omprog_ban import config as config_module
from omprog_ban import metrics
from omprog_ban.model import LogLine
from omprog_ban.nft import NftError
from omprog_ban.pipeline import Counters
from omprog_ban.runtime import Runtime
from tests.test_history import LINE, Backend

EXPECTED = """\
# HELP omprog_ban_lines_total Log lines offered to the jail.
# TYPE omprog_ban_lines_total counter
omprog_ban_lines_total{jail="amps"} 100
# HELP omprog_ban_candidates_total Lines that mention the jail's grammar's keyword.
# TYPE omprog_ban_candidates_total counter
omprog_ban_candidates_total{jail="amps"} 40
# HELP omprog_ban_parsed_total Candidate lines the grammar parsed, address included (a failure or not).
# TYPE omprog_ban_parsed_total counter
omprog_ban_parsed_total{jail="amps"} 39
# HELP omprog_ban_matches_total Candidate lines the grammar turned into a failure with an address.
# TYPE omprog_ban_matches_total counter
omprog_ban_matches_total{jail="amps"} 38
# HELP omprog_ban_failures_total Failures counted towards a ban (after rules, filters, trust).
# TYPE omprog_ban_failures_total counter
omprog_ban_failures_total{jail="amps"} 37
# HELP omprog_ban_bans_total Bans applied to the kernel (restored ones included).
# TYPE omprog_ban_bans_total counter
omprog_ban_bans_total{jail="amps"} 1
# HELP omprog_ban_last_match_timestamp_seconds When the jail's grammar last parsed an address (0: never).
# TYPE omprog_ban_last_match_timestamp_seconds gauge
omprog_ban_last_match_timestamp_seconds{jail="amps"} 1768003200.5
# HELP omprog_ban_tracked_addresses Addresses with failures in the jail's window.
# TYPE omprog_ban_tracked_addresses gauge
omprog_ban_tracked_addresses{jail="amps"} 3
# HELP omprog_ban_nft_errors_total nft transactions that failed.
# TYPE omprog_ban_nft_errors_total counter
omprog_ban_nft_errors_total 2
# HELP omprog_ban_restores_total Times the table had vanished and was rebuilt.
# TYPE omprog_ban_restores_total counter
omprog_ban_restores_total 1
# HELP omprog_ban_pinned_uuids Keys of counted messages that rsyslog may deliver again, held so they count once.
# TYPE omprog_ban_pinned_uuids gauge
omprog_ban_pinned_uuids 7
# HELP omprog_ban_ban_batch_seconds Time spent in one nft ban transaction.
# TYPE omprog_ban_ban_batch_seconds histogram
omprog_ban_ban_batch_seconds_bucket{le="0.0005"} 1
omprog_ban_ban_batch_seconds_bucket{le="0.001"} 3
omprog_ban_ban_batch_seconds_bucket{le="0.0025"} 3
omprog_ban_ban_batch_seconds_bucket{le="0.005"} 3
omprog_ban_ban_batch_seconds_bucket{le="0.01"} 3
omprog_ban_ban_batch_seconds_bucket{le="0.025"} 3
omprog_ban_ban_batch_seconds_bucket{le="0.1"} 4
omprog_ban_ban_batch_seconds_bucket{le="0.5"} 4
omprog_ban_ban_batch_seconds_bucket{le="2.5"} 4
omprog_ban_ban_batch_seconds_bucket{le="+Inf"} 5
omprog_ban_ban_batch_seconds_sum 3.032
omprog_ban_ban_batch_seconds_count 5
"""


def test_render():
    latency = metrics.Histogram()
    for seconds in (0.0004, 0.0006, 0.001, 0.03, 3.0):  # 0.001 is counted in le="0.001": bounds are inclusive
        latency.observe(seconds)
    counters = {"amps": Counters(lines=100, candidates=40, parsed=39, matched=38, counted=37, bans=1, last_match=1768003200.5)}
    assert metrics.render(counters, {"amps": 3}, 2, 1, latency, 7) == EXPECTED


def test_write_is_atomic(tmp_path):
    path = tmp_path / "omprog_ban.prom"
    metrics.write(path, "a 1\n")
    metrics.write(path, "a 2\n")
    assert path.read_text() == "a 2\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["omprog_ban.prom"]


def test_timed_backend_times_failed_calls_too():
    ticks = iter([10.0, 10.25, 20.0, 20.5]).__next__

    class Refusing(Backend):
        def ban(self, bans):
            raise NftError("no")

    latency = metrics.Histogram()
    metrics.Timed(Backend(), latency, clock=ticks).ban([])
    timed = metrics.Timed(Refusing(), latency, clock=ticks)
    with pytest.raises(NftError):
        timed.ban([])
    assert (latency.count, latency.sum) == (2, 0.75)
    assert timed.exists() is True  # everything else is forwarded


def test_runtime_writes_the_metrics_file_in_maintain(tmp_path):
    cfg = config_module.parse({"jails": {"amps": {"grammar": "amps", "maxretry": 2, "findtime": 10, "bantime": 60}}},
                              state_dir=str(tmp_path / "state"))
    path = tmp_path / "omprog_ban.prom"
    runtime = Runtime(cfg, backend=Backend(), clock=lambda: 1000.0, lock_wait=0, metrics_file=path)
    runtime.start()
    for moment in (1000.0, 1001.0):
        runtime.pipeline.handle(LogLine(LINE, moment))
    runtime.maintain(1002.0)
    text = path.read_text()
    assert 'omprog_ban_bans_total{jail="amps"} 1\n' in text
    assert 'omprog_ban_failures_total{jail="amps"} 2\n' in text
    assert "omprog_ban_ban_batch_seconds_count 1\n" in text
    runtime.close()
