"""What refuses a power operation: the VM's state, a job on it, its server, memory."""

from __future__ import annotations

import pytest
from builders import GIB

from xencenter_lite.core.model import VmState
from xencenter_lite.core.power import PowerAction, check_power


@pytest.mark.parametrize(("action", "state", "ok"), [
    (PowerAction.START, VmState.HALTED, True),
    (PowerAction.START, VmState.RUNNING, False),
    (PowerAction.SHUTDOWN, VmState.RUNNING, True),
    (PowerAction.SHUTDOWN, VmState.PAUSED, False),
    (PowerAction.FORCE_SHUTDOWN, VmState.PAUSED, True),
    (PowerAction.FORCE_SHUTDOWN, VmState.HALTED, False),
    (PowerAction.REBOOT, VmState.RUNNING, True),
    (PowerAction.REBOOT, VmState.HALTED, False),
    (PowerAction.SUSPEND, VmState.RUNNING, True),
    (PowerAction.SUSPEND, VmState.PAUSED, False),
    (PowerAction.RESUME, VmState.PAUSED, True),
    (PowerAction.RESUME, VmState.RUNNING, False),
])
def test_each_operation_needs_its_states(fleet, action, state, ok):
    vm = fleet.vm("web-1", state=state)
    problems = check_power(fleet.snapshot(), vm, action)
    assert (problems == []) is ok, problems
    if not ok:
        assert [p.code for p in problems] == ["VM_STATE"]
        assert f"'web-1' is {state.value}; {action.label} needs it" in problems[0].message


def test_a_vm_being_moved_or_on_a_lost_server_is_refused(fleet):
    vm = fleet.vm("web-1")
    busy = check_power(fleet.snapshot(), vm, PowerAction.SHUTDOWN, {vm.key})
    assert [p.code for p in busy] == ["MIGRATION_RUNNING"]
    fleet.server("lab-a1", connected=False)
    lost = check_power(fleet.snapshot(), vm, PowerAction.SHUTDOWN)
    assert [p.code for p in lost] == ["SOURCE_DISCONNECTED"]


def test_start_needs_the_memory(fleet):
    fleet.server("lab-a1", free_memory=1 * GIB)
    vm = fleet.vm("big", memory=2 * GIB, state=VmState.HALTED)
    problems = check_power(fleet.snapshot(), vm, PowerAction.START)
    assert [p.code for p in problems] == ["NOT_ENOUGH_MEMORY"]
    assert "needs 2.0 GiB, 1.0 GiB is available" in problems[0].message


def test_start_on_server_needs_a_server_that_sees_the_disks_and_has_the_memory(fleet):
    from xencenter_lite.core.power import check_start_on

    vm = fleet.vm("build-1", "lab-a2", state=VmState.HALTED)  # its disk on the shared SR
    snap = fleet.snapshot()
    assert check_start_on(snap, vm, "lab-a1") == []
    assert check_start_on(snap, vm, "lab-a2") == []  # its own server: Start
    (refusal,) = check_start_on(snap, vm, "lab-b1")
    assert refusal.code == "DISKS_NOT_VISIBLE" and "Migrate it there" in refusal.message
    saved = fleet.vm("saved-1", "lab-a2", state=VmState.HALTED, managed_save=True)
    assert [p.code for p in check_start_on(fleet.snapshot(), saved, "lab-a1")] == [
        "VM_HAS_SAVED_STATE"]
    running = fleet.vm("web-9", "lab-a2")
    assert [p.code for p in check_start_on(fleet.snapshot(), running, "lab-a1")] == [
        "VM_STATE"]
    fleet.server("lab-a1", free_memory=vm.memory // 2)
    assert [p.code for p in check_start_on(fleet.snapshot(), vm, "lab-a1")] == [
        "NOT_ENOUGH_MEMORY"]
