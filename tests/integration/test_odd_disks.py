"""Disks as people's VMs have them, beyond a file in an SR: a disk named by pool and volume
(`<disk type='volume'>`, as virt-manager may write it) and a file outside every pool
(virt-install --disk path=/somewhere/x.qcow2). Both migrate with a storage copy."""

from __future__ import annotations

import shutil
import subprocess
import uuid as uuidlib
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.labtools import fill_pattern, pattern_intact, remove_vm, sr_path, virsh, vm_named
from xencenter_lite.core.checks import blocking
from xencenter_lite.core.jobs import JobState
from xencenter_lite.core.model import VmState
from xencenter_lite.core.plan import MigrationRequest
from xencenter_lite.engine import Engine

SR = "Local storage"


def _install_xml(uri: str, name: str, disk: str) -> ET.Element:
    """virt-install's definition of an imported VM (printed, not made), to adjust."""
    done = subprocess.run(
        ["virt-install", "--connect", uri, "--name", name, "--memory", "32", "--vcpus", "1",
         "--import", "--osinfo", "detect=on,require=off", "--network", "none",
         "--graphics", "none", "--noautoconsole", "--virt-type", "qemu", "--disk", disk,
         "--print-xml"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return ET.fromstring(done.stdout)


def _define_and_start(uri: str, root: ET.Element, tmp_path: Path) -> None:
    path = tmp_path / "domain.xml"
    path.write_text(ET.tostring(root, encoding="unicode"))
    virsh(uri, "define", str(path))
    virsh(uri, "start", root.findtext("name") or "")


@pytest.fixture
def uris(engine: Engine) -> Iterator[dict[str, str]]:
    yield {name: s.uri for name, s in engine.snapshot().servers.items()}


def test_a_disk_named_by_pool_and_volume_moves_and_is_named_so_there(
        engine: Engine, run: Any, uris: dict[str, str], tmp_path: Path) -> None:
    name, volume = "byvol-1", "byvol-1.qcow2"
    src, dest = "lab-a1", "lab-b1"
    for uri in uris.values():
        remove_vm(uri, name)
    virsh(uris[src], "vol-create-as", SR, volume, "16M", "--format", "qcow2")
    source_file = virsh(uris[src], "vol-path", "--pool", SR, volume).strip()
    fill_pattern(Path(source_file), "qcow2")
    root = _install_xml(uris[src], name, source_file + ",format=qcow2")
    disk = next(d for d in root.iter("disk") if d.get("device") == "disk")
    disk.set("type", "volume")
    src_el = disk.find("source")
    assert src_el is not None
    src_el.attrib.clear()
    src_el.attrib.update({"pool": SR, "volume": volume})
    try:
        _define_and_start(uris[src], root, tmp_path)
        run(engine.refresh())
        vm = vm_named(engine, name)
        (vda,) = vm.hard_disks
        # The reading found its file and its SR: not "no file", not "in no SR".
        assert (vda.source_type, vda.path, vda.sr) == ("volume", source_file, SR)
        assert vda.capacity == 16 * 1024 * 1024
        request = MigrationRequest(vm.key, dest, sr=SR)
        assert not blocking(engine.check([engine.plan(request)]))
        (job,) = engine.migrate([request])
        run(engine.wait([job]), 180)
        assert job.state is JobState.DONE, (job.error, job.error_details)

        moved = vm_named(engine, name)
        assert (moved.server, moved.state) == (dest, VmState.RUNNING)
        (new,) = moved.hard_disks
        assert (new.source_type, new.sr) == ("volume", SR)
        conf = ET.fromstring(virsh(uris[dest], "dumpxml", "--inactive", name))
        source = conf.find("./devices/disk/source")
        assert source is not None and source.get("pool") == SR, ET.tostring(conf)
        assert source.get("volume") == Path(new.path or "").name
        assert pattern_intact(new.path or "", "qcow2")
        # The old volume went with the move: it was the VM's, in an SR.
        assert volume not in virsh(uris[src], "vol-list", SR)
    finally:
        for uri in uris.values():
            remove_vm(uri, name)
        subprocess.run(["virsh", "-c", uris[src], "vol-delete", "--pool", SR, volume],
                       capture_output=True)
        run(engine.refresh())


def test_a_file_in_no_sr_is_copied_to_an_sr_and_its_old_file_left(
        engine: Engine, run: Any, uris: dict[str, str], state_dir: Path,
        tmp_path: Path) -> None:
    """Outside every pool its sharing cannot be proven, nor can it be removed through an
    SR: it is copied (data intact) and the job says the old file stays."""
    name, src, dest = "loose-1", "lab-a1", "lab-b1"
    folder = state_dir / f"loose-{uuidlib.uuid4().hex[:6]}"
    folder.mkdir()
    loose = folder / "loose-1.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(loose), "16M"], check=True)
    fill_pattern(loose, "qcow2")
    for uri in uris.values():
        remove_vm(uri, name)
    try:
        root = _install_xml(uris[src], name, f"path={loose},format=qcow2")
        # virt-install makes a pool of the file's directory; the file is in none once that
        # pool is gone (undefined later, as happens), or with a definition written by hand.
        for pool in virsh(uris[src], "pool-list", "--all", "--name").splitlines():
            if pool.strip() and sr_path(uris[src], pool.strip()) == str(folder):
                subprocess.run(["virsh", "-c", uris[src], "pool-destroy", pool.strip()],
                               capture_output=True)
                virsh(uris[src], "pool-undefine", pool.strip())
        _define_and_start(uris[src], root, tmp_path)
        run(engine.refresh())
        vm = vm_named(engine, name)
        (vda,) = vm.hard_disks
        assert (vda.path, vda.sr) == (str(loose), None)
        request = MigrationRequest(vm.key, dest, sr=SR)
        plan = engine.plan(request)
        assert [(d.copy, d.loose) for d in plan.disks] == [(True, True)]
        assert not blocking(engine.check([plan]))
        (job,) = engine.migrate([request])
        run(engine.wait([job]), 180)
        assert job.state is JobState.DONE, (job.error, job.error_details)
        said = f"its old file(s) {loose}, in no SR, stay on '{src}'"
        assert any(said in m for m in job.messages), job.messages

        moved = vm_named(engine, name)
        (new,) = moved.hard_disks
        assert (moved.server, new.sr) == (dest, SR)
        assert new.path != str(loose) and pattern_intact(new.path or "", "qcow2")
        assert loose.exists()  # not the job's to remove
    finally:
        for uri in uris.values():
            remove_vm(uri, name)
        shutil.rmtree(folder, ignore_errors=True)
        run(engine.refresh())
