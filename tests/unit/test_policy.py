"""Migration policies: settings, and the Governor over job statistics, recorded from real
migrations in the lab (tests/unit/data, bench/policies.py record) and made up."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from xencenter_lite.core.policy import (
    POST_COPY_RISK,
    Act,
    Action,
    Governor,
    MigrationSettings,
    OnTimeout,
    Policy,
    Sample,
)

DATA = Path(__file__).parent / "data"
MIB = 1024 * 1024


def recorded(name: str) -> list[dict[str, Any]]:
    doc = json.loads((DATA / f"jobstats-{name}.json").read_text())
    stats: list[dict[str, Any]] = doc["stats"]
    return stats


def replay(gov: Governor, stats: list[dict[str, Any]]) -> list[tuple[float, Action]]:
    """Feed every recorded reading; what the Governor decided, with when."""
    out = []
    for st in stats:
        sample = Sample.from_stats({k: v for k, v in st.items() if k != "t"}, st["t"])
        out += [(st["t"], a) for a in gov.feed(sample)]
    return out


def first_pass_end(stats: list[dict[str, Any]]) -> float:
    return next(st["t"] for st in stats if st.get("memory_iteration", 0) >= 2)


# ---- settings ---------------------------------------------------------------------------------
def test_defaults_are_auto_converge_with_300_ms_and_no_post_copy():
    s = MigrationSettings()
    assert (s.policy, s.max_downtime_ms, s.timeout_s, s.compression, s.parallel) == (
        Policy.AUTO_CONVERGE, 300, None, False, None)
    assert not s.post_copy_allowed and s.problems() == []
    assert s.downtime_steps == (75, 150, 225, 300)


def test_post_copy_is_enabled_for_the_policy_or_a_post_copy_timeout_only():
    assert MigrationSettings(Policy.POST_COPY).post_copy_allowed
    assert MigrationSettings(timeout_s=30, on_timeout=OnTimeout.POST_COPY).post_copy_allowed
    assert not MigrationSettings(on_timeout=OnTimeout.POST_COPY).post_copy_allowed  # no timeout
    assert "lost on both servers" in POST_COPY_RISK


@pytest.mark.parametrize(("settings", "words"), [
    (MigrationSettings(max_downtime_ms=5), "out of range; give 10 to 60000"),
    (MigrationSettings(timeout_s=0), "give at least 1 s"),
    (MigrationSettings(parallel=1), "give 2 to 32"),
    (MigrationSettings(parallel=4, compression=True), "choose one"),
])
def test_bad_settings_say_what_to_do(settings, words):
    (problem,) = settings.problems()
    assert words in problem


def test_describe_names_every_setting_given():
    s = MigrationSettings(Policy.MINIMAL_DOWNTIME, 500, 60, OnTimeout.SUSPEND, True)
    assert s.describe() == ("policy minimal-downtime, max downtime 500 ms, timeout 60 s, then "
                            "suspend, compression xbzrle")


# ---- samples ------------------------------------------------------------------------------------
def test_a_sample_reads_libvirts_fields():
    s = Sample.from_stats({"memory_iteration": 3, "memory_remaining": 5 * MIB,
                           "memory_dirty_rate": 2560, "memory_page_size": 4096,
                           "memory_bps": 10 * MIB, "auto_converge_throttle": 75,
                           "downtime": 120}, 12.5)
    assert (s.iteration, s.remaining, s.dirty_bps, s.transfer_bps, s.throttle) == (
        3, 5 * MIB, 10 * MIB, 10 * MIB, 75)
    assert s.expected_downtime_ms == 120 and not s.disks_pending
    disks = Sample.from_stats({"disk_total": 100, "disk_processed": 40}, 1.0)
    assert disks.disks_pending


# ---- recorded: a busy guest (24 MiB/s) over 10 MiB/s, plain virsh -----------------------------
def test_recorded_busy_migration_never_converges_on_its_own():
    stats = recorded("busy-plain")
    assert max(st.get("memory_iteration", 0) for st in stats) >= 4
    starts: dict[int, int] = {}
    for st in stats:
        starts.setdefault(st.get("memory_iteration", 0), st["memory_remaining"])
    # What was left as each pass began never fell below what 300 ms carries at 10 MiB/s.
    assert min(v for it, v in starts.items() if it >= 2) > 3 * MIB


def test_minimal_downtime_steps_up_then_gives_up_after_the_first_pass():
    stats = recorded("busy-plain")
    gov = Governor(MigrationSettings(Policy.MINIMAL_DOWNTIME))
    assert [a.downtime_ms for a in gov.start()] == [75]
    acts = replay(gov, stats)
    steps = [(t, a) for t, a in acts if a.act is Act.SET_DOWNTIME]
    assert [a.downtime_ms for _t, a in steps] == [150, 225, 300]
    assert all(t > first_pass_end(stats) for t, _a in acts)  # never during the first pass
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(steps)]
    assert all(g >= gov.window / 2 for g in gaps)  # each step given time to work
    (t_abort, abort), = [(t, a) for t, a in acts if a.act is Act.ABORT]
    assert t_abort > steps[-1][0]
    assert "300 ms" in abort.note and "auto-converge or post-copy" in abort.note
    assert gov.gave_up == abort.note


def test_post_copy_switches_once_after_the_first_pass():
    stats = recorded("busy-plain")
    gov = Governor(MigrationSettings(Policy.POST_COPY))
    assert [a.downtime_ms for a in gov.start()] == [300]
    acts = replay(gov, stats)
    assert [a.act for _t, a in acts] == [Act.POST_COPY]
    assert acts[0][0] > first_pass_end(stats) and gov.switched
    assert gov.phase() == "post-copy"


def test_auto_converge_allows_the_maximum_at_once_and_never_gives_up():
    gov = Governor(MigrationSettings(Policy.AUTO_CONVERGE, max_downtime_ms=400))
    assert [a.downtime_ms for a in gov.start()] == [400]
    acts = replay(gov, recorded("busy-plain"))
    assert not any(a.act in (Act.ABORT, Act.POST_COPY, Act.SET_DOWNTIME) for _t, a in acts)
    assert gov.gave_up is None and not gov.switched


def test_recorded_auto_converge_throttle_levels_are_noted():
    stats = recorded("busy-auto-converge")
    gov = Governor(MigrationSettings(Policy.AUTO_CONVERGE))
    acts = replay(gov, stats)
    levels = sorted({st.get("auto_converge_throttle", 0) for st in stats} - {0})
    assert levels, "the recorded migration throttled the guest"
    notes = [a.note for _t, a in acts if a.act is Act.NOTE]
    assert len(notes) == len(levels)
    assert all(f"to {lvl} %" in n for lvl, n in zip(levels, notes, strict=True))


def test_recorded_quiet_migration_needs_nothing():
    stats = recorded("quiet-plain")
    for policy in Policy:
        gov = Governor(MigrationSettings(policy))
        assert replay(gov, stats) == []
        assert not gov.stalled()


# ---- made up: the edges -----------------------------------------------------------------------
def sample(t: float, it: int, left_mib: float, dirty: float = 1, sent: float = 10,
           throttle: int = 0) -> Sample:
    return Sample(t, it, int(left_mib * MIB), dirty * MIB, sent * MIB, throttle)


def test_a_shrinking_copy_is_no_stall():
    gov = Governor(MigrationSettings(Policy.MINIMAL_DOWNTIME), window=4)
    t, left = 0.0, 200.0
    for it in range(2, 12):  # each pass starts with half of the last
        left /= 2
        for _ in range(5):
            assert gov.feed(sample(t, it, left)) == []
            t += 0.4


def test_dirtying_as_fast_as_the_link_sends_is_a_stall_in_half_a_window():
    gov = Governor(MigrationSettings(Policy.POST_COPY), window=4)
    gov.feed(sample(0, 1, 200))
    assert gov.feed(sample(8, 2, 100, dirty=12, sent=10)) == []
    assert gov.feed(sample(9.9, 2, 90, dirty=12, sent=10)) == []  # pass 2: not yet
    acts = []
    t = 10.0
    while not acts and t < 20:
        acts = gov.feed(sample(t, 3, 30 - (t - 10), dirty=12, sent=10))
        t += 0.4
    assert [a.act for a in acts] == [Act.POST_COPY]
    assert 10 + 2 <= t <= 10 + 2.8


def test_an_unthrottled_guest_is_paused_only_once_its_pass_is_down_to_the_working_set():
    gov = Governor(MigrationSettings(Policy.AUTO_CONVERGE, max_downtime_ms=100), window=4,
                   throttles=False)
    gov.feed(sample(0, 1, 200))
    acts = [a for i in range(40) for a in gov.feed(sample(10 + i * 0.5, 2 + i // 4, 20))]
    assert [a.act for a in acts] == [Act.SET_DOWNTIME] * 3 + [Act.SUSPEND]
    late = Governor(MigrationSettings(Policy.AUTO_CONVERGE, max_downtime_ms=100), window=4,
                    throttles=False)
    late.step = 3
    late.feed(sample(0, 1, 200))
    late.feed(sample(10, 2, 20))
    assert late.feed(sample(14.5, 3, 60)) == []  # a pass far above the working set: later
    assert not late.suspended


def test_timeout_counts_from_the_memory_copy_and_does_what_was_chosen():
    for then, act in ((OnTimeout.ABORT, Act.ABORT), (OnTimeout.SUSPEND, Act.SUSPEND),
                      (OnTimeout.POST_COPY, Act.POST_COPY)):
        gov = Governor(MigrationSettings(timeout_s=10, on_timeout=then))
        disks = Sample(0, disks_pending=True)
        assert gov.feed(disks) == [] and gov.feed(Sample(50, disks_pending=True)) == []
        assert gov.feed(sample(60, 1, 200)) == []  # the memory copy begins at 60 s
        assert gov.feed(sample(69.9, 1, 120)) == []
        (a,) = gov.feed(sample(70, 1, 110))
        assert a.act is act and "Timed out after 10 s" in a.note
        assert gov.feed(sample(80, 2, 100)) == []  # once
        if then is OnTimeout.ABORT:
            assert gov.gave_up is not None and "keeps running where it was" in gov.gave_up


def test_status_shows_phase_rates_and_expected_downtime():
    gov = Governor(MigrationSettings())
    gov.feed(Sample(1, 3, 5 * MIB, 12 * MIB, 10 * MIB, throttle=75))
    assert gov.status() == ("converging: throttle 75 %, 5.0 MiB left, dirtied 12.0 MiB/s vs "
                            "sent 10.0 MiB/s, downtime ≈ 500 ms (allowed 300)")


def test_auto_converge_without_throttling_climbs_then_pauses_the_guest():
    stats = recorded("busy-plain")
    gov = Governor(MigrationSettings(Policy.AUTO_CONVERGE), throttles=False)
    assert [a.downtime_ms for a in gov.start()] == [75]
    acts = replay(gov, stats)
    assert [a.act for _t, a in acts] == [Act.SET_DOWNTIME] * 3 + [Act.SUSPEND]
    assert "TCG-emulated guest is not throttled" in acts[-1][1].note
    assert gov.suspended and gov.gave_up is None
