"""The pipeline's contract: durable counts, bans applied before OK, nft errors retried."""

from __future__ import annotations

import ipaddress

import pytest

from omprog_ban import config
from omprog_ban.ledger import Ledger
from omprog_ban.model import LogLine
from omprog_ban.dryrun import DryRun
from omprog_ban.nft import NftError
from omprog_ban.pipeline import Pipeline
from tests.lab import amps_line


class FlakyBackend(DryRun):
    """A backend that refuses every transaction while ``refusing`` (``failures`` > 0), as a full set would."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.refusing = bool(failures)
        self.applied = []

    def ban(self, bans):
        if self.refusing:
            raise NftError("Could not process rule: Too many open files in system")
        self.applied.extend(bans)


def line(address: str, port: int, key: str | None = None, at: float = 1000.0) -> LogLine:
    return LogLine(amps_line(address, port=port), at + port * 0.01, key)


def test_nft_error_keeps_the_ban_pending_and_the_resend_is_not_counted(tmp_path):
    backend = FlakyBackend(failures=1)
    pipeline = Pipeline(config.load(None), backend, Ledger(tmp_path / "ledger"))
    for port in range(19):
        assert pipeline.handle(line("192.0.2.1", port, f"u{port}")) == []
    with pytest.raises(NftError):
        pipeline.handle(line("192.0.2.1", 19, "u19"))
    assert backend.applied == [] and len(pipeline.pending) == 1
    backend.refusing = False  # room again (a ban expired)
    pipeline.handle(line("192.0.2.1", 19, "u19"))  # rsyslog resends the same message
    assert [str(b.address) for b in backend.applied] == ["192.0.2.1"]
    assert pipeline.counters["amps"].counted == 20 and pipeline.counters["amps"].bans == 1


def test_a_ban_cut_off_by_a_crash_is_applied_at_restart(tmp_path):
    ledger = tmp_path / "ledger"
    crashed = Pipeline(config.load(None), FlakyBackend(failures=1), Ledger(ledger))
    for port in range(19):
        crashed.handle(line("192.0.2.2", port, f"u{port}"))
    with pytest.raises(NftError):
        crashed.handle(line("192.0.2.2", 19, "u19"))
    # the process dies here; a new one restores from the ledger
    backend = FlakyBackend(failures=0)
    fresh = Pipeline(config.load(None), backend, Ledger(ledger))
    fresh.restore(now=1000.5)
    fresh.flush()
    assert [(str(b.address), round(b.bantime, 2)) for b in backend.applied] == [("192.0.2.2", 119.69)]


def test_a_resent_batch_is_recognised_after_two_crashes_in_a_row(tmp_path):
    ledger = tmp_path / "ledger"
    first = Pipeline(config.load(None), FlakyBackend(0), Ledger(ledger))
    first.handle_many([line("192.0.2.3", port, f"u{port}") for port in range(15)], defer=True)
    # killed before the commit; the next process dies too before rsyslog resends the batch
    second = Pipeline(config.load(None), FlakyBackend(0), Ledger(ledger))
    second.restore(now=1000.5)  # restore compacts the ledger
    third = Pipeline(config.load(None), FlakyBackend(0), Ledger(ledger))
    third.restore(now=1000.6)
    # the whole batch comes again, then five new failures: 15 + 5 = 20, not 35
    assert third.handle_many([line("192.0.2.3", port, f"u{port}") for port in range(15)], defer=True) == []
    assert third.handle_many([line("192.0.2.3", port, f"u{port}") for port in range(15, 19)], defer=True) == []
    assert [str(ban.address) for ban in third.handle(line("192.0.2.3", 19, "u19"))] == ["192.0.2.3"]


def test_restore_puts_back_bans_the_kernel_lost(tmp_path):
    ledger = tmp_path / "ledger"
    first = Pipeline(config.load(None), FlakyBackend(0), Ledger(ledger))
    for port in range(20):
        first.handle(line("192.0.2.3", port))
    backend = FlakyBackend(0)  # an empty kernel: the ruleset was flushed
    second = Pipeline(config.load(None), backend, Ledger(ledger))
    second.restore(now=1060)
    second.flush()
    assert [(str(b.address), round(b.until)) for b in backend.applied] == [("192.0.2.3", 1120)]
    third = Pipeline(config.load(None), FlakyBackend(0), Ledger(ledger))
    third.restore(now=1200)  # long expired: nothing owed
    assert third.pending == []


def test_compaction_keeps_windows_and_bans(tmp_path):
    ledger = Ledger(tmp_path / "ledger")
    pipeline = Pipeline(config.load(None), FlakyBackend(0), ledger)
    for port in range(15):
        pipeline.handle(line("192.0.2.4", port))
    for port in range(20):
        pipeline.handle(line("192.0.2.5", port))
    size = ledger.size
    pipeline.compact(now=1001)
    assert ledger.size < size
    backend = FlakyBackend(0)
    again = Pipeline(config.load(None), backend, Ledger(tmp_path / "ledger"))
    again.restore(now=1001)
    again.flush()
    assert [str(b.address) for b in backend.applied] == ["192.0.2.5"]  # re-applied: the kernel (fake) was empty
    for port in range(15, 20):
        again.handle(line("192.0.2.4", port))
    assert ipaddress.ip_address("192.0.2.4") in [b.address for b in backend.applied]


def test_compaction_writes_back_exactly_the_state_it_holds(tmp_path):
    """Compaction writes its lines as the hot path does (no Record objects): what a restart
    reads back is the same bans, prefix bans, windows and delivery keys, IPv6 included."""
    ledger = Ledger(tmp_path / "ledger")
    pipeline = Pipeline(config.load(None), FlakyBackend(0), ledger)
    for address, count in (("192.0.2.4", 15), ("192.0.2.5", 20), ("2001:db8::5", 20), ("2001:db8:0:1::9", 3)):
        for port in range(count):
            pipeline.handle(line(address, port, f"{address}-{port}"))
    pipeline.subnets.mark("amps", ipaddress.ip_network("198.51.100.0/24"), 5000.0)
    pipeline.flush()

    def state(of: Pipeline):
        return (sorted((jail, str(address), until) for jail, address, until in of.tracker.bans()),
                sorted((jail, str(network), until) for jail, network, until in of.subnets.bans()),
                sorted((jail, str(address), [round(t, 6) for t in times]) for jail, address, times in of.tracker.windows()))

    before = state(pipeline)
    pipeline.compact(now=1001)
    again = Pipeline(config.load(None), FlakyBackend(0), Ledger(tmp_path / "ledger"))
    again.restore(now=1001)
    bans, prefixes, windows = state(again)
    assert [(jail, address) for jail, address, _ in bans] == [(jail, address) for jail, address, _ in before[0]]
    assert [address for _, address, _ in bans] == ["192.0.2.5", "2001:db8::5"]
    assert prefixes == before[1] and windows == before[2]
    assert {f"2001:db8::5-{port}" for port in range(20)} <= set(again.deliveries.recent)


class OneFullSet(FlakyBackend):
    """A backend whose set for jail ``full`` refuses everything, like a set that is full."""

    def __init__(self, full: str) -> None:
        super().__init__(0)
        self.full = full

    def ban(self, bans):
        if any(ban.jail == self.full for ban in bans):
            raise NftError("Could not process rule: Too many open files in system")
        self.applied.extend(bans)


def test_one_full_set_does_not_hold_back_the_other_jails(tmp_path):
    import tomllib

    text = """
[jails.a]
grammar = "amps"
maxretry = 1
rules = ["auth"]
[jails.b]
grammar = "amps"
maxretry = 1
rules = ["name-in-use"]
"""
    backend = OneFullSet("a")
    pipeline = Pipeline(config.parse(tomllib.loads(text)), backend, Ledger(tmp_path / "ledger"))
    with pytest.raises(NftError):  # the auth failure bans in a (full) ...
        pipeline.handle(LogLine(amps_line("192.0.2.1", "auth"), 1000.0, "u1"))
    pipeline.handle(LogLine(amps_line("192.0.2.2", "name in use"), 1001.0, "u2"), defer=True)
    with pytest.raises(NftError):  # ... and b's ban still lands, while a's waits
        pipeline.flush()
    assert [(b.jail, str(b.address)) for b in backend.applied] == [("b", "192.0.2.2")]
    assert [(b.jail, str(b.address)) for b in pipeline.pending] == [("a", "192.0.2.1")]



@pytest.mark.parametrize("service", ["amps", "apache-error", "apache-access", "elgg", "named"])
def test_deciding_line_by_line_bans_as_handling_does(tmp_path, service):
    from bench import generate
    from bench.replay import jail_config
    from omprog_ban.commands.replay import Collect

    texts = [text for _, text in generate.lines(service, "flood", 4000, seed=3)]
    handled, decided = Collect(), Collect()
    one = Pipeline(jail_config(service, tmp_path), handled, log_time=True)
    other = Pipeline(jail_config(service, tmp_path), decided, log_time=True)
    for text in texts:
        one.handle(LogLine(text, one.last_time))
        other.decide(LogLine(text, other.last_time))
    other.flush()
    assert len(handled.bans) > 10  # the flood bans
    assert decided.bans == handled.bans


@pytest.mark.parametrize("service", ["amps", "elgg", "named"])
def test_replay_by_blocks_bans_as_handling_line_by_line(tmp_path, service, monkeypatch):
    """The replay command hands the pipeline a block of lines at a time: the same bans,
    each told with the number of the line that decided it, as one line at a time."""
    from bench import generate
    from bench.replay import jail_config
    from omprog_ban import sources
    from omprog_ban.commands.replay import Collect, replay

    texts = [text for _, text in generate.lines(service, "flood", 3000, seed=5)]
    # Lines without a stamp take the time of the failure before them (AMPS: 30 of them ban 192.0.2.1).
    texts[100:100] = ["no stamp here", ""] + ["07-0013 client[x](192.0.2.1:1) disconnected: auth."] * 30
    log = tmp_path / f"{service}.log"
    log.write_text("".join(text + "\n" for text in texts))
    expected = []
    one = Pipeline(jail_config(service, tmp_path), Collect(), log_time=True)
    one.last_time = sources.file_time(str(log))
    for number, text in enumerate(texts, 1):
        expected += [(ban, number) for ban in one.handle(LogLine(text, one.last_time))]
    monkeypatch.setattr(sources, "BLOCK", 4096)  # many blocks, lines cut at their edges
    told = []
    other = Pipeline(jail_config(service, tmp_path), Collect(), log_time=True)
    assert replay(other, [str(log)], lambda ban, path, number: told.append((ban, number))) == len(texts)
    assert len(expected) > 10
    assert told == expected
    assert other.backend.bans == one.backend.bans


class Vanishing(FlakyBackend):
    """A backend whose table can be flushed away: bans are refused until ``ensure`` puts it back."""

    def __init__(self) -> None:
        super().__init__(0)
        self.table = True
        self.kernel: dict = {}

    def exists(self):
        return self.table

    def ensure(self, *args):
        self.table = True

    def ban(self, bans):
        if not self.table:
            raise NftError("Could not process rule: No such file or directory")
        self.kernel.update({(ban.jail, str(ban.address)): ban.bantime for ban in bans})


def test_a_flushed_ruleset_is_restored_by_the_flush_that_finds_it_gone(tmp_path):
    """No error reaches rsyslog: the table comes back with every running ban, and the new one."""
    from omprog_ban.runtime import Runtime

    backend = Vanishing()
    now = [1000.0]
    runtime = Runtime(config.load(None, state_dir=str(tmp_path)), backend=backend, clock=lambda: now[0], lock_wait=0)
    runtime.start()
    pipeline = runtime.pipeline
    for port in range(20):
        pipeline.handle(line("198.51.100.1", port, f"a{port}"))
    assert backend.kernel == {("amps", "198.51.100.1"): 120.0}
    backend.table, backend.kernel = False, {}  # nft flush ruleset
    now[0] = 1030.0
    for port in range(20):
        pipeline.handle(line("198.51.100.2", port, f"b{port}", at=1030.0))  # raises if the flush fails
    assert runtime.restores == 1 and not pipeline.pending
    assert backend.kernel[("amps", "198.51.100.2")] == 120.0
    assert 89 <= backend.kernel[("amps", "198.51.100.1")] <= 91  # the time it had left
    runtime.close()
