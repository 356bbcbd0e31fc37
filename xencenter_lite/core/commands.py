"""Whether a command can run on what is selected, and why not: as XenCenter's
Command.CanRun and GetCantRunReason. The menus, the toolbar, the context menus and a drag
over the tree ask the same function, so an entry is never offered in one place and refused
in another.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from xencenter_lite.core.checks import (
    MOVABLE_STATES,
    Code,
    Problem,
    check_destination,
    check_plans,
    check_vm_movable,
)
from xencenter_lite.core.model import SR, VM, Snapshot, VmState
from xencenter_lite.core.plan import MigrationRequest, build_plan
from xencenter_lite.core.reasons import first_refusal


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str = ""  # why not, in words ("" when it can)

    @classmethod
    def yes(cls) -> Verdict:
        return cls(True)

    @classmethod
    def no(cls, reason: str) -> Verdict:
        return cls(False, reason)


@dataclass(frozen=True)
class DefaultSrOwner:
    """Whose default SR an SR would become: its server's pool, or a standalone server."""

    kind: str  # "pool" or "server"
    name: str
    current: str | None  # its default SR now

    def __str__(self) -> str:
        return f"pool '{self.name}'" if self.kind == "pool" else f"'{self.name}'"


def default_sr_owner(snap: Snapshot, sr: SR) -> DefaultSrOwner:
    pool = snap.pool_of(sr.server)
    if pool is not None:
        return DefaultSrOwner("pool", pool.name, pool.default_sr)
    server = snap.servers.get(sr.server)
    return DefaultSrOwner("server", sr.server, server.default_sr if server else None)


def can_set_default_sr(snap: Snapshot, sr: SR) -> Verdict:
    """Whether `sr` can become the default SR of its pool (or of its standalone server): the
    SR disks go to when a migration or a copy names none. A pool's default is an SR name each
    member uses, so every member must have an active SR of that name."""
    owner = default_sr_owner(snap, sr)
    if owner.current == sr.name:
        return Verdict.no(f"'{sr.name}' is already the default SR of {owner}")
    if not sr.active:
        return Verdict.no(f"'{sr.name}' is inactive: start it first")
    if not sr.supported:
        return Verdict.no(f"'{sr.name}' is a {sr.type} SR: new disks cannot be made on it")
    if owner.kind == "pool":
        pool = snap.pools[owner.name]
        for member in pool.members:
            if member not in snap.servers or not snap.servers[member].connected:
                return Verdict.no(f"'{member}' is not connected: whether it has an SR named "
                                  f"'{sr.name}' cannot be seen; connect it first")
            there = snap.sr(member, sr.name)
            if there is None or not there.active:
                return Verdict.no(f"'{member}' has no active SR named '{sr.name}': every "
                                  f"member of pool '{pool.name}' must have it")
    return Verdict.yes()


# ---- VM commands (the selection is the VMs chosen in the tree) --------------------------------
Busy = set[tuple[str, str]] | frozenset[tuple[str, str]]


def _one_vm(vms: Sequence[VM | None], what: str) -> VM | Verdict:
    if len(vms) != 1 or vms[0] is None:
        return Verdict.no(f"Select one VM to {what}")
    return vms[0]


def _connected(snap: Snapshot, vm: VM) -> Verdict | None:
    server = snap.servers.get(vm.server)
    if server is None or not server.connected:
        return Verdict.no(f"'{vm.server}' is not connected: Server ▸ Connect, then try again")
    return None


def _moving(vm: VM, busy: Busy) -> Verdict | None:
    if vm.key in busy:
        return Verdict.no(f"'{vm.name}' is being migrated or has a disk being moved")
    return None


def can_migrate(snap: Snapshot, vms: Sequence[VM | None], busy: Busy) -> Verdict:
    """Migrate VM…, Migrate to Server, a drag: every selected VM running, paused or halted,
    and none being moved already. (Whether a destination can take them is the checks'.)"""
    if not vms or any(v is None for v in vms):
        return Verdict.no("Select the VMs to migrate")
    for vm in vms:
        assert vm is not None
        if (why := _connected(snap, vm) or _moving(vm, busy)) is not None:
            return why
        if vm.state not in MOVABLE_STATES:
            return Verdict.no(f"'{vm.name}' is {vm.state.value}: a VM migrates running, "
                              "paused or halted")
    return Verdict.yes()


def migrate_refusal(snap: Snapshot, keys: Sequence[tuple[str, str]], destination: str,
                    busy: Busy) -> Problem | None:
    """Why these VMs cannot go to `destination`, from the snapshot alone (fast enough to run
    on every mouse move of a drag; the job checks everything again before it moves a byte)."""
    vms = [snap.vm(k) for k in keys]
    if not vms or any(v is None for v in vms):
        return Problem(Code.VM_GONE, "The VM no longer exists; the tree is being refreshed.")
    problems: list[Problem] = []
    for vm in vms:
        assert vm is not None
        problems += check_destination(snap, vm, destination)
        problems += check_vm_movable(snap, vm, set(busy))
    if not problems:
        plans = [build_plan(snap, vm, MigrationRequest(vm.key, destination))
                 for vm in vms if vm is not None]
        problems = [p for p in check_plans(snap, plans, set(busy))
                    if p.code == Code.NOT_ENOUGH_MEMORY]
    return first_refusal(problems)


def can_migrate_to(snap: Snapshot, keys: Sequence[tuple[str, str]], destination: str,
                   busy: Busy) -> Verdict:
    """A drop of VMs on a server: they go there (the wizard finds SRs and networks)."""
    problem = migrate_refusal(snap, keys, destination, busy)
    return Verdict.no(problem.message) if problem is not None else Verdict.yes()


def can_migrate_to_pool(snap: Snapshot, keys: Sequence[tuple[str, str]], pool_name: str,
                        busy: Busy) -> Verdict:
    """A drop on a pool, as XenCenter's: the wizard opens with the pool as destination (its
    Home Server page picks the member), so any member that can take them will do. Refused,
    the reason worth reading is a member's own, not "it is already on this one"."""
    pool = snap.pools.get(pool_name)
    refusals = [migrate_refusal(snap, keys, m, busy) for m in (pool.members if pool else ())]
    if any(r is None for r in refusals):
        return Verdict.yes()
    first = next((r for r in refusals if r is not None and r.code != Code.SAME_SERVER),
                 next((r for r in refusals if r is not None), None))
    return Verdict.no(first.message if first is not None else "it has no servers")


def can_move_disk(snap: Snapshot, vms: Sequence[VM | None]) -> Verdict:
    vm = _one_vm(vms, "move one of its disks")
    if isinstance(vm, Verdict):
        return vm
    if not vm.hard_disks:
        return Verdict.no(f"'{vm.name}' has no disk to move")
    return _connected(snap, vm) or Verdict.yes()


def can_copy(snap: Snapshot, vms: Sequence[VM | None], busy: Busy) -> Verdict:
    vm = _one_vm(vms, "copy")
    if isinstance(vm, Verdict):
        return vm
    if vm.state is not VmState.HALTED:
        return Verdict.no(f"'{vm.name}' is {vm.state.value}: a VM is copied halted; shut it "
                          "down first")
    return _moving(vm, busy) or _connected(snap, vm) or Verdict.yes()


def can_edit_memory(snap: Snapshot, vms: Sequence[VM | None]) -> Verdict:
    vm = _one_vm(vms, "set its memory")
    if isinstance(vm, Verdict):
        return vm
    return _connected(snap, vm) or Verdict.yes()
