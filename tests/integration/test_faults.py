"""Migrations that break on the way: the VM keeps running exactly once, where it was,
and nothing the job created is left on the destination."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import until
from tests.labtools import cli, netns, virsh, vm_named, wait_working
from xencenter_lite.core.inventory import load_inventory
from xencenter_lite.core.jobs import Job, JobState
from xencenter_lite.core.model import VM, VmState
from xencenter_lite.core.plan import MigrationRequest
from xencenter_lite.engine import Engine
from xencenter_lite.lab import Lab, load_lab_config
from xencenter_lite.lab.records import read_records
from xencenter_lite.lab.tls import qemu_dir


def _pid_file(engine: Engine, server: str, name: str) -> Path:
    uri = engine.snapshot().servers[server].uri
    run_dir = Path(uri.split("socket=", 1)[1]).parent
    return run_dir / name


def _created(job: Job) -> list[str]:
    return [m.split(" ", 1)[1].rsplit(" on ", 1)[0] for m in job.messages
            if m.startswith("Created ")]


def _start_slow(engine: Engine, run: Any, state_dir: Path, vm_name: str, dest: str, sr: str,
                **kw: Any) -> tuple[Job, int]:
    """Start a storage migration capped at 1 MiB/s once the guest is working; returns the
    job and the last record the guest reported before it."""
    before = wait_working(engine, run, state_dir, vm_name)
    vm = vm_named(engine, vm_name)
    (job,) = engine.migrate([MigrationRequest(vm.key, dest, sr=sr, bandwidth_mib_s=1)], **kw)
    run(until(lambda: job.state in (JobState.COPYING_DISKS, JobState.COPYING_MEMORY)
              or job.state.finished))
    assert not job.state.finished, (job.state, job.error, job.error_details)
    run(until(lambda: job.bytes_done > 0, timeout=20))
    return job, before


def _assert_rolled_back(engine: Engine, run: Any, job: Job, before: int, vm_name: str,
                        source: str, dest: str) -> None:
    run(engine.wait([job]), 180)
    assert job.state in (JobState.FAILED, JobState.CANCELLED), job.state
    assert job.error and "keeps running on" in job.error, job.error
    snap = run(engine.refresh())
    copies = [v for v in snap.vms if v.name == vm_name]
    assert [(v.server, v.state) for v in copies] == [(source, VmState.RUNNING)]
    assert vm_name not in virsh(snap.servers[dest].uri, "list", "--all", "--name").split()
    created = _created(job)
    assert created, job.messages
    assert [p for p in created if os.path.exists(p)] == []
    _assert_records_intact(vm_named(engine, vm_name), before)


def _assert_records_intact(vm: VM, reported_before: int) -> None:
    """The guest's workload records on its disk: contiguous, none corrupt or repeated, and
    every one it reported before the fault is there."""
    disk = vm.hard_disks[-1]
    assert disk.path is not None
    found = read_records(disk.path, disk.format)
    assert found.intact, found.summary()
    assert found.last is not None and found.last >= reported_before, found.summary()


@pytest.fixture
def app_route(engine: Engine) -> Iterator[tuple[str, str]]:
    vm = vm_named(engine, "app-1")
    yield vm.server, ("lab-a1" if vm.server != "lab-a1" else "lab-b1")


def test_tls_without_certificates_fails_cleanly(lab_inventory: Path, engine: Engine,
                                                run: Any, lab_config_path: Path) -> None:
    vm = vm_named(engine, "web-1")
    dest = "lab-a2" if vm.server == "lab-a1" else "lab-a1"
    # The destination's QEMU finds no certificates for the migration (the lab's are put
    # aside for the test; QEMU reads them when a migration begins).
    certs = qemu_dir(load_lab_config(lab_config_path), dest)
    aside = certs.with_name("qemu.aside")
    certs.rename(aside)
    try:
        result = cli("migrate", "web-1", "--to", dest, "--tls", "--json",
                     inventory=lab_inventory)
    finally:
        aside.rename(certs)
    assert result.returncode == 1, result.stdout + result.stderr
    (res,) = json.loads(result.stdout)
    assert res["ok"] is False and "TLS" in res["error"], res["details"]
    snap = run(engine.refresh())
    assert [v.server for v in snap.vms if v.name == "web-1"] == [vm.server]


def test_destination_qemu_killed_mid_migration(engine: Engine, run: Any,
                                               state_dir: Path, app_route: tuple[str, str]) -> None:
    source, dest = app_route
    job, before = _start_slow(engine, run, state_dir, "app-1", dest, "Local storage")
    pid = int(_pid_file(engine, dest, "qemu/app-1.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    _assert_rolled_back(engine, run, job, before, "app-1", source, dest)


def test_destination_sr_fills_up_mid_copy(engine: Engine, run: Any, state_dir: Path) -> None:
    before = wait_working(engine, run, state_dir, "db-1")
    vm = vm_named(engine, "db-1")
    if vm.server == "lab-b1":
        pytest.fail("db-1 is expected away from lab-b1, where the small SR is")
    (job,) = engine.migrate([MigrationRequest(vm.key, "lab-b1", sr="Small storage")],
                            skip_checks=frozenset({"NOT_ENOUGH_SPACE"}))
    # The lab wrote 4 MiB into each disk; fill the 64 MiB SR so those no longer fit.
    small = engine.snapshot().sr("lab-b1", "Small storage")
    assert small is not None
    filler = Path(small.path) / "filler.bin"
    try:
        subprocess.run(["fallocate", "-l", f"{small.available - 2 * 1024 * 1024}",
                        str(filler)], check=True)
        _assert_rolled_back(engine, run, job, before, "db-1", vm.server, "lab-b1")
        assert job.state is JobState.FAILED
    finally:
        filler.unlink(missing_ok=True)


def test_destination_libvirtd_killed_mid_migration(engine: Engine, run: Any,
                                                   lab_config_path: Path,
                                                   state_dir: Path,
                                                   app_route: tuple[str, str]) -> None:
    source, dest = app_route
    job, before = _start_slow(engine, run, state_dir, "app-1", dest, "Local storage")
    pid = int(_pid_file(engine, dest, "libvirtd.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    run(engine.wait([job]), 180)
    assert job.state is JobState.FAILED
    Lab(load_lab_config(lab_config_path)).restart_server(dest)
    # Once the destination is back, what the job made there is removed.
    run(until(lambda: engine.snapshot().servers[dest].connected, timeout=60))
    created = _created(job)
    run(until(lambda: not any(os.path.exists(p) for p in created), timeout=30))
    _assert_rolled_back(engine, run, job, before, "app-1", source, dest)


def test_storage_network_cut_mid_transfer_then_restored(engine: Engine, run: Any,
                                                        state_dir: Path,
                                                   app_route: tuple[str, str]) -> None:
    source, dest = app_route
    job, before = _start_slow(engine, run, state_dir, "app-1", dest, "Local storage")
    link = ["ip", "netns", "exec", netns(dest), "ip", "link", "set", "storage"]
    subprocess.run([*link, "down"], check=True)
    try:
        run(asyncio.sleep(1))
        stalled_at = job.bytes_done
        run(asyncio.sleep(3))
        assert job.bytes_done - stalled_at < 1024 * 1024  # nothing crosses a cut link
        assert not job.state.finished or job.state is not JobState.DONE
    finally:
        subprocess.run([*link, "up"], check=True)
    # The transfer resumes over the restored link (TCP retransmits); then let it go.
    resumed_from = job.bytes_done
    run(until(lambda: job.bytes_done > resumed_from or job.state.finished, timeout=60), 90)
    run(engine.cancel(job))
    run(engine.wait([job]), 120)
    snap = run(engine.refresh())
    copies = [(v.server, v.state) for v in snap.vms if v.name == "app-1"]
    assert len(copies) == 1 and copies[0][1] is VmState.RUNNING
    if job.state is JobState.DONE:
        assert copies[0][0] == dest
    else:
        assert copies[0][0] == source
        assert [p for p in _created(job) if os.path.exists(p)] == []
    _assert_records_intact(vm_named(engine, "app-1"), before)


def test_the_same_vm_twice_at_once_is_refused(engine: Engine, run: Any,
                                              state_dir: Path, app_route: tuple[str, str]) -> None:
    source, dest = app_route
    first, before = _start_slow(engine, run, state_dir, "app-1", dest, "Local storage")
    (second,) = engine.migrate([MigrationRequest(first.vm_key, dest, sr="Local storage")])
    assert second.state is JobState.FAILED and "already has a migration" in (second.error or "")
    run(engine.cancel(first))
    _assert_rolled_back(engine, run, first, before, "app-1", source, dest)



def test_cancel_during_the_memory_copy(engine: Engine, run: Any, state_dir: Path) -> None:
    before = wait_working(engine, run, state_dir, "web-1")
    vm = vm_named(engine, "web-1")
    source = vm.server
    dest = "lab-a2" if source == "lab-a1" else "lab-a1"
    (job,) = engine.migrate([MigrationRequest(vm.key, dest, bandwidth_mib_s=1)])
    run(until(lambda: job.state is JobState.COPYING_MEMORY or job.state.finished))
    assert not job.state.finished, (job.state, job.error, job.error_details)
    run(until(lambda: job.bytes_done > 0, timeout=20))
    run(engine.cancel(job))
    run(engine.wait([job]), 120)
    assert job.state is JobState.CANCELLED, (job.state, job.error, job.error_details)
    assert job.error and f"keeps running on '{source}'" in job.error, job.error
    snap = run(engine.refresh())
    copies = [(v.server, v.state) for v in snap.vms if v.name == "web-1"]
    assert copies == [(source, VmState.RUNNING)]
    assert "web-1" not in virsh(snap.servers[dest].uri, "list", "--all", "--name").split()
    _assert_records_intact(vm_named(engine, "web-1"), before)


@pytest.fixture
def own_engine(lab_inventory: Path, run: Any) -> Iterator[Engine]:
    """An engine of this test's own: what a stopped server does to it stays here."""
    engine = Engine(load_inventory(lab_inventory))
    run(engine.start())
    yield engine
    run(engine.close())


def test_source_stops_answering_mid_migration_and_comes_back(
        own_engine: Engine, run: Any, state_dir: Path, app_route: tuple[str, str],
        restored: None) -> None:
    """The source's libvirtd stops answering (SIGSTOP: to the console a hung daemon and a
    cut management link look the same) while the VM's data moves, and comes back later."""
    engine = own_engine
    source, dest = app_route
    job, before = _start_slow(engine, run, state_dir, "app-1", dest, "Local storage")
    uuid = job.vm_key[1]
    pid = int(_pid_file(engine, source, "libvirtd.pid").read_text())
    os.kill(pid, signal.SIGSTOP)
    try:
        # Keepalive, or the engine's deadline on calls, tells it the source is gone; the
        # job waits to find out where the VM is rather than guessing. (The migration call
        # ends by its own keepalive, about 20 s, or is let go of past call_grace: 60 s.)
        run(until(lambda: not engine.snapshot().servers[source].connected, timeout=60), 70)
        with contextlib.suppress(AssertionError):
            run(until(lambda: any("Lost the connection" in m for m in job.messages)
                      or job.state.finished, timeout=90), 100)
        assert any("Lost the connection" in m for m in job.messages), (job.state, job.messages)
        assert not job.state.finished, (job.state, job.error, job.messages)
    finally:
        os.kill(pid, signal.SIGCONT)
    # Back. Either the migration went on inside the source's libvirtd and the job follows
    # it to the end, or libvirt dropped it with our connection and the job settles where the
    # VM is. Which one is libvirt's choice; the job must get it right either way.
    run(until(lambda: any("still running there" in m for m in job.messages)
              or job.state.finished, timeout=120), 130)
    if not job.state.finished:
        # Lift the 1 MiB/s cap from outside, as an operator with virsh would, to finish.
        virsh(engine.snapshot().servers[source].uri, "migrate-setspeed", uuid, "100")
    run(engine.wait([job]), 240)
    snap = run(engine.refresh())
    copies = [(v.server, v.state) for v in snap.vms if v.name == "app-1"]
    if job.state is JobState.DONE:
        assert copies == [(dest, VmState.RUNNING)]
        assert "app-1" not in virsh(snap.servers[source].uri, "list", "--all", "--name").split()
        _assert_records_intact(vm_named(engine, "app-1"), before)
    else:
        assert job.state is JobState.FAILED, (job.state, job.messages)
        assert job.error and "stopped answering" in job.error, job.error
        _assert_rolled_back(engine, run, job, before, "app-1", source, dest)
