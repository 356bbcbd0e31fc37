"""The VM power operations an operator needs around a move, and what refuses each.

Start, Shut Down (the guest is asked and given a while, then the operator may force it),
Force Shut Down, Reboot, Suspend (pause) and Resume, as XenCenter has them. Pure: the
engine runs them (engine.power), the console and the CLI offer them.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum

from xencenter_lite.core.checks import Code, Problem, blocking, check_destination, check_plans
from xencenter_lite.core.model import VM, Snapshot, VmState
from xencenter_lite.core.plan import DataPath, MigrationRequest, build_plan
from xencenter_lite.core.units import format_bytes


class PowerAction(Enum):
    START = "start"
    SHUTDOWN = "shutdown"
    FORCE_SHUTDOWN = "force-shutdown"
    REBOOT = "reboot"
    SUSPEND = "suspend"
    RESUME = "resume"

    @property
    def label(self) -> str:
        return _LABELS[self][0]

    @property
    def doing(self) -> str:
        return _LABELS[self][1]

    @property
    def states(self) -> frozenset[VmState]:
        """The states the VM may be in for this operation."""
        return _FROM[self]

    @property
    def ends_in(self) -> VmState | None:
        """The state the VM is in once the operation is done (None: it stays running, as
        after a reboot)."""
        return _TO[self]


_LABELS = {
    PowerAction.START: ("Start", "Starting"),
    PowerAction.SHUTDOWN: ("Shut Down", "Shutting down"),
    PowerAction.FORCE_SHUTDOWN: ("Force Shut Down", "Forcing off"),
    PowerAction.REBOOT: ("Reboot", "Rebooting"),
    PowerAction.SUSPEND: ("Suspend", "Suspending"),
    PowerAction.RESUME: ("Resume", "Resuming"),
}
_RUNNING = frozenset({VmState.RUNNING})
_FROM = {
    PowerAction.START: frozenset({VmState.HALTED, VmState.CRASHED}),
    PowerAction.SHUTDOWN: _RUNNING,
    PowerAction.FORCE_SHUTDOWN: frozenset({VmState.RUNNING, VmState.PAUSED, VmState.CRASHED,
                                           VmState.SUSPENDED, VmState.OTHER}),
    PowerAction.REBOOT: _RUNNING,
    PowerAction.SUSPEND: _RUNNING,
    PowerAction.RESUME: frozenset({VmState.PAUSED}),
}
_TO: dict[PowerAction, VmState | None] = {
    PowerAction.START: VmState.RUNNING,
    PowerAction.SHUTDOWN: VmState.HALTED,
    PowerAction.FORCE_SHUTDOWN: VmState.HALTED,
    PowerAction.REBOOT: None,
    PowerAction.SUSPEND: VmState.PAUSED,
    PowerAction.RESUME: VmState.RUNNING,
}


def _states(states: Iterable[VmState]) -> str:
    names = sorted(s.value for s in states)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def check_power(snapshot: Snapshot, vm: VM, action: PowerAction,
                busy: set[tuple[str, str]] | frozenset[tuple[str, str]] = frozenset()
                ) -> list[Problem]:
    """What refuses `action` on `vm` now (empty: it can go ahead)."""
    out: list[Problem] = []
    srv = snapshot.servers.get(vm.server)
    if srv is None or not srv.connected:
        out.append(Problem(Code.SOURCE_DISCONNECTED, f"The VM's server '{vm.server}' is not "
                           "connected; reconnect it first.", vm.name))
        return out
    if vm.key in busy or vm.job_running:
        out.append(Problem(Code.MIGRATION_RUNNING, f"'{vm.name}' is being migrated or has a "
                           "disk being moved; wait for that to end, or cancel it.", vm.name))
    if vm.state not in action.states:
        out.append(Problem(Code.VM_STATE, f"'{vm.name}' is {vm.state.value}; {action.label} "
                           f"needs it {_states(action.states)}.", vm.name))
    if action is PowerAction.START and not out:
        have = snapshot.memory_available(vm.server)
        if vm.memory > have:
            out.append(Problem(Code.NOT_ENOUGH_MEMORY, f"Not enough memory on '{vm.server}' to "
                               f"start '{vm.name}': it needs {format_bytes(vm.memory)}, "
                               f"{format_bytes(have)} is available. Free memory there or "
                               "migrate another VM away first.", vm.name))
    return out


def check_start_on(snapshot: Snapshot, vm: VM, server: str,
                   busy: set[tuple[str, str]] | frozenset[tuple[str, str]] = frozenset()
                   ) -> list[Problem]:
    """What refuses Start on Server: the VM can start, and `server` can take it without a
    disk copy (it sees the VM's disks where they are: a pool member on shared storage),
    with the memory to run it. On its own server this is Start."""
    if server == vm.server:
        return check_power(snapshot, vm, PowerAction.START, busy)
    out = [p for p in check_power(snapshot, vm, PowerAction.START, busy)
           if p.code != Code.NOT_ENOUGH_MEMORY]
    if out:
        return out
    out = check_destination(snapshot, vm, server)
    if out:
        return out
    if vm.managed_save:
        return [Problem(Code.VM_HAS_SAVED_STATE, f"'{vm.name}' has a saved state: start it where "
                        f"it is, on '{vm.server}' (it resumes where it was), or migrate it "
                        f"to '{server}' first (Migrate VM keeps the saved state).", vm.name)]
    plan = build_plan(snapshot, vm, MigrationRequest(vm.key, server))
    if plan.data_path is not DataPath.DEFINITION:
        copied = ", ".join(f"{d.dev} (on {d.source_sr or 'no SR'})" for d in plan.copied_disks)
        return [Problem(Code.DISKS_NOT_VISIBLE, f"'{server}' cannot see the disks of '{vm.name}' "
                        f"where they are: {copied}. Migrate it there with its disks (Migrate "
                        "VM), or start it where it is.", vm.name)]
    out = blocking(check_plans(snapshot, [plan], set(busy) - {vm.key}))
    have = snapshot.memory_available(server)
    if vm.memory > have:
        out.append(Problem(Code.NOT_ENOUGH_MEMORY, f"Not enough memory on '{server}' to start "
                           f"'{vm.name}': it needs {format_bytes(vm.memory)}, "
                           f"{format_bytes(have)} is available.", vm.name))
    return out
