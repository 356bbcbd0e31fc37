"""Copy VM's plan and checks: where each disk goes, and every reason to refuse, at once."""

from __future__ import annotations

import pytest
from builders import GIB, MIB, codes, disk, local_disk

from xencenter_lite.core.copy import CopyRequest, build_copy_plan, check_copy
from xencenter_lite.core.model import VmState


def plan(fleet, vm, destination, name="copy-1", **kw):
    return build_copy_plan(fleet.snapshot(), vm, CopyRequest(vm.key, destination, name, **kw))


def errors(fleet, p):
    return [c.code for c in check_copy(fleet.snapshot(), p) if c.blocking]


def test_disks_stay_on_their_sr_on_the_same_server_else_go_to_the_default_sr(fleet):
    vm = fleet.vm("db-1", state=VmState.HALTED, disks=(local_disk("lab-a1", "db-1"),
                                                       local_disk("lab-a1", "db-1", "vdb")))
    same = plan(fleet, vm, "lab-a1")
    assert [d.target_sr for d in same.disks] == ["Local storage", "Local storage"]
    assert [d.volume_name("copy-1") for d in same.disks] == ["copy-1-vda.qcow2",
                                                             "copy-1-vdb.qcow2"]
    other = plan(fleet, vm, "lab-b1", disk_srs={"vdb": "Fast storage"})
    assert [d.target_sr for d in other.disks] == ["Local storage", "Fast storage"]
    assert codes(check_copy(fleet.snapshot(), other)) == ["ESTIMATE"]
    spaced = plan(fleet, vm, "lab-a1", name="Copy of db-1")
    assert spaced.disks[0].volume_name(spaced.name) == "Copy-of-db-1-vda.qcow2"
    assert errors(fleet, spaced) == []
    assert "reads it back to verify it" in check_copy(fleet.snapshot(), other)[0].message


@pytest.mark.parametrize("state", [VmState.RUNNING, VmState.PAUSED])
def test_only_a_halted_vm_is_copied(fleet, state):
    vm = fleet.vm("web-1", state=state)
    problems = check_copy(fleet.snapshot(), plan(fleet, vm, "lab-a2"))
    assert [p.code for p in problems] == ["COPY_NEEDS_HALTED"]
    assert "Shut it down, then copy it" in problems[0].message


@pytest.mark.parametrize("name", ["", " ", "-dash", "a/b", "a:b", "x" * 65])
def test_a_bad_name_is_refused(fleet, name):
    vm = fleet.vm("web-1", state=VmState.HALTED)
    assert errors(fleet, plan(fleet, vm, "lab-a2", name=name)) == ["BAD_NAME"]


def test_a_name_taken_there_no_space_and_an_unknown_disk_are_all_reported(fleet):
    fleet.vm("taken", server="lab-b1")
    fleet.sr("lab-b1", "Small storage", available=64 * MIB)
    vm = fleet.vm("db-1", state=VmState.HALTED, disks=(local_disk("lab-a1", "db-1",
                                                                  capacity=GIB),))
    p = plan(fleet, vm, "lab-b1", name="taken", sr="Small storage", disk_srs={"vdz": "x"})
    assert sorted(errors(fleet, p)) == ["NAME_IN_USE", "SR_REFUSED", "UNKNOWN_DISK"]


def test_a_copy_may_go_to_a_disconnected_server_never(fleet):
    fleet.server("lab-b1", connected=False)
    vm = fleet.vm("web-1", state=VmState.HALTED)
    assert errors(fleet, plan(fleet, vm, "lab-b1")) == ["DESTINATION_DISCONNECTED"]
    assert errors(fleet, plan(fleet, vm, "nowhere")) == ["DESTINATION_UNKNOWN"]


def test_what_the_copy_does_not_carry_is_said(fleet):
    vm = fleet.vm("web-1", state=VmState.HALTED, snapshots=2, managed_save=True)
    found = codes(check_copy(fleet.snapshot(), plan(fleet, vm, "lab-a2")))
    assert found == ["SAVED_STATE_NOT_COPIED", "SNAPSHOTS_NOT_COPIED", "ESTIMATE"]


def test_a_file_in_no_sr_cannot_be_copied_and_the_refusal_says_what_can(fleet):
    vm = fleet.vm("loose-3", state=VmState.HALTED,
                  disks=(disk("vda", "/var/tmp/loose-3.qcow2", None),))
    problems = check_copy(fleet.snapshot(), plan(fleet, vm, "lab-b1", sr="Local storage"))
    assert codes(problems) == ["DISK_UNSUPPORTED"]
    assert "is the file /var/tmp/loose-3.qcow2, in no SR" in problems[0].message
    assert "pool-define-as NAME dir --target /var/tmp" in problems[0].message
