"""Checks that refuse a bad migration before a single byte moves.

Plans are checked together (several VMs to one server share its memory, several disks on
one SR share its space) and every problem is reported at once, each with a stable code and
a sentence an operator understands.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum, StrEnum

from xencenter_lite.core.model import (
    VM,
    Sharing,
    Snapshot,
    VmState,
    describe_nic_target,
    parse_nic_target,
)
from xencenter_lite.core.plan import DataPath, DiskMovePlan, MigrationKind, MigrationPlan
from xencenter_lite.core.units import MIB, format_bytes, format_duration


class Severity(Enum):
    ERROR = "error"
    WARNING = "warning"


class Code(StrEnum):
    """What a problem is, for code to act on (menus, the wizard, --json); its words are in
    Problem.message. The value is the name, as `--json` gives it."""

    BAD_NAME = "BAD_NAME"
    CHECK_FAILED = "CHECK_FAILED"  # the check itself could not run (the console says why)
    CD_NOT_VISIBLE = "CD_NOT_VISIBLE"
    COPY_NEEDS_HALTED = "COPY_NEEDS_HALTED"
    CPU_INCOMPATIBLE = "CPU_INCOMPATIBLE"
    DESTINATION_DISCONNECTED = "DESTINATION_DISCONNECTED"
    DESTINATION_IN_MAINTENANCE = "DESTINATION_IN_MAINTENANCE"
    DESTINATION_UNKNOWN = "DESTINATION_UNKNOWN"
    DISKS_NOT_VISIBLE = "DISKS_NOT_VISIBLE"
    DISK_UNSUPPORTED = "DISK_UNSUPPORTED"
    DMC_SQUEEZE = "DMC_SQUEEZE"
    DUPLICATE_VM = "DUPLICATE_VM"
    ESTIMATE = "ESTIMATE"
    HA_ENABLED = "HA_ENABLED"
    MANAGEMENT_NETWORK = "MANAGEMENT_NETWORK"
    MIGRATION_RUNNING = "MIGRATION_RUNNING"
    NAME_IN_USE = "NAME_IN_USE"
    NETWORK_UNKNOWN = "NETWORK_UNKNOWN"
    NIC_BRIDGE_UNKNOWN = "NIC_BRIDGE_UNKNOWN"
    NIC_NETWORK_INACTIVE = "NIC_NETWORK_INACTIVE"
    NIC_NETWORK_MISSING = "NIC_NETWORK_MISSING"
    NIC_NETWORK_UNKNOWN = "NIC_NETWORK_UNKNOWN"
    NOT_ENOUGH_MEMORY = "NOT_ENOUGH_MEMORY"
    NOT_ENOUGH_SPACE = "NOT_ENOUGH_SPACE"
    NO_SR_CHOSEN = "NO_SR_CHOSEN"
    OFFLINE_MOVE = "OFFLINE_MOVE"
    PCI_PASSTHROUGH = "PCI_PASSTHROUGH"
    PERFORMANCE = "PERFORMANCE"
    PLAN_FAILED = "PLAN_FAILED"
    SAME_HOST = "SAME_HOST"
    SAME_SERVER = "SAME_SERVER"
    SAME_SR = "SAME_SR"
    SAVED_STATE_NOT_COPIED = "SAVED_STATE_NOT_COPIED"
    SNAPSHOTS_NOT_COPIED = "SNAPSHOTS_NOT_COPIED"
    SOURCE_DISCONNECTED = "SOURCE_DISCONNECTED"
    SR_NOT_SHARED = "SR_NOT_SHARED"
    SR_NOT_VISIBLE = "SR_NOT_VISIBLE"
    SR_REFUSED = "SR_REFUSED"
    SR_UNSUPPORTED = "SR_UNSUPPORTED"
    UNKNOWN_DISK = "UNKNOWN_DISK"
    UNKNOWN_NIC = "UNKNOWN_NIC"
    VM_GONE = "VM_GONE"
    VM_HAS_SAVED_STATE = "VM_HAS_SAVED_STATE"
    VM_HAS_SNAPSHOTS = "VM_HAS_SNAPSHOTS"
    VM_NOT_RUNNING = "VM_NOT_RUNNING"
    VM_STATE = "VM_STATE"
    VM_STATE_UNSUPPORTED = "VM_STATE_UNSUPPORTED"


@dataclass(frozen=True)
class Problem:
    code: Code
    message: str
    vm: str = ""
    severity: Severity = Severity.ERROR

    @property
    def blocking(self) -> bool:
        return self.severity is Severity.ERROR

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "severity": self.severity.value, "vm": self.vm,
                "message": self.message}


def _err(code: Code, vm: VM | None, message: str) -> Problem:
    return Problem(code, message, vm.name if vm else "")


def _warn(code: Code, vm: VM | None, message: str) -> Problem:
    return Problem(code, message, vm.name if vm else "", Severity.WARNING)


def blocking(problems: Iterable[Problem]) -> list[Problem]:
    return [p for p in problems if p.blocking]


def _vm_free(snapshot: Snapshot, vm: VM, busy: set[tuple[str, str]]) -> list[Problem]:
    """Its server answers and nothing else is moving it."""
    out: list[Problem] = []
    src = snapshot.servers.get(vm.server)
    if src is not None and not src.connected:
        out.append(_err(Code.SOURCE_DISCONNECTED, vm,
                        f"The VM's server '{vm.server}' is not connected; reconnect it first."))
    if vm.key in busy or vm.job_running:
        out.append(_err(Code.MIGRATION_RUNNING, vm,
                        f"'{vm.name}' already has a migration or disk move running; wait for "
                        "it to finish or cancel it."))
    return out


MOVABLE_STATES = frozenset({VmState.RUNNING, VmState.PAUSED, VmState.HALTED})


def _snapshots(vm: VM, what: str) -> list[Problem]:
    if vm.snapshots <= 0:
        return []
    count = "a snapshot" if vm.snapshots == 1 else f"{vm.snapshots} snapshots"
    return [_err(Code.VM_HAS_SNAPSHOTS, vm,
                 f"'{vm.name}' has {count}, which {what} would lose (libvirt keeps them only "
                 "with the VM's current disks on its current server). Delete them first "
                 f"(virsh snapshot-list {vm.name}; virsh snapshot-delete {vm.name} NAME), "
                 "or keep the VM where it is.")]


def check_vm_movable(snapshot: Snapshot, vm: VM, busy: set[tuple[str, str]]) -> list[Problem]:
    """What stops this VM from moving anywhere at all."""
    out = _vm_free(snapshot, vm, busy)
    if vm.state not in MOVABLE_STATES:
        fix = {VmState.SUSPENDED: "Wake it up (virsh dompmwakeup) or shut it down first.",
               }.get(vm.state, "Force Shut Down it first.")
        out.append(_err(Code.VM_STATE_UNSUPPORTED, vm,
                        f"'{vm.name}' is {vm.state.value}: only a running, paused or halted VM "
                        f"can be migrated. {fix}"))
    if vm.has_hostdev:
        out.append(_err(Code.PCI_PASSTHROUGH, vm,
                        f"'{vm.name}' has a PCI device passed through; remove the device "
                        "before migrating it."))
    out += _snapshots(vm, "a migration")
    return out


def check_destination(snapshot: Snapshot, vm: VM, destination: str) -> list[Problem]:
    """Whether `destination` can take `vm` at all (used for menus and drop targets)."""
    dest = snapshot.servers.get(destination)
    if dest is None:
        return [_err(Code.DESTINATION_UNKNOWN, vm,
                     f"There is no server named '{destination}' in the inventory.")]
    if destination == vm.server:
        return [_err(Code.SAME_SERVER, vm, f"'{vm.name}' is already on '{destination}' "
                     "(Current server); choose another server.")]
    if not dest.connected:
        return [_err(Code.DESTINATION_DISCONNECTED, vm,
                     f"'{destination}' is not connected"
                     + (f" ({dest.error})" if dest.error else "")
                     + "; reconnect it or choose another server.")]
    if dest.maintenance:
        return [_err(Code.DESTINATION_IN_MAINTENANCE, vm,
                     f"'{destination}' is in maintenance mode; choose another server, or "
                     "take it out of maintenance mode first.")]
    src = snapshot.servers.get(vm.server)
    if src is not None and dest.host_uuid and dest.host_uuid == src.host_uuid:
        return [_err(Code.SAME_HOST, vm, f"'{destination}' and '{vm.server}' are the same server "
                     f"(host UUID {dest.host_uuid}) under two names; '{vm.name}' is already "
                     "there. Remove one of the two from the inventory.")]
    return name_clash(snapshot, vm.name, destination, vm.uuid)


# What the wizard's Networking page (or --nic) puts right: not a reason to rule a server out.
NIC_CODES = frozenset({Code.NIC_NETWORK_MISSING, Code.NIC_NETWORK_INACTIVE, Code.UNKNOWN_NIC})


def nic_problems(snapshot: Snapshot, plan: MigrationPlan) -> list[Problem]:
    """Each NIC must find its network or bridge on the destination (libvirt would refuse the
    VM there a moment later, in words the operator never sees)."""
    dest = snapshot.servers.get(plan.destination)
    vm = plan.vm
    if dest is None or not dest.connected or plan.destination == vm.server:
        return []
    out: list[Problem] = []
    choices = ", ".join(dest.nic_targets) or "none"
    for p in plan.nics:
        if not p.target:
            continue  # user-mode, direct (macvtap)...: nothing of the server's to look up
        kind, name = parse_nic_target(p.target)
        what = ("the chosen " if p.mapped else "") + describe_nic_target(p.target)
        fix = (f"plug it into one of '{plan.destination}''s networks or bridges ({choices}) "
               f"with --nic {p.nic.mac}=NETWORK or --nic {p.nic.mac}=bridge:NAME (the "
               "wizard's Networking page), or create it there first.")
        lead = f"NIC {p.nic.mac} of '{vm.name}' goes to {what}, "
        if kind == "network" and not dest.networks_known:
            out.append(_warn(Code.NIC_NETWORK_UNKNOWN, vm, lead + f"and libvirt on "
                             f"'{plan.destination}' cannot list its networks: make sure it "
                             "has one of that name."))
        elif kind == "network":
            net = dest.virtual_network(name)
            if net is None:
                out.append(_err(Code.NIC_NETWORK_MISSING, vm, lead + f"which '{plan.destination}' "
                                "does not have; " + fix))
            elif not net.active:
                out.append(_err(Code.NIC_NETWORK_INACTIVE, vm, lead + f"which is not active on "
                                f"'{plan.destination}'; start it there (virsh net-start "
                                f"{name}), or " + fix))
        elif name not in dest.bridges:
            # (No network or running VM there uses it: it may still exist. libvirt's
            # interface driver could tell, but is not safe to call.)
            out.append(_warn(Code.NIC_BRIDGE_UNKNOWN, vm, lead + f"which no network or running "
                             f"VM on '{plan.destination}' uses: make sure it exists there, or "
                             + fix))
    return out


def name_clash(snapshot: Snapshot, name: str, server: str, uuid: str = "") -> list[Problem]:
    """libvirt keeps one domain per name on a server: another VM called `name` there refuses
    the arrival (a definition of the same VM, same UUID, is replaced)."""
    other = next((v for v in snapshot.vms_on(server) if v.name == name and v.uuid != uuid),
                 None)
    if other is None:
        return []
    return [Problem(Code.NAME_IN_USE, f"'{server}' already has a VM named '{name}' "
                    f"({other.state.value}, UUID {other.uuid}); rename one of them (virsh "
                    "domrename) or choose another server.", name)]


def cpu_problems(snapshot: Snapshot, plan: MigrationPlan) -> list[Problem]:
    """A VM that runs while it moves (live, or a halted VM sent directly, started paused)
    needs its CPU on the destination: libvirt would refuse the migration, or the guest
    would find features gone. What the destination's hypervisor said about this CPU."""
    vm, dest = plan.vm, snapshot.servers.get(plan.destination)
    if plan.data_path not in (DataPath.LIVE, DataPath.DIRECT) or dest is None \
            or not vm.cpu_key:
        return []
    why = dest.cpu_refusals.get(vm.cpu_key)
    if why is None:
        return []
    model = _CPU_MODEL.search(vm.cpu)
    named = f" ({model.group(1)})" if model else ""
    lacks = why.split("required features:", 1)[-1].strip() if "required features:" in why \
        else why
    return [_err(Code.CPU_INCOMPATIBLE, vm,
                 f"'{plan.destination}' cannot run the CPU of '{vm.name}'{named}: it lacks "
                 f"{lacks}. Choose a server with those CPU features, or shut '{vm.name}' "
                 "down and give it a CPU model every server has (virsh edit: <cpu "
                 "mode='custom'><model>...</model></cpu>, or host-model).")]


_CPU_MODEL = re.compile(r"<model[^>]*>\s*([^<\s]+)\s*</model>")


def check_plans(
    snapshot: Snapshot,
    plans: Iterable[MigrationPlan],
    busy: set[tuple[str, str]] = frozenset(),  # type: ignore[assignment]
) -> list[Problem]:
    """Every problem with these plans, taken together."""
    plans = list(plans)
    out: list[Problem] = []
    memory_needed: dict[str, list[MigrationPlan]] = defaultdict(list)
    space_needed: dict[tuple[str, str], list[tuple[MigrationPlan, int]]] = defaultdict(list)
    seen: set[tuple[str, str]] = set()

    for plan in plans:
        vm = plan.vm
        if vm.key in seen:
            out.append(_err(Code.DUPLICATE_VM, vm, f"'{vm.name}' is listed twice; list it once."))
            continue
        seen.add(vm.key)
        out += check_vm_movable(snapshot, vm, busy)
        dest_problems = check_destination(snapshot, vm, plan.destination)
        out += dest_problems
        if dest_problems:
            continue
        if plan.needs_memory:
            memory_needed[plan.destination].append(plan)
        if vm.managed_save and plan.data_path is not DataPath.DIRECT:
            out.append(_err(Code.VM_HAS_SAVED_STATE, vm,
                            f"'{vm.name}' has a saved state (managed save), which only a direct "
                            "move keeps (it is restored paused, migrated, and saved again "
                            "there); through the console it would be lost. Move it directly, "
                            "or start it (it resumes where it was) and migrate it running."))

        for mac in plan.unknown_macs:
            out.append(_err(Code.UNKNOWN_NIC, vm, f"'{vm.name}' has no NIC {mac}; its NICs are "
                            f"{', '.join(n.mac for n in vm.nics) or 'none'}."))
        out += nic_problems(snapshot, plan)
        out += cpu_problems(snapshot, plan)
        for dev in plan.unknown_devs:
            out.append(_err(Code.UNKNOWN_DISK, vm, f"'{vm.name}' has no disk '{dev}'; its disks "
                            f"are {', '.join(d.dev for d in vm.hard_disks) or 'none'}."))
        if plan.uses_network and (plan.network is None or plan.address is None):
            name = plan.network or "(none)"
            out.append(_err(Code.NETWORK_UNKNOWN, vm,
                            f"'{plan.destination}' has no address on network '{name}'; choose "
                            "one of its networks: "
                            f"{', '.join(sorted(snapshot.servers[plan.destination].addresses))}."))

        for disk in plan.disks:
            if not disk.supported:
                out.append(_err(Code.DISK_UNSUPPORTED, vm, unsupported_disk(snapshot, vm,
                                                                         disk.dev)))
                continue
            if not disk.copy:
                continue
            if disk.loose and plan.data_path is DataPath.STREAM:
                out.append(_err(Code.DISK_UNSUPPORTED, vm, _loose_streamed(vm, disk.dev,
                                                                       disk.source_path)))
                continue
            if disk.target_sr is None:
                out.append(_err(Code.NO_SR_CHOSEN, vm,
                                f"No SR chosen for disk {disk.dev} of '{vm.name}' and "
                                f"'{plan.destination}' has no default SR; choose one with "
                                "--sr or --disk DEV=SR."))
                continue
            sr = snapshot.sr(plan.destination, disk.target_sr)
            if sr is None or not sr.active:
                out.append(_err(Code.SR_NOT_VISIBLE, vm,
                                f"SR '{disk.target_sr}' cannot be seen from "
                                f"'{plan.destination}'; choose an SR of that server."))
                continue
            if not sr.supported:
                out.append(_err(Code.SR_UNSUPPORTED, vm,
                                f"SR '{sr.name}' on '{plan.destination}' is of type '{sr.type}', "
                                "which cannot receive migrated disks; choose a directory, "
                                "file-system or NFS SR."))
                continue
            space_needed[(plan.destination, sr.name)].append((plan, disk.capacity))

        if plan.kind is MigrationKind.STORAGE:
            pool = snapshot.pool_of(vm.server)
            if pool is not None and pool.ha_enabled:
                out.append(_err(Code.HA_ENABLED, vm,
                                f"Pool '{pool.name}' has HA enabled: disable HA first, then "
                                "migrate the VM with its storage."))

        for cd in (d for d in vm.disks if d.is_cdrom and d.path):
            assert cd.path is not None
            if snapshot.sr_for_path(plan.destination, cd.path) is None:
                out.append(_err(Code.CD_NOT_VISIBLE, vm,
                                f"'{vm.name}' has a CD inserted ({cd.path}) that "
                                f"'{plan.destination}' cannot see; eject the CD first."))

    for dest, dest_plans in memory_needed.items():
        need = sum(p.needs_memory for p in dest_plans)
        have = snapshot.memory_available(dest)
        if need <= have:
            continue
        names = ", ".join(f"'{p.vm.name}'" for p in dest_plans)
        with_dmc = snapshot.memory_available_with_dmc(dest)
        for p in dest_plans:
            if need <= with_dmc:
                out.append(_warn(Code.DMC_SQUEEZE, p.vm,
                                 f"Will free {format_bytes(need - have)} on '{dest}' using "
                                 "Dynamic Memory Control (its VMs are ballooned down towards "
                                 "their dynamic minimum)."))
            else:
                dmc = (f" (or {format_bytes(with_dmc)} after Dynamic Memory Control)"
                       if with_dmc > have else "")
                out.append(_err(Code.NOT_ENOUGH_MEMORY, p.vm,
                                f"Not enough memory on '{dest}': {names} need "
                                f"{format_bytes(need)}, {format_bytes(have)} is available"
                                f"{dmc}. Free memory there or choose another server."))

    for (dest, sr_name), uses in space_needed.items():
        sr = snapshot.sr(dest, sr_name)
        assert sr is not None
        need = sum(size for _, size in uses)
        if need > sr.available:
            for plan in {id(p): p for p, _ in uses}.values():
                out.append(_err(Code.NOT_ENOUGH_SPACE, plan.vm,
                                f"Not enough free space on SR '{sr_name}' of '{dest}': "
                                f"{format_bytes(need)} required, {format_bytes(sr.available)} "
                                "available. Choose another SR or free space on it."))

    if not blocking(out):
        out += warnings_for(snapshot, plans)
    return list(dict.fromkeys(out))  # once each: two disks bound for one missing SR say so once


def unsupported_disk(snapshot: Snapshot, vm: VM, dev: str) -> str:
    """What the disk is, and what to do so that it can move."""
    d = vm.disk(dev)
    lead = f"Disk {dev} of '{vm.name}' "
    move = ("copy it onto a directory, file-system or NFS SR first (Move Virtual Disk, "
            "move-disk), or keep the VM where it is.")
    if d is None:
        return lead + "is not known."
    if d.source_type == "block":
        return lead + f"is a block device ({d.path}), which only a copy to an SR can move: " \
            + move
    if d.source_type not in ("file", "volume"):
        return lead + f"is a {d.source_type} disk ({d.path or 'no local file'}), which "\
            "cannot be copied between servers here; keep the VM where it is, or " + move
    if d.path is None:
        return lead + "has no file."
    if d.sr is None:
        return (lead + f"is the file {d.path}, in no SR (storage pool) of "
                f"'{vm.server}': a migration copies it to an SR of the destination (and "
                "leaves the file), but nothing else can read it through an SR. Make its "
                f"directory an SR ({_make_sr(d.path)}), or migrate the VM.")
    sr = snapshot.sr(vm.server, d.sr)
    kind = f" of type '{sr.type}'" if sr is not None else ""
    return (lead + f"is on SR '{d.sr}'{kind}, which this console cannot copy from: " + move)


def _make_sr(path: str | None) -> str:
    """How to make the directory of a file in no SR an SR."""
    folder = (path or "").rsplit("/", 1)[0] or "/"
    return f"virsh pool-define-as NAME dir --target {folder}; virsh pool-start NAME"


def _loose_streamed(vm: VM, dev: str, path: str | None) -> str:
    return (f"Disk {dev} of '{vm.name}' is the file {path}, in no SR (storage pool) of "
            f"'{vm.server}': a halted VM's disks are streamed through SRs. Move it directly "
            "(--via direct: libvirt copies the file, as for a running VM; both servers need "
            f"the memory to hold it paused), or make its directory an SR ({_make_sr(path)}).")


def squeeze_targets(snapshot: Snapshot, server: str, need: int) -> list[tuple[VM, int]]:
    """Balloon targets (VM, bytes) on `server` that free enough for `need` more bytes.

    Squeezes the VMs with the most to give first, never below their dynamic minimum.
    Empty when nothing has to be freed; short of `need` when DMC cannot free enough."""
    missing = need - snapshot.memory_available(server)
    targets: list[tuple[VM, int]] = []
    for vm in sorted(snapshot.vms_on(server), key=lambda v: v.reclaimable, reverse=True):
        if missing <= 0 or vm.reclaimable <= 0:
            break
        take = min(vm.reclaimable, missing)
        targets.append((vm, vm.memory_in_use - take))
        missing -= take
    return targets


def stream_bytes(plan: MigrationPlan) -> int:
    """What a halted VM's move sends through the console: each copied disk's allocated data
    (holes are not sent), then reads back to verify."""
    copied = {d.dev for d in plan.copied_disks}
    return sum(d.allocation or d.capacity for d in plan.vm.hard_disks if d.dev in copied)


def estimate_seconds(snapshot: Snapshot, plan: MigrationPlan) -> float | None:
    """How long the copy takes at the network's rate, or at the migration's bandwidth cap
    where that is lower (None: neither is known). A halted VM's disks go over the
    management network twice (sent, then read back); its definition alone takes no time."""
    if plan.data_path is DataPath.DEFINITION:
        return 0.0
    if plan.data_path is DataPath.STREAM:
        mgmt = snapshot.networks.get(snapshot.management_network() or "")
        return 2 * stream_bytes(plan) / mgmt.rate if mgmt is not None and mgmt.rate else None
    net = snapshot.networks.get(plan.network or "")
    rates = [r for r in (net.rate if net is not None else None,
                         plan.bandwidth_mib_s * MIB if plan.bandwidth_mib_s else None) if r]
    if not rates:
        return None
    # (A halted VM sent directly: libvirt copies the disks' allocated data; its paused
    # memory was never used.)
    size = plan.bytes_to_copy
    if plan.data_path is DataPath.DIRECT:  # (a saved state's memory goes too)
        size = stream_bytes(plan) + (plan.vm.memory if plan.vm.managed_save else 0)
    return size / min(rates)


def warnings_for(snapshot: Snapshot, plans: Iterable[MigrationPlan]) -> list[Problem]:
    out: list[Problem] = []
    mgmt = snapshot.management_network()
    for plan in plans:
        vm = plan.vm
        for d in plan.copied_disks:
            src = snapshot.sr(vm.server, d.source_sr) if d.source_sr else None
            there = snapshot.sr(plan.destination, d.source_sr) if d.source_sr else None
            if src is None or there is None or there.path != src.path:
                continue
            if src.sharing is Sharing.NOT_SHARED:
                why = "is not the same storage there (a file made on one was not seen on " \
                      "the other)"
            elif src.sharing is Sharing.UNVERIFIED:
                why = "could not be proven to be the same storage there"
            else:
                continue
            out.append(_warn(Code.SR_NOT_SHARED, vm,
                             f"Disk {d.dev} of '{vm.name}' is on SR '{d.source_sr}', which "
                             f"'{plan.destination}' has under the same name and path but "
                             f"{why}: it is copied to SR '{d.target_sr}'."))
        if plan.offline:
            out += _offline_notes(snapshot, plan)
            continue
        out.append(_warn(Code.PERFORMANCE, vm,
                         f"'{vm.name}' will run slower while it is being migrated."))
        if mgmt is not None and plan.network == mgmt:
            out.append(_warn(Code.MANAGEMENT_NETWORK, vm,
                             "Due to performance reasons, it is recommended that you do not "
                             "use your management network for live migration."))
        secs = estimate_seconds(snapshot, plan)
        size = format_bytes(plan.bytes_to_copy)
        what = "memory and disks" if plan.kind is MigrationKind.STORAGE else "memory"
        if secs is not None:
            out.append(_warn(Code.ESTIMATE, vm,
                             f"About {format_duration(secs)} to copy {size} of {what} over "
                             f"the '{plan.network}' network."))
    return out


def _offline_notes(snapshot: Snapshot, plan: MigrationPlan) -> list[Problem]:
    """What an operator is told of a halted VM's move: how its data goes, and how long."""
    vm = plan.vm
    if plan.data_path is DataPath.DEFINITION:
        return [_warn(Code.OFFLINE_MOVE, vm, f"'{vm.name}' is halted and its disks stay where "
                      f"they are: only its definition moves to '{plan.destination}'.")]
    data = format_bytes(stream_bytes(plan))
    if plan.data_path is DataPath.DIRECT:
        if vm.managed_save:
            how = (f"'{vm.name}' is halted with a saved state: it is restored paused on "
                   f"'{vm.server}' (no guest code runs), migrated to '{plan.destination}' "
                   f"over the '{plan.network}' network, and saved again there: Start "
                   "resumes it where it was.")
        else:
            how = (f"'{vm.name}' is halted: it is started paused on '{vm.server}' (no guest "
                   "code runs), libvirt sends its disks straight to "
                   f"'{plan.destination}' over the '{plan.network}' network, and it is "
                   "turned off there: it stays halted."
                   + ("" if plan.path_chosen else " Should it not start paused, its disks "
                      "go through this console instead."))
        what = (f"to copy {data} of disk data"
                + (" and its saved memory" if vm.managed_save else ""))
        network = plan.network
    else:
        how = (f"'{vm.name}' is halted: its disks are copied through this console (libvirt "
               f"volume streams, holes not sent), read back from '{plan.destination}' to "
               "verify them, and only then is it defined there and removed from "
               f"'{vm.server}'. It stays halted.")
        what = f"to copy and verify {data} of disk data"
        network = snapshot.management_network()
    out = [_warn(Code.OFFLINE_MOVE, vm, how)]
    secs = estimate_seconds(snapshot, plan)
    if secs is not None:
        out.append(_warn(Code.ESTIMATE, vm, f"About {format_duration(secs)} {what} over the "
                         f"'{network}' network."))
    return out


def sr_refusal(snapshot: Snapshot, server: str, sr_name: str, needed: int,
               current_sr: str | None = None) -> tuple[Code, str] | None:
    """Why a disk of `needed` bytes cannot go to SR `sr_name` on `server`, as (code, the
    reason in a few words); None: it can."""
    if current_sr is not None and sr_name == current_sr:
        return Code.SAME_SR, "Current location"
    sr = snapshot.sr(server, sr_name)
    if sr is None or not sr.active:
        return Code.SR_NOT_VISIBLE, f"Not visible from {server}"
    if not sr.supported:
        return Code.SR_UNSUPPORTED, "Unsupported SR type"
    if needed > sr.available:
        return Code.NOT_ENOUGH_SPACE, (f"Not enough space: {format_bytes(needed)} required, "
                                       f"{format_bytes(sr.available)} available")
    return None


def check_disk_move(snapshot: Snapshot, plan: DiskMovePlan,
                    busy: set[tuple[str, str]] = frozenset()) -> list[Problem]:  # type: ignore[assignment]
    vm = plan.vm
    out = _vm_free(snapshot, vm, busy)
    if vm.state not in (VmState.RUNNING, VmState.HALTED):
        at = 1 if out and out[0].code == Code.SOURCE_DISCONNECTED else 0
        out.insert(at, _err(Code.VM_NOT_RUNNING, vm,
                            f"'{vm.name}' is {vm.state.value}: a disk moves while the VM runs "
                            "(live) or while it is halted. Resume it or shut it down first."))
    if vm.managed_save:
        out.append(_err(Code.VM_HAS_SAVED_STATE, vm,
                        f"'{vm.name}' has a saved state that refers to its disks where they "
                        "are. Start it (it resumes) and move the disk live, or discard the "
                        f"saved state (virsh managedsave-remove {vm.name})."))
    out += _snapshots(vm, "moving a disk")
    disk = vm.disk(plan.dev)
    if disk is None or disk.is_cdrom:
        out.append(_err(Code.UNKNOWN_DISK, vm, f"'{vm.name}' has no disk '{plan.dev}'; its disks "
                        f"are {', '.join(d.dev for d in vm.hard_disks) or 'none'}."))
        return out
    if disk.is_file and disk.sr is None:
        out.append(_err(Code.DISK_UNSUPPORTED, vm, unsupported_disk(snapshot, vm, disk.dev)))
        return out
    if not disk.is_file or disk.sr is None:
        out.append(_err(Code.DISK_UNSUPPORTED, vm, f"Disk {disk.dev} of '{vm.name}' is not a file "
                        "on an SR, and cannot be moved."))
        return out
    refused = sr_refusal(snapshot, vm.server, plan.target_sr, disk.capacity, disk.sr)
    if refused is not None:
        code, reason = refused
        out.append(_err(code, vm, f"Cannot move disk {disk.dev} of '{vm.name}' to SR "
                        f"'{plan.target_sr}': {reason}."))
    return out


def dynamic_range_problem(vm_name: str, static_max: int, dynamic_min: int,
                          dynamic_max: int) -> str | None:
    """Why a Dynamic Memory Control range cannot be set, in words (None: it can).

    The bounds XenServer keeps: 0 < minimum <= maximum <= static maximum, and the minimum at
    least a quarter of the static maximum (a guest squeezed further may stop working)."""
    if not 0 < dynamic_min <= dynamic_max <= static_max:
        return (f"The dynamic range of '{vm_name}' must satisfy 0 < minimum <= maximum <= "
                f"{format_bytes(static_max)} (its static maximum).")
    quarter = -(-static_max // 4)
    if dynamic_min < quarter:
        return (f"The dynamic minimum of '{vm_name}' ({format_bytes(dynamic_min)}) is below a "
                f"quarter of its static maximum ({format_bytes(quarter)} of "
                f"{format_bytes(static_max)}): a guest squeezed further may stop working. "
                f"Raise the minimum to {format_bytes(quarter)} or more.")
    return None
