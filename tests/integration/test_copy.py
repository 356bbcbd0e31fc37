"""Copy VM on real servers: a new VM with its own disks, new UUID and MAC, halted; what
cannot be copied consistently is refused, and a copy cancelled mid-way leaves nothing."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import until
from tests.labtools import (
    cli,
    fill_pattern,
    host_path,
    job_on,
    pattern_intact,
    remove_vm,
    sr_path,
    virsh,
    vm_named,
    where_defined,
)
from xencenter_lite.core.copy import CopyRequest
from xencenter_lite.core.jobs import JobState
from xencenter_lite.core.metadata import VmMetadata
from xencenter_lite.core.model import VmState
from xencenter_lite.engine import Engine
from xencenter_lite.lab import load_lab_config

pytestmark = pytest.mark.lab
SOURCE = "cp-src"


def _uris(engine: Engine) -> dict[str, str]:
    return {name: s.uri for name, s in engine.snapshot().servers.items()}


@pytest.fixture
def source_vm(engine: Engine, run: Any, lab_config_path: Path, tmp_path: Path
              ) -> Iterator[Any]:
    """A halted VM on lab-a2 with a NIC (user networking: the lab's servers have no
    libvirt network), a folder and a DMC range, and 16 MiB of the lab's pattern."""
    state_dir = load_lab_config(lab_config_path).state_dir
    uris = _uris(engine)
    a2 = uris["lab-a2"]
    for uri in uris.values():
        remove_vm(uri, SOURCE)
    sr = "Local storage"
    virsh(a2, "vol-create-as", sr, f"{SOURCE}.qcow2", "32M", "--format", "qcow2")
    path = f"{sr_path(a2, sr)}/{SOURCE}.qcow2"
    fill_pattern(host_path(state_dir, "lab-a2", path), "qcow2", length="16M")
    xml = tmp_path / "src.xml"
    xml.write_text(f"""<domain type='qemu'><name>{SOURCE}</name>
      <memory unit='MiB'>32</memory><os><type arch='x86_64' machine='pc'>hvm</type></os>
      <devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='{path}'/><target dev='vda' bus='virtio'/></disk>
      <interface type='user'><mac address='52:54:00:12:34:56'/><model type='virtio'/>
      </interface></devices></domain>""")
    virsh(a2, "define", str(xml))
    run(engine.refresh())
    vm = vm_named(engine, SOURCE)
    meta = VmMetadata(home_server="lab-a2", folder="/Templates", dynamic_min=16 * 2**20,
                      dynamic_max=32 * 2**20)
    run(engine.fleet.call("lab-a2", engine.link("lab-a2").set_metadata, vm.uuid, meta))
    run(engine.refresh())
    try:
        yield vm_named(engine, SOURCE)
    finally:
        for uri in uris.values():
            remove_vm(uri, SOURCE)
            for name in ("cp-1", "cp-2", "cp-3"):
                remove_vm(uri, name)
        run(engine.refresh())


def _copy(engine: Engine, run: Any, request: CopyRequest) -> Any:
    job = engine.copy(request)
    run(engine.wait([job]), 120)
    return job


def test_a_copy_is_a_new_vm_with_its_own_disks(engine: Engine, run: Any,
                                               source_vm: Any) -> None:
    uris = _uris(engine)
    job = _copy(engine, run, CopyRequest(source_vm.key, "lab-b1", "cp-1", sr="Fast storage"))
    assert job.state is JobState.DONE, (job.error, job.messages)
    assert any("verified" in m for m in job.messages)
    copy = vm_named(engine, "cp-1")
    assert (copy.server, copy.state) == ("lab-b1", VmState.HALTED)
    assert copy.uuid != source_vm.uuid
    assert (copy.folder, copy.dynamic_min, copy.dynamic_max) == (
        "/Templates", 16 * 2**20, 32 * 2**20)
    assert copy.home_server == "lab-b1"
    (disk,) = copy.hard_disks
    assert disk.sr == "Fast storage" and disk.path and disk.path != source_vm.disks[0].path
    assert pattern_intact(disk.path, "qcow2", length="16M")
    assert os.stat(disk.path).st_blocks * 512 < 24 * 2**20  # sparse
    xml = virsh(uris["lab-b1"], "dumpxml", "cp-1")
    assert "52:54:00:12:34:56" not in xml and "<mac address=" in xml  # a MAC of its own
    # The original is untouched, and the copy's disk is its own: writing it changes
    # nothing in the original.
    assert where_defined(uris, SOURCE) == [("lab-a2", "shut off")]
    fill_pattern(Path(disk.path), "qcow2", pattern=0x11)
    src_path = source_vm.disks[0].path
    assert pattern_intact(src_path, "qcow2", length="16M")

    # On the VM's own server, by default next to the original.
    same = _copy(engine, run, CopyRequest(source_vm.key, "lab-a2", "cp-2"))
    assert same.state is JobState.DONE, (same.error, same.messages)
    twin = vm_named(engine, "cp-2")
    assert twin.server == "lab-a2" and twin.hard_disks[0].sr == "Local storage"
    assert engine.pending_cleanups() == []


def test_a_running_vm_or_a_taken_name_is_refused_and_nothing_is_made(
        engine: Engine, run: Any, lab_inventory: Path, source_vm: Any) -> None:
    uris = _uris(engine)
    app = vm_named(engine, "app-1")
    result = cli("copy", SOURCE, "--to", app.server, "--name", "app-1", "--json",
                 inventory=lab_inventory)
    assert result.returncode == 2, result.stdout + result.stderr
    assert {p["code"] for p in json.loads(result.stdout)["problems"]} == {"NAME_IN_USE"}
    virsh(uris["lab-a2"], "start", SOURCE)
    try:
        run(until(lambda: vm_named(engine, SOURCE).state is VmState.RUNNING, timeout=30))
        result = cli("copy", SOURCE, "--name", "cp-3", inventory=lab_inventory)
        assert result.returncode == 2
        assert "Shut it down, then copy it" in result.stdout
        assert "Refused: nothing was copied." in result.stdout
    finally:
        virsh(uris["lab-a2"], "destroy", SOURCE)
    assert all("cp-3" not in virsh(u, "vol-list", "Local storage") for u in uris.values())
    result = cli("copy", SOURCE, "--to", "lab-a1", "--name", "cp-3", "--json",
                 inventory=lab_inventory)
    assert result.returncode == 0, result.stdout + result.stderr
    (end,) = json.loads(result.stdout)
    assert end["ok"] and where_defined(uris, "cp-3") == [("lab-a1", "shut off")]


def test_a_copy_cancelled_mid_way_leaves_nothing(engine: Engine, run: Any, lab_inventory: Path,
                                                 tmp_path: Path, source_vm: Any) -> None:
    from tests.integration.test_halted import _slow_engine

    slow = _slow_engine(lab_inventory, tmp_path)
    before = virsh(_uris(engine)["lab-b1"], "vol-list", "Local storage")

    job = job_on(run, slow, lambda eng: eng.copy(CopyRequest(source_vm.key, "lab-b1",
                                                               "cp-1")),
                 cancel_once_sending=True)
    assert job.state is JobState.CANCELLED, (job.state, job.error)
    assert "no copy was made" in (job.error or "") and "Nothing this job made" in job.error
    assert where_defined(_uris(engine), "cp-1") == []
    assert virsh(_uris(engine)["lab-b1"], "vol-list", "Local storage") == before
