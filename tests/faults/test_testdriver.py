"""The fault sweep where no lab is needed: libvirt's test driver answers as a server.

Two inventory servers on `test:///default` share the driver's state (they are the same
storage, as two hosts on one NFS export are), so the probe that proves an SR shared can be
swept call by call; a live disk move runs up to the copy, which the test driver cannot do
(it answers "not supported", a failure like any other), and its roll-back is swept. The
real engine and the real libvirt link run throughout; FaultLink only makes one call fail,
hang or lose its answer. And the link itself: a dropped connection is never taken for a
volume that is gone, and a volume a domain uses is never removed.
"""

from __future__ import annotations

import asyncio
import time
import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libvirt
import pytest

from tests.faults.faultlink import DROP, FAIL, HANG, KINDS, Call, FaultPlan, fault_links
from tests.faults.sweep import write_report
from xencenter_lite.core.domxml import disk_path_of
from xencenter_lite.core.errors import is_volume_exists
from xencenter_lite.core.inventory import load_inventory
from xencenter_lite.core.jobs import JobState
from xencenter_lite.core.model import Sharing
from xencenter_lite.engine import Engine
from xencenter_lite.virt import LibvirtLink, Removal, VirtError

ANSWER_TIMEOUT = 0.3  # the test driver answers in microseconds
HANG_SECONDS = 0.6
GIB = 1024**3


@dataclass
class DriverFleet:
    """A pool of two servers on the shared test driver state, with two SRs and a running
    VM whose disk is in the first."""

    inventory: Path
    conn: libvirt.virConnect  # a connection of the test's own, to look from outside
    local: str  # SR names (unique per test: the driver's state lives as long as the process)
    fast: str
    vm: str
    disk: str  # the VM's disk path


def _pool_xml(name: str, path: str) -> str:
    return (f"<pool type='dir'><name>{name}</name><capacity>{100 * GIB}</capacity>"
            f"<allocation>0</allocation><available>{100 * GIB}</available>"
            f"<target><path>{path}</path></target></pool>")


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[DriverFleet]:
    tag = uuidlib.uuid4().hex[:8]
    conn = libvirt.open("test:///default")
    local, fast, vm = f"Local {tag}", f"Fast {tag}", f"td-{tag}"
    pools = []
    for name, path in ((local, f"/td/{tag}/local"), (fast, f"/td/{tag}/fast")):
        pool = conn.storagePoolDefineXML(_pool_xml(name, path), 0)
        pool.create(0)
        pools.append(pool)
    vol = pools[0].createXML(f"<volume><name>{vm}.qcow2</name><capacity>16777216</capacity>"
                             "<target><format type='qcow2'/></target></volume>", 0)
    disk = vol.path()
    dom = conn.defineXML(f"""<domain type='test'><name>{vm}</name><memory>65536</memory>
        <vcpu>1</vcpu><os><type>hvm</type></os><devices>
        <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
        <source file='{disk}'/><target dev='vda'/></disk></devices></domain>""")
    dom.create()
    inventory = tmp_path / "inventory.toml"
    inventory.write_text(f"""
[[servers]]
name = "td-a"
uri = "test:///default?server=a&tag={tag}"
[servers.networks]
storage = "192.0.2.1"

[[servers]]
name = "td-b"
uri = "test:///default?server=b&tag={tag}"
[servers.networks]
storage = "192.0.2.2"

[[pools]]
name = "Test"
members = ["td-a", "td-b"]
default_sr = "{local}"
""")
    yield DriverFleet(inventory, conn, local, fast, vm, disk)
    with _quiet():
        dom.destroy()
    with _quiet():
        dom.undefine()
    for pool in pools:
        for name in pool.listVolumes():
            with _quiet():
                pool.storageVolLookupByName(name).delete(0)
        with _quiet():
            pool.destroy()
        with _quiet():
            pool.undefine()
    conn.close()


class _quiet:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *_rest: object) -> bool:
        return kind is not None and issubclass(kind, libvirt.libvirtError)


def _volumes(f: DriverFleet, sr: str) -> list[str]:
    pool = f.conn.storagePoolLookupByName(sr)
    pool.refresh(0)
    return sorted(pool.listVolumes())


# ---- the link --------------------------------------------------------------------------------
def test_a_dropped_connection_is_never_taken_for_a_volume_already_gone(
        fleet: DriverFleet) -> None:
    link = LibvirtLink("td-a", "test:///default?link")
    link.open()
    assert link.remove_volume(f"/td/nowhere/{uuidlib.uuid4().hex}.img") is Removal.GONE
    assert link.remove_volume(fleet.disk) is Removal.IN_USE  # the VM's own disk
    spare = link.create_volume(fleet.fast, "spare.raw", 4096, "raw")
    with pytest.raises(VirtError) as taken:
        link.create_volume(fleet.fast, "spare.raw", 4096, "raw")  # exactly that name
    assert is_volume_exists(taken.value.code, taken.value.raw)
    assert link.volume_capacity(fleet.fast, "spare.raw") == 4096
    assert link.volume_capacity(fleet.fast, "missing.raw") is None
    assert link.conn is not None
    link.conn.close()  # the connection drops under the link
    with pytest.raises(VirtError):
        link.remove_volume(spare)
    with pytest.raises(VirtError):
        link.remove_volume_named(fleet.fast, "spare.raw")
    assert "spare.raw" in _volumes(fleet, fleet.fast)  # still there, and still known


# ---- sweeps ----------------------------------------------------------------------------------
def _engine(f: DriverFleet, plan: FaultPlan | None, state: Path) -> Engine:
    engine = Engine(load_inventory(f.inventory), answer_timeout=ANSWER_TIMEOUT,
                    state_dir=state, **({"link_factory": fault_links(plan)} if plan else {}))
    engine.reconcile_wait = 0.5
    engine.fresh_for = 600.0
    return engine


async def _finish_with_a_clean_engine(f: DriverFleet, state: Path) -> list[str]:
    """The next command, with no faults: what is still pending once it has settled."""
    later = _engine(f, None, state)
    await later.start(watch=False)
    try:
        end = time.monotonic() + 5
        while later.pending_cleanups() and time.monotonic() < end:
            await asyncio.sleep(0.05)
            await later.settle_pending()
        return [c.describe() for c in later.pending_cleanups()]
    finally:
        await later.close()


PROOF_CALLS = {"create_volume", "volume_capacity"}


def test_the_probe_of_a_shared_sr_under_every_fault(fleet: DriverFleet, run: Any,
                                                    tmp_path: Path) -> None:
    """Proving an SR shared makes a volume through one member and looks for it through the
    other. Whatever goes wrong on the way, the SR is called shared only if the proof was
    complete, it is never called 'not shared' (it is), and the probe volume does not stay."""
    async def once(call: Call | None, kind: str, state: Path
                   ) -> tuple[dict[str, Sharing], list[Call], bool]:
        plan = FaultPlan(roles={"td-a": "first", "td-b": "second"}, hang=HANG_SECONDS)
        plan.arm(call, kind)
        engine = _engine(fleet, plan, state)
        await engine.start(watch=False)
        verdicts = {sr.name: sr.sharing for sr in engine.snapshot().srs_on("td-a")}
        plan.disarm()
        await asyncio.sleep(max(0.0, plan.hung_until - time.monotonic()) + 0.05)
        await engine.close()
        return verdicts, list(plan.trace), plan.fired

    verdicts, trace, _ = run(once(None, FAIL, tmp_path / "dry"))
    # Every SR of the test driver is one storage seen by both members.
    assert set(verdicts.values()) == {Sharing.VERIFIED} and len(verdicts) >= 2, verdicts
    probe_calls = [c for c in trace if c.method in
                   PROOF_CALLS | {"volume_in_use", "remove_volume", "volume_path"}]
    assert {c.method for c in probe_calls} >= PROOF_CALLS | {"remove_volume"}
    outcomes = []
    for call in [c for c in trace if c.method not in {"open"}]:
        for kind in KINDS:
            state = tmp_path / f"{call}-{kind}"
            got, _trace, fired = run(once(call, kind, state))
            left = run(_finish_with_a_clean_engine(fleet, state))
            probes = [v for sr in verdicts for v in _volumes(fleet, sr)
                      if v.startswith("xcl-probe-")]
            outcomes.append({"job": "shared-SR probe", "call": str(call), "fault": kind,
                             "fired": fired, "verdicts": {k: v.value for k, v in got.items()},
                             "probes_left": probes, "pending_after_next": left})
            assert fired, (call, kind)
            assert Sharing.NOT_SHARED not in got.values(), (call, kind, got)
            unproven = [name for name, v in got.items() if v is not Sharing.VERIFIED]
            if call.method in PROOF_CALLS:
                # The SR whose proof went wrong is not called shared (nor, when the member
                # was given up on, any SR whose proof came after it).
                assert unproven or (got == {} and kind in (HANG, DROP)), (call, kind, got)
            elif call.method == "read" and kind != HANG:
                # A member that could not be read: nothing is proven shared with it.
                assert Sharing.VERIFIED not in got.values(), (call, kind, got)
            else:  # a hung reading is only late; a fault while removing the probe is after
                assert unproven == [], (call, kind, got)  # the proof
            assert probes == [] and left == [], (call, kind, probes, left)
    assert len(outcomes) >= 12
    write_report("testdriver-probe", {"cases": len(outcomes), "faults_injected": sum(
        o["fired"] for o in outcomes)}, outcomes)


def test_a_disk_move_rolled_back_under_every_fault(fleet: DriverFleet, run: Any,
                                                   tmp_path: Path) -> None:
    """The test driver cannot copy a disk: every move fails at the copy and is rolled back.
    Each call of the move and of its roll-back goes wrong in turn; the VM keeps its disk
    and nothing the move made stays."""
    key: tuple[str, str] = ("td-a", fleet.conn.lookupByName(fleet.vm).UUIDString())

    async def once(call: Call | None, kind: str, state: Path) -> tuple[Any, list[Call], bool]:
        plan = FaultPlan(roles={"td-a": "server", "td-b": "other"}, hang=HANG_SECONDS)
        engine = _engine(fleet, plan, state)
        await engine.start(watch=False)
        plan.arm(call, kind)
        job = engine.move_disk(key, "vda", fleet.fast)
        await asyncio.wait_for(engine.wait([job]), 30)
        plan.disarm()
        await asyncio.sleep(max(0.0, plan.hung_until - time.monotonic()) + 0.05)
        await engine.close()
        return job, list(plan.trace), plan.fired

    dry, trace, _ = run(once(None, FAIL, tmp_path / "dry"))
    assert dry.state is JobState.FAILED and "stays on SR" in (dry.error or ""), dry.error
    assert {"create_volume", "block_copy", "remove_volume"} <= {c.method for c in trace}
    rows: list[dict[str, Any]] = []
    for call in trace:
        for kind in KINDS:
            state = tmp_path / f"{call}-{kind}"
            job, _trace, fired = run(once(call, kind, state))
            left = run(_finish_with_a_clean_engine(fleet, state))
            dom = fleet.conn.lookupByName(fleet.vm)
            assert fired, (call, kind)
            assert job.state in (JobState.FAILED, JobState.CANCELLED), (call, kind, job.state)
            assert job.error, (call, kind)
            assert dom.isActive() == 1, (call, kind)
            assert disk_path_of(dom.XMLDesc(0), "vda") == fleet.disk, (call, kind)
            assert disk_path_of(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE),
                                "vda") == fleet.disk, (call, kind)
            assert fleet.disk.rsplit("/", 1)[1] in _volumes(fleet, fleet.local)
            assert _volumes(fleet, fleet.fast) == [], (call, kind, left)
            assert left == [], (call, kind, left)
            rows.append({"job": "disk move (rolled back)", "call": str(call), "fault": kind,
                         "fired": fired, "state": job.state.value, "error": job.error})
    assert len(rows) >= 20
    write_report("testdriver-disk-move", {"cases": len(rows), "faults_injected": sum(
        r["fired"] for r in rows)}, rows)


def test_hang_and_drop_are_what_they_say(fleet: DriverFleet) -> None:
    """The wrapper itself: a hung call goes through late; a dropped one goes through and
    loses its answer, and the connection stays dead until it is opened again."""
    plan = FaultPlan(roles={"td-a": "server"}, hang=HANG_SECONDS)
    link = fault_links(plan)(load_inventory(fleet.inventory).servers[0])
    link.open()
    plan.arm(Call("server", "create_volume", 1), HANG)
    began = time.monotonic()
    link.create_volume(fleet.fast, "late.raw", 4096, "raw")
    assert time.monotonic() - began >= HANG_SECONDS and "late.raw" in _volumes(fleet, fleet.fast)
    plan.arm(Call("server", "create_volume", 1), DROP)
    with pytest.raises(VirtError):
        link.create_volume(fleet.fast, "lost.raw", 4096, "raw")
    assert "lost.raw" in _volumes(fleet, fleet.fast)  # done; only the answer was lost
    assert not link.alive
    with pytest.raises(VirtError):
        link.volume_names(fleet.fast)
    link.open()
    assert link.alive and "lost.raw" in link.volume_names(fleet.fast)
    plan.disarm()


def test_a_member_that_connects_again_is_probed_again(fleet: DriverFleet, run: Any,
                                                      tmp_path: Path) -> None:
    """A verdict holds for the connection it was proven on: a member that comes back (it
    may have been remounted, or replaced) is proven again."""
    from tests.conftest import until

    plan = FaultPlan(roles={"td-a": "first", "td-b": "second"})
    engine = _engine(fleet, plan, tmp_path / "state")
    run(engine.start())  # watching: lost servers are connected again
    try:
        assert engine.snapshot().sr("td-b", fleet.local).sharing is Sharing.VERIFIED
        plan.arm()  # record the calls from here on
        engine.fleet.lost("td-b", "connection lost")
        assert engine.snapshot().sr("td-a", fleet.local).sharing is not Sharing.VERIFIED
        run(until(lambda: engine.snapshot().servers["td-b"].connected, timeout=10))
        run(until(lambda: engine.snapshot().sr("td-a", fleet.local).sharing
                  is Sharing.VERIFIED, timeout=10))
        probed = [c.method for c in plan.trace]
        assert "create_volume" in probed and "volume_capacity" in probed, probed
    finally:
        plan.disarm()
        run(engine.close())


def test_a_volume_a_domain_names_by_pool_and_volume_is_in_use(fleet: DriverFleet) -> None:
    """virt-manager may write `<disk type='volume'>` (pool and volume name, no path): such a
    volume is in use all the same, and never removed."""
    link = LibvirtLink("td-a", "test:///default?byname")
    link.open()
    path = link.create_volume(fleet.fast, "byname.raw", 4096, "raw")
    dom = fleet.conn.defineXML(f"""<domain type='test'><name>{fleet.vm}-byname</name>
        <memory>1024</memory><vcpu>1</vcpu><os><type>hvm</type></os><devices>
        <disk type='volume' device='disk'><driver name='qemu' type='raw'/>
        <source pool='{fleet.fast}' volume='byname.raw'/><target dev='vda'/></disk>
        </devices></domain>""")
    try:
        # The reading finds its file and its SR (the pool that names it).
        (vm,) = [v for v in link.read().vms if v.name == f"{fleet.vm}-byname"]
        (vda,) = vm.hard_disks
        assert (vda.source_type, vda.path, vda.sr, vda.capacity) == (
            "volume", path, fleet.fast, 4096)
        assert link.volume_in_use(path)
        assert link.remove_volume(path) is Removal.IN_USE
        assert "byname.raw" in _volumes(fleet, fleet.fast)
    finally:
        dom.undefine()
    assert link.remove_volume(path) is Removal.REMOVED
    link.close()


def test_a_reading_marks_transient_vms_snapshots_and_saved_states() -> None:
    """What the reading takes from libvirt's filtered domain lists (one call each for the
    server) is what each domain says of itself."""
    tag = uuidlib.uuid4().hex[:8]
    conn = libvirt.open("test:///default")

    def xml(name: str) -> str:
        return (f"<domain type='test'><name>{name}-{tag}</name><memory>1024</memory>"
                "<vcpu>1</vcpu><os><type>hvm</type></os></domain>")

    transient = conn.createXML(xml("marks-transient"), 0)
    snapped = conn.defineXML(xml("marks-snapped"))
    snapped.create()
    snapped.snapshotCreateXML("<domainsnapshot><name>s1</name></domainsnapshot>", 0)
    saved = conn.defineXML(xml("marks-saved"))
    saved.create()
    saved.managedSave(0)
    try:
        link = LibvirtLink("td", "test:///default")
        link.open()
        vms = {vm.name: vm for vm in link.read().vms}
        link.close()
        for dom in (transient, snapped, saved):
            vm = vms[dom.name()]
            assert vm.persistent == (dom.isPersistent() == 1), vm.name
            assert vm.snapshots == dom.snapshotNum(0), vm.name
            assert vm.managed_save == (dom.hasManagedSaveImage(0) == 1), vm.name
        assert not vms[transient.name()].persistent
        assert vms[snapped.name()].snapshots == 1
        assert vms[saved.name()].managed_save and vms[saved.name()].state.value == "halted"
    finally:
        transient.destroy()
        for snap in snapped.listAllSnapshots():
            snap.delete()
        snapped.destroy()
        snapped.undefine()
        saved.managedSaveRemove(0)
        saved.undefine()
        conn.close()
