"""Live move of one disk to another SR of the same server (XenServer's live VDI migration),
and a halted VM's disk move (XenCenter's Move VM within a pool): a plain volume copy.

The new volume is written down (a DISK_MOVE clean-up: "keep whichever file the disk uses,
remove the other") before it is made. Once the copy pivots, the VM runs on the new file:
from then on the new file is never removed, whatever fails after (reading or redefining
the persistent definition, a dropped connection). When it is not known whether the pivot
happened, the server is asked which file the disk uses, now or once it answers again.
"""

from __future__ import annotations

import asyncio
import threading
from functools import partial

from xencenter_lite.core.checks import blocking, check_disk_move
from xencenter_lite.core.cleanup import Cleanup, CleanupKind
from xencenter_lite.core.errors import friendly
from xencenter_lite.core.jobs import Job, JobState
from xencenter_lite.core.model import VmState
from xencenter_lite.core.plan import DiskMovePlan, free_volume_name, volume_name_for
from xencenter_lite.engine.fleet import Fleet
from xencenter_lite.engine.migration import MigrationRunner
from xencenter_lite.engine.queue import JobQueue
from xencenter_lite.engine.settle import Settler
from xencenter_lite.engine.streams import (
    Cancelled,
    DiskCopy,
    MoveFailed,
    backing_files,
    backing_refusal,
    copy_and_verify,
    still_halted,
)
from xencenter_lite.engine.undo import UndoLog
from xencenter_lite.engine.worker import run_long
from xencenter_lite.virt import CopyCancelled, VirtError


class DiskMoveRunner:
    def __init__(self, fleet: Fleet, queue: JobQueue, settler: Settler,
                 migrations: MigrationRunner) -> None:
        self.fleet = fleet
        self.queue = queue
        self.settler = settler
        self.migrations = migrations  # for fresh_vm

    async def run(self, job: Job, dev: str, sr: str, bandwidth_mib_s: int | None) -> None:
        assert self.queue.slots is not None
        async with self.queue.slots:
            if job.state.finished:
                return
            job.set_state(JobState.CHECKING, "Checking the disk move")
            vm = await self.migrations.fresh_vm(job, job.source)
            if vm is None:
                return
            plan = DiskMovePlan(vm, dev, sr)
            problems = blocking(check_disk_move(self.fleet.snapshot(), plan,
                                                self.queue.busy - {vm.key}))
            if problems:
                job.fail(" ".join(p.message for p in problems))
                return
            undo = self.settler.new_log()
            try:
                await self._move(job, plan, bandwidth_mib_s, undo)
            finally:
                self.settler.release(undo)

    async def _move(self, job: Job, plan: DiskMovePlan, bandwidth_mib_s: int | None,
                    undo: UndoLog) -> None:
        fleet, vm, dev, sr = self.fleet, plan.vm, plan.dev, plan.target_sr
        server = vm.server
        disk = vm.disk(dev)
        assert disk is not None and disk.path is not None
        link = fleet.link(server)
        cancel = threading.Event()
        self.queue.cancel_events[job.id] = cancel
        job.bytes_total = disk.capacity
        halted = vm.state is VmState.HALTED
        loop = asyncio.get_running_loop()

        def progress(cur: int, end: int) -> None:
            loop.call_soon_threadsafe(job.progress, cur, end)

        new_path = ""
        failure: BaseException | None = None
        try:
            name = free_volume_name(volume_name_for(disk.path, dev, vm.name, disk.format),
                                    await fleet.call(server, link.volume_names, sr))
            entry = undo.record(Cleanup(
                CleanupKind.DISK_MOVE, server, fleet.host_uuid(server), job.title,
                vm_uuid=vm.uuid, vm_name=vm.name, sr=sr, volume=name, dev=dev,
                old_path=disk.path, fmt=disk.format))
            layout = (await fleet.call(server, link.volume_layout, disk.path) if disk.path
                      else None)
            new_path = await fleet.call(server, link.create_volume, sr, name, disk.capacity,
                                        disk.format, layout)
            entry = undo.amend(entry, new_path=new_path)
            job.messages.append(f"Created {new_path}")
            if job.cancel_requested:
                raise CopyCancelled()
            if halted:
                await self._copy_halted(job, plan, new_path)
            else:
                job.set_state(JobState.COPYING_DISKS, f"Copying disk {dev} to SR '{sr}'")
                await run_long(f"copy-{vm.name}-{dev}", lambda: link.block_copy(
                    vm.uuid, dev, new_path, disk.format, progress, cancel, bandwidth_mib_s))
        except Exception as exc:  # whatever stopped it: which file does the disk use now?
            failure = exc
        pivoted: bool | None = failure is None
        if failure is not None and new_path:
            try:
                files = await fleet.call(server, link.disk_files, vm.uuid, dev)
                # (A halted VM's definition says which file it uses, unless it was started
                # meanwhile.)
                current = files.live or (files.persistent if halted else None)
                pivoted = current == new_path if current else None
            except VirtError:
                pivoted = None  # cannot tell now: the clean-up asks once the server answers
        if pivoted and not halted:
            # The VM runs on the new file: its persistent definition must say so too (libvirt
            # 9.0 rewrites it on pivot; make sure), then the old file goes.
            job.set_state(JobState.FINISHING, "Removing the old disk")
            try:
                await fleet.call(server, link.persist_disk, vm.uuid, dev, new_path, disk.format)
            except VirtError as exc:
                job.messages.append(f"Could not update the definition of '{vm.name}' yet "
                                    f"({exc.raw}); the old disk is kept until it is")
        left = await self.settler.unwind(undo, job.messages.append)
        await fleet.read(server)
        if pivoted:
            note = (f"; {disk.path} is kept until it is proven unused" if left else "")
            job.done(f"Disk {dev} of '{vm.name}' is now on SR '{sr}'{note}")
            return
        if pivoted is None and new_path:
            job.fail(f"Could not find out whether disk {dev} of '{vm.name}' uses {new_path} "
                     f"or {disk.path} now; both are kept, and the one not in use is removed "
                     "once the server answers.", _raw(failure))
            return
        stays = f"Disk {dev} stays on SR '{disk.sr}'."
        if left:
            stays += f" {new_path or 'the new volume'} is removed once it is proven unused."
        if isinstance(failure, CopyCancelled | Cancelled) or job.cancel_requested:
            job.cancelled(f"Cancelled; {stays}")
        elif isinstance(failure, MoveFailed):
            job.fail(f"{failure} {stays}")
        elif isinstance(failure, VirtError):
            f = friendly(failure.code, failure.raw)
            job.fail(f"{f.message} {stays}", f.raw)
        else:
            job.fail(f"An internal error stopped the job (see details). {stays}",
                     _raw(failure))

    async def _copy_halted(self, job: Job, plan: DiskMovePlan, new_path: str) -> None:
        """A halted VM's disk: a plain copy (streamed and read back on its own server), then
        its definition points at the copy. The DISK_MOVE entry then removes whichever file
        the definition does not use."""
        fleet, vm, server = self.fleet, plan.vm, plan.server
        disk = vm.disk(plan.dev)
        assert disk is not None and disk.path is not None
        backed = await backing_files(fleet, server, {plan.dev: disk.path})
        if backed:
            raise MoveFailed(backing_refusal(
                vm.name, backed, "Start the VM and move the disk live (libvirt then copies "
                "the whole chain into one image), or make a standalone image first."))

        await copy_and_verify(fleet, job, server, server, [DiskCopy(
            plan.dev, disk.path, new_path, disk.allocation or disk.capacity)],
            partial(still_halted, fleet, server, vm.uuid, vm.name),
            self.migrations.timing.progress_interval)
        if job.cancel_requested:
            raise Cancelled()
        job.set_state(JobState.FINISHING, f"Pointing disk {plan.dev} of '{vm.name}' at "
                      f"{new_path}")
        await fleet.call(server, fleet.link(server).persist_disk, vm.uuid, plan.dev, new_path,
                         disk.format)


def _raw(exc: BaseException | None) -> str | None:
    if exc is None:
        return None
    return exc.raw if isinstance(exc, VirtError) else repr(exc)
