"""Whether a command can run on what is selected, and why not: as XenCenter's
Command.CanRun and GetCantRunReason. The menus, the toolbar and the context menus ask the
same function, so an entry is never offered in one place and refused in another.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from xencenter_lite.core.checks import MOVABLE_STATES
from xencenter_lite.core.model import SR, VM, Snapshot, VmState


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
