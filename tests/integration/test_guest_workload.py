"""Nothing lost: a real Linux guest keeps working while it moves, and its data stays intact.

web-1 runs the lab's workload (xencenter_lite.lab.guestimage): it appends numbered,
checksummed, fsynced records to its disk and reports the last one on its serial console
every ~0.5 s. Each test samples those reports while the move runs (a bandwidth cap makes it
last a few seconds), then checks the records on the disk the guest now uses: no gap, no
repeat, nothing corrupt, and the numbers go on from where they were. Every test leaves web-1
running in the pool with its disk on "Shared storage", as the lab made it, so they pass in
any order (and beside test_migration.py).
"""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import until
from tests.labtools import (
    GuestKernelCrashed,
    guest_logs,
    kernel_crash,
    reported,
    virsh,
    vm_named,
    wait_working,
)
from xencenter_lite.core.checks import blocking
from xencenter_lite.core.jobs import Job, JobState
from xencenter_lite.core.model import VM, VmState
from xencenter_lite.core.plan import MigrationKind, MigrationRequest
from xencenter_lite.engine import Engine
from xencenter_lite.lab.records import Records, read_records, serial_log

POOL = ("lab-a1", "lab-a2")
SHARED, LOCAL = "Shared storage", "Local storage"
BANDWIDTH = 20  # MiB/s: the guest's ~100 MiB of memory take about 5 s
BOOT_TIMEOUT = 240.0  # a TCG guest on a busy two-core machine


def _other_member(server: str) -> str:
    return POOL[1] if server == POOL[0] else POOL[0]


def _reported(engine: Engine, state_dir: Path) -> int | None:
    return reported(engine, state_dir, "web-1")


def _records(vm: VM) -> Records:
    (disk,) = vm.hard_disks
    assert disk.path is not None
    return read_records(disk.path, disk.format)


def _working(engine: Engine, run: Any, state_dir: Path) -> int:
    return wait_working(engine, run, state_dir, "web-1", BOOT_TIMEOUT)


def _run_sampled(engine: Engine, run: Any, state_dir: Path, job: Job) -> list[int]:
    """Wait for `job`, sampling web-1's reports every 0.25 s while data is being moved."""
    samples: list[int] = []

    async def sample() -> None:
        while not job.state.finished:
            seq = _reported(engine, state_dir)
            if seq is not None and job.state in (JobState.COPYING_DISKS,
                                                 JobState.COPYING_MEMORY):
                samples.append(seq)
            await asyncio.sleep(0.25)
        await engine.wait([job])

    run(sample(), timeout=300)
    return samples


def _in_pool_on_shared(engine: Engine, run: Any) -> VM:
    """web-1 where the lab put it (in the pool, disk on shared storage), moving it if needed."""
    vm = vm_named(engine, "web-1")
    if vm.state is not VmState.RUNNING:
        virsh(engine.snapshot().servers[vm.server].uri, "start", vm.uuid)
        run(until(lambda: vm_named(engine, "web-1").state is VmState.RUNNING))
        vm = vm_named(engine, "web-1")
    if vm.server not in POOL or vm.hard_disks[0].sr != SHARED:
        dest = vm.server if vm.server in POOL else POOL[0]
        if dest == vm.server:
            job = engine.move_disk(vm.key, "vda", SHARED)
        else:
            (job,) = engine.migrate([MigrationRequest(vm.key, dest, sr=SHARED)])
        run(engine.wait([job]), timeout=300)
        assert job.state is JobState.DONE, (job.error, job.error_details)
        vm = vm_named(engine, "web-1")
    return vm


def _check_moved_alive(engine: Engine, run: Any, state_dir: Path, job: Job, before: int,
                       samples: list[int], server: str) -> Records:
    """The proofs every move must pass; returns the records on the disk web-1 now uses."""
    assert job.state is JobState.DONE, (job.error, job.error_details)
    # It kept working while the data moved: several reports, each at least the one before.
    assert len(set(samples)) >= 3, samples
    assert samples == sorted(samples), samples
    assert samples[0] >= before, (before, samples)
    moved = vm_named(engine, "web-1")
    assert moved.server == server and moved.state is VmState.RUNNING
    # It goes on working where it is now, after the last number it reported before.
    last = max(samples)
    try:
        run(until(lambda: (_reported(engine, state_dir) or 0) >= last + 10, timeout=60,
                  interval=0.25))
    except AssertionError as exc:
        text = f"web-1 stopped reporting after {last}:\n" + guest_logs(engine, state_dir, "web-1")
        crash = kernel_crash(state_dir, server, "web-1")
        if crash is None:
            raise AssertionError(text) from exc
        # Its kernel died on memory the emulator lost in the move. What the move itself
        # promises still holds: every record the guest reported is on the disk it now uses.
        found = _records(moved)
        assert found.intact, found.summary()
        assert found.last is not None and found.last >= last, (last, found.summary())
        raise GuestKernelCrashed(f"web-1's kernel crashed on {server} after the move: "
                                 f"{crash}\n{text}") from exc
    # And its disk holds every record, contiguous, up to what it reported (read live: each
    # record is fsynced, so the image on disk has it).
    reported = _reported(engine, state_dir)
    found = _records(moved)
    assert found.intact, found.summary()
    assert found.first is not None and found.first <= before, found.summary()
    assert found.last is not None and reported is not None and found.last >= reported
    return found


RERUNS = 2  # each a fresh boot of web-1


def _again_if_the_guest_kernel_crashed(test: Callable[..., None]) -> Callable[..., None]:
    """Run the test again (up to RERUNS times) on a freshly started web-1 if web-1's own
    kernel crashed after a move.

    QEMU 7.2 (Debian 12) loses guest writes during a live migration of a TCG guest: the
    fast path that syncs its dirty bitmap 64 pages at a time does not reset the vCPU's TLB,
    so stores through entries made before the sync mark nothing dirty and never reach the
    destination (fixed upstream in QEMU 9.0, commit 03bfc2188f, "physmem: Fix migration
    dirty bitmap coherency with TCG memory access"; not in 7.2.22). The guest's kernel then
    dies on its own corrupt lists a moment after arriving, whoever asked for the move
    (docs/benchmarks.md). What the move itself promises is still checked each time (the VM
    on one server, every reported record on its disk); a crash on every run fails."""

    @functools.wraps(test)
    def wrapper(engine: Engine, run: Any, state_dir: Path) -> None:
        for attempt in range(RERUNS + 1):
            try:
                test(engine, run, state_dir)
                return
            except GuestKernelCrashed as crash:
                if attempt == RERUNS:
                    raise
                print(f"\n{test.__name__}: run again on a fresh boot: "
                      f"{str(crash).splitlines()[0]}", file=sys.stderr)
            vm = vm_named(engine, "web-1")
            uri = engine.snapshot().servers[vm.server].uri
            virsh(uri, "destroy", vm.uuid)
            virsh(uri, "start", vm.uuid)
            run(until(lambda: vm_named(engine, "web-1").state is VmState.RUNNING))
            _working(engine, run, state_dir)

    return wrapper


# ---- (a) migrations --------------------------------------------------------------------------


@_again_if_the_guest_kernel_crashed
def test_memory_migration_keeps_the_guest_working(
    engine: Engine, run: Any, state_dir: Path
) -> None:
    vm = _in_pool_on_shared(engine, run)
    dest = _other_member(vm.server)
    before = _working(engine, run, state_dir)
    request = MigrationRequest(vm.key, dest, bandwidth_mib_s=BANDWIDTH)
    plan = engine.plan(request)
    assert plan.kind is MigrationKind.MEMORY
    (job,) = engine.migrate([request])
    samples = _run_sampled(engine, run, state_dir, job)

    found = _check_moved_alive(engine, run, state_dir, job, before, samples, dest)
    assert job.downtime_ms is not None and 0 < job.downtime_ms < 5000, job.downtime_ms
    print(f"\nmemory migration {vm.server} -> {dest}: {job.elapsed:.1f} s, downtime "
          f"{job.downtime_ms} ms, reports {samples[0]}..{samples[-1]} while moving, "
          f"disk {found.summary()}")


@_again_if_the_guest_kernel_crashed
def test_storage_migration_there_and_back_keeps_the_guest_working(
    engine: Engine, run: Any, state_dir: Path
) -> None:
    vm = _in_pool_on_shared(engine, run)
    for dest, sr in ((_other_member(vm.server), LOCAL), (vm.server, SHARED)):
        here = vm_named(engine, "web-1")
        before = _working(engine, run, state_dir)
        request = MigrationRequest(here.key, dest, sr=sr, bandwidth_mib_s=BANDWIDTH)
        plan = engine.plan(request)
        assert plan.kind is MigrationKind.STORAGE
        assert not blocking(engine.check([plan])), engine.check([plan])
        (job,) = engine.migrate([request])
        samples = _run_sampled(engine, run, state_dir, job)

        found = _check_moved_alive(engine, run, state_dir, job, before, samples, dest)
        assert vm_named(engine, "web-1").hard_disks[0].sr == sr
        assert job.downtime_ms is not None and 0 < job.downtime_ms < 5000, job.downtime_ms
        print(f"\nstorage migration {here.server} -> {dest} ({sr}): {job.elapsed:.1f} s, "
              f"downtime {job.downtime_ms} ms, reports {samples[0]}..{samples[-1]} while "
              f"moving, disk {found.summary()}")


# ---- (b) intact after a stop -------------------------------------------------------------


@_again_if_the_guest_kernel_crashed
def test_every_reported_record_is_on_the_disk_after_a_hard_stop_and_the_guest_goes_on(
    engine: Engine, run: Any, state_dir: Path
) -> None:
    vm = _in_pool_on_shared(engine, run)
    dest = _other_member(vm.server)
    _working(engine, run, state_dir)
    (job,) = engine.migrate([MigrationRequest(vm.key, dest)])
    run(engine.wait([job]), timeout=300)
    assert job.state is JobState.DONE, (job.error, job.error_details)
    _working(engine, run, state_dir)  # running on the destination

    moved = vm_named(engine, "web-1")
    uri = engine.snapshot().servers[moved.server].uri
    virsh(uri, "destroy", moved.uuid)  # pulls the plug: no shutdown, no flush
    reported = _reported(engine, state_dir)
    found = _records(moved)
    assert found.intact, found.summary()
    assert reported is not None and found.last is not None and found.last >= reported, (
        reported, found.summary())
    assert found.last - reported < 50, (reported, found.summary())  # reports keep up

    # Started again, it finds its last record and goes on right after it.
    virsh(uri, "start", moved.uuid)
    after = _working(engine, run, state_dir)
    assert after > found.last
    again = _records(vm_named(engine, "web-1"))
    assert again.intact, again.summary()
    assert again.first is not None and again.first <= found.first <= found.last < after
    log = serial_log(state_dir, moved.server, "web-1").read_text(errors="replace")
    assert f"next={found.last + 1} " in log, log[-500:]
    run(until(lambda: vm_named(engine, "web-1").state is VmState.RUNNING))
    print(f"\nhard stop: last reported {reported}, disk {found.summary()}; restarted, it "
          f"went on at {found.last + 1} and reported {after}")


# ---- (c) live disk move ----------------------------------------------------------------------


@_again_if_the_guest_kernel_crashed
def test_live_disk_move_keeps_the_guest_working(
    engine: Engine, run: Any, state_dir: Path
) -> None:
    vm = _in_pool_on_shared(engine, run)
    for sr in (LOCAL, SHARED):
        here = vm_named(engine, "web-1")
        old_path = here.hard_disks[0].path
        before = _working(engine, run, state_dir)
        job = engine.move_disk(here.key, "vda", sr, bandwidth_mib_s=BANDWIDTH)
        samples = _run_sampled(engine, run, state_dir, job)

        found = _check_moved_alive(engine, run, state_dir, job, before, samples, vm.server)
        disk = vm_named(engine, "web-1").hard_disks[0]
        assert disk.sr == sr and disk.path != old_path
        print(f"\ndisk move to {sr}: {job.elapsed:.1f} s, reports {samples[0]}..{samples[-1]} "
              f"while moving, disk {found.summary()}")
