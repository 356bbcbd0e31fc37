"""The checks: each problem fires when it should, not otherwise, and all are reported at once."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest
from builders import (
    GIB,
    LOCAL_PATH,
    MIB,
    SHARED_PATH,
    SMALL_PATH,
    cdrom,
    codes,
    disk,
    local_disk,
    shared_disk,
)

from xencenter_lite.cli import _print_plan
from xencenter_lite.core.checks import (
    Code,
    Problem,
    Severity,
    blocking,
    check_destination,
    check_disk_move,
    check_plans,
    estimate_seconds,
    sr_refusal,
    warnings_for,
)
from xencenter_lite.core.model import Network, Sharing, VmState
from xencenter_lite.core.plan import DataPath, DiskMovePlan
from xencenter_lite.core.units import format_bytes, format_duration

WARNINGS = {"PERFORMANCE", "ESTIMATE", "MANAGEMENT_NETWORK"}


def check(fleet, *plans, busy=frozenset()):
    return check_plans(fleet.snapshot(), plans, set(busy))


def errors(problems):
    return [p.code for p in problems if p.blocking]


def only(problems, code):
    found = [p for p in problems if p.code == code]
    assert found, f"{code} not in {codes(problems)}"
    return found


# ---- a clean migration ----------------------------------------------------------------------
def test_clean_memory_migration_has_only_warnings(fleet):
    problems = check(fleet, fleet.plan(fleet.vm("web-1"), "lab-a2"))
    assert blocking(problems) == []
    assert set(codes(problems)) == {"PERFORMANCE", "ESTIMATE"}
    assert all(p.severity is Severity.WARNING and p.vm == "web-1" for p in problems)


def test_clean_storage_migration_has_only_warnings(fleet):
    vm = fleet.vm("db-1", disks=(local_disk("lab-a1", "db-1"),))
    assert errors(check(fleet, fleet.plan(vm, "lab-b1"))) == []


# ---- destination ----------------------------------------------------------------------------
def test_same_server(fleet):
    vm = fleet.vm("web-1")
    problems = check(fleet, fleet.plan(vm, "lab-a1"))
    assert errors(problems) == ["SAME_SERVER"]
    assert "Current server" in problems[0].message
    assert "choose another server" in problems[0].message


def test_destination_unknown(fleet):
    problems = check(fleet, fleet.plan(fleet.vm("web-1"), "lab-z9"))
    assert errors(problems) == ["DESTINATION_UNKNOWN"]
    assert "'lab-z9'" in problems[0].message and "inventory" in problems[0].message


def test_destination_disconnected(fleet):
    fleet.server("lab-a2", connected=False, error="connection refused")
    problems = check(fleet, fleet.plan(fleet.vm("web-1"), "lab-a2"))
    assert errors(problems) == ["DESTINATION_DISCONNECTED"]
    msg = problems[0].message
    assert "not connected" in msg and "(connection refused)" in msg and "reconnect" in msg


def test_destination_disconnected_without_error_text(fleet):
    fleet.server("lab-a2", connected=False)
    problems = check_destination(fleet.snapshot(), fleet.vm("web-1"), "lab-a2")
    assert codes(problems) == ["DESTINATION_DISCONNECTED"]
    assert "()" not in problems[0].message


def test_check_destination_accepts_a_good_server(fleet):
    vm = fleet.vm("web-1")
    snap = fleet.snapshot()
    assert check_destination(snap, vm, "lab-a2") == []
    assert check_destination(snap, vm, "lab-b1") == []
    assert codes(check_destination(snap, vm, "lab-a1")) == ["SAME_SERVER"]


def test_destination_problem_skips_the_per_disk_checks(fleet):
    vm = fleet.vm("web-1")
    plan = fleet.plan(vm, "lab-z9", sr="No such SR", network="nowhere")
    assert errors(check(fleet, plan)) == ["DESTINATION_UNKNOWN"]


# ---- the VM itself --------------------------------------------------------------------------
def test_source_disconnected(fleet):
    fleet.server("lab-a1", connected=False)
    problems = check(fleet, fleet.plan(fleet.vm("web-1"), "lab-a2"))
    assert errors(problems) == ["SOURCE_DISCONNECTED"]
    assert "'lab-a1'" in problems[0].message and "reconnect" in problems[0].message


@pytest.mark.parametrize("state", [VmState.SUSPENDED, VmState.CRASHED, VmState.OTHER])
def test_vm_in_a_state_that_cannot_move(fleet, state):
    problems = check(fleet, fleet.plan(fleet.vm("web-1", state=state), "lab-a2"))
    assert errors(problems) == ["VM_STATE_UNSUPPORTED"]
    assert state.value in problems[0].message and "running, paused or halted" in \
        problems[0].message


@pytest.mark.parametrize("state", [VmState.HALTED, VmState.PAUSED])
def test_halted_and_paused_vms_can_move(fleet, state):
    problems = check(fleet, fleet.plan(fleet.vm("web-1", state=state), "lab-a2"))
    assert errors(problems) == []


def test_a_halted_vm_needs_no_memory_nor_migration_network_there(fleet):
    fleet.server("lab-b1", free_memory=MIB, addresses={})
    vm = fleet.vm("db-1", state=VmState.HALTED, disks=(local_disk("lab-a1", "db-1"),))
    problems = check(fleet, fleet.plan(vm, "lab-b1", sr="Local storage"))
    assert errors(problems) == []
    assert set(codes(problems)) == {"OFFLINE_MOVE", "ESTIMATE"}
    assert "volume streams" in only(problems, "OFFLINE_MOVE")[0].message
    # The same VM running needs both.
    running = fleet.vm("db-2", disks=(local_disk("lab-a1", "db-2"),))
    assert set(errors(check(fleet, fleet.plan(running, "lab-b1", sr="Local storage")))) == {
        "NOT_ENOUGH_MEMORY", "NETWORK_UNKNOWN"}


def test_a_halted_vm_on_shared_storage_moves_its_definition(fleet):
    vm = fleet.vm("web-1", state=VmState.HALTED)
    problems = check(fleet, fleet.plan(vm, "lab-a2"))
    assert codes(problems) == ["OFFLINE_MOVE"]
    assert "only its definition moves" in problems[0].message


def test_a_saved_state_moves_only_directly(fleet):
    from xencenter_lite.core.plan import DataPath

    vm = fleet.vm("web-1", state=VmState.HALTED, managed_save=True)
    plan = fleet.plan(vm, "lab-a2")  # its disk stays on the shared SR: still direct
    assert plan.data_path is DataPath.DIRECT and plan.needs_memory == vm.memory
    problems = check(fleet, plan)
    assert errors(problems) == []
    assert "restored paused" in only(problems, "OFFLINE_MOVE")[0].message
    streamed = check(fleet, fleet.plan(vm, "lab-a2", data_path=DataPath.STREAM))
    assert errors(streamed) == ["VM_HAS_SAVED_STATE"]
    assert "only a direct move keeps" in streamed[0].message
    fleet.server("lab-a2", free_memory=vm.memory // 2)  # no falling back to the streams
    assert errors(check(fleet, fleet.plan(vm, "lab-a2"))) == ["NOT_ENOUGH_MEMORY"]


def test_a_name_taken_on_the_destination_refuses(fleet):
    other = fleet.vm("web-1", server="lab-a2")
    fleet.vms[-1] = replace(other, uuid="other-uuid")
    vm = fleet.vm("web-1")
    problems = check(fleet, fleet.plan(vm, "lab-a2"))
    assert errors(problems) == ["NAME_IN_USE"]
    assert "already has a VM named 'web-1'" in problems[0].message
    assert "other-uuid" in problems[0].message


def test_pci_passthrough(fleet):
    problems = check(fleet, fleet.plan(fleet.vm("gpu-1", has_hostdev=True), "lab-a2"))
    assert errors(problems) == ["PCI_PASSTHROUGH"]
    assert "remove the device" in problems[0].message


def test_migration_running_from_busy_set(fleet):
    vm = fleet.vm("web-1")
    other = fleet.vm("web-2")
    problems = check(fleet, fleet.plan(vm, "lab-a2"), fleet.plan(other, "lab-a2"),
                     busy={vm.key})
    running = only(problems, "MIGRATION_RUNNING")
    assert [p.vm for p in running] == ["web-1"]
    assert "wait for it to finish or cancel it" in running[0].message


def test_migration_running_from_libvirt_job(fleet):
    problems = check(fleet, fleet.plan(fleet.vm("web-1", job_running=True), "lab-a2"))
    assert errors(problems) == ["MIGRATION_RUNNING"]


def test_duplicate_vm(fleet):
    vm = fleet.vm("web-1")
    problems = check(fleet, fleet.plan(vm, "lab-a2"), fleet.plan(vm, "lab-b1"))
    assert errors(problems) == ["DUPLICATE_VM"]
    assert "list it once" in problems[0].message


# ---- memory ---------------------------------------------------------------------------------
def test_memory_capacity_is_free_memory_without_limit(fleet):
    fleet.server("lab-a2", free_memory=2 * GIB)
    fits = fleet.vm("fits", memory=2 * GIB)
    big = fleet.vm("big", memory=2 * GIB + 1)
    assert "NOT_ENOUGH_MEMORY" not in codes(check(fleet, fleet.plan(fits, "lab-a2")))
    problems = check(fleet, fleet.plan(big, "lab-a2"))
    assert errors(problems) == ["NOT_ENOUGH_MEMORY"]
    msg = problems[0].message
    assert "'lab-a2'" in msg and format_bytes(2 * GIB) in msg and "choose another server" in msg


def test_memory_capacity_is_limit_minus_running_vms(fleet):
    # free 8 GiB, limit 4 GiB, 1.5 GiB running there (a halted VM does not count) -> 2.5 GiB
    fleet.server("lab-a2", memory_limit=4 * GIB)
    fleet.vm("resident", server="lab-a2", memory=GIB + GIB // 2)
    fleet.vm("stopped", server="lab-a2", memory=4 * GIB, state=VmState.HALTED)
    fits = fleet.vm("fits", memory=GIB * 5 // 2)
    big = fleet.vm("big", memory=GIB * 5 // 2 + MIB)
    assert fleet.snapshot().memory_available("lab-a2") == GIB * 5 // 2
    assert errors(check(fleet, fleet.plan(fits, "lab-a2"))) == []
    assert errors(check(fleet, fleet.plan(big, "lab-a2"))) == ["NOT_ENOUGH_MEMORY"]


def test_memory_capacity_is_free_memory_when_below_limit(fleet):
    fleet.server("lab-a2", memory_limit=16 * GIB, free_memory=1 * GIB)
    vm = fleet.vm("web-1", memory=2 * GIB)
    assert errors(check(fleet, fleet.plan(vm, "lab-a2"))) == ["NOT_ENOUGH_MEMORY"]


def test_memory_limit_already_exceeded_gives_zero(fleet):
    fleet.server("lab-a2", memory_limit=1 * GIB)
    fleet.vm("resident", server="lab-a2", memory=2 * GIB)
    assert fleet.snapshot().memory_available("lab-a2") == 0


def test_two_vms_that_fit_alone_but_not_together_are_both_refused(fleet):
    fleet.server("lab-a2", free_memory=3 * GIB)
    one = fleet.vm("one", memory=2 * GIB)
    two = fleet.vm("two", memory=2 * GIB)
    p1, p2 = fleet.plan(one, "lab-a2"), fleet.plan(two, "lab-a2")
    assert errors(check(fleet, p1)) == []
    assert errors(check(fleet, p2)) == []
    problems = only(check(fleet, p1, p2), "NOT_ENOUGH_MEMORY")
    assert sorted(p.vm for p in problems) == ["one", "two"]
    assert "'one', 'two'" in problems[0].message
    assert format_bytes(4 * GIB) in problems[0].message


def test_memory_is_counted_per_destination(fleet):
    fleet.server("lab-a2", free_memory=3 * GIB)
    fleet.server("lab-b1", free_memory=3 * GIB)
    one = fleet.vm("one", memory=2 * GIB)
    two = fleet.vm("two", memory=2 * GIB)
    assert errors(check(fleet, fleet.plan(one, "lab-a2"), fleet.plan(two, "lab-b1"))) == []


# ---- space ----------------------------------------------------------------------------------
def small_vm(fleet, name, *sizes):
    disks = tuple(local_disk("lab-a1", name, f"vd{chr(ord('a') + i)}", capacity=size)
                  for i, size in enumerate(sizes))
    return fleet.vm(name, disks=disks)


def test_space_exact_fit_passes(fleet):
    vm = small_vm(fleet, "tiny", 64 * MIB)
    assert errors(check(fleet, fleet.plan(vm, "lab-b1", sr="Small storage"))) == []


def test_space_counts_full_capacity_not_allocation(fleet):
    vm = fleet.vm("thin", disks=(local_disk("lab-a1", "thin", capacity=65 * MIB),))
    assert vm.disks[0].allocation < 64 * MIB
    problems = check(fleet, fleet.plan(vm, "lab-b1", sr="Small storage"))
    assert errors(problems) == ["NOT_ENOUGH_SPACE"]
    msg = problems[0].message
    assert "'Small storage'" in msg and format_bytes(65 * MIB) in msg
    assert format_bytes(64 * MIB) in msg and "Choose another SR" in msg


def test_space_is_summed_across_disks_of_one_vm(fleet):
    vm = small_vm(fleet, "two-disks", 40 * MIB, 40 * MIB)
    assert errors(check(fleet, fleet.plan(vm, "lab-b1", sr="Small storage"))) == \
        ["NOT_ENOUGH_SPACE"]  # reported once per VM
    split = fleet.plan(vm, "lab-b1", sr="Small storage", disk_srs={"vdb": "Fast storage"})
    assert errors(check(fleet, split)) == []


def test_space_is_summed_across_plans(fleet):
    one = small_vm(fleet, "one", 40 * MIB)
    two = small_vm(fleet, "two", 40 * MIB)
    p1 = fleet.plan(one, "lab-b1", sr="Small storage")
    p2 = fleet.plan(two, "lab-b1", sr="Small storage")
    assert errors(check(fleet, p1)) == []
    problems = only(check(fleet, p1, p2), "NOT_ENOUGH_SPACE")
    assert sorted(p.vm for p in problems) == ["one", "two"]
    assert format_bytes(80 * MIB) in problems[0].message


def test_shared_disk_that_stays_needs_no_space(fleet):
    fleet.sr("lab-a2", "Shared storage", available=0)
    vm = fleet.vm("web-1")
    assert errors(check(fleet, fleet.plan(vm, "lab-a2"))) == []


# ---- SRs and disks --------------------------------------------------------------------------
def test_sr_not_visible(fleet):
    vm = fleet.vm("web-1")
    problems = check(fleet, fleet.plan(vm, "lab-a2", sr="Fast storage"))
    assert errors(problems) == ["SR_NOT_VISIBLE"]
    assert "'Fast storage'" in problems[0].message and "'lab-a2'" in problems[0].message


def test_an_sr_missing_for_two_disks_is_reported_once(fleet):
    vm = fleet.vm("db-1", disks=(local_disk("lab-a1", "db-1"),
                                 local_disk("lab-a1", "db-1", dev="vdb")))
    problems = check(fleet, fleet.plan(vm, "lab-a2", sr="Fast storage"))
    assert errors(problems) == ["SR_NOT_VISIBLE"]


def test_inactive_sr_is_not_visible(fleet):
    fleet.sr("lab-b1", "Fast storage", active=False)
    vm = fleet.vm("web-1")
    assert errors(check(fleet, fleet.plan(vm, "lab-b1", sr="Fast storage"))) == \
        ["SR_NOT_VISIBLE"]


def test_sr_unsupported(fleet):
    fleet.add_sr("lab-b1", "Volume group", "/dev/vg0", type="logical")
    vm = fleet.vm("web-1")
    problems = check(fleet, fleet.plan(vm, "lab-b1", sr="Volume group"))
    assert errors(problems) == ["SR_UNSUPPORTED"]
    assert "'logical'" in problems[0].message and "choose a directory" in problems[0].message


@pytest.mark.parametrize("kind", ["dir", "fs", "netfs"])
def test_supported_sr_types(fleet, kind):
    fleet.add_sr("lab-b1", "Other", "/srv/lab-b1/other", type=kind)
    vm = fleet.vm("web-1")
    assert errors(check(fleet, fleet.plan(vm, "lab-b1", sr="Other"))) == []


def test_disk_unsupported_block_disk(fleet):
    vm = fleet.vm("raw-1", disks=(disk("vda", "/dev/sdb", None, source_type="block"),))
    problems = check(fleet, fleet.plan(vm, "lab-b1"))
    assert errors(problems) == ["DISK_UNSUPPORTED"]
    assert problems[0].message.startswith("Disk vda of 'raw-1' is a block device (/dev/sdb)")
    assert "copy it onto a directory, file-system or NFS SR first" in problems[0].message


def test_a_file_in_no_sr_is_copied_by_a_migration_and_its_old_file_left(fleet):
    """A file outside every pool (virt-install --disk path=/var/tmp/x.qcow2): its sharing
    cannot be proven, so a migration copies it to an SR of the destination, even within the
    pool; the old file is not the job's to remove (no SR to remove it through)."""
    vm = fleet.vm("loose-1", disks=(shared_disk("loose-1", "vda"),
                                    disk("vdb", "/var/tmp/loose.qcow2", None)))
    for dest in ("lab-a2", "lab-b1"):
        plan = fleet.plan(vm, dest, sr="Local storage")
        assert errors(check(fleet, plan)) == []
        vdb = next(d for d in plan.disks if d.dev == "vdb")
        assert (vdb.copy, vdb.loose, vdb.target_sr) == (True, True, "Local storage")
    # The plan says where the disk is, not "None".
    out = io.StringIO()
    _print_plan(fleet.snapshot(), fleet.plan(vm, "lab-b1"), out)
    assert "vdb: /var/tmp/loose.qcow2 →" in out.getvalue() and "None" not in out.getvalue()
    assert "the file in no SR stays" in out.getvalue()


def test_a_file_in_no_sr_of_a_halted_vm_is_not_streamed(fleet):
    """Streams read and write volumes of SRs: a halted VM's loose file goes directly or not
    at all, and the refusal says both ways out."""
    vm = fleet.vm("loose-2", state=VmState.HALTED,
                  disks=(disk("vda", "/var/tmp/loose-2.qcow2", None),))
    streamed = fleet.plan(vm, "lab-b1", sr="Local storage", data_path=DataPath.STREAM)
    problems = check(fleet, streamed)
    assert errors(problems) == ["DISK_UNSUPPORTED"]
    message = problems[0].message
    assert "is the file /var/tmp/loose-2.qcow2, in no SR (storage pool) of 'lab-a1'" in message
    assert "--via direct" in message and "pool-define-as NAME dir --target /var/tmp" in message
    direct = fleet.plan(vm, "lab-b1", sr="Local storage", data_path=DataPath.DIRECT)
    assert "DISK_UNSUPPORTED" not in errors(check(fleet, direct))


def test_no_sr_chosen(fleet):
    fleet.server("lab-b1", default_sr=None)
    vm = fleet.vm("web-1")
    problems = check(fleet, fleet.plan(vm, "lab-b1"))
    assert errors(problems) == ["NO_SR_CHOSEN"]
    assert "--sr" in problems[0].message and "'lab-b1'" in problems[0].message
    assert errors(check(fleet, fleet.plan(vm, "lab-b1", sr="Fast storage"))) == []


def test_unknown_disk(fleet):
    vm = fleet.vm("web-1")
    problems = check(fleet, fleet.plan(vm, "lab-b1", disk_srs={"vdq": "Fast storage"}))
    assert errors(problems) == ["UNKNOWN_DISK"]
    assert "'vdq'" in problems[0].message and "vda" in problems[0].message


# ---- HA -------------------------------------------------------------------------------------
def test_ha_blocks_storage_migration(fleet):
    fleet.pool("Production", ha_enabled=True)
    vm = fleet.vm("web-1")
    problems = check(fleet, fleet.plan(vm, "lab-b1"))
    assert errors(problems) == ["HA_ENABLED"]
    assert "'Production'" in problems[0].message
    assert "disable HA first" in problems[0].message


def test_ha_allows_memory_only_migration(fleet):
    fleet.pool("Production", ha_enabled=True)
    vm = fleet.vm("web-1")
    assert errors(check(fleet, fleet.plan(vm, "lab-a2"))) == []


def test_ha_off_allows_storage_migration(fleet):
    vm = fleet.vm("web-1")
    assert "HA_ENABLED" not in codes(check(fleet, fleet.plan(vm, "lab-b1")))


# ---- CDs ------------------------------------------------------------------------------------
def test_cd_not_visible(fleet):
    iso = f"{LOCAL_PATH['lab-a1']}/iso/install.iso"
    vm = fleet.vm("web-1", disks=(shared_disk("web-1"), cdrom(iso)))
    problems = check(fleet, fleet.plan(vm, "lab-a2"))
    assert errors(problems) == ["CD_NOT_VISIBLE"]
    assert iso in problems[0].message and "eject the CD" in problems[0].message


def test_cd_outside_any_sr_is_not_visible(fleet):
    vm = fleet.vm("web-1", disks=(shared_disk("web-1"), cdrom("/opt/isos/install.iso")))
    assert errors(check(fleet, fleet.plan(vm, "lab-a2"))) == ["CD_NOT_VISIBLE"]


def test_cd_on_shared_sr_passes(fleet):
    vm = fleet.vm("web-1", disks=(shared_disk("web-1"), cdrom(f"{SHARED_PATH}/iso/a.iso")))
    assert errors(check(fleet, fleet.plan(vm, "lab-a2"))) == []


def test_empty_cd_drive_passes(fleet):
    vm = fleet.vm("web-1", disks=(shared_disk("web-1"), cdrom(None)))
    assert errors(check(fleet, fleet.plan(vm, "lab-b1"))) == []


def test_sr_path_prefix_is_not_containment(fleet):
    # /srv/nfs/shared-isos is not inside /srv/nfs/shared
    vm = fleet.vm("web-1", disks=(shared_disk("web-1"), cdrom(f"{SHARED_PATH}-isos/a.iso")))
    assert errors(check(fleet, fleet.plan(vm, "lab-a2"))) == ["CD_NOT_VISIBLE"]


# ---- network --------------------------------------------------------------------------------
def test_network_unknown(fleet):
    vm = fleet.vm("web-1")
    problems = check(fleet, fleet.plan(vm, "lab-a2", network="backup"))
    assert errors(problems) == ["NETWORK_UNKNOWN"]
    msg = problems[0].message
    assert "'backup'" in msg and "management, storage" in msg


def test_network_unknown_when_destination_has_no_addresses(fleet):
    fleet.server("lab-a2", addresses={})
    problems = check(fleet, fleet.plan(fleet.vm("web-1"), "lab-a2"))
    assert errors(problems) == ["NETWORK_UNKNOWN"]
    assert "'(none)'" in problems[0].message


# ---- all at once ----------------------------------------------------------------------------
def test_all_problems_are_reported_together(fleet):
    vm = fleet.vm("bad-1", state=VmState.CRASHED, has_hostdev=True,
                  disks=(shared_disk("bad-1"), cdrom(f"{LOCAL_PATH['lab-a1']}/x.iso")))
    problems = check(fleet, fleet.plan(vm, "lab-a2"))
    assert sorted(errors(problems)) == ["CD_NOT_VISIBLE", "PCI_PASSTHROUGH",
                                        "VM_STATE_UNSUPPORTED"]
    assert not set(codes(problems)) & WARNINGS


def test_problems_of_several_vms_and_disks_together(fleet):
    fleet.pool("Production", ha_enabled=True)
    fleet.server("lab-b1", free_memory=1 * GIB)
    a = fleet.vm("a", memory=2 * GIB, disks=(disk("vda", "/dev/sdb", None, source_type="block"),
                                             local_disk("lab-a1", "a", "vdb")))
    b = fleet.vm("b", disks=(local_disk("lab-a1", "b"),))
    problems = check(fleet, fleet.plan(a, "lab-b1", network="backup"),
                     fleet.plan(b, "lab-b1", sr="Fast storage", disk_srs={"vdx": "x"}))
    by_vm = {(p.vm, p.code) for p in problems}
    assert by_vm == {
        ("a", "NETWORK_UNKNOWN"), ("a", "DISK_UNSUPPORTED"), ("a", "HA_ENABLED"),
        ("a", "NOT_ENOUGH_MEMORY"), ("b", "UNKNOWN_DISK"), ("b", "HA_ENABLED"),
        ("b", "NOT_ENOUGH_MEMORY"),
    }


# ---- warnings -------------------------------------------------------------------------------
def test_estimate_uses_network_rate(fleet):
    vm = fleet.vm("web-1", memory=400 * MIB)
    plan = fleet.plan(vm, "lab-a2")  # storage network, 200 MiB/s
    snap = fleet.snapshot()
    assert estimate_seconds(snap, plan) == pytest.approx(2.0)
    est = only(check(fleet, plan), "ESTIMATE")[0]
    assert est.severity is Severity.WARNING
    assert format_duration(2.0) in est.message and "'storage'" in est.message
    assert format_bytes(400 * MIB) in est.message and "of memory " in est.message


def test_estimate_of_storage_migration_counts_disks(fleet):
    vm = fleet.vm("db-1", memory=1 * GIB, disks=(local_disk("lab-a1", "db-1",
                                                             capacity=24 * GIB),))
    plan = fleet.plan(vm, "lab-b1", network="management")  # 25 MiB/s
    secs = 25 * GIB / (25 * MIB)
    assert estimate_seconds(fleet.snapshot(), plan) == pytest.approx(secs)
    est = only(check(fleet, plan), "ESTIMATE")[0]
    assert format_duration(secs) in est.message and "memory and disks" in est.message


def test_estimate_counts_the_bandwidth_cap(fleet):
    vm = fleet.vm("web-1", memory=400 * MIB)
    capped = fleet.plan(vm, "lab-a2", bandwidth_mib_s=20)  # below the 200 MiB/s link
    assert estimate_seconds(fleet.snapshot(), capped) == pytest.approx(20.0)
    above = fleet.plan(vm, "lab-a2", bandwidth_mib_s=1000)  # the link is the limit
    assert estimate_seconds(fleet.snapshot(), above) == pytest.approx(2.0)
    fleet.networks["storage"] = Network("storage", rate=None)
    assert estimate_seconds(fleet.snapshot(), capped) == pytest.approx(20.0)


def test_no_estimate_without_rate(fleet):
    fleet.networks["storage"] = Network("storage", rate=None)
    plan = fleet.plan(fleet.vm("web-1"), "lab-a2")
    assert estimate_seconds(fleet.snapshot(), plan) is None
    assert set(codes(check(fleet, plan))) == {"PERFORMANCE"}


def test_management_network_warning(fleet):
    vm = fleet.vm("web-1")
    on_mgmt = check(fleet, fleet.plan(vm, "lab-a2", network="management"))
    assert set(codes(on_mgmt)) == {"PERFORMANCE", "ESTIMATE", "MANAGEMENT_NETWORK"}
    assert "management network" in only(on_mgmt, "MANAGEMENT_NETWORK")[0].message
    on_storage = check(fleet, fleet.plan(vm, "lab-a2", network="storage"))
    assert "MANAGEMENT_NETWORK" not in codes(on_storage)


def test_no_warnings_when_something_blocks(fleet):
    ok = fleet.vm("ok")
    bad = fleet.vm("bad", has_hostdev=True)
    problems = check(fleet, fleet.plan(ok, "lab-a2", network="management"),
                     fleet.plan(bad, "lab-a2"))
    assert codes(problems) == ["PCI_PASSTHROUGH"]


def test_warnings_for_each_plan(fleet):
    plans = [fleet.plan(fleet.vm(n), "lab-a2") for n in ("one", "two")]
    warns = warnings_for(fleet.snapshot(), plans)
    assert [(p.vm, p.code) for p in warns] == [
        ("one", "PERFORMANCE"), ("one", "ESTIMATE"), ("two", "PERFORMANCE"),
        ("two", "ESTIMATE")]
    assert "run slower" in warns[0].message


def test_problem_json():
    p = Problem("SR_NOT_VISIBLE", "msg", "web-1")
    assert p.to_json() == {"code": "SR_NOT_VISIBLE", "severity": "error", "vm": "web-1",
                           "message": "msg"}
    assert p.blocking
    w = Problem("PERFORMANCE", "slow", "web-1", Severity.WARNING)
    assert not w.blocking and w.to_json()["severity"] == "warning"
    assert blocking([p, w]) == [p]


# ---- SR choice for one disk -----------------------------------------------------------------
def test_sr_refusal_reasons(fleet):
    fleet.add_sr("lab-b1", "Volume group", "/dev/vg0", type="logical")
    fleet.sr("lab-b1", "Fast storage", active=False)
    snap = fleet.snapshot()
    assert sr_refusal(snap, "lab-b1", "Local storage", GIB, "Local storage") == (
        Code.SAME_SR, "Current location")
    assert sr_refusal(snap, "lab-b1", "Shared storage", GIB) == (
        Code.SR_NOT_VISIBLE, "Not visible from lab-b1")
    assert sr_refusal(snap, "lab-b1", "Fast storage", GIB) == (
        Code.SR_NOT_VISIBLE, "Not visible from lab-b1")
    assert sr_refusal(snap, "lab-b1", "Volume group", GIB) == (
        Code.SR_UNSUPPORTED, "Unsupported SR type")
    assert sr_refusal(snap, "lab-b1", "Small storage", 65 * MIB) == (
        Code.NOT_ENOUGH_SPACE, f"Not enough space: {format_bytes(65 * MIB)} required, "
        f"{format_bytes(64 * MIB)} available")
    assert sr_refusal(snap, "lab-b1", "Small storage", 64 * MIB) is None
    assert sr_refusal(snap, "lab-b1", "Local storage", GIB, "Small storage") is None


# ---- live disk move -------------------------------------------------------------------------
def b1_vm(fleet, **kw):
    disks = (
        disk("vda", f"{LOCAL_PATH['lab-b1']}/m-vda.qcow2", "Local storage", capacity=1 * GIB),
        disk("vdb", "/dev/sdc", None, source_type="block"),
        cdrom(f"{SMALL_PATH}/x.iso", dev="sda"),
        disk("vdc", "/var/tmp/m-vdc.qcow2", None),
    )
    return fleet.vm("m", server="lab-b1", disks=disks, **kw)


@pytest.mark.parametrize(("dev", "target", "code", "words"), [
    ("vda", "Local storage", "SAME_SR", "Current location"),
    ("vda", "Volume group", "SR_UNSUPPORTED", "Unsupported SR type"),
    ("vda", "Shared storage", "SR_NOT_VISIBLE", "Not visible from lab-b1"),
    ("vda", "Small storage", "NOT_ENOUGH_SPACE", "Not enough space"),
    ("vdz", "Fast storage", "UNKNOWN_DISK", "has no disk 'vdz'"),
    ("sda", "Fast storage", "UNKNOWN_DISK", "has no disk 'sda'"),
    ("vdb", "Fast storage", "DISK_UNSUPPORTED", "cannot be moved"),
    ("vdc", "Fast storage", "DISK_UNSUPPORTED", "pool-define-as NAME dir --target /var/tmp"),
])
def test_check_disk_move_codes(fleet, dev, target, code, words):
    fleet.add_sr("lab-b1", "Volume group", "/dev/vg0", type="logical")
    vm = b1_vm(fleet)
    problems = check_disk_move(fleet.snapshot(), DiskMovePlan(vm, dev, target))
    assert codes(problems) == [code]
    assert words in problems[0].message


def test_check_disk_move_ok(fleet):
    vm = b1_vm(fleet)
    assert check_disk_move(fleet.snapshot(), DiskMovePlan(vm, "vda", "Fast storage")) == []


def test_check_disk_move_vm_problems(fleet):
    fleet.server("lab-b1", connected=False)
    vm = b1_vm(fleet, state=VmState.PAUSED)
    problems = check_disk_move(fleet.snapshot(), DiskMovePlan(vm, "vda", "Fast storage"),
                               busy={vm.key})
    assert codes(problems) == ["SOURCE_DISCONNECTED", "VM_NOT_RUNNING", "MIGRATION_RUNNING"]
    assert "a disk moves while the VM runs (live) or while it is halted" in problems[1].message


def test_a_halted_vm_moves_a_disk_unless_it_has_a_saved_state(fleet):
    vm = b1_vm(fleet, state=VmState.HALTED)
    assert check_disk_move(fleet.snapshot(), DiskMovePlan(vm, "vda", "Fast storage")) == []
    saved = b1_vm(fleet, state=VmState.HALTED, managed_save=True)
    problems = check_disk_move(fleet.snapshot(), DiskMovePlan(saved, "vda", "Fast storage"))
    assert codes(problems) == ["VM_HAS_SAVED_STATE"]


def test_check_disk_move_job_running(fleet):
    vm = b1_vm(fleet, job_running=True)
    problems = check_disk_move(fleet.snapshot(), DiskMovePlan(vm, "vda", "Fast storage"))
    assert codes(problems) == ["MIGRATION_RUNNING"]


# ---- the same host under two names; snapshots; storage that is not shared -------------------
def test_the_same_host_under_another_name_is_refused(fleet):
    fleet.server("lab-a2", host_uuid="host-uuid-lab-a1")
    vm = fleet.vm("web-1")
    problems = check(fleet, fleet.plan(vm, "lab-a2"))
    assert errors(problems) == ["SAME_HOST"]
    assert "'lab-a2' and 'lab-a1' are the same server" in problems[0].message
    assert "host-uuid-lab-a1" in problems[0].message
    assert "Remove one of the two from the inventory" in problems[0].message
    assert codes(check_destination(fleet.snapshot(), vm, "lab-a2")) == ["SAME_HOST"]


def test_unknown_host_uuids_are_not_taken_for_the_same_host(fleet):
    fleet.server("lab-a1", host_uuid="")
    fleet.server("lab-a2", host_uuid="")
    assert errors(check(fleet, fleet.plan(fleet.vm("web-1"), "lab-a2"))) == []


@pytest.mark.parametrize("count, words", [(1, "has a snapshot"), (3, "has 3 snapshots")])
def test_a_vm_with_snapshots_is_refused_before_anything_moves(fleet, count, words):
    vm = fleet.vm("web-1", snapshots=count)
    (problem,) = [p for p in check(fleet, fleet.plan(vm, "lab-a2")) if p.blocking]
    assert problem.code == "VM_HAS_SNAPSHOTS"
    assert words in problem.message and "virsh snapshot-delete web-1" in problem.message


def test_moving_a_disk_of_a_vm_with_snapshots_is_refused(fleet):
    vm = b1_vm(fleet, snapshots=1)
    problems = check_disk_move(fleet.snapshot(), DiskMovePlan(vm, "vda", "Fast storage"))
    assert codes(problems) == ["VM_HAS_SNAPSHOTS"]
    assert "moving a disk would lose" in problems[0].message


@pytest.mark.parametrize("sharing, words", [
    (Sharing.NOT_SHARED, "is not the same storage there"),
    (Sharing.UNVERIFIED, "could not be proven to be the same storage"),
])
def test_a_same_named_sr_that_is_not_shared_says_why_the_disk_is_copied(fleet, sharing, words):
    for server in ("lab-a1", "lab-a2"):
        fleet.add_sr(server, "default", "/var/lib/libvirt/images", sharing=sharing)
    vm = fleet.vm("vi-1", disks=(disk("vda", "/var/lib/libvirt/images/vi-1.qcow2", "default"),))
    problems = check(fleet, fleet.plan(vm, "lab-a2"))
    assert errors(problems) == []
    (warning,) = only(problems, "SR_NOT_SHARED")
    assert words in warning.message and "copied to SR 'Shared storage'" in warning.message


def test_a_proven_shared_sr_gives_no_copy_warning(fleet):
    problems = check(fleet, fleet.plan(fleet.vm("web-1"), "lab-a2"))
    assert "SR_NOT_SHARED" not in codes(problems)


# ---- CPU ------------------------------------------------------------------------------------
CPU = ("<cpu mode='custom' match='exact'><model fallback='forbid'>Icelake-Server</model>"
       "<feature policy='require' name='avx512f'/></cpu>")
LACKS = ("the CPU is incompatible with host CPU: Host CPU does not provide required "
         "features: avx512f, gfni")


def test_a_cpu_the_destination_cannot_run_refuses_a_live_migration(fleet):
    vm = fleet.vm("web-1", cpu=CPU, virt_type="kvm")
    fleet.server("lab-a2", cpu_refusals={vm.cpu_key: LACKS})
    problems = check(fleet, fleet.plan(vm, "lab-a2"))
    assert errors(problems) == ["CPU_INCOMPATIBLE"]
    message = only(problems, "CPU_INCOMPATIBLE")[0].message
    assert "'lab-a2' cannot run the CPU of 'web-1' (Icelake-Server): it lacks avx512f, gfni" \
        in message
    assert "Choose a server with those CPU features" in message
    # The same definition under TCG is another question for the hypervisor: not refused.
    assert errors(check(fleet, fleet.plan(replace(vm, virt_type="qemu"), "lab-a2"))) == []
    # Another server was not asked, or could run it: nothing against it.
    assert "CPU_INCOMPATIBLE" not in codes(check(fleet, fleet.plan(vm, "lab-b1")))


def test_a_halted_vm_moving_without_running_needs_no_cpu_check(fleet):
    vm = fleet.vm("web-1", cpu=CPU, state=VmState.HALTED)
    fleet.server("lab-a2", cpu_refusals={vm.cpu_key: LACKS})
    assert errors(check(fleet, fleet.plan(vm, "lab-a2"))) == []  # its definition moves
    # Sent directly it is started paused, so it must be able to run there.
    saved = fleet.vm("web-1", cpu=CPU, state=VmState.HALTED, managed_save=True)
    assert errors(check(fleet, fleet.plan(saved, "lab-a2"))) == ["CPU_INCOMPATIBLE"]


def test_a_vm_without_a_cpu_model_is_never_asked_about():
    from xencenter_lite.core.model import VM

    bare = VM("s", "u", "n", VmState.RUNNING, GIB, 1, ())
    assert bare.cpu_key == ""
