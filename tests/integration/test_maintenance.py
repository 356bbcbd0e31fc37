"""Maintenance mode on the lab, from the command line: a server with a mix of VMs made by
virt-install (a disk on the pool's shared SR, a local disk, a halted VM, a CD only that
server sees) and one of the lab's working guests is emptied with one plan, kept free of new
VMs, and gets its VMs back; the working guest keeps writing its records throughout."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.labtools import (
    cli,
    fill_pattern,
    host_path,
    pattern_intact,
    remove_vm,
    sr_path,
    virsh,
    virt_install,
    vm_named,
    wait_working,
    where_defined,
)
from tests.ui.vm_placement import place
from xencenter_lite.core.domxml import disk_path_of
from xencenter_lite.core.inventory import load_inventory
from xencenter_lite.core.power import PowerAction

pytestmark = pytest.mark.lab

SERVER = "lab-a2"
VMS = {"mm-shared": "Shared storage", "mm-local": "Local storage", "mm-off": "Local storage",
       "mm-cd": "Local storage"}


@pytest.fixture(scope="module")
def uris(lab_inventory: Path) -> dict[str, str]:
    return {s.name: s.uri for s in load_inventory(lab_inventory).servers}


@pytest.fixture
def mix(uris: dict[str, str], state_dir: Path) -> Iterator[dict[str, str]]:
    uri = uris[SERVER]
    for name in VMS:
        for u in uris.values():
            remove_vm(u, name)
    subprocess.run(["virsh", "-c", uri, "vol-delete", "--pool", "Local storage", "mm.iso"],
                   capture_output=True)
    virsh(uri, "vol-create-as", "Local storage", "mm.iso", "1M", "--format", "raw")
    uuids = {}
    for name, sr in VMS.items():
        volume = f"{name}.qcow2"
        subprocess.run(["virsh", "-c", uri, "vol-delete", "--pool", sr, volume],
                       capture_output=True)
        virsh(uri, "vol-create-as", sr, volume, "16M", "--format", "qcow2")
        fill_pattern(host_path(state_dir, SERVER, f"{sr_path(uri, sr)}/{volume}"), "qcow2")
        disks = [f"vol={sr}/{volume}"]
        if name == "mm-cd":
            disks.append("vol=Local storage/mm.iso,device=cdrom")
        uuids[name] = virt_install(uri, name, *disks, memory_mib=32)
    virsh(uri, "destroy", "mm-off")
    yield uuids
    for name in VMS:
        for u in uris.values():
            remove_vm(u, name)
    subprocess.run(["virsh", "-c", uri, "vol-delete", "--pool", "Local storage", "mm.iso"],
                   capture_output=True)


def _listed(inventory: Path) -> dict[str, object]:
    done = cli("list", "--json", inventory=inventory)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def _in_maintenance(inventory: Path) -> bool:
    servers = _listed(inventory)["servers"]
    assert isinstance(servers, list)
    return next(s for s in servers if s["name"] == SERVER)["maintenance"]  # type: ignore[no-any-return]


def _data_intact(uris: dict[str, str], state_dir: Path, name: str) -> bool:
    (server, _state), = where_defined(uris, name)
    path = disk_path_of(virsh(uris[server], "dumpxml", name), "hda")
    assert path is not None
    return pattern_intact(str(host_path(state_dir, server, path)), "qcow2")


def test_a_server_enters_maintenance_with_one_plan_and_gets_its_vms_back(
        lab_inventory: Path, uris: dict[str, str], state_dir: Path,
        mix: dict[str, str], engine: Any, run: Any) -> None:
    web = place(engine, run, "web-1", SERVER)  # a working Linux guest, disk on the shared SR
    # Booted afresh: earlier tests squeeze its memory (its workload may not have survived).
    for action in (PowerAction.FORCE_SHUTDOWN, PowerAction.START):
        job = engine.power(web.key, action)
        run(engine.wait([job]), 60)
        assert job.state.value == "done", (job.error, job.error_details)
    before = wait_working(engine, run, state_dir, "web-1")
    # A running VM that cannot leave (its CD is on the server's own storage): refused,
    # with the fix; nothing moves and the server is not in maintenance mode.
    refused = cli("maintenance", "enter", SERVER, "--json", inventory=lab_inventory)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    doc = json.loads(refused.stdout)
    rows = {r["vm"]: r for r in doc["plan"]}
    assert doc["ok"] is False and doc["maintenance"] is False
    assert rows["mm-cd"]["destination"] is None
    assert "eject the CD" in rows["mm-cd"]["reason"]
    assert rows["mm-off"]["destination"] is None and rows["mm-off"]["reason"].startswith(
        "halted: stays")
    assert rows["mm-shared"]["destination"] == "lab-a1"  # same pool, shared SR: no copy
    assert all(where_defined(uris, n) == [(SERVER, "shut off" if n == "mm-off" else "running")]
               for n in VMS)
    assert not _in_maintenance(lab_inventory)

    # The operator leaves that one running there; the others go, two at a time.
    entered = cli("maintenance", "enter", SERVER, "--leave", "mm-cd", "--parallel", "2",
                  "--json", inventory=lab_inventory)
    assert entered.returncode == 0, entered.stdout + entered.stderr
    doc = json.loads(entered.stdout)
    assert doc["ok"] is True and doc["maintenance"] is True
    assert sorted(r["vm"] for r in doc["results"]) == ["mm-local", "mm-shared", "web-1"]
    assert all(r["ok"] for r in doc["results"])
    assert doc["still_running_there"] == ["mm-cd"]
    assert where_defined(uris, "mm-shared") == [("lab-a1", "running")]
    (local_at, state), = where_defined(uris, "mm-local")
    assert local_at in ("lab-a1", "lab-b1") and state == "running"
    assert where_defined(uris, "mm-off") == [(SERVER, "shut off")]
    assert where_defined(uris, "mm-cd") == [(SERVER, "running")]
    assert _data_intact(uris, state_dir, "mm-shared") and _data_intact(uris, state_dir,
                                                                       "mm-local")
    assert where_defined(uris, "web-1") == [("lab-a1", "running")]  # the pool's other member
    run(engine.refresh())
    during = wait_working(engine, run, state_dir, "web-1")
    assert during > before, "web-1 kept writing records after it left"
    assert _in_maintenance(lab_inventory)
    listed = _listed(lab_inventory)["vms"]
    assert isinstance(listed, list)
    marked = {v["name"]: v for v in listed}
    assert marked["mm-shared"]["evacuated_from"]
    assert marked["mm-shared"]["home_server"] == SERVER, "an evacuated VM keeps its home server"

    # In maintenance mode the server takes no VM, by hand or by placement.
    back = cli("migrate", "mm-shared", "--to", SERVER, inventory=lab_inventory)
    assert back.returncode == 2 and "DESTINATION_IN_MAINTENANCE" in back.stdout, back.stdout
    auto = cli("precheck", "mm-shared", "--to", "auto", "--json", inventory=lab_inventory)
    assert auto.returncode == 0, auto.stdout + auto.stderr
    assert json.loads(auto.stdout)["plans"][0]["to"] != SERVER

    # Leaving maintenance mode brings back the VMs that left, wherever they went.
    left = cli("maintenance", "exit", SERVER, "--json", inventory=lab_inventory)
    assert left.returncode == 0, left.stdout + left.stderr
    doc = json.loads(left.stdout)
    assert doc["was_in_maintenance"] is True and doc["maintenance"] is False
    assert sorted(r["vm"] for r in doc["results"]) == ["mm-local", "mm-shared", "web-1"]
    for name in ("mm-shared", "mm-local", "mm-cd", "web-1"):
        assert where_defined(uris, name) == [(SERVER, "running")], name
    assert _data_intact(uris, state_dir, "mm-shared") and _data_intact(uris, state_dir,
                                                                       "mm-local")
    assert not _in_maintenance(lab_inventory)
    run(engine.refresh())
    assert wait_working(engine, run, state_dir, "web-1") > during, "web-1 works after its return"
    assert vm_named(engine, "web-1").server == SERVER
    listed = _listed(lab_inventory)["vms"]
    assert isinstance(listed, list)
    assert all(v["evacuated_from"] is None for v in listed if v["name"] in VMS)
