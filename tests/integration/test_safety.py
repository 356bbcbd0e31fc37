"""A VM is never lost and never runs on the wrong disk, with VMs made the way sysadmins
make them (virt-install --import of volumes in the `default` pool and the lab's SRs).

Each test reproduces a way the console used to lose a VM or a disk: the same server under
two names, a local `default` pool taken for shared storage, a disk move failing after the
pivot, a disk move or migration destroying internal snapshots, the console closing
mid-job, a source that stops answering, one hung server starving the others."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import until
from tests.faults.faultlink import DROP, FAIL, Call, FaultPlan, fault_links
from tests.labtools import (
    cli,
    cli_argv,
    default_pool,
    fill_pattern,
    host_path,
    pattern_intact,
    remove_vm,
    sr_path,
    virsh,
    virt_install,
    where_defined,
)
from xencenter_lite.core.domxml import disk_path_of
from xencenter_lite.core.inventory import load_inventory
from xencenter_lite.core.jobs import JobState
from xencenter_lite.core.plan import MigrationRequest
from xencenter_lite.engine import Engine

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def uris(lab_inventory: Path) -> dict[str, str]:
    return {s.name: s.uri for s in load_inventory(lab_inventory).servers}


def _make_vm(uris: dict[str, str], state_dir: Path, server: str, name: str, sr: str,
             size_mib: int = 32) -> tuple[str, str]:
    """A virt-install VM on `server` with one qcow2 disk in SR `sr`, the lab's pattern in
    its first 4 MiB. Returns (uuid, disk path as the server sees it)."""
    uri = uris[server]
    remove_vm(uri, name)
    volume = f"{name}.qcow2"
    subprocess.run(["virsh", "-c", uri, "vol-delete", "--pool", sr, volume],
                   capture_output=True)
    virsh(uri, "vol-create-as", sr, volume, f"{size_mib}M", "--format", "qcow2")
    path = f"{sr_path(uri, sr)}/{volume}"
    fill_pattern(host_path(state_dir, server, path), "qcow2")
    uuid = virt_install(uri, name, f"vol={sr}/{volume}")
    return uuid, path


def _blk_path(uri: str, name: str, dev: str = "hda") -> str:
    """The file disk `dev` of the running VM uses, as libvirt says."""
    path = disk_path_of(virsh(uri, "dumpxml", name), dev)
    assert path is not None
    return path


@pytest.fixture
def cleanup_vms(uris: dict[str, str]) -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        for uri in uris.values():
            remove_vm(uri, name)


# ---- 1. the same server under two names ------------------------------------------------------
def test_the_same_server_under_two_names_is_refused_and_its_vm_kept(
        lab_inventory: Path, uris: dict[str, str], state_dir: Path, tmp_path: Path, run: Any,
        cleanup_vms: list[str]) -> None:
    cleanup_vms.append("vi-twin")
    uuid, disk = _make_vm(uris, state_dir, "lab-a1", "vi-twin", "Local storage")
    # The same socket written another way: a different URI, the same daemon.
    again = uris["lab-a1"].replace("/run/libvirt-sock", "/run/./libvirt-sock")
    inv = tmp_path / "inventory.toml"
    inv.write_text(lab_inventory.read_text() + f"""
[[servers]]
name = "lab-a1-again"
uri = "{again}"
[servers.networks]
storage = "10.241.2.11"
""")
    listed = json.loads(cli("list", "--json", inventory=inv).stdout)
    twin = next(s for s in listed["servers"] if s["name"] == "lab-a1-again")
    a1 = next(s for s in listed["servers"] if s["name"] == "lab-a1")
    assert twin["connected"] is False and a1["connected"] is True
    assert "the same server as 'lab-a1'" in twin["error"] and a1["host_uuid"] in twin["error"]

    refused = cli("migrate", "vi-twin", "--to", "lab-a1-again", "--sr", "Local storage",
                  inventory=inv)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "the same server as 'lab-a1'" in refused.stdout and "nothing was moved" in \
        refused.stdout

    # Past the checks, the engine itself refuses to treat the two as different servers.
    engine = Engine(load_inventory(inv))
    run(engine.start(watch=False))
    try:
        (job,) = engine.migrate([MigrationRequest(("lab-a1", uuid), "lab-a1-again",
                                                  sr="Local storage")],
                                skip_checks=frozenset({"DESTINATION_DISCONNECTED"}))
        run(engine.wait([job]))
        assert job.state is JobState.FAILED, job.state
        assert "keeps running on 'lab-a1'" in (job.error or ""), job.error
    finally:
        run(engine.close())
    assert where_defined(uris, "vi-twin") == [("lab-a1", "running")]
    assert pattern_intact(str(host_path(state_dir, "lab-a1", disk)), "qcow2")


# ---- 2. a local pool of the same name and path ------------------------------------------------
def test_a_local_default_pool_on_each_server_is_not_shared_storage(
        lab_inventory: Path, uris: dict[str, str], state_dir: Path,
        cleanup_vms: list[str]) -> None:
    cleanup_vms.append("vi-default")
    for server in ("lab-a1", "lab-a2"):
        default_pool(uris[server])
    _uuid, disk = _make_vm(uris, state_dir, "lab-a1", "vi-default", "default")
    # lab-a2 has a file of that name in its own `default` pool (as in the report): a
    # memory-only migration would run the VM on it.
    decoy = host_path(state_dir, "lab-a2", disk)
    subprocess.run(["qemu-img", "create", "-f", "qcow2", str(decoy), "32M"], check=True,
                   capture_output=True)
    try:
        listed = json.loads(cli("list", "--json", inventory=lab_inventory).stdout)
        sharing = {(s["name"], s["server"] or s["pool"]): s["sharing"] for s in listed["srs"]}
        assert sharing[("default", "lab-a1")] == sharing[("default", "lab-a2")] == "not shared"
        assert sharing[("Shared storage", "Production")] == "verified"

        pre = cli("precheck", "vi-default", "--to", "lab-a2", "--json", inventory=lab_inventory)
        assert pre.returncode == 0, pre.stdout + pre.stderr
        (plan,) = json.loads(pre.stdout)["plans"]
        assert plan["kind"] == "storage"
        assert [(d["copy"], d["to_sr"]) for d in plan["disks"]] == [(True, "Shared storage")]
        assert "SR_NOT_SHARED" in {p["code"] for p in json.loads(pre.stdout)["problems"]}

        moved = cli("migrate", "vi-default", "--to", "lab-a2", inventory=lab_inventory)
        assert moved.returncode == 0, moved.stdout + moved.stderr
        assert where_defined(uris, "vi-default") == [("lab-a2", "running")]
        new_path = _blk_path(uris["lab-a2"], "vi-default")
        assert new_path.startswith(sr_path(uris["lab-a2"], "Shared storage"))
        assert pattern_intact(new_path, "qcow2"), "the VM's data did not come with it"
        assert not host_path(state_dir, "lab-a1", disk).exists()  # the old disk is gone
        assert decoy.exists()  # and the other server's own file was left alone
    finally:
        decoy.unlink(missing_ok=True)
        for server in ("lab-a1", "lab-a2"):
            subprocess.run(["virsh", "-c", uris[server], "pool-refresh", "default"],
                           capture_output=True)


# ---- 3. a disk move failing after the pivot ----------------------------------------------------
@pytest.fixture
def faulty(lab_inventory: Path, run: Any) -> Iterator[tuple[Engine, FaultPlan]]:
    plan = FaultPlan()
    engine = Engine(load_inventory(lab_inventory), link_factory=fault_links(plan),
                    answer_timeout=5.0)
    run(engine.start())
    yield engine, plan
    plan.disarm()
    run(engine.close())




@pytest.mark.parametrize("target, kind", [
    (Call("server", "persist_disk", 1), FAIL),  # the definition cannot be updated
    (Call("server", "block_copy", 1), DROP),  # the pivot is done, its answer is lost
], ids=["definition update fails", "connection lost at the pivot"])
def test_a_disk_move_that_fails_after_the_pivot_keeps_the_disk_the_vm_runs_on(
        faulty: tuple[Engine, FaultPlan], uris: dict[str, str], state_dir: Path, run: Any,
        cleanup_vms: list[str], target: Call, kind: str) -> None:
    engine, plan = faulty
    cleanup_vms.append("vi-move")
    uuid, old = _make_vm(uris, state_dir, "lab-b1", "vi-move", "Local storage")
    run(engine.refresh("lab-b1"))
    plan.roles = {"lab-b1": "server"}
    plan.arm(target, kind)
    job = engine.move_disk(("lab-b1", uuid), "hda", "Fast storage")
    run(engine.wait([job]), 120)
    plan.disarm()
    new = _blk_path(uris["lab-b1"], "vi-move")
    assert new.startswith(sr_path(uris["lab-b1"], "Fast storage")), new
    assert os.path.exists(new) and pattern_intact(new, "qcow2")
    assert where_defined(uris, "vi-move") == [("lab-b1", "running")]
    if job.state is JobState.DONE:
        assert "now on SR 'Fast storage'" in (job.messages[-1] if job.messages else "")
    else:  # it could not tell at the time: it says so and keeps both
        assert job.state is JobState.FAILED and "both are kept" in (job.error or ""), job.error
    # Once the server answers, the file the VM no longer uses goes, and nothing else.
    run(until(lambda: not engine.pending_cleanups() and not os.path.exists(
        host_path(state_dir, "lab-b1", old)), timeout=60), 70)
    inactive = virsh(uris["lab-b1"], "dumpxml", "--inactive", "vi-move")
    assert new in inactive and old not in inactive
    assert os.path.exists(new)


# ---- 4. snapshots ------------------------------------------------------------------------------
def test_a_vm_with_an_internal_snapshot_is_refused_before_anything_moves(
        lab_inventory: Path, uris: dict[str, str], state_dir: Path,
        cleanup_vms: list[str]) -> None:
    cleanup_vms.append("vi-snap")
    _uuid, disk = _make_vm(uris, state_dir, "lab-b1", "vi-snap", "Local storage")
    virsh(uris["lab-b1"], "snapshot-create-as", "vi-snap", "before-upgrade")
    fast_before = set(virsh(uris["lab-b1"], "vol-list", "Fast storage").split())
    a1_before = set(virsh(uris["lab-a1"], "vol-list", "Local storage").split())

    moved = cli("move-disk", "vi-snap", "hda", "--sr", "Fast storage", "--json",
                inventory=lab_inventory)
    assert moved.returncode == 2, moved.stdout + moved.stderr
    assert [p["code"] for p in json.loads(moved.stdout)["problems"]] == ["VM_HAS_SNAPSHOTS"]
    migrated = cli("migrate", "vi-snap", "--to", "lab-a1", "--sr", "Local storage",
                   inventory=lab_inventory)
    assert migrated.returncode == 2 and "VM_HAS_SNAPSHOTS" in migrated.stdout

    assert set(virsh(uris["lab-b1"], "vol-list", "Fast storage").split()) == fast_before
    assert set(virsh(uris["lab-a1"], "vol-list", "Local storage").split()) == a1_before
    image = str(host_path(state_dir, "lab-b1", disk))
    held = subprocess.run(["qemu-img", "snapshot", "-U", "-l", image], capture_output=True,
                          text=True, check=True).stdout
    assert "before-upgrade" in held
    virsh(uris["lab-b1"], "snapshot-revert", "vi-snap", "before-upgrade")
    assert where_defined(uris, "vi-snap") == [("lab-b1", "running")]


# ---- 6. the console closing mid-migration -------------------------------------------------------
@pytest.mark.parametrize("close_wait", [20.0, 0.0], ids=["rolled back", "left to the next"])
def test_closing_mid_migration_leaves_the_vm_once_and_nothing_behind(
        lab_inventory: Path, uris: dict[str, str], state_dir: Path, run: Any,
        cleanup_vms: list[str], close_wait: float) -> None:
    """close_wait 0: the job's task is cancelled at once (CancelledError) while libvirt
    goes on migrating; what it made is then finished by the next engine, whichever way
    the migration ended."""
    cleanup_vms.append("vi-close")
    uuid, old = _make_vm(uris, state_dir, "lab-a1", "vi-close", "Local storage")
    engine = Engine(load_inventory(lab_inventory))
    run(engine.start())
    (job,) = engine.migrate([MigrationRequest(("lab-a1", uuid), "lab-b1", sr="Fast storage",
                                              bandwidth_mib_s=2)])
    run(until(lambda: job.bytes_done > 0 or job.state.finished, timeout=60))
    created = [m.split(" ", 1)[1].rsplit(" on ", 1)[0] for m in job.messages
               if m.startswith("Created ")]
    assert created, job.messages
    engine.close_wait = close_wait
    run(engine.close(), 120)
    assert job.state is JobState.CANCELLED, (job.state, job.error)

    later = Engine(load_inventory(lab_inventory))
    run(later.start(watch=False))
    try:
        async def settled() -> None:
            while later.pending_cleanups():
                await asyncio.sleep(1)
                await later.refresh()
                await later.settle_pending()

        run(settled(), 150)
    finally:
        run(later.close())
    where = where_defined(uris, "vi-close")
    assert len(where) == 1 and where[0][1] == "running", where
    if where[0][0] == "lab-a1":
        assert [p for p in created if os.path.exists(p)] == []
        assert pattern_intact(str(host_path(state_dir, "lab-a1", old)), "qcow2")
    else:  # libvirt finished the move after the console had gone
        assert not host_path(state_dir, "lab-a1", old).exists()
        assert all(os.path.exists(p) for p in created)


# ---- 7. a source that stops answering, and a command that must end ------------------------------
def _libvirtd_pid(state_dir: Path, server: str) -> int:
    return int((state_dir / "hosts" / server / "run" / "libvirtd.pid").read_text())


def test_a_source_that_stops_answering_leaves_a_record_the_next_command_finishes(
        lab_inventory: Path, uris: dict[str, str], state_dir: Path,
        cleanup_vms: list[str], restored: None) -> None:
    cleanup_vms.append("vi-stop")
    _make_vm(uris, state_dir, "lab-a1", "vi-stop", "Local storage", size_mib=64)
    began = time.monotonic()
    proc = subprocess.Popen(cli_argv("migrate", "vi-stop", "--to", "lab-b1", "--network",
                                     "management", "--sr", "Local storage", "--bandwidth", "1",
                                     "--json", inventory=lab_inventory),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pid = _libvirtd_pid(state_dir, "lab-a1")
    try:
        time.sleep(4)
        assert proc.poll() is None, proc.communicate()
        os.kill(pid, signal.SIGSTOP)
        try:
            out, err = proc.communicate(timeout=120)
        finally:
            os.kill(pid, signal.SIGCONT)
    finally:
        if proc.poll() is None:
            proc.kill()
    took = time.monotonic() - began
    assert proc.returncode == 1, out + err
    (result,) = json.loads(out)
    assert result["ok"] is False and "could not find out where 'vi-stop' runs" in \
        result["error"], result
    assert "removed by the next xencenter-lite command" in result["error"]
    print(f"the command ended after {took:.1f} s: {result['error']}")
    assert took < 75, f"the command took {took:.0f} s"  # keepalive-bounded, not minutes
    made = [v for v in virsh(uris["lab-b1"], "vol-list", "Local storage").split()
            if v.startswith("vi-stop")]
    assert made, "expected what the job made on lab-b1 to be there until it is safe"

    # The source answers again; the next command proves the VM runs there and removes
    # what the failed one made (libvirt may take a while to end the migration there).
    deadline = time.monotonic() + 120
    notes = ""
    while True:
        listed = cli("list", "--json", inventory=lab_inventory)
        notes += listed.stderr
        left = [v for v in virsh(uris["lab-b1"], "vol-list", "Local storage").split()
                if v.startswith("vi-stop")]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert left == [], (left, json.loads(listed.stdout)["pending_cleanups"])
    assert "Removed" in notes and "from 'lab-b1'" in notes, notes
    assert json.loads(cli("list", "--json", inventory=lab_inventory).stdout)[
        "pending_cleanups"] == []
    assert where_defined(uris, "vi-stop") == [("lab-a1", "running")]


# ---- 8. one hung server does not starve the others ---------------------------------------------
def test_a_hung_server_does_not_hold_up_the_others(lab_inventory: Path, state_dir: Path,
                                                   run: Any, restored: None) -> None:
    engine = Engine(load_inventory(lab_inventory), answer_timeout=30.0)
    run(engine.start(watch=False))
    pid = _libvirtd_pid(state_dir, "lab-b1")
    link = engine.link("lab-b1")
    os.kill(pid, signal.SIGSTOP)
    try:
        stuck = [asyncio.ensure_future(engine.fleet.call("lab-b1", link.locate, f"{i:032x}"))
                 for i in range(12)]

        async def read_the_others() -> float:
            t = time.monotonic()
            await asyncio.gather(engine.refresh("lab-a1"), engine.refresh("lab-a2"))
            return time.monotonic() - t

        took = run(read_the_others(), 20)
        assert took < 3, f"reading the other servers took {took:.1f} s"
        for task in stuck:
            task.cancel()
    finally:
        os.kill(pid, signal.SIGCONT)
        with contextlib.suppress(Exception):
            run(engine.close(), 60)
