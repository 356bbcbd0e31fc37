"""Migrations on real libvirt servers with real QEMU guests.

Tests look up where each VM is now rather than assuming an order, so each one stands alone.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.labtools import (
    cancel_once_copying,
    created_paths,
    iface_bytes,
    image_layout,
    pattern_intact,
    virsh,
    virt_install,
    vm_named,
)
from xencenter_lite.core.checks import blocking
from xencenter_lite.core.jobs import JobState
from xencenter_lite.core.model import VmState
from xencenter_lite.core.plan import MigrationKind, MigrationRequest
from xencenter_lite.engine import Engine

MIB = 1024 * 1024
POOL = ("lab-a1", "lab-a2")


def _other_member(server: str) -> str:
    return POOL[1] if server == POOL[0] else POOL[0]


def _migrate(engine: Engine, run: Any, request: MigrationRequest) -> Any:
    """Migrate as planned; the job's percentage, as the console shows it, only rises."""
    plan = engine.plan(request)
    assert not blocking(engine.check([plan])), engine.check([plan])
    (job,) = engine.migrate([request])
    seen: list[float] = []
    job.subscribe(lambda j: seen.append(j.percent))
    run(engine.wait([job]))
    assert all(b >= a - 1 for a, b in itertools.pairwise(seen)), seen
    return plan, job


def test_memory_only_migration_inside_the_pool(engine: Engine, run: Any) -> None:
    vm = vm_named(engine, "web-1")
    if vm.server not in POOL:  # another test may have moved it out of the pool
        _migrate(engine, run, MigrationRequest(vm.key, "lab-a1", sr="Shared storage"))
        vm = vm_named(engine, "web-1")
    dest = _other_member(vm.server)
    before_paths = [d.path for d in vm.disks]
    plan, job = _migrate(engine, run, MigrationRequest(vm.key, dest))

    assert plan.kind is MigrationKind.MEMORY
    assert job.state is JobState.DONE, (job.error, job.error_details)
    moved = vm_named(engine, "web-1")
    assert moved.server == dest and moved.state is VmState.RUNNING
    assert moved.home_server == dest  # recorded in the VM's own metadata
    assert moved.folder == "/Web"  # and the folder travelled with it
    assert [d.path for d in moved.disks] == before_paths  # the disk stayed on shared storage
    assert os.path.exists(before_paths[0])
    src_uri = engine.snapshot().servers[vm.server].uri
    assert vm.name not in virsh(src_uri, "list", "--all", "--name").split()
    dest_uri = engine.snapshot().servers[dest].uri
    assert "yes" in virsh(dest_uri, "dominfo", vm.uuid).split("Persistent:")[1].split("\n")[0]


def test_a_transient_vm_stays_transient(engine: Engine, run: Any) -> None:
    """A VM started with `virsh create` (here virt-install --transient) is defined nowhere:
    after its migration it runs on the destination, still defined nowhere."""
    uris = {name: s.uri for name, s in engine.snapshot().servers.items()}
    name, volume = "tr-1", "tr-1.qcow2"
    for uri in uris.values():
        subprocess.run(["virsh", "-c", uri, "destroy", name], capture_output=True)
    subprocess.run(["virsh", "-c", uris["lab-a1"], "vol-delete", "--pool", "Shared storage",
                    volume], capture_output=True)
    virsh(uris["lab-a1"], "vol-create-as", "Shared storage", volume, "16M", "--format", "qcow2")
    try:
        virt_install(uris["lab-a1"], name, f"vol=Shared storage/{volume}", memory_mib=32,
                     transient=True)
        run(engine.refresh())
        vm = vm_named(engine, name)
        assert not vm.persistent and vm.server == "lab-a1"
        _plan, job = _migrate(engine, run, MigrationRequest(vm.key, "lab-a2"))

        assert job.state is JobState.DONE, (job.error, job.error_details)
        moved = vm_named(engine, name)
        assert moved.server == "lab-a2" and moved.state is VmState.RUNNING
        assert not moved.persistent
        info = virsh(uris["lab-a2"], "dominfo", name)
        assert re.search(r"Persistent:\s+no", info), info
        assert name not in virsh(uris["lab-a1"], "list", "--all", "--name").split()
    finally:
        for uri in uris.values():
            subprocess.run(["virsh", "-c", uri, "destroy", name], capture_output=True)
        subprocess.run(["virsh", "-c", uris["lab-a1"], "vol-delete", "--pool",
                        "Shared storage", volume], capture_output=True)
        run(engine.refresh())


def test_storage_migration_puts_every_disk_on_one_sr_over_the_storage_network(
    engine: Engine, run: Any
) -> None:
    vm = vm_named(engine, "db-1")
    dest, sr = ("lab-b1", "Fast storage") if vm.server != "lab-b1" else ("lab-a1",
                                                                          "Local storage")
    old_paths = {d.dev: d.path for d in vm.hard_disks}
    formats = {d.dev: d.format for d in vm.hard_disks}
    layouts = {d.dev: image_layout(d.path or "") for d in vm.hard_disks if d.format == "qcow2"}
    assert layouts and all(compat == "1.1" for compat, _size in layouts.values()), layouts
    tx = {n: iface_bytes(vm.server, n) for n in ("storage", "management")}
    plan, job = _migrate(engine, run, MigrationRequest(vm.key, dest, sr=sr))
    sent = {n: iface_bytes(vm.server, n) - tx[n] for n in tx}

    assert plan.kind is MigrationKind.STORAGE
    assert job.state is JobState.DONE, (job.error, job.error_details)
    moved = vm_named(engine, "db-1")
    assert moved.server == dest and moved.state is VmState.RUNNING
    dest_sr = engine.snapshot().sr(dest, sr)
    assert dest_sr is not None
    for d in moved.hard_disks:
        assert d.sr == sr and d.path is not None and dest_sr.contains(d.path)
        assert pattern_intact(d.path, formats[d.dev]), f"data of {d.dev} changed"
        if d.dev in layouts:  # a qcow2 copy keeps its compat level and cluster size
            assert image_layout(d.path) == layouts[d.dev], d.path
    for path in old_paths.values():
        assert path is not None and not os.path.exists(path), f"{path} left on the source"
    # Both disks' written data (4 MiB each) crossed the storage network, not management.
    assert sent["storage"] >= 8 * MIB, sent
    assert sent["management"] < sent["storage"] / 10, sent
    # The destination's persistent definition points at the new files.
    inactive = virsh(engine.snapshot().servers[dest].uri, "dumpxml", "--inactive", vm.uuid)
    for d in moved.hard_disks:
        assert d.path is not None and d.path in inactive


def test_storage_migration_with_an_sr_per_disk(engine: Engine, run: Any) -> None:
    vm = vm_named(engine, "db-1")
    dest = "lab-a2" if vm.server != "lab-a2" else "lab-b1"
    second = "Shared storage" if dest in POOL else "Fast storage"
    request = MigrationRequest(vm.key, dest, disk_srs={"vda": "Local storage", "vdb": second})
    plan, job = _migrate(engine, run, request)

    assert job.state is JobState.DONE, (job.error, job.error_details)
    moved = vm_named(engine, "db-1")
    assert moved.server == dest
    placed = {d.dev: d.sr for d in moved.hard_disks}
    assert placed == {"vda": "Local storage", "vdb": second}
    assert all(pattern_intact(d.path or "", d.format) for d in moved.hard_disks)
    assert {d.dev for d in plan.copied_disks} == {"vda", "vdb"}


def test_cancel_during_the_disk_copy_leaves_the_vm_running_where_it_was(
    engine: Engine, run: Any
) -> None:
    vm = vm_named(engine, "app-1")
    dest = "lab-a1" if vm.server != "lab-a1" else "lab-b1"
    (job,) = engine.migrate([MigrationRequest(vm.key, dest, sr="Local storage",
                                              bandwidth_mib_s=1)])

    run(cancel_once_copying(engine, job))
    assert job.state is JobState.CANCELLED, (job.state, job.error, job.error_details)
    created = created_paths(job)
    assert created, job.messages
    for path in created:
        assert not os.path.exists(path), f"{path} left on the destination"
    snap = run(engine.refresh())
    still = snap.vm(vm.key)
    assert still is not None and still.state is VmState.RUNNING
    assert vm.name not in virsh(snap.servers[dest].uri, "list", "--all", "--name").split()
    assert all(pattern_intact(d.path or "", d.format) for d in still.hard_disks)


def test_live_disk_move_to_another_sr(engine: Engine, run: Any) -> None:
    vm = vm_named(engine, "app-1")
    disk = vm.disk("vda")
    assert disk is not None and disk.path is not None
    layout = image_layout(disk.path) if disk.format == "qcow2" else None
    target = "Fast storage" if disk.sr != "Fast storage" else "Local storage"
    if vm.server != "lab-b1":
        target = "Shared storage" if disk.sr != "Shared storage" else "Local storage"
    plan = engine.plan_disk_move(vm.key, "vda", target)
    assert not blocking(engine.check_disk_move(plan))
    job = engine.move_disk(vm.key, "vda", target)
    run(engine.wait([job]))

    assert job.state is JobState.DONE, (job.error, job.error_details)
    moved = vm_named(engine, "app-1")
    new = moved.disk("vda")
    assert moved.state is VmState.RUNNING and moved.server == vm.server
    assert new is not None and new.sr == target and new.path != disk.path
    assert not os.path.exists(disk.path)
    assert pattern_intact(new.path or "", new.format)
    if layout is not None:
        assert image_layout(new.path or "") == layout
    inactive = virsh(engine.snapshot().servers[vm.server].uri, "dumpxml", "--inactive",
                     vm.uuid)
    assert new.path is not None and new.path in inactive and disk.path not in inactive


@pytest.fixture
def one_at_a_time(lab_inventory: Any, run: Any, engine: Engine) -> Iterator[Engine]:
    """An engine of its own whose queue runs one job at a time (the shared engine is
    read again afterwards: what these tests move, it did not see move)."""
    from xencenter_lite.core.inventory import load_inventory

    own = Engine(load_inventory(lab_inventory), concurrency=1)
    run(own.start(watch=False))
    try:
        yield own
    finally:
        run(own.close())
        run(engine.refresh())


def test_the_queue_runs_jobs_beyond_its_limit_later(one_at_a_time: Engine, run: Any) -> None:
    from tests.conftest import until

    app, web = vm_named(one_at_a_time, "app-1"), vm_named(one_at_a_time, "web-1")
    app_dest = "lab-a1" if app.server != "lab-a1" else "lab-b1"
    slow, quick = one_at_a_time.migrate([
        MigrationRequest(app.key, app_dest, sr="Local storage", bandwidth_mib_s=1),
        MigrationRequest(web.key, _other_member(web.server)),
    ])
    run(until(lambda: slow.state in (JobState.COPYING_DISKS, JobState.COPYING_MEMORY)))
    assert quick.state is JobState.QUEUED  # waiting for the one slot, not refused
    assert quick.status == "queued: waiting for a free slot (1 migration at a time)"
    run(one_at_a_time.cancel(slow))
    run(one_at_a_time.wait([slow, quick]))
    assert slow.state is JobState.CANCELLED
    assert quick.state is JobState.DONE, (quick.error, quick.error_details)
    assert quick.started is not None and slow.ended is not None
    assert quick.started >= slow.ended - 0.5  # it started once the slot was free


def test_migrations_queued_together_begin_one_after_another(engine: Engine, run: Any) -> None:
    """Moves that begin at the same moment share the link evenly and end together, and the
    link then idles while they all switch over and the next ones start. So, though the
    queue has room for both, the second in the queue makes its destination volumes and
    begins sending once the first sends data."""
    from tests.conftest import until

    web, app = vm_named(engine, "web-1"), vm_named(engine, "app-1")
    app_dest = "lab-a1" if app.server != "lab-a1" else "lab-b1"
    jobs = engine.migrate([
        MigrationRequest(web.key, _other_member(web.server), bandwidth_mib_s=20),
        MigrationRequest(app.key, app_dest, sr="Local storage", bandwidth_mib_s=1),
    ])
    first, second = jobs
    began: dict[int, float] = {}
    sent: dict[int, float] = {}
    second_had_created: list[bool] = []  # when the first was first seen sending

    def seen(job: Any) -> None:
        if job.state in (JobState.COPYING_DISKS, JobState.COPYING_MEMORY):
            began.setdefault(job.id, time.monotonic())
        if job.bytes_done > 0 and job.id not in sent:
            sent[job.id] = time.monotonic()
            if job is first:
                second_had_created.append(
                    any(m.startswith("Created ") for m in second.messages))

    for job in jobs:
        job.subscribe(seen)
    run(until(lambda: len(began) == 2, timeout=60))
    assert first.id in sent and began[second.id] >= sent[first.id]
    assert second_had_created == [False]
    assert any(m.startswith("Created ") for m in second.messages)
    run(engine.cancel(second))
    run(engine.wait(jobs))
    assert first.state is JobState.DONE, (first.error, first.error_details)
    assert second.state is JobState.CANCELLED


def test_a_queued_job_starts_as_soon_as_the_one_before_has_moved_its_vm(
        one_at_a_time: Engine, run: Any) -> None:
    """The slot is for moving data: removing the old disks and reading both servers again
    happen after the VM runs on the destination, and the next job does not wait for them."""
    from tests.conftest import until

    web, app = vm_named(one_at_a_time, "web-1"), vm_named(one_at_a_time, "app-1")
    app_dest = "lab-a1" if app.server != "lab-a1" else "lab-b1"
    first, second = one_at_a_time.migrate([
        MigrationRequest(web.key, _other_member(web.server)),
        MigrationRequest(app.key, app_dest, sr="Local storage", bandwidth_mib_s=1),
    ])
    finishing: list[float] = []
    first.subscribe(lambda j: j.state is JobState.FINISHING and not finishing
                    and finishing.append(time.monotonic()))
    run(until(lambda: second.state in (JobState.COPYING_DISKS, JobState.COPYING_MEMORY)))
    run(one_at_a_time.cancel(second))
    run(one_at_a_time.wait([first, second]))
    assert first.state is JobState.DONE, (first.error, first.error_details)
    assert second.state is JobState.CANCELLED
    assert finishing and second.started is not None and first.ended is not None
    assert finishing[0] <= second.started < first.ended


def test_checks_read_the_servers_again_unless_they_were_just_read(
        one_at_a_time: Engine, run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A migration's checks look at the servers as they are now: the job reads its servers
    again first, unless they were read a moment ago (a command that has just connected)."""
    vm = vm_named(one_at_a_time, "web-1")
    link = one_at_a_time.link(vm.server)
    reads: list[str] = []
    real_read = link.read

    def counted() -> Any:
        reads.append(vm.server)
        return real_read()

    monkeypatch.setattr(link, "read", counted)

    def refused() -> None:  # already there: refused by the checks, nothing moves
        (job,) = one_at_a_time.migrate([MigrationRequest(vm.key, vm.server)])
        run(one_at_a_time.wait([job]))
        assert job.state is JobState.FAILED and "already on" in (job.error or "")

    one_at_a_time.fresh_for = 60.0  # however slow this machine is
    run(one_at_a_time.refresh(vm.server))
    reads.clear()
    refused()
    assert reads == []
    one_at_a_time.fresh_for = 0.0
    refused()
    assert reads == [vm.server]
