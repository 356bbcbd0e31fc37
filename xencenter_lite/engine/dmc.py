"""Dynamic Memory Control: ballooning a destination's VMs down so an incoming VM fits, and
setting a VM's dynamic range."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from xencenter_lite.core.checks import dynamic_range_problem, squeeze_targets
from xencenter_lite.core.cleanup import Cleanup, CleanupKind
from xencenter_lite.core.jobs import Job
from xencenter_lite.core.metadata import VmMetadata
from xencenter_lite.core.model import VM
from xencenter_lite.core.plan import MigrationPlan
from xencenter_lite.core.units import format_bytes
from xencenter_lite.engine.fleet import Fleet
from xencenter_lite.engine.undo import UndoLog
from xencenter_lite.virt import VirtError

SLACK = 4 * 1024 * 1024  # a balloon this close to its target has given the memory back


class DmcFailed(Exception):
    """Dynamic Memory Control could not free the memory a migration needs."""


def metadata_of(vm: VM) -> VmMetadata:
    """The VM's own metadata as it stands, to be changed with dataclasses.replace."""
    return VmMetadata(home_server=vm.home_server, folder=vm.folder,
                      dynamic_min=vm.dynamic_min, dynamic_max=vm.dynamic_max,
                      evacuated_from=vm.evacuated_from)


class Dmc:
    def __init__(self, fleet: Fleet, timeout: float = 30.0) -> None:
        self.fleet = fleet
        self.timeout = timeout  # how long squeezed guests get to give their memory back

    async def squeeze(self, job: Job, plan: MigrationPlan, undo: UndoLog) -> None:
        """Balloon the destination's VMs down so the incoming VM fits, and check they did.
        Each squeeze is in the undo log before it is made."""
        fleet, dest = self.fleet, plan.destination
        targets = squeeze_targets(fleet.snapshot(), dest, plan.vm.memory)
        if not targets:
            return
        link = fleet.link(dest)
        freed = sum(vm.memory_in_use - size for vm, size in targets)
        job.messages.append(f"Freeing {format_bytes(freed)} on '{dest}' with Dynamic Memory "
                            "Control: " + ", ".join(f"'{vm.name}' to {format_bytes(size)}"
                                                    for vm, size in targets))
        try:
            for vm, size in targets:
                undo.record(Cleanup(
                    CleanupKind.BALLOON, dest, fleet.host_uuid(dest), job.title,
                    vm_uuid=plan.vm.uuid, vm_name=plan.vm.name, vm_home=plan.source,
                    vm_home_uuid=fleet.host_uuid(plan.source), target_vm=vm.uuid,
                    size=vm.memory_in_use))
                await fleet.call(dest, link.set_balloon, vm.uuid, size)
        except VirtError as exc:
            raise DmcFailed(f"Could not balloon a VM on '{dest}': {exc.raw}. Nothing was "
                            "copied.") from exc
        loop = asyncio.get_running_loop()
        end = loop.time() + self.timeout
        while True:
            stubborn = []
            for vm, size in targets:
                try:
                    actual = await fleet.call(dest, link.balloon_actual, vm.uuid)
                except VirtError:
                    actual = vm.memory_in_use
                if actual > size + SLACK:
                    stubborn.append(vm.name)
            if not stubborn:
                break
            if loop.time() > end:
                raise DmcFailed(
                    f"Could not free enough memory on '{dest}' with Dynamic Memory Control: "
                    + ", ".join(f"'{n}'" for n in stubborn) + " did not give memory back "
                    "(is the balloon driver loaded in the guest?). Nothing was copied.")
            await asyncio.sleep(0.25)
        await fleet.read(dest)

    async def set_dynamic_memory(self, vm_key: tuple[str, str], dynamic_min: int,
                                 dynamic_max: int) -> None:
        """Set a VM's Dynamic Memory Control range; a running VM is ballooned into it."""
        fleet = self.fleet
        vm = fleet.snapshot().vm(vm_key)
        if vm is None:
            raise LookupError(f"no VM {vm_key[1]} on {vm_key[0]}")
        if not vm.has_balloon:
            raise ValueError(
                f"'{vm.name}' has no balloon device (<memballoon model='none'/>), so Dynamic "
                "Memory Control cannot change its memory. Add one (virsh edit: <memballoon "
                "model='virtio'/>; it takes effect at the next start) to give it a range.")
        problem = dynamic_range_problem(vm.name, vm.memory, dynamic_min, dynamic_max)
        if problem is not None:
            raise ValueError(problem)
        link = fleet.link(vm.server)
        await fleet.call(vm.server, link.set_metadata, vm.uuid,
                         replace(metadata_of(vm), dynamic_min=dynamic_min,
                                 dynamic_max=dynamic_max))
        if vm.is_running and not dynamic_min <= vm.memory_in_use <= dynamic_max:
            size = min(max(vm.memory_in_use, dynamic_min), dynamic_max)
            await fleet.call(vm.server, link.set_balloon, vm.uuid, size)
        await fleet.read(vm.server)

    async def set_memory(self, vm_key: tuple[str, str], size: int) -> None:
        """Balloon a running VM to `size` bytes, inside its dynamic range."""
        fleet = self.fleet
        vm = fleet.snapshot().vm(vm_key)
        if vm is None:
            raise LookupError(f"no VM {vm_key[1]} on {vm_key[0]}")
        if not vm.is_running:
            raise ValueError(f"'{vm.name}' is not running; its balloon can't be set.")
        if not vm.has_balloon:
            raise ValueError(f"'{vm.name}' has no balloon device; its memory can't be "
                             "changed while it runs.")
        low = vm.dynamic_min if vm.dynamic_min is not None else 1
        high = vm.dynamic_max if vm.dynamic_max is not None else vm.memory
        if not low <= size <= high:
            raise ValueError(f"The memory of '{vm.name}' must stay between "
                             f"{format_bytes(low)} and {format_bytes(high)}.")
        await fleet.call(vm.server, fleet.link(vm.server).set_balloon, vm.uuid, size)
        await fleet.read(vm.server)
