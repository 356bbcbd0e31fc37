"""Dynamic Memory Control for real: the destination's VMs are ballooned down to make room
for the incoming VM, and a guest that won't give memory back stops the move before any copy.

Both tests make lab-a2 tight with an inventory of their own (its VM memory limit leaves
48 MiB less than the incoming web-1 needs) and put a VM with a dynamic range there.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import until
from tests.labtools import remove_vm, virsh, virt_install, vm_named
from xencenter_lite.core.inventory import load_inventory
from xencenter_lite.core.jobs import JobState
from xencenter_lite.core.metadata import VmMetadata
from xencenter_lite.core.model import VmState
from xencenter_lite.core.plan import MigrationRequest
from xencenter_lite.engine import Engine
from xencenter_lite.lab import load_lab_config
from xencenter_lite.lab.records import reported_seq, serial_log

MIB = 1024 * 1024
DEST = "lab-a2"
SHORT = 48 * MIB


def _web_on_a1(engine: Engine, run: Any) -> None:
    web = vm_named(engine, "web-1")
    if web.server != "lab-a1":
        (job,) = engine.migrate([MigrationRequest(web.key, "lab-a1", sr="Shared storage")])
        run(engine.wait([job]), 300)
        assert job.state is JobState.DONE, (job.error, job.error_details)


def _tight_engine(lab_inventory: Path, tmp_path: Path, run: Any, limit: int) -> Engine:
    text, n = re.subn(r'(name = "lab-a2"\n(?:.*\n)*?)vm_memory_limit_mib = \d+',
                      rf"\g<1>vm_memory_limit_mib = {limit // MIB}", lab_inventory.read_text(),
                      count=1)
    assert n == 1
    path = tmp_path / "inventory.toml"
    path.write_text(text)
    tight = Engine(load_inventory(path))
    run(tight.start(watch=False))
    return tight


def _clear_range(engine: Engine, run: Any, name: str) -> None:
    vm = vm_named(engine, name)
    meta = VmMetadata(home_server=vm.home_server, folder=vm.folder)
    run(engine.fleet.call(vm.server, engine.link(vm.server).set_metadata, vm.uuid, meta))


@pytest.fixture
def build_running(engine: Engine, run: Any, lab_config_path: Path) -> Iterator[Any]:
    """build-1 (halted in the lab) booted on lab-a2 with its balloon driver loaded."""
    vm = vm_named(engine, "build-1")
    assert vm.server == DEST
    uri = engine.snapshot().servers[DEST].uri
    state_dir = load_lab_config(lab_config_path).state_dir
    log = serial_log(state_dir, DEST, "build-1")
    before = reported_seq([log])
    virsh(uri, "start", vm.uuid)
    try:
        # The guest's init loads virtio_balloon before it starts reporting its workload.
        run(until(lambda: (reported_seq([log]) or -1) > (before or -1), timeout=240,
                  interval=0.5), 250)
        run(engine.refresh(DEST))
        yield vm_named(engine, "build-1")
    finally:
        virsh(uri, "destroy", vm.uuid)
        _clear_range(engine, run, "build-1")
        run(engine.refresh(DEST))


def test_dmc_squeezes_the_destination_to_make_room(engine: Engine, run: Any,
                                                   lab_inventory: Path, tmp_path: Path,
                                                   build_running: Any) -> None:
    _web_on_a1(engine, run)
    run(engine.set_dynamic_memory(build_running.key, 64 * MIB, 128 * MIB))
    web = vm_named(engine, "web-1")
    build = vm_named(engine, "build-1")
    tight = _tight_engine(lab_inventory, tmp_path, run,
                          build.memory_in_use + web.memory - SHORT)
    try:
        _plans, problems = run(tight.precheck([MigrationRequest(web.key, DEST)]))
        assert [p.code for p in problems if p.blocking] == []
        (dmc,) = [p for p in problems if p.code == "DMC_SQUEEZE"]
        assert "Will free 48.0 MiB" in dmc.message
        (job,) = tight.migrate([MigrationRequest(web.key, DEST)])
        run(tight.wait([job]), 300)
        assert job.state is JobState.DONE, (job.error, job.error_details, job.messages)
        assert any("Dynamic Memory Control" in m for m in job.messages)
        snap = run(tight.refresh())
        squeezed = snap.vm(build.key)
        assert squeezed is not None and squeezed.state is VmState.RUNNING
        assert squeezed.memory_in_use <= build.memory_in_use - SHORT + 4 * MIB
        assert squeezed.memory_in_use >= 64 * MIB
        assert [v.server for v in snap.vms if v.name == "web-1"] == [DEST]
    finally:
        run(tight.close())
        run(engine.refresh())


def test_a_guest_that_keeps_its_memory_stops_the_move_before_any_copy(
    engine: Engine, run: Any, lab_inventory: Path, tmp_path: Path
) -> None:
    _web_on_a1(engine, run)
    uri = engine.snapshot().servers[DEST].uri
    xml = tmp_path / "stubborn.xml"
    # No operating system, so nothing in the guest answers the balloon.
    xml.write_text("""<domain type='qemu'><name>stubborn-1</name>
      <memory unit='MiB'>128</memory><os><type arch='x86_64' machine='pc'>hvm</type></os>
      <devices><memballoon model='virtio'/></devices></domain>""")
    virsh(uri, "define", str(xml))
    virsh(uri, "start", "stubborn-1")
    tight = None
    try:
        run(engine.refresh(DEST))
        stubborn = vm_named(engine, "stubborn-1")
        run(engine.set_dynamic_memory(stubborn.key, 64 * MIB, 128 * MIB))
        web = vm_named(engine, "web-1")
        tight = _tight_engine(lab_inventory, tmp_path, run,
                              stubborn.memory_in_use + web.memory - SHORT)
        tight.dmc_timeout = 5.0
        (job,) = tight.migrate([MigrationRequest(web.key, DEST)])
        run(tight.wait([job]), 120)
        assert job.state is JobState.FAILED
        assert "did not give memory back" in (job.error or ""), job.error
        assert not any(m.startswith("Created ") for m in job.messages)  # nothing was copied
        snap = run(tight.refresh())
        assert [v.server for v in snap.vms if v.name == "web-1"] == ["lab-a1"]
        restored = snap.vm(stubborn.key)
        assert restored is not None and restored.memory_in_use == stubborn.memory_in_use
    finally:
        if tight is not None:
            run(tight.close())
        virsh(uri, "destroy", "stubborn-1")
        virsh(uri, "undefine", "stubborn-1")
        run(engine.refresh())


def test_a_vm_without_a_balloon_is_not_counted_and_its_range_is_refused(
        engine: Engine, run: Any) -> None:
    """virt-install --memballoon none: a range written into its metadata (as by hand) does
    not count as memory Dynamic Memory Control could free, and setting one is refused."""
    uri = engine.snapshot().servers[DEST].uri
    name, volume = "nb-1", "nb-1.qcow2"
    remove_vm(uri, name)
    subprocess.run(["virsh", "-c", uri, "vol-delete", "--pool", "Local storage", volume],
                   capture_output=True)
    virsh(uri, "vol-create-as", "Local storage", volume, "16M", "--format", "qcow2")
    try:
        virt_install(uri, name, f"vol=Local storage/{volume}", memory_mib=64,
                     extra=("--memballoon", "none"))
        run(engine.refresh(DEST))
        vm = vm_named(engine, name)
        assert vm.is_running and not vm.has_balloon
        before = engine.snapshot().memory_reclaimable(DEST)
        meta = VmMetadata(dynamic_min=32 * MIB, dynamic_max=64 * MIB)
        run(engine.fleet.call(DEST, engine.link(DEST).set_metadata, vm.uuid, meta))
        run(engine.refresh(DEST))
        vm = vm_named(engine, name)
        assert vm.dynamic_min == 32 * MIB and vm.reclaimable == 0
        assert engine.snapshot().memory_reclaimable(DEST) == before
        with pytest.raises(ValueError, match="no balloon device"):
            run(engine.set_dynamic_memory(vm.key, 48 * MIB, 64 * MIB))
        run(engine.refresh(DEST))
        assert vm_named(engine, name).dynamic_min == 32 * MIB  # nothing was changed
    finally:
        remove_vm(uri, name)
        run(engine.refresh(DEST))
