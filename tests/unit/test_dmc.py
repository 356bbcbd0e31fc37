"""Dynamic Memory Control: what the destination can free by squeezing its other VMs."""

from __future__ import annotations

from dataclasses import replace

from builders import GIB, MIB, Fleet, codes

from xencenter_lite.core.checks import check_plans, dynamic_range_problem, squeeze_targets
from xencenter_lite.core.domxml import parse_domain, rewrite_domain
from xencenter_lite.core.metadata import VmMetadata, parse_metadata, render_metadata
from xencenter_lite.core.model import VmState


def _tight_destination(fleet: Fleet) -> None:
    """lab-a2 may give VMs 3 GiB; two VMs already use 2.5 GiB of it."""
    fleet.server("lab-a2", memory_limit=3 * GIB)
    fleet.vm("squeezable", "lab-a2", memory=2 * GIB, current_memory=2 * GIB,
             dynamic_min=1 * GIB, dynamic_max=2 * GIB)
    fleet.vm("fixed", "lab-a2", memory=512 * MIB)


def test_reclaimable_memory_counts_only_running_vms_with_a_dynamic_minimum(fleet: Fleet) -> None:
    _tight_destination(fleet)
    fleet.vm("halted", "lab-a2", memory=GIB, dynamic_min=256 * MIB, state=VmState.HALTED)
    snap = fleet.snapshot()
    assert snap.memory_available("lab-a2") == 512 * MIB
    assert snap.memory_reclaimable("lab-a2") == 1 * GIB
    assert snap.memory_available_with_dmc("lab-a2") == 1536 * MIB


def test_a_vm_without_a_balloon_device_is_never_counted_nor_squeezed(fleet: Fleet) -> None:
    """A dynamic range in its metadata is not enough: without a balloon the squeeze would
    fail after the checks passed (as it did)."""
    _tight_destination(fleet)
    fleet.vms = [replace(v, has_balloon=False) if v.name == "squeezable" else v
                 for v in fleet.vms]
    snap = fleet.snapshot()
    assert snap.memory_reclaimable("lab-a2") == 0
    assert squeeze_targets(snap, "lab-a2", 1 * GIB) == []
    vm = fleet.vm("incoming", "lab-a1", memory=1 * GIB)
    problems = check_plans(fleet.snapshot(), [fleet.plan(vm, "lab-a2")])
    assert "NOT_ENOUGH_MEMORY" in codes(problems) and "DMC_SQUEEZE" not in codes(problems)
    xml = ("<domain type='kvm'><name>a</name><uuid>u</uuid><memory>1024</memory><devices>"
           "{}</devices></domain>")
    assert parse_domain(xml.format("<memballoon model='virtio'/>")).has_balloon
    assert not parse_domain(xml.format("<memballoon model='none'/>")).has_balloon
    assert not parse_domain(xml.format("")).has_balloon


def test_a_vm_that_fits_only_after_squeezing_gets_a_warning_not_a_refusal(fleet: Fleet) -> None:
    _tight_destination(fleet)
    vm = fleet.vm("incoming", "lab-a1", memory=1 * GIB)
    problems = check_plans(fleet.snapshot(), [fleet.plan(vm, "lab-a2")])
    assert "NOT_ENOUGH_MEMORY" not in codes(problems)
    (dmc,) = [p for p in problems if p.code == "DMC_SQUEEZE"]
    assert not dmc.blocking
    assert "Will free 512.0 MiB" in dmc.message and "Dynamic Memory Control" in dmc.message


def test_a_vm_too_big_even_after_squeezing_is_refused_and_says_so(fleet: Fleet) -> None:
    _tight_destination(fleet)
    vm = fleet.vm("incoming", "lab-a1", memory=2 * GIB)
    problems = check_plans(fleet.snapshot(), [fleet.plan(vm, "lab-a2")])
    (refusal,) = [p for p in problems if p.code == "NOT_ENOUGH_MEMORY"]
    assert "after Dynamic Memory Control" in refusal.message


def test_squeeze_targets_take_only_what_is_missing_and_never_below_the_minimum(
    fleet: Fleet,
) -> None:
    _tight_destination(fleet)
    fleet.vm("second", "lab-a2", memory=1 * GIB, current_memory=1 * GIB,
             dynamic_min=768 * MIB)
    fleet.server("lab-a2", memory_limit=4 * GIB)  # 3.5 GiB in use, 512 MiB free
    snap = fleet.snapshot()
    targets = {vm.name: size for vm, size in squeeze_targets(snap, "lab-a2", 1792 * MIB)}
    assert targets == {"squeezable": 1 * GIB, "second": 768 * MIB}
    assert squeeze_targets(snap, "lab-a2", 256 * MIB) == []  # fits already
    partial = {vm.name: size for vm, size in squeeze_targets(snap, "lab-a2", 768 * MIB)}
    assert partial == {"squeezable": 1792 * MIB}


def test_the_dynamic_range_round_trips_through_the_vm_xml() -> None:
    meta = VmMetadata(home_server="lab-a1", folder="/Web", dynamic_min=64 * MIB,
                      dynamic_max=128 * MIB)
    assert parse_metadata(render_metadata(meta)) == meta
    xml = ("<domain><name>x</name><uuid>u</uuid><memory unit='KiB'>131072</memory>"
           "<devices/></domain>")
    moved = rewrite_domain(xml, {}, meta)
    assert parse_domain(moved).metadata == meta
    assert parse_metadata(render_metadata(VmMetadata())) == VmMetadata()


def test_a_dynamic_range_keeps_xenservers_bounds() -> None:
    static = 128 * MIB
    assert dynamic_range_problem("web-1", static, 32 * MIB, 128 * MIB) is None  # a quarter
    assert dynamic_range_problem("web-1", static, 128 * MIB, 128 * MIB) is None
    for low, high in ((0, 64), (100, 64), (64, 129)):
        problem = dynamic_range_problem("web-1", static, low * MIB, high * MIB)
        assert problem is not None and "0 < minimum <= maximum <= 128.0 MiB" in problem
    problem = dynamic_range_problem("web-1", static, 32 * MIB - 1, 64 * MIB)
    assert problem is not None and "below a quarter of its static maximum" in problem
    assert "Raise the minimum to 32.0 MiB or more" in problem
    # An odd static maximum: the quarter is rounded up, never down.
    assert dynamic_range_problem("x", 10, 2, 10) is not None
    assert dynamic_range_problem("x", 10, 3, 10) is None
