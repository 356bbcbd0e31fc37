"""Halted and paused VMs move too: on real servers, with the guests' data checked.

A halted VM's disks go through libvirt's volume streams and are read back before libvirt
moves its definition; a paused VM migrates live and stays paused unless asked to resume.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.faults.faultlink import Call, FaultPlan, fault_links
from tests.labtools import (
    fill_pattern,
    host_path,
    iface_bytes,
    job_on,
    pattern_intact,
    remove_vm,
    sr_path,
    virsh,
    virt_install,
    vm_named,
    wait_working,
    where_defined,
)
from xencenter_lite.core.inventory import ServerConfig, load_inventory
from xencenter_lite.core.jobs import JobState
from xencenter_lite.core.model import VmState
from xencenter_lite.core.plan import DataPath, MigrationRequest
from xencenter_lite.core.power import PowerAction
from xencenter_lite.engine import Engine
from xencenter_lite.lab import load_lab_config
from xencenter_lite.lab.records import read_records
from xencenter_lite.virt import LibvirtLink, ServerLink, VirtError

MIB = 1024 * 1024


def _uris(engine: Engine) -> dict[str, str]:
    return {name: s.uri for name, s in engine.snapshot().servers.items()}


def _move(engine: Engine, run: Any, request: MigrationRequest) -> Any:
    (job,) = engine.migrate([request])
    run(engine.wait([job]), 240)
    return job


def test_a_halted_vm_moves_with_its_disks_verified_and_boots_there(
        engine: Engine, run: Any, lab_config_path: Path) -> None:
    state_dir = load_lab_config(lab_config_path).state_dir
    vm = vm_named(engine, "build-1")
    assert vm.state is VmState.HALTED and vm.server == "lab-a2"
    (disk,) = vm.hard_disks
    assert disk.path is not None
    before = read_records(disk.path, disk.format)
    # Both servers have the memory to hold it paused: by default it goes directly.
    plan = engine.plan(MigrationRequest(vm.key, "lab-b1", sr="Fast storage"))
    assert plan.data_path is DataPath.DIRECT and plan.needs_memory == 0
    streamed = MigrationRequest(vm.key, "lab-b1", sr="Fast storage", data_path=DataPath.STREAM)
    assert engine.plan(streamed).data_path is DataPath.STREAM

    job = _move(engine, run, streamed)
    assert job.state is JobState.DONE, (job.error, job.error_details, job.messages)
    assert "is now on 'lab-b1', halted" in job.messages[-1]
    assert any("verified" in m for m in job.messages), job.messages
    moved = vm_named(engine, "build-1")
    assert (moved.server, moved.state, moved.home_server) == ("lab-b1", VmState.HALTED, "lab-b1")
    assert where_defined(_uris(engine), "build-1") == [("lab-b1", "shut off")]
    (new_disk,) = moved.hard_disks
    assert new_disk.sr == "Fast storage" and new_disk.path is not None
    assert not os.path.exists(disk.path)  # the old disk went once the copy was verified
    assert pattern_intact(new_disk.path, new_disk.format)
    after = read_records(new_disk.path, new_disk.format)
    assert (after.count, after.last, after.intact) == (before.count, before.last, before.intact)
    # Sparse stays sparse: the copy allocates what the original did, not its 128 MiB.
    allocated = os.stat(new_disk.path).st_blocks * 512
    assert allocated < 64 * MIB and allocated <= disk.allocation + MIB, allocated

    # It boots there and its workload carries on from the records it had.
    power = engine.power(moved.key, PowerAction.START)
    run(engine.wait([power]))
    assert power.state is JobState.DONE, power.error
    try:
        seq = wait_working(engine, run, state_dir, "build-1")
        assert before.last is None or seq > before.last
    finally:
        off = engine.power(moved.key, PowerAction.FORCE_SHUTDOWN)
        run(engine.wait([off]))
    run(engine.refresh())
    booted = read_records(new_disk.path, new_disk.format)
    assert booted.intact and (booted.last or 0) > (before.last or -1), booted.summary()

    # And back where the lab keeps it, directly this time: started paused on lab-b1, sent
    # over the storage network, turned off on lab-a2.
    sent = iface_bytes("lab-b1", "storage")
    back_req = MigrationRequest(vm_named(engine, "build-1").key, "lab-a2", sr="Local storage")
    assert engine.plan(back_req).data_path is DataPath.DIRECT
    back = _move(engine, run, back_req)
    assert back.state is JobState.DONE, (back.error, back.messages)
    assert any("Starting 'build-1' paused on 'lab-b1'" in m for m in back.messages)
    assert any("Turned 'build-1' off on 'lab-a2'" in m for m in back.messages), back.messages
    assert iface_bytes("lab-b1", "storage") - sent > after.count * 512  # its data went there
    home = vm_named(engine, "build-1")
    assert (home.server, home.state) == ("lab-a2", VmState.HALTED)
    assert where_defined(_uris(engine), "build-1") == [("lab-a2", "shut off")]
    home_disk = home.hard_disks[0]
    assert home_disk.path is not None and pattern_intact(home_disk.path, home_disk.format)
    assert read_records(home_disk.path, home_disk.format).last == booted.last
    assert os.stat(home_disk.path).st_blocks * 512 < 64 * MIB  # still sparse
    assert not os.path.exists(new_disk.path)


# ---- small VMs of their own (virt-install, no OS) --------------------------------------------
@pytest.fixture
def small_vm(engine: Engine, run: Any, lab_config_path: Path,
             request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """A virt-install VM on lab-b1's Local storage with 16 MiB of the lab's pattern in its
    32 MiB disk; halted unless the test is marked otherwise. Returns (name, disk path)."""
    state_dir = load_lab_config(lab_config_path).state_dir
    uris = _uris(engine)
    name = f"hm-{request.node.name[5:25].replace('_', '-').strip('-')}"
    for uri in uris.values():
        remove_vm(uri, name)
    volume = f"{name}.qcow2"
    virsh(uris["lab-b1"], "vol-create-as", "Local storage", volume, "32M", "--format", "qcow2")
    path = f"{sr_path(uris['lab-b1'], 'Local storage')}/{volume}"
    fill_pattern(host_path(state_dir, "lab-b1", path), "qcow2", length="16M")
    virt_install(uris["lab-b1"], name, f"vol=Local storage/{volume}", memory_mib=32)
    virsh(uris["lab-b1"], "destroy", name)
    run(engine.refresh())
    try:
        yield name, path
    finally:
        for uri in uris.values():
            remove_vm(uri, name)
        run(engine.refresh())


class SlowCopy:
    """A real lab link whose volume streams take a pause per chunk, and can be made to fail
    after their first chunk (a destination that goes wrong mid-copy)."""

    def __init__(self, real: ServerLink, fail: bool) -> None:
        self._real, self._fail = real, fail

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def send_volume(self, path: str, dest_uri: str, dest_path: str,
                    progress: Callable[[int, int], None], cancel: Any) -> Any:
        import time

        def slowly(done: int, total: int) -> None:
            progress(done, total)
            if self._fail and done > 0:
                raise VirtError("cannot write to the volume: No space left on device")
            time.sleep(0.05)

        return self._real.send_volume(path, dest_uri, dest_path, slowly, cancel)


def _slow_engine(lab_inventory: Path, tmp_path: Path, fail: bool = False) -> Engine:
    def make(config: ServerConfig) -> ServerLink:
        return SlowCopy(LibvirtLink(config.name, config.uri), fail)  # type: ignore[return-value]

    return Engine(load_inventory(lab_inventory), link_factory=make, state_dir=tmp_path)


def _dest_volumes(engine: Engine, sr: str = "Local storage") -> list[str]:
    return virsh(engine.snapshot().servers["lab-a1"].uri, "vol-list", sr).split()


@pytest.mark.parametrize("how", ["cancel", "destination fails"])
def test_a_halted_move_cancelled_or_failing_mid_copy_leaves_nothing_behind(
        engine: Engine, run: Any, lab_inventory: Path, tmp_path: Path,
        small_vm: tuple[str, str], how: str) -> None:

    name, path = small_vm
    slow = _slow_engine(lab_inventory, tmp_path, fail=how != "cancel")
    before = _dest_volumes(engine)

    def start(eng: Engine) -> Any:
        vm = next(v for v in eng.snapshot().vms_named(name))
        (job,) = eng.migrate([MigrationRequest(vm.key, "lab-a1", sr="Local storage",
                                               data_path=DataPath.STREAM)])
        return job

    job = job_on(run, slow, start, cancel_once_sending=how == "cancel")
    if how == "cancel":
        assert job.state is JobState.CANCELLED, (job.state, job.error)
    else:
        assert job.state is JobState.FAILED and "No space left" in (job.error_details or "")
    assert "stays on 'lab-b1', halted" in (job.error or ""), job.error
    assert where_defined(_uris(engine), name) == [("lab-b1", "shut off")]
    assert pattern_intact(path, "qcow2", length="16M")
    assert _dest_volumes(engine) == before  # the half-made copy is gone
    assert slow.pending_cleanups() == []


def test_a_halted_vm_on_shared_storage_moves_its_definition_only(
        engine: Engine, run: Any, tmp_path: Path) -> None:
    uris = _uris(engine)
    name = "hm-shared"
    for uri in uris.values():
        remove_vm(uri, name)
    virsh(uris["lab-a1"], "vol-create-as", "Shared storage", f"{name}.qcow2", "16M",
          "--format", "qcow2")
    try:
        virt_install(uris["lab-a1"], name, f"vol=Shared storage/{name}.qcow2", memory_mib=32)
        virsh(uris["lab-a1"], "destroy", name)
        run(engine.refresh())
        vm = vm_named(engine, name)
        plan = engine.plan(MigrationRequest(vm.key, "lab-a2"))
        assert plan.data_path is DataPath.DEFINITION and not plan.copied_disks
        job = _move(engine, run, MigrationRequest(vm.key, "lab-a2"))
        assert job.state is JobState.DONE, (job.error, job.messages)
        moved = vm_named(engine, name)
        assert (moved.server, moved.state) == ("lab-a2", VmState.HALTED)
        assert moved.home_server == "lab-a2"  # in the definition that moved
        assert [d.path for d in moved.disks] == [d.path for d in vm.disks]
        assert all(os.path.exists(d.path or "") for d in moved.hard_disks)
        assert where_defined(uris, name) == [("lab-a2", "shut off")]
    finally:
        for uri in uris.values():
            remove_vm(uri, name)
        run(engine.refresh())


def test_start_on_server_moves_the_definition_then_starts_it_there(
        engine: Engine, run: Any) -> None:
    uris = _uris(engine)
    name = "hm-start-on"
    for uri in uris.values():
        remove_vm(uri, name)
    virsh(uris["lab-a1"], "vol-create-as", "Shared storage", f"{name}.qcow2", "16M",
          "--format", "qcow2")
    try:
        virt_install(uris["lab-a1"], name, f"vol=Shared storage/{name}.qcow2", memory_mib=32)
        virsh(uris["lab-a1"], "destroy", name)
        run(engine.refresh())
        vm = vm_named(engine, name)
        move, start = run(engine.start_on(vm.key, "lab-a2"), 120)
        assert move.state is JobState.DONE and start.state is JobState.DONE, (
            move.error, start.error)
        assert where_defined(uris, name) == [("lab-a2", "running")]
        assert vm_named(engine, name).hard_disks[0].path == vm.hard_disks[0].path
        # A server that cannot see its disks is refused, by a job that says why.
        off = engine.power(vm_named(engine, name).key, PowerAction.FORCE_SHUTDOWN)
        run(engine.wait([off]))
        (refused,) = run(engine.start_on(vm_named(engine, name).key, "lab-b1"), 60)
        assert refused.state is JobState.FAILED
        assert "'lab-b1' cannot see the disks" in (refused.error or ""), refused.error
        assert where_defined(uris, name) == [("lab-a2", "shut off")]
    finally:
        for uri in uris.values():
            remove_vm(uri, name)
        run(engine.refresh())


# ---- paused VMs ----------------------------------------------------------------------------
def _paused(engine: Engine, run: Any, name: str) -> Any:
    vm = vm_named(engine, name)
    for action in (PowerAction.START, PowerAction.SUSPEND):
        job = engine.power(vm.key, action)
        run(engine.wait([job]))
        assert job.state is JobState.DONE, job.error
    vm = vm_named(engine, name)
    assert vm.state is VmState.PAUSED
    return vm


def test_a_paused_vm_stays_paused_unless_asked_to_resume(
        engine: Engine, run: Any, small_vm: tuple[str, str]) -> None:
    name, _path = small_vm
    vm = _paused(engine, run, name)
    job = _move(engine, run, MigrationRequest(vm.key, "lab-a1", sr="Local storage"))
    assert job.state is JobState.DONE, (job.error, job.messages)
    assert "paused (as it was)" in job.messages[-1]
    assert where_defined(_uris(engine), name) == [("lab-a1", "paused")]

    there = vm_named(engine, name)
    job = _move(engine, run, MigrationRequest(there.key, "lab-b1", sr="Local storage",
                                              resume=True))
    assert job.state is JobState.DONE, (job.error, job.messages)
    assert "runs again" in job.messages[-1]
    assert where_defined(_uris(engine), name) == [("lab-b1", "running")]


def test_a_failed_migration_of_a_paused_vm_leaves_it_paused(
        engine: Engine, run: Any, lab_inventory: Path, tmp_path: Path,
        small_vm: tuple[str, str]) -> None:
    name, path = small_vm
    vm = _paused(engine, run, name)
    plan = FaultPlan(roles={"lab-b1": "source", "lab-a1": "destination"})
    faulty = Engine(load_inventory(lab_inventory), link_factory=fault_links(plan),
                    state_dir=tmp_path)

    def start(eng: Engine) -> Any:
        plan.arm(Call("source", "migrate", 1))
        (job,) = eng.migrate([MigrationRequest(vm.key, "lab-a1", sr="Local storage",
                                               resume=True)])
        return job

    job = job_on(run, faulty, start)
    assert plan.fired and job.state is JobState.FAILED
    assert "stays on 'lab-b1', paused" in (job.error or ""), job.error
    # Not resumed by the roll-back: the operator paused it.
    assert where_defined(_uris(engine), name) == [("lab-b1", "paused")]
    assert not [v for v in _dest_volumes(engine) if name in v]
    assert pattern_intact(path, "qcow2", length="16M")


def test_cli_moves_a_halted_vm_and_says_how(engine: Engine, run: Any, lab_inventory: Path,
                                            small_vm: tuple[str, str]) -> None:
    import json

    from tests.labtools import cli

    name, _path = small_vm
    result = cli("precheck", name, "--to", "lab-a1", "--sr", "Local storage", "--json",
                 inventory=lab_inventory)
    assert result.returncode == 0, result.stdout + result.stderr
    (plan,) = json.loads(result.stdout)["plans"]
    assert (plan["state"], plan["data_path"]) == ("halted", "direct")
    assert json.loads(cli("precheck", name, "--to", "lab-a1", "--via", "stream", "--json",
                          inventory=lab_inventory).stdout)["plans"][0]["data_path"] == "stream"
    result = cli("migrate", name, "--to", "lab-a1", "--sr", "Local storage",
                 inventory=lab_inventory)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "halted: started paused, its disks sent directly over 'storage'" in result.stdout
    assert f"'{name}' is now on 'lab-a1', halted" in result.stdout
    assert where_defined(_uris(engine), name) == [("lab-a1", "shut off")]


@pytest.mark.parametrize("fault", ["start", "migrate"])
def test_a_direct_move_that_cannot_start_falls_back_and_one_that_fails_stays_halted(
        engine: Engine, run: Any, lab_inventory: Path, tmp_path: Path,
        small_vm: tuple[str, str], fault: str) -> None:
    """If the VM will not start paused, its disks go through the console; if the migration
    fails, it is turned off again where it was, and nothing stays on the destination."""
    name, path = small_vm
    plan = FaultPlan(roles={"lab-b1": "source", "lab-a1": "destination"})
    faulty = Engine(load_inventory(lab_inventory), link_factory=fault_links(plan),
                    state_dir=tmp_path)
    before = _dest_volumes(engine)

    def start(eng: Engine) -> Any:
        vm = next(v for v in eng.snapshot().vms_named(name))
        request = MigrationRequest(vm.key, "lab-a1", sr="Local storage")
        assert eng.plan(request).data_path is DataPath.DIRECT
        plan.arm(Call("source", "power" if fault == "start" else "migrate", 1))
        (job,) = eng.migrate([request])
        return job

    job = job_on(run, faulty, start)
    assert plan.fired
    if fault == "start":
        assert job.state is JobState.DONE, (job.error, job.messages)
        assert any("its disks go through the console instead" in m for m in job.messages)
        assert any("verified" in m for m in job.messages)
        assert where_defined(_uris(engine), name) == [("lab-a1", "shut off")]
        run(engine.refresh())
        moved = vm_named(engine, name)
        new = moved.hard_disks[0].path
        assert moved.server == "lab-a1" and new and pattern_intact(new, "qcow2", length="16M")
    else:
        assert job.state is JobState.FAILED, (job.state, job.messages)
        assert "stays on 'lab-b1', halted" in (job.error or ""), job.error
        assert where_defined(_uris(engine), name) == [("lab-b1", "shut off")]
        assert pattern_intact(path, "qcow2", length="16M")
        assert _dest_volumes(engine) == before
    assert faulty.pending_cleanups() == []


def test_a_vm_on_a_backing_chain_moves_directly_as_one_image_never_through_the_console(
        engine: Engine, run: Any, lab_config_path: Path) -> None:
    """virt-manager's and templates' overlays: the console's streams would copy the top
    file only, so that path refuses; the direct path copies the whole chain into one."""
    state_dir = load_lab_config(lab_config_path).state_dir
    uris = _uris(engine)
    name, sr = "hm-overlay", "Local storage"
    for uri in uris.values():
        remove_vm(uri, name)
    b1 = uris["lab-b1"]
    base = f"{sr_path(b1, sr)}/{name}-base.qcow2"
    virsh(b1, "vol-create-as", sr, f"{name}-base.qcow2", "32M", "--format", "qcow2")
    fill_pattern(host_path(state_dir, "lab-b1", base), "qcow2")
    virsh(b1, "vol-create-as", sr, f"{name}.qcow2", "32M", "--format", "qcow2",
          "--backing-vol", base, "--backing-vol-format", "qcow2")
    try:
        virt_install(b1, name, f"vol={sr}/{name}.qcow2", memory_mib=32)
        virsh(b1, "destroy", name)
        run(engine.refresh())
        vm = vm_named(engine, name)
        before = _dest_volumes(engine)
        refused = _move(engine, run, MigrationRequest(vm.key, "lab-a1", sr=sr,
                                                      data_path=DataPath.STREAM))
        assert refused.state is JobState.FAILED
        assert "overlays on a backing file" in (refused.error or "")
        assert "--via direct" in (refused.error or "")
        assert where_defined(uris, name) == [("lab-b1", "shut off")]
        assert _dest_volumes(engine) == before

        job = _move(engine, run, MigrationRequest(vm.key, "lab-a1", sr=sr))
        assert job.state is JobState.DONE, (job.error, job.messages)
        moved = vm_named(engine, name)
        path = moved.hard_disks[0].path
        assert moved.server == "lab-a1" and path is not None
        info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", path],
                                         check=True, capture_output=True, text=True).stdout)
        assert "backing-filename" not in info  # one image now
        assert pattern_intact(path, "qcow2")  # with the base's data in it
        assert os.path.exists(base)  # the base stays: other VMs may use it
    finally:
        for uri in uris.values():
            remove_vm(uri, name)
        subprocess.run(["virsh", "-c", b1, "vol-delete", f"{name}-base.qcow2", "--pool", sr],
                       capture_output=True)
        run(engine.refresh())


class WrongDigest:
    """A real link whose read-back of a volume reports other contents."""

    def __init__(self, real: ServerLink) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def volume_digest(self, path: str, progress: Callable[[int, int], None],
                      cancel: Any) -> Any:
        seen = self._real.volume_digest(path, progress, cancel)
        return replace(seen, digest="0" * 64)


def test_a_copy_that_does_not_read_back_the_same_is_not_used(
        engine: Engine, run: Any, lab_inventory: Path, tmp_path: Path,
        small_vm: tuple[str, str]) -> None:
    name, path = small_vm

    def make(config: ServerConfig) -> ServerLink:
        return WrongDigest(LibvirtLink(config.name, config.uri))  # type: ignore[return-value]

    checked = Engine(load_inventory(lab_inventory), link_factory=make, state_dir=tmp_path)
    before = _dest_volumes(engine)

    def start(eng: Engine) -> Any:
        vm = next(v for v in eng.snapshot().vms_named(name))
        (job,) = eng.migrate([MigrationRequest(vm.key, "lab-a1", sr="Local storage",
                                               data_path=DataPath.STREAM)])
        return job

    job = job_on(run, checked, start)
    assert job.state is JobState.FAILED
    assert "does not match what was sent" in (job.error or ""), job.error
    assert where_defined(_uris(engine), name) == [("lab-b1", "shut off")]
    assert os.path.exists(path) and pattern_intact(path, "qcow2", length="16M")
    assert _dest_volumes(engine) == before


@pytest.mark.parametrize("fault", [None, "migrate"])
def test_a_vm_with_a_saved_state_moves_with_it_or_keeps_it_where_it_was(
        engine: Engine, run: Any, lab_inventory: Path, tmp_path: Path,
        fault: str | None) -> None:
    """Restored paused, migrated, saved again on the destination; a failed move saves it
    again where it was. Either way Start then resumes it (no boot)."""
    from tests.labtools import bare_domain_xml

    uris = _uris(engine)
    name = "hm-saved"
    for uri in uris.values():
        remove_vm(uri, name)
    virsh(uris["lab-a2"], "define", str(bare_domain_xml(tmp_path, name)))
    plan = FaultPlan(roles={"lab-a2": "source", "lab-b1": "destination"})
    mover = Engine(load_inventory(lab_inventory), link_factory=fault_links(plan),
                   state_dir=tmp_path / "state")

    def saved_on(server: str) -> bool:
        info = virsh(uris[server], "dominfo", name)
        return info.split("Managed save:", 1)[1].split()[0] == "yes"

    def start(eng: Engine) -> Any:
        vm = next(v for v in eng.snapshot().vms_named(name))
        assert vm.managed_save and vm.state is VmState.HALTED
        request = MigrationRequest(vm.key, "lab-b1")
        assert eng.plan(request).data_path is DataPath.DIRECT
        if fault:
            plan.arm(Call("source", fault, 1))
        (job,) = eng.migrate([request])
        return job

    try:
        virsh(uris["lab-a2"], "start", name)
        virsh(uris["lab-a2"], "managedsave", name)
        run(engine.refresh())
        job = job_on(run, mover, start)
        where = "lab-a2" if fault else "lab-b1"
        if fault:
            assert plan.fired and job.state is JobState.FAILED, (job.state, job.messages)
            assert "stays on 'lab-a2', halted" in (job.error or "")
        else:
            assert job.state is JobState.DONE, (job.error, job.messages)
            assert "halted with its saved state" in job.messages[-1]
        assert where_defined(uris, name) == [(where, "shut off")]
        assert saved_on(where)
        virsh(uris[where], "start", name)  # restored from the saved state
        assert virsh(uris[where], "domstate", "--reason", name).strip() == \
            "running (restored)"
    finally:
        for uri in uris.values():
            remove_vm(uri, name)
            subprocess.run(["virsh", "-c", uri, "undefine", name, "--managed-save"],
                           capture_output=True)
        run(engine.refresh())


@pytest.mark.parametrize("via", [DataPath.DIRECT, DataPath.STREAM], ids=lambda v: v.value)
def test_a_destination_sr_that_fills_up_mid_copy_leaves_the_vm_halted_where_it_was(
        engine: Engine, run: Any, small_vm: tuple[str, str], via: DataPath) -> None:
    """A real failure on the destination: its SR (a 64 MiB tmpfs) is filled after the
    checks, so the 16 MiB of data no longer fit, for either path."""
    name, _path = small_vm
    vm = vm_named(engine, name)
    # Small storage is lab-b1's, where the VM is: it goes to lab-a1 first, then back.
    there = _move(engine, run, MigrationRequest(vm.key, "lab-a1", sr="Local storage"))
    assert there.state is JobState.DONE, there.error
    vm = vm_named(engine, name)
    small = engine.snapshot().sr("lab-b1", "Small storage")
    assert small is not None
    before = virsh(engine.snapshot().servers["lab-b1"].uri, "vol-list", "Small storage")
    filler = Path(small.path) / "filler.bin"
    try:
        subprocess.run(["fallocate", "-l", f"{small.available - 8 * MIB}", str(filler)],
                       check=True)
        (job,) = engine.migrate([MigrationRequest(vm.key, "lab-b1", sr="Small storage",
                                                  data_path=via)],
                                skip_checks=frozenset({"NOT_ENOUGH_SPACE"}))
        run(engine.wait([job]), 240)
    finally:
        filler.unlink(missing_ok=True)
    assert job.state is JobState.FAILED, (job.state, job.messages)
    assert "stays on 'lab-a1', halted" in (job.error or ""), job.error
    assert where_defined(_uris(engine), name) == [("lab-a1", "shut off")]
    left = vm_named(engine, name).hard_disks[0].path
    assert left and pattern_intact(left, "qcow2", length="16M")
    b1 = engine.snapshot().servers["lab-b1"].uri
    virsh(b1, "pool-refresh", "Small storage")  # (the filler is gone)
    assert virsh(b1, "vol-list", "Small storage") == before
    assert engine.pending_cleanups() == []
