"""Placement and the maintenance-mode plan: who can take a VM, who is best and why, and a
whole server emptied at once without overfilling another."""

from __future__ import annotations

from builders import GIB, MIB, cdrom, local_disk, shared_disk

from xencenter_lite.core.checks import check_destination, check_plans
from xencenter_lite.core.metadata import VmMetadata, parse_metadata, render_metadata
from xencenter_lite.core.model import VmState
from xencenter_lite.core.placement import (
    best,
    evacuation_plans,
    place_together,
    plan_evacuation,
    rank,
    rate,
)
from xencenter_lite.core.plan import MigrationRequest, build_plan


# ---- ranking ----------------------------------------------------------------------------------
def test_a_pool_member_with_shared_storage_beats_a_server_that_needs_a_disk_copy(fleet):
    vm = fleet.vm("web-1")  # on lab-a1, its disk on the pool's shared SR
    ranked = rank(fleet.snapshot(), vm)
    assert [r.server for r in ranked] == ["lab-a2", "lab-b1"]
    a2, b1 = ranked
    assert a2.eligible and b1.eligible and a2.score > b1.score
    assert "no disk copy (its disks are on storage shared with it)" in a2.reasons
    assert "in its pool 'Production'" in a2.reasons
    assert any(r.startswith("copies 10.0 GiB") for r in b1.reasons)
    assert a2.stars > b1.stars >= 1


def test_the_home_server_wins_between_equals(fleet):
    fleet.server("lab-a2", pool=None, default_sr="Local storage")
    fleet.pool("Production", members=("lab-a1",))
    vm = fleet.vm("db-1", disks=(local_disk("lab-a1", "db-1"),))
    plain = rank(fleet.snapshot(), vm)
    assert [r.server for r in plain] == ["lab-a2", "lab-b1"]  # alphabetical on a tie
    assert plain[0].score == plain[1].score
    fleet.vms.remove(vm)
    homed = fleet.vm("db-1", disks=(local_disk("lab-a1", "db-1"),), home_server="lab-b1")
    ranked = rank(fleet.snapshot(), homed)
    assert ranked[0].server == "lab-b1" and "its home server" in ranked[0].reasons


def test_more_memory_left_scores_higher(fleet):
    fleet.server("lab-a2", pool=None, default_sr="Local storage")
    fleet.pool("Production", members=("lab-a1",))
    fleet.server("lab-a2", free_memory=2 * GIB)
    vm = fleet.vm("db-1", disks=(local_disk("lab-a1", "db-1"),))
    ranked = rank(fleet.snapshot(), vm)
    assert ranked[0].server == "lab-b1"
    assert "7.0 GiB of memory left after the move" in ranked[0].reasons
    assert "1.0 GiB of memory left after the move" in ranked[1].reasons


def test_a_server_that_cannot_take_the_vm_is_listed_last_with_its_reasons(fleet):
    fleet.server("lab-a2", free_memory=512 * MIB)
    vm = fleet.vm("web-1")
    ranked = rank(fleet.snapshot(), vm)
    assert [(r.server, r.eligible) for r in ranked] == [("lab-b1", True), ("lab-a2", False)]
    assert ranked[1].stars == 0 and ranked[1].score == 0
    assert [p.code for p in ranked[1].problems] == ["NOT_ENOUGH_MEMORY"]
    assert best(fleet.snapshot(), vm).server == "lab-b1"


def test_no_server_at_all(fleet):
    vm = fleet.vm("web-1", has_hostdev=True)
    assert best(fleet.snapshot(), vm) is None
    assert all("PCI_PASSTHROUGH" in [p.code for p in r.problems]
               for r in rank(fleet.snapshot(), vm))


def test_a_move_that_needs_dynamic_memory_control_ranks_low(fleet):
    fleet.server("lab-a2", free_memory=512 * MIB)
    fleet.vm("squeezable", "lab-a2", memory=2 * GIB, current_memory=2 * GIB,
             dynamic_min=512 * MIB, dynamic_max=2 * GIB)
    vm = fleet.vm("web-1")
    a2 = rate(fleet.snapshot(), vm, "lab-a2")
    assert a2.eligible
    assert any(r.startswith("fits only once Dynamic Memory Control frees") for r in a2.reasons)


def test_the_same_answer_every_time(fleet):
    vm = fleet.vm("web-1")
    first = [r.to_json() for r in rank(fleet.snapshot(), vm)]
    assert all([r.to_json() for r in rank(fleet.snapshot(), vm)] == first for _ in range(5))


def test_a_server_in_maintenance_is_refused_and_never_placed_onto(fleet):
    fleet.server("lab-a2", maintenance=True)
    vm = fleet.vm("web-1")
    problems = check_destination(fleet.snapshot(), vm, "lab-a2")
    assert [p.code for p in problems] == ["DESTINATION_IN_MAINTENANCE"]
    assert "maintenance mode" in problems[0].message
    assert best(fleet.snapshot(), vm).server == "lab-b1"


def test_vms_placed_together_do_not_overfill_one_server(fleet):
    fleet.server("lab-b1", free_memory=1 * GIB)  # room for one of the two only
    fleet.server("lab-a2", free_memory=6 * GIB)
    one = fleet.vm("one", memory=3 * GIB)
    two = fleet.vm("two", memory=3 * GIB)
    alone = [best(fleet.snapshot(), v).server for v in (one, two)]
    assert alone == ["lab-a2", "lab-a2"]
    together = place_together(fleet.snapshot(), [one, two])
    assert [ratings[0].server for _vm, ratings in together] == ["lab-a2", "lab-a2"]
    fleet.server("lab-a2", free_memory=4 * GIB)  # now each fits alone, not both
    fleet.server("lab-b1", free_memory=4 * GIB)
    together = place_together(fleet.snapshot(), [one, two])
    picks = sorted(ratings[0].server for _vm, ratings in together)
    assert picks == ["lab-a2", "lab-b1"]


# ---- maintenance mode ---------------------------------------------------------------------------
def test_evacuation_sends_each_vm_to_the_best_server_and_says_why_others_stay(fleet):
    fleet.vm("web-1")  # shared disk: lab-a2, no copy
    fleet.vm("db-1", disks=(local_disk("lab-a1", "db-1"),))
    fleet.vm("off", disks=(local_disk("lab-a1", "off"),), state=VmState.HALTED)
    fleet.vm("cd", disks=(shared_disk("cd"), cdrom("/srv/lab-a1/local/install.iso")))
    rows = plan_evacuation(fleet.snapshot(), "lab-a1")
    by = {r.vm.name: r for r in rows}
    assert [r.vm.name for r in rows] == ["cd", "db-1", "off", "web-1"]
    assert by["web-1"].destination == "lab-a2"
    assert by["db-1"].destination in ("lab-a2", "lab-b1")
    assert by["off"].destination is None and by["off"].reason.startswith("halted: stays")
    assert not by["off"].problems
    assert by["cd"].destination is None
    assert {p.code for p in by["cd"].problems} == {"CD_NOT_VISIBLE"}  # one per server
    assert "eject the CD" in by["cd"].reason


def test_evacuation_counts_each_placement_before_the_next(fleet):
    fleet.server("lab-a2", free_memory=5 * GIB)
    fleet.server("lab-b1", free_memory=5 * GIB)
    for name in ("a", "b", "c"):
        fleet.vm(name, memory=3 * GIB)
    rows = plan_evacuation(fleet.snapshot(), "lab-a1")
    dests = [r.destination for r in rows]
    assert dests.count("lab-a2") == 1 and dests.count("lab-b1") == 1 and dests.count(None) == 1
    stuck = next(r for r in rows if r.destination is None)
    assert {p.code for p in stuck.problems} == {"NOT_ENOUGH_MEMORY"}
    # and the moves taken together pass the checks that a migration runs
    snap = fleet.snapshot()
    assert [p for p in check_plans(snap, evacuation_plans(rows)) if p.blocking] == []


def test_the_operators_choices_are_kept(fleet):
    web = fleet.vm("web-1")
    db = fleet.vm("db-1", disks=(local_disk("lab-a1", "db-1"),))
    rows = plan_evacuation(fleet.snapshot(), "lab-a1",
                           choices={web.uuid: "lab-b1", db.uuid: None})
    by = {r.vm.name: r for r in rows}
    assert (by["web-1"].destination, by["web-1"].chosen) == ("lab-b1", True)
    assert by["db-1"].destination is None and by["db-1"].chosen and not by["db-1"].problems
    assert by["db-1"].reason == "left on the server by the operator"
    bad = plan_evacuation(fleet.snapshot(), "lab-a1", choices={web.uuid: "lab-a1"})
    row = next(r for r in bad if r.vm.name == "web-1")
    assert row.destination is None and [p.code for p in row.problems] == ["SAME_SERVER"]


def test_an_evacuated_vm_keeps_its_home_server_and_remembers_where_it_came_from(fleet):
    vm = fleet.vm("web-1", home_server="lab-a1")
    plan = build_plan(fleet.snapshot(), vm,
                      MigrationRequest(vm.key, "lab-a2", evacuated_from="host-uuid-lab-a1"))
    assert plan.home_server == "lab-a1" and plan.evacuated_from == "host-uuid-lab-a1"
    plain = build_plan(fleet.snapshot(), vm, MigrationRequest(vm.key, "lab-a2"))
    assert plain.home_server == "lab-a2" and plain.evacuated_from is None


def test_the_evacuated_from_mark_round_trips_in_the_vms_metadata():
    meta = VmMetadata(home_server="lab-a1", evacuated_from="4c4c4544-0042")
    back = parse_metadata(render_metadata(meta))
    assert back == meta
    assert parse_metadata(render_metadata(VmMetadata(home_server="x"))).evacuated_from is None
