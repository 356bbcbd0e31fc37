"""Jobs: states, timing, progress, rate and ETA, with a fake clock."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest

import xencenter_lite.core.jobs as jobs
from xencenter_lite.core.jobs import (
    TRANSFER_POINTS,
    Job,
    JobKind,
    JobState,
    RateMeter,
    phase_from_stats,
    progress_from_stats,
    wire_rate_from_stats,
)

FINISHED = [JobState.DONE, JobState.FAILED, JobState.CANCELLED]
MIB = 1024**2


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(jobs, "time", SimpleNamespace(monotonic=c.monotonic))
    return c


def make_job(**kw) -> Job:
    return Job(kind=JobKind.MIGRATE, title="Migrating 'web-1' to 'lab-a2'",
               vm_key=("lab-a1", "uuid-web-1"), vm_name="web-1", source="lab-a1",
               destination="lab-a2", **kw)


def recorder(job: Job) -> list[tuple[JobState, int]]:
    seen: list[tuple[JobState, int]] = []
    job.subscribe(lambda j: seen.append((j.state, j.bytes_done)))
    return seen


# ---- states ---------------------------------------------------------------------------------
def test_state_flags():
    assert {s for s in JobState if s.finished} == set(FINISHED)
    assert {s for s in JobState if s.running} == {
        JobState.CHECKING, JobState.COPYING_DISKS, JobState.COPYING_MEMORY, JobState.POST_COPY,
        JobState.POWERING, JobState.FINISHING}
    assert not JobState.QUEUED.running and not JobState.QUEUED.finished


def test_ids_are_unique_and_increasing():
    a, b = make_job(), make_job()
    assert b.id > a.id


def test_lifecycle_times_messages_and_listeners(clock):
    job = make_job()
    seen = recorder(job)
    assert (job.state, job.started, job.ended, job.elapsed) == (JobState.QUEUED, None, None, 0)
    clock.now = 1010.0
    job.set_state(JobState.CHECKING, "Checking the migration")
    assert job.started == 1010.0 and job.ended is None
    clock.now = 1015.0
    assert job.elapsed == 5.0
    job.set_state(JobState.COPYING_MEMORY)
    assert job.started == 1010.0  # set once
    clock.now = 1030.0
    job.done("done it")
    assert job.state is JobState.DONE
    assert job.ended == 1030.0
    clock.now = 2000.0
    assert job.elapsed == 20.0  # frozen once finished
    assert job.messages == ["Checking the migration", "done it"]
    assert [s for s, _ in seen] == [JobState.CHECKING, JobState.COPYING_MEMORY, JobState.DONE]


def test_queued_state_does_not_start_the_clock(clock):
    job = make_job()
    job.set_state(JobState.QUEUED)
    assert job.started is None


@pytest.mark.parametrize("finish", ["done", "fail", "cancelled"])
def test_finished_states_are_final(clock, finish):
    job = make_job()
    job.set_state(JobState.COPYING_DISKS)
    job.progress(10, 100, now=1.0)
    getattr(job, finish)(*(["why"] if finish == "fail" else []))
    first = (job.state, job.error, job.error_details, job.bytes_done, job.ended,
             list(job.messages))
    seen = recorder(job)
    clock.now += 100
    job.set_state(JobState.COPYING_MEMORY, "late")
    job.progress(50, 100, now=2.0)
    job.fail("late failure", "raw")
    job.cancelled("late cancel")
    job.done("late done")
    assert (job.state, job.error, job.error_details, job.bytes_done, job.ended,
            job.messages) == first
    assert seen == []


def test_fail_keeps_friendly_and_raw(clock):
    job = make_job()
    job.set_state(JobState.COPYING_MEMORY)
    job.progress(1, 2, now=0.0)
    job.progress(2, 4, now=1.0)
    assert job.rate is not None
    job.fail("The destination SR ran out of space.", "No space left on device")
    assert job.state is JobState.FAILED
    assert (job.error, job.error_details) == ("The destination SR ran out of space.",
                                              "No space left on device")
    assert job.messages[-1] == "The destination SR ran out of space."
    assert job.rate is None and job.eta is None


def test_cancel_from_queue(clock):
    job = make_job()
    job.cancelled()
    assert job.state is JobState.CANCELLED
    assert job.error == "Cancelled by the operator."
    assert job.started == job.ended == clock.now


def test_listener_may_unsubscribe_during_notification():
    job = make_job()
    calls: list[int] = []

    def once(j: Job) -> None:
        calls.append(j.id)
        j._listeners.remove(once)

    job.subscribe(once)
    job.set_state(JobState.CHECKING)
    job.set_state(JobState.COPYING_MEMORY)
    assert calls == [job.id]


# ---- progress -------------------------------------------------------------------------------
def test_percent():
    job = make_job()
    assert job.percent == 0.0  # no total yet
    job.progress(25, 100, now=0.0)
    assert job.percent == 25.0
    job.progress(150, 100, now=1.0)
    assert (job.bytes_done, job.percent) == (100, 100.0)  # clamped
    job.progress(-5, 100, now=2.0)
    assert job.bytes_done == 0
    job.progress(7, 0, now=3.0)
    assert (job.bytes_done, job.bytes_total, job.percent) == (7, 0, 0.0)


def test_done_completes_progress(clock):
    job = make_job()
    job.progress(30, 100, now=0.0)
    job.done()
    assert (job.bytes_done, job.percent) == (100, 100.0)
    empty = make_job()
    empty.done()
    assert (empty.bytes_done, empty.percent) == (0, 100.0)


def test_rate_and_eta_from_explicit_times():
    job = make_job()
    job.progress(0, 1000 * MIB, now=10.0)
    assert job.rate is None and job.eta is None  # one sample: no rate yet
    job.progress(100 * MIB, 1000 * MIB, now=11.0)
    assert job.rate == pytest.approx(100 * MIB)
    assert job.eta == pytest.approx(9.0)
    job.progress(300 * MIB, 1000 * MIB, now=12.0)
    assert job.rate == pytest.approx(150 * MIB)  # over [10, 12]
    assert job.eta == pytest.approx(700 / 150)


def test_eta_none_when_stalled_or_unknown():
    job = make_job()
    job.progress(5, 10, now=0.0)
    job.progress(5, 10, now=1.0)
    assert job.rate == 0.0 and job.eta is None
    job.bytes_total = 0
    job.rate = 1.0
    assert job.eta is None


def test_rate_meter_window():
    meter = RateMeter(window=3.0)
    assert meter.add(0.0, 0) is None
    assert meter.add(1.0, 100) == pytest.approx(100.0)
    assert meter.add(2.0, 300) == pytest.approx(150.0)
    # the samples at 0 and 1 fall out of the window; rate over [2, 5]
    assert meter.add(5.0, 600) == pytest.approx(100.0)
    assert [t for t, _ in meter.samples] == [2.0, 5.0]


def test_rate_meter_keeps_two_samples_after_a_long_gap():
    meter = RateMeter(window=3.0)
    meter.add(0.0, 0)
    assert meter.add(100.0, 1000) == pytest.approx(10.0)
    assert len(meter.samples) == 2


def test_rate_meter_never_negative_and_ignores_same_instant():
    meter = RateMeter()
    meter.add(0.0, 500)
    assert meter.add(1.0, 100) == 0.0  # counters restarted (disk phase -> memory phase)
    meter2 = RateMeter()
    meter2.add(5.0, 0)
    assert meter2.add(5.0, 100) is None


# ---- phase ----------------------------------------------------------------------------------
D, M = JobState.COPYING_DISKS, JobState.COPYING_MEMORY


@pytest.mark.parametrize(("stats", "current", "phase"), [
    ({}, M, M),
    # libvirt has not started the mirrors yet: a storage migration still copies disks
    ({}, D, D),
    ({"disk_total": 0, "memory_processed": 0}, D, D),
    ({"disk_total": 100, "disk_processed": 10, "memory_processed": 0}, D, D),
    ({"disk_total": 100, "disk_processed": 0}, D, D),
    ({"disk_total": 100, "disk_processed": 100, "memory_processed": 0}, D, M),
    ({"disk_total": 100, "disk_processed": 10, "memory_processed": 5}, D, M),
    ({"memory_processed": 1234}, D, M),
    # never back: the mirrors fall a few bytes behind while memory moves
    ({"disk_total": 100, "disk_processed": 99, "memory_processed": 0}, M, M),
])
def test_phase_from_stats(stats, current, phase):
    assert phase_from_stats(stats, current) is phase


def test_a_storage_migrations_phases_each_come_once() -> None:
    """The readings a storage migration gives, in order (libvirt's stats before its mirrors
    start are empty): the job names each phase once, disks then memory."""
    readings = [{}, {"disk_total": 0}, {"disk_total": 100, "disk_processed": 0},
                {"disk_total": 100, "disk_processed": 70},
                {"disk_total": 100, "disk_processed": 100},
                {"disk_total": 100, "disk_processed": 98, "memory_processed": 0},
                {"disk_total": 100, "disk_processed": 100, "memory_processed": 10}]
    state, seen = JobState.COPYING_DISKS, [JobState.COPYING_DISKS]
    for stats in readings:
        state = phase_from_stats(stats, state)
        if state is not seen[-1]:
            seen.append(state)
    assert seen == [JobState.COPYING_DISKS, JobState.COPYING_MEMORY]


def test_a_storage_migrations_percentage_only_rises() -> None:
    """libvirt counts only the disks in its total until the memory copy begins; the job's
    whole is the plan's disks and memory from the start, so the percentage does not fall
    back from the disks' 100 % when the memory copy begins."""
    mib = 1024 * 1024
    disk, memory = 128 * mib, 128 * mib
    readings = [  # what libvirt reports, second by second
        {"data_total": disk, "data_processed": 0},
        {"data_total": disk, "data_processed": 64 * mib},
        {"data_total": disk, "data_processed": disk},
        {"data_total": disk + memory + mib, "data_processed": disk + 8 * mib},  # + ROMs
        {"data_total": disk + memory + mib, "data_processed": disk + memory + 2 * mib},
    ]
    job = Job(JobKind.MIGRATE, "t", ("a", "u"), "vm", "a", "b")
    job.bytes_total = disk + memory  # the plan's
    seen = []
    for stats in readings:
        job.progress(*progress_from_stats(stats, job.bytes_total))
        seen.append(job.percent)
    assert seen[2] == 50.0 and seen[-1] == 100.0
    assert all(b >= a - 0.5 for a, b in itertools.pairwise(seen)), seen


def test_post_copy_refuses_cancel_and_says_why():
    job = make_job()
    job.set_state(JobState.COPYING_MEMORY)
    assert job.cancel_refusal is None
    job.set_state(JobState.POST_COPY)
    refusal = job.cancel_refusal
    assert refusal is not None and "cannot be undone" in refusal and job.source in refusal
    job.done()
    assert job.cancel_refusal is None


def test_status_shows_the_live_detail_and_notes_are_kept():
    job = make_job()
    seen = recorder(job)
    job.set_state(JobState.COPYING_MEMORY)
    job.set_detail("memory pass 3, 4.0 MiB left")
    job.set_detail("memory pass 3, 4.0 MiB left")  # unchanged: no one is told
    assert job.status == "copying memory: memory pass 3, 4.0 MiB left"
    job.note("Allowed downtime raised to 150 ms")
    assert job.policy_log == ["Allowed downtime raised to 150 ms"]
    assert job.messages[-1] == "Allowed downtime raised to 150 ms"
    assert len(seen) == 3
    job.done()
    job.note("late")
    assert job.status == "done" and job.policy_log == ["Allowed downtime raised to 150 ms"]


def test_a_queued_job_says_what_it_waits_for():
    job = make_job()
    assert job.state is JobState.QUEUED and job.status == "queued"
    job.set_detail("waiting for a free slot (2 migrations at a time)")
    assert job.status == "queued: waiting for a free slot (2 migrations at a time)"
    job.set_detail(None)
    job.set_state(JobState.CHECKING)
    assert job.status == "checking"


def test_a_jobs_transfer_is_kept_for_its_graph_and_thinned_when_long() -> None:
    job = Job(JobKind.MIGRATE, "t", ("a", "b"), "b", "a", "c")
    job.set_state(JobState.COPYING_DISKS)
    t0 = job.started or 0.0
    job.progress(0, 1000, now=t0 + 1)
    job.progress(500, 1000, now=t0 + 2)
    assert job.transfer[0] == (pytest.approx(1.0), None, 1000)
    assert job.transfer[1][0] == pytest.approx(2.0) and job.transfer[1][2] == 500
    assert job.transfer[1][1] == pytest.approx(500.0)  # 500 bytes in the second since
    for i in range(3, TRANSFER_POINTS + 3):
        job.progress(500 + i, 100_000, now=t0 + i)
    assert len(job.transfer) <= TRANSFER_POINTS
    times = [t for t, _r, _left in job.transfer]
    assert times[0] == pytest.approx(1.0)  # from its start...
    assert times[-1] == pytest.approx(TRANSFER_POINTS + 2)  # ...to now
    assert times == sorted(times)


def test_while_memory_is_copied_the_rate_is_the_one_on_the_wire() -> None:
    stats = {"memory_bps": 25 * MIB, "data_processed": 900 * MIB, "memory_processed": 1}
    assert wire_rate_from_stats(stats, JobState.COPYING_MEMORY) == 25 * MIB
    assert wire_rate_from_stats(stats, JobState.COPYING_DISKS) is None
    assert wire_rate_from_stats({"memory_bps": 0}, JobState.COPYING_MEMORY) is None
    job = Job(JobKind.MIGRATE, "t", ("a", "b"), "b", "a", "c")
    job.set_state(JobState.COPYING_MEMORY)
    t0 = job.started or 0.0
    job.progress(0, 1000 * MIB, now=t0)
    # 600 MiB processed in 3 s (zero pages mostly) over a 25 MiB/s link.
    job.progress(600 * MIB, 1000 * MIB, now=t0 + 3, wire_rate=25 * MIB)
    assert job.rate == 25 * MIB
    assert job.eta == 400 / 25
    job.progress(700 * MIB, 1000 * MIB, now=t0 + 4)  # no wire figure: the progress rate
    assert job.rate == 100 * MIB  # (its last 3 s: 100 MiB in the last second)
