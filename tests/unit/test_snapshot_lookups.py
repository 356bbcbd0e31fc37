"""The snapshot's indexed lookups answer exactly what a scan of its VMs and SRs would."""

from __future__ import annotations

from dataclasses import replace

from builders import Fleet

from xencenter_lite.core.model import VmState


def _scan_checks(fleet: Fleet) -> None:
    snap = fleet.snapshot()
    for vm in snap.vms:
        assert snap.vm(vm.key) is next(v for v in snap.vms if v.key == vm.key)
        for name in (vm.name, vm.uuid):
            assert snap.vms_named(name) == [v for v in snap.vms
                                            if v.name == name or v.uuid == name]
        assert snap.vms_with_uuid(vm.uuid) == [v for v in snap.vms if v.uuid == vm.uuid]
    for server in [*snap.servers, "nowhere"]:
        assert snap.vms_on(server) == [v for v in snap.vms if v.server == server]
        assert snap.srs_on(server) == [s for s in snap.srs if s.server == server]
        for name in ("Local storage", "Shared storage", "Fast storage", "nothing"):
            assert snap.sr(server, name) is next(
                (s for s in snap.srs if s.server == server and s.name == name), None)
    assert snap.vm(("lab-a1", "no-such-uuid")) is None
    assert snap.vms_named("no-such-vm") == []


def test_lookups_match_a_scan(fleet: Fleet) -> None:
    web = fleet.vm("web-1", "lab-a1")
    fleet.vm("db-1", "lab-a1")
    fleet.vm("app-1", "lab-b1", state=VmState.HALTED)
    fleet.vm("web-1", "lab-a2")  # two VMs may share a name
    # a migration in flight: the paused incoming copy has the same UUID on the destination
    fleet.vms.append(replace(web, server="lab-a2", state=VmState.PAUSED, persistent=False))
    fleet.vm("uuid-db-1", "lab-b1")  # a name that is another VM's UUID
    _scan_checks(fleet)


def test_lists_returned_are_the_callers_own(fleet: Fleet) -> None:
    fleet.vm("web-1", "lab-a1")
    snap = fleet.snapshot()
    snap.vms_on("lab-a1").clear()
    snap.srs_on("lab-a1").clear()
    snap.vms_named("web-1").clear()
    assert [v.name for v in snap.vms_on("lab-a1")] == ["web-1"]
    assert snap.srs_on("lab-a1") and snap.vms_named("web-1")


def test_memory_sums_use_the_server_index(fleet: Fleet) -> None:
    fleet.vm("a", "lab-a2", memory=2 * 1024**3)
    fleet.vm("b", "lab-a2", memory=1024**3, state=VmState.HALTED)
    fleet.vm("c", "lab-a1", memory=1024**3)
    snap = fleet.snapshot()
    assert snap.running_memory("lab-a2") == 2 * 1024**3
    assert snap.running_memory("lab-b1") == 0
