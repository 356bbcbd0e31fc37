"""Migration plans built from a hand-made snapshot: which kind, which SR, which network."""

from __future__ import annotations

import pytest
from builders import (
    ADDRESSES,
    GIB,
    LOCAL_PATH,
    SHARED_PATH,
    cdrom,
    disk,
    local_disk,
    shared_disk,
)

from xencenter_lite.core.model import Sharing, VmState
from xencenter_lite.core.plan import (
    DataPath,
    DiskMovePlan,
    MigrationKind,
    default_network,
    default_sr,
    free_volume_name,
    volume_name_for,
)


def placement(plan, dev):
    return next(d for d in plan.disks if d.dev == dev)


# ---- kind and SR choice ---------------------------------------------------------------------
def test_shared_disk_to_other_pool_member_is_memory_only(fleet):
    vm = fleet.vm("web-1")
    plan = fleet.plan(vm, "lab-a2")
    assert plan.kind is MigrationKind.MEMORY
    assert plan.copied_disks == ()
    vda = placement(plan, "vda")
    assert (vda.copy, vda.source_sr, vda.target_sr) == (False, "Shared storage", "Shared storage")
    assert plan.bytes_to_copy == vm.memory
    assert (plan.source, plan.destination, plan.home_server) == ("lab-a1", "lab-a2", "lab-a2")


def test_shared_disk_to_standalone_server_copies_to_its_default_sr(fleet):
    vm = fleet.vm("web-1")
    plan = fleet.plan(vm, "lab-b1")
    assert plan.kind is MigrationKind.STORAGE
    vda = placement(plan, "vda")
    assert vda.copy is True
    assert vda.target_sr == "Local storage"  # lab-b1's default_sr
    assert vda.source_path == f"{SHARED_PATH}/web-1-vda.qcow2"
    assert plan.bytes_to_copy == vm.memory + 10 * GIB


def test_local_disk_inside_pool_copies_to_pool_default_sr(fleet):
    vm = fleet.vm("db-1", disks=(local_disk("lab-a1", "db-1"),))
    plan = fleet.plan(vm, "lab-a2")
    assert plan.kind is MigrationKind.STORAGE
    vda = placement(plan, "vda")
    assert (vda.copy, vda.target_sr) == (True, "Shared storage")


def test_local_sr_with_same_name_but_other_path_is_copied(fleet):
    # "Local storage" exists on both pool members, but at different paths: not shared
    vm = fleet.vm("db-1", disks=(local_disk("lab-a1", "db-1"),))
    plan = fleet.plan(vm, "lab-a2", sr="Local storage")
    assert plan.kind is MigrationKind.STORAGE
    assert placement(plan, "vda").target_sr == "Local storage"


def test_same_name_and_path_outside_the_pool_is_not_shared(fleet):
    # Two unrelated servers often both have their "Local storage" at the same default path;
    # that does not make a disk visible on the other one.
    fleet.sr("lab-b1", "Local storage", path=LOCAL_PATH["lab-a1"])
    vm = fleet.vm("db-1", disks=(local_disk("lab-a1", "db-1"),))
    plan = fleet.plan(vm, "lab-b1")
    assert plan.kind is MigrationKind.STORAGE
    assert placement(plan, "vda").copy is True


def test_sr_option_applies_to_every_disk(fleet):
    vm = fleet.vm("app-1", disks=(shared_disk("app-1", "vda"), local_disk("lab-a1", "app-1",
                                                                          "vdb")))
    plan = fleet.plan(vm, "lab-b1", sr="Fast storage")
    assert [(d.dev, d.target_sr, d.copy) for d in plan.disks] == [
        ("vda", "Fast storage", True), ("vdb", "Fast storage", True)]


def test_disk_map_wins_over_sr_option(fleet):
    vm = fleet.vm("app-1", disks=(shared_disk("app-1", "vda"), local_disk("lab-a1", "app-1",
                                                                          "vdb")))
    plan = fleet.plan(vm, "lab-b1", sr="Fast storage", disk_srs={"vdb": "Small storage"})
    assert placement(plan, "vda").target_sr == "Fast storage"
    assert placement(plan, "vdb").target_sr == "Small storage"
    assert plan.unknown_devs == ()


def test_mixed_disks_inside_pool_copy_only_the_local_one(fleet):
    vm = fleet.vm("app-1", disks=(shared_disk("app-1", "vda"), local_disk("lab-a1", "app-1",
                                                                          "vdb")))
    plan = fleet.plan(vm, "lab-a2")
    assert plan.kind is MigrationKind.STORAGE
    assert [d.dev for d in plan.copied_disks] == ["vdb"]
    assert placement(plan, "vda").copy is False
    assert plan.bytes_to_copy == vm.memory + 10 * GIB


def test_asking_for_the_current_shared_sr_keeps_it_memory_only(fleet):
    vm = fleet.vm("web-1")
    for request in ({"sr": "Shared storage"}, {"disk_srs": {"vda": "Shared storage"}}):
        plan = fleet.plan(vm, "lab-a2", **request)
        assert plan.kind is MigrationKind.MEMORY, request
        assert placement(plan, "vda").copy is False


def test_asking_for_another_sr_inside_the_pool_copies(fleet):
    vm = fleet.vm("web-1")
    plan = fleet.plan(vm, "lab-a2", sr="Local storage")
    assert plan.kind is MigrationKind.STORAGE
    assert placement(plan, "vda").target_sr == "Local storage"


def test_no_default_sr_leaves_target_unset(fleet):
    fleet.server("lab-b1", default_sr=None)
    vm = fleet.vm("web-1")
    plan = fleet.plan(vm, "lab-b1")
    assert placement(plan, "vda").target_sr is None
    assert placement(plan, "vda").copy is True


def test_cdroms_are_not_placed(fleet):
    vm = fleet.vm("web-1", disks=(shared_disk("web-1"), cdrom(f"{SHARED_PATH}/iso/x.iso")))
    plan = fleet.plan(vm, "lab-b1")
    assert [d.dev for d in plan.disks] == ["vda"]


def test_unknown_dev_in_disk_map_is_reported(fleet):
    vm = fleet.vm("web-1", disks=(shared_disk("web-1"), cdrom(None, dev="sda")))
    plan = fleet.plan(vm, "lab-b1", disk_srs={"vdz": "Fast storage", "sda": "Fast storage",
                                              "vda": "Fast storage"})
    assert plan.unknown_devs == ("sda", "vdz")  # a CD drive is not a disk that moves
    assert placement(plan, "vda").target_sr == "Fast storage"


def test_supported_flag(fleet):
    fleet.add_sr("lab-a1", "Volume group", "/dev/vg0", type="logical")
    vm = fleet.vm("odd-1", disks=(
        shared_disk("odd-1", "vda"),
        disk("vdb", "/dev/sdb", None, source_type="block", fmt="raw"),
        disk("vdc", "/var/tmp/loose.qcow2", None),
        disk("vdd", "/dev/vg0/odd", "Volume group", fmt="raw"),
        disk("vde", None, None, source_type="network"),
        # Named by pool and volume (its file found by the reading): as any file of its SR.
        disk("vdf", f"{SHARED_PATH}/odd-1-vdf.qcow2", "Shared storage", source_type="volume"),
    ))
    plan = fleet.plan(vm, "lab-b1")
    assert {d.dev: d.supported for d in plan.disks} == {
        "vda": True, "vdb": False, "vdc": True, "vdd": False, "vde": False, "vdf": True}
    assert [d.dev for d in plan.disks if d.loose] == ["vdc"]  # a file, in no SR
    within = fleet.plan(vm, "lab-a2")  # the pool's shared SR: only the loose file moves
    assert [d.dev for d in within.disks if d.copy and d.supported] == ["vdc"]


# ---- network and address --------------------------------------------------------------------
def test_default_network_is_first_non_management_one(fleet):
    vm = fleet.vm("web-1")
    plan = fleet.plan(vm, "lab-a2")
    assert plan.network == "storage"
    assert plan.address == ADDRESSES["lab-a2"]["storage"]
    assert default_network(fleet.snapshot(), "lab-a2") == "storage"


def test_default_network_falls_back_to_management(fleet):
    fleet.server("lab-a2", addresses={"management": "192.0.2.12"})
    plan = fleet.plan(fleet.vm("web-1"), "lab-a2")
    assert plan.network == "management"
    assert plan.address == "192.0.2.12"


def test_default_network_sorted_among_several(fleet):
    fleet.server("lab-a2", addresses={"zeta": "10.0.0.3", "management": "192.0.2.12",
                                      "backup": "10.0.1.3"})
    assert default_network(fleet.snapshot(), "lab-a2") == "backup"


def test_default_network_none_without_addresses_or_server(fleet):
    fleet.server("lab-a2", addresses={})
    snap = fleet.snapshot()
    assert default_network(snap, "lab-a2") is None
    assert default_network(snap, "nowhere") is None
    plan = fleet.plan(fleet.vm("web-1"), "lab-a2")
    assert (plan.network, plan.address) == (None, None)


def test_explicit_network_and_bandwidth(fleet):
    plan = fleet.plan(fleet.vm("web-1"), "lab-a2", network="management", bandwidth_mib_s=50)
    assert (plan.network, plan.address) == ("management", ADDRESSES["lab-a2"]["management"])
    assert plan.bandwidth_mib_s == 50


def test_explicit_unknown_network_has_no_address(fleet):
    plan = fleet.plan(fleet.vm("web-1"), "lab-a2", network="backup")
    assert (plan.network, plan.address) == ("backup", None)


def test_plan_to_unknown_server_still_builds(fleet):
    plan = fleet.plan(fleet.vm("web-1"), "nowhere")
    assert plan.destination == "nowhere"
    assert plan.address is None
    assert placement(plan, "vda").target_sr is None


# ---- helpers --------------------------------------------------------------------------------
def test_default_sr_pool_then_server(fleet):
    snap = fleet.snapshot()
    assert default_sr(snap, "lab-a2") == "Shared storage"
    assert default_sr(snap, "lab-b1") == "Local storage"
    assert default_sr(snap, "nowhere") is None
    fleet.pool("Production", default_sr=None)
    fleet.server("lab-a2", default_sr="Local storage")
    assert default_sr(fleet.snapshot(), "lab-a2") == "Local storage"


def test_volume_name_for():
    assert volume_name_for("/srv/a/web-1-vda.qcow2", "vda", "web-1", "qcow2") == \
        "web-1-vda.qcow2"
    assert volume_name_for(None, "vdb", "web-1", "raw") == "web-1-vdb.raw"
    assert volume_name_for("", "vdb", "web-1", "qcow2") == "web-1-vdb.qcow2"


def test_disk_move_plan_server(fleet):
    vm = fleet.vm("web-1", server="lab-b1")
    assert DiskMovePlan(vm, "vda", "Fast storage").server == "lab-b1"


DEFAULT_POOL_PATH = "/var/lib/libvirt/images"


def _default_pool_on_both(fleet, sharing):
    for server in ("lab-a1", "lab-a2"):
        fleet.add_sr(server, "default", DEFAULT_POOL_PATH, sharing=sharing)


@pytest.mark.parametrize("sharing", [Sharing.NOT_SHARED, Sharing.UNVERIFIED, Sharing.LOCAL])
def test_same_name_and_path_in_the_pool_is_copied_unless_proven_shared(fleet, sharing):
    # virt-install's `default` pool is at /var/lib/libvirt/images on every host: the same
    # name and path on both pool members, and each host's own files.
    _default_pool_on_both(fleet, sharing)
    vm = fleet.vm("vi-1", disks=(disk("vda", f"{DEFAULT_POOL_PATH}/vi-1.qcow2", "default"),))
    plan = fleet.plan(vm, "lab-a2")
    assert plan.kind is MigrationKind.STORAGE
    assert placement(plan, "vda").copy is True
    assert placement(plan, "vda").target_sr == "Shared storage"  # the pool's default SR
    # Asked to keep it on `default`: still copied (into the destination's own `default`).
    plan = fleet.plan(vm, "lab-a2", sr="default")
    assert placement(plan, "vda").copy is True and placement(plan, "vda").target_sr == "default"


def test_same_name_and_path_in_the_pool_proven_shared_stays_put(fleet):
    _default_pool_on_both(fleet, Sharing.VERIFIED)
    vm = fleet.vm("vi-1", disks=(disk("vda", f"{DEFAULT_POOL_PATH}/vi-1.qcow2", "default"),))
    plan = fleet.plan(vm, "lab-a2")
    assert plan.kind is MigrationKind.MEMORY and placement(plan, "vda").copy is False


def test_proven_shared_on_one_side_only_is_not_enough(fleet):
    fleet.add_sr("lab-a1", "default", DEFAULT_POOL_PATH, sharing=Sharing.VERIFIED)
    fleet.add_sr("lab-a2", "default", DEFAULT_POOL_PATH, sharing=Sharing.NOT_SHARED)
    vm = fleet.vm("vi-1", disks=(disk("vda", f"{DEFAULT_POOL_PATH}/vi-1.qcow2", "default"),))
    assert fleet.plan(vm, "lab-a2").kind is MigrationKind.STORAGE


def test_free_volume_name():
    assert free_volume_name("db-1-vda.qcow2", set()) == "db-1-vda.qcow2"
    assert free_volume_name("db-1-vda.qcow2", {"db-1-vda.qcow2"}) == "db-1-vda-1.qcow2"
    assert free_volume_name("disk", {"disk", "disk-1"}) == "disk-2"
    assert free_volume_name("a.b.raw", {"a.b.raw", "a.b-1.raw"}) == "a.b-2.raw"


def test_a_halted_vm_goes_directly_when_both_servers_can_hold_it_paused(fleet):
    vm = fleet.vm("db-1", state=VmState.HALTED, disks=(local_disk("lab-a1", "db-1"),))
    plan = fleet.plan(vm, "lab-b1", sr="Local storage")
    assert plan.data_path is DataPath.DIRECT and plan.uses_network and plan.offline
    assert plan.needs_memory == 0 and not plan.path_chosen  # it falls back if it must
    chosen = fleet.plan(vm, "lab-b1", sr="Local storage", data_path=DataPath.DIRECT)
    assert chosen.path_chosen and chosen.needs_memory == vm.memory
    # Either server short of memory, or no address on the network: through the console.
    fleet.server("lab-a1", free_memory=vm.memory - 1)
    assert fleet.plan(vm, "lab-b1", sr="Local storage").data_path is DataPath.STREAM
    fleet.server("lab-a1", free_memory=64 * GIB)
    fleet.server("lab-b1", addresses={"management": ADDRESSES["lab-b1"]["management"]})
    plan = fleet.plan(vm, "lab-b1", sr="Local storage", network="storage")
    assert plan.data_path is DataPath.STREAM and not plan.uses_network
    assert fleet.plan(vm, "lab-b1", sr="Local storage",
                      data_path=DataPath.STREAM).data_path is DataPath.STREAM


def test_a_halted_vm_whose_disks_stay_moves_its_definition(fleet):
    vm = fleet.vm("web-1", state=VmState.HALTED)
    plan = fleet.plan(vm, "lab-a2", data_path=DataPath.DIRECT)
    assert plan.data_path is DataPath.DEFINITION and plan.bytes_to_copy == 0


def test_running_and_paused_vms_migrate_live_and_only_a_paused_one_resumes(fleet):
    running = fleet.plan(fleet.vm("web-1"), "lab-a2", resume=True)
    assert running.data_path is DataPath.LIVE and not running.resume
    paused = fleet.plan(fleet.vm("web-2", state=VmState.PAUSED), "lab-a2", resume=True)
    assert paused.data_path is DataPath.LIVE and paused.resume
