"""Copy VM: a new VM (new name, new UUID, new MAC addresses) with its own copies of the
disks, on the same server or another, halted.

Only a halted VM is copied: a running VM's disks change while they are read, and the one
way to a consistent point-in-time copy of them (a disk snapshot) would leave the VM with a
snapshot that stops it from migrating. The copy keeps the VM's folder and Dynamic Memory
Control range.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from xencenter_lite.core.checks import (
    Code,
    Problem,
    _err,
    _vm_free,
    _warn,
    name_clash,
    sr_refusal,
    unsupported_disk,
)
from xencenter_lite.core.model import VM, Snapshot, VmState
from xencenter_lite.core.plan import default_sr
from xencenter_lite.core.units import format_bytes, format_duration

# libvirt takes almost any name; these keep it usable in file names (the copy's volumes are
# named after it) and in a shell, quoted: XenCenter's "Copy of web-1" is one.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._+-]{0,63}$")


@dataclass(frozen=True)
class CopyRequest:
    vm: tuple[str, str]  # (server, uuid)
    destination: str
    name: str
    sr: str | None = None  # every disk goes here
    disk_srs: dict[str, str] = field(default_factory=dict)  # dev -> SR, wins over `sr`


@dataclass(frozen=True)
class DiskCopyPlan:
    dev: str
    source_path: str | None
    source_sr: str | None
    target_sr: str | None
    capacity: int
    allocation: int
    format: str
    supported: bool

    def volume_name(self, vm_name: str) -> str:
        return f"{vm_name.replace(' ', '-')}-{self.dev}.{self.format}"


@dataclass(frozen=True)
class CopyPlan:
    vm: VM
    destination: str
    name: str
    disks: tuple[DiskCopyPlan, ...]
    unknown_devs: tuple[str, ...] = ()

    @property
    def source(self) -> str:
        return self.vm.server

    @property
    def data_bytes(self) -> int:
        return sum(d.allocation or d.capacity for d in self.disks)


def build_copy_plan(snapshot: Snapshot, vm: VM, request: CopyRequest) -> CopyPlan:
    """Each disk to the SR asked for; else, on the VM's own server, the SR it is on; else
    the destination's default SR."""
    dest = request.destination
    disks = []
    for d in vm.hard_disks:
        target = request.disk_srs.get(d.dev, request.sr)
        if target is None:
            target = d.sr if dest == vm.server and d.sr else default_sr(snapshot, dest)
        sr = snapshot.sr(vm.server, d.sr) if d.sr else None
        supported = d.is_file and sr is not None and sr.supported
        disks.append(DiskCopyPlan(d.dev, d.path, d.sr, target, d.capacity, d.allocation,
                                  d.format, supported))
    devs = {d.dev for d in vm.hard_disks}
    return CopyPlan(vm, dest, request.name.strip(), tuple(disks),
                    tuple(sorted(set(request.disk_srs) - devs)))


def check_copy(snapshot: Snapshot, plan: CopyPlan,
               busy: set[tuple[str, str]] = frozenset()  # type: ignore[assignment]
               ) -> list[Problem]:
    """Every problem with the copy, at once; then what the operator should know."""
    vm, dest = plan.vm, plan.destination
    out = _vm_free(snapshot, vm, busy)
    if vm.state is not VmState.HALTED:
        out.append(_err(Code.COPY_NEEDS_HALTED, vm,
                        f"'{vm.name}' is {vm.state.value}: its disks change while they are "
                        "read, and a consistent copy of a running VM needs a disk snapshot, "
                        "which would then stop it from migrating. Shut it down, then copy "
                        "it."))
    if not _NAME.match(plan.name):
        out.append(_err(Code.BAD_NAME, vm,
                        f"'{plan.name}' cannot name a VM: use 1 to 64 letters, digits, "
                        "spaces, '.', '_', '+' or '-', beginning with a letter or digit."))
    server = snapshot.servers.get(dest)
    if server is None:
        return [*out, _err(Code.DESTINATION_UNKNOWN, vm,
                           f"There is no server named '{dest}' in the inventory.")]
    if not server.connected:
        out.append(_err(Code.DESTINATION_DISCONNECTED, vm,
                        f"'{dest}' is not connected; reconnect it or choose another server."))
        return out
    if _NAME.match(plan.name):
        out += name_clash(snapshot, plan.name, dest)
    for dev in plan.unknown_devs:
        out.append(_err(Code.UNKNOWN_DISK, vm, f"'{vm.name}' has no disk '{dev}'; its disks "
                        f"are {', '.join(d.dev for d in vm.hard_disks) or 'none'}."))
    need: dict[str, int] = {}
    for d in plan.disks:
        if not d.supported:
            out.append(_err(Code.DISK_UNSUPPORTED, vm, unsupported_disk(snapshot, vm, d.dev)))
        elif d.target_sr is None:
            out.append(_err(Code.NO_SR_CHOSEN, vm,
                            f"No SR chosen for disk {d.dev} and '{dest}' has no default SR; "
                            "choose one with --sr or --disk DEV=SR."))
        else:
            need[d.target_sr] = need.get(d.target_sr, 0) + d.capacity
    for sr_name, size in need.items():
        refused = sr_refusal(snapshot, dest, sr_name, size)
        if refused is not None:
            out.append(_err(Code.SR_REFUSED, vm, f"Cannot copy to SR '{sr_name}' of '{dest}': "
                            f"{refused[1]}."))
    for cd in (d for d in vm.disks if d.is_cdrom and d.path):
        assert cd.path is not None
        if snapshot.sr_for_path(dest, cd.path) is None:
            out.append(_err(Code.CD_NOT_VISIBLE, vm,
                            f"'{vm.name}' has a CD inserted ({cd.path}) that '{dest}' cannot "
                            "see; eject the CD first."))
    if any(p.blocking for p in out):
        return out
    if vm.managed_save:
        out.append(_warn(Code.SAVED_STATE_NOT_COPIED, vm,
                         f"'{vm.name}' has a saved state; the copy does not: it starts "
                         "afresh from disks as the saved VM left them."))
    if vm.snapshots:
        out.append(_warn(Code.SNAPSHOTS_NOT_COPIED, vm,
                         f"'{vm.name}' has {vm.snapshots} snapshot(s); the copy has none."))
    mgmt = snapshot.networks.get(snapshot.management_network() or "")
    text = (f"Copies {format_bytes(plan.data_bytes)} of disk data through this console "
            "(libvirt volume streams), then reads it back to verify it")
    if mgmt is not None and mgmt.rate:
        text += f": about {format_duration(2 * plan.data_bytes / mgmt.rate)}"
    out.append(_warn(Code.ESTIMATE, vm, text + "."))
    return out
