"""Copy VM's runner: checked, each new volume written down before it is made, the disks
streamed and verified, and the new VM defined last. Until it is defined nothing the job
made is anyone's: whatever ends the job before then, the volumes go."""

from __future__ import annotations

import logging
from dataclasses import replace
from functools import partial

from xencenter_lite.core.checks import blocking
from xencenter_lite.core.cleanup import Cleanup, CleanupKind
from xencenter_lite.core.copy import CopyPlan, CopyRequest, build_copy_plan, check_copy
from xencenter_lite.core.domxml import copy_domain
from xencenter_lite.core.errors import friendly
from xencenter_lite.core.jobs import Job, JobState
from xencenter_lite.engine.dmc import metadata_of
from xencenter_lite.engine.fleet import Fleet
from xencenter_lite.engine.migration import MigrationRunner, Timing
from xencenter_lite.engine.queue import JobQueue
from xencenter_lite.engine.settle import Settler
from xencenter_lite.engine.streams import (
    Cancelled,
    DiskCopy,
    MoveFailed,
    NewVolume,
    backing_files,
    backing_refusal,
    copy_and_verify,
    layouts,
    make_volumes,
    still_halted,
)
from xencenter_lite.engine.undo import UndoLog
from xencenter_lite.virt import VirtError

log = logging.getLogger(__name__)


class CopyRunner:
    def __init__(self, fleet: Fleet, queue: JobQueue, settler: Settler,
                 migrations: MigrationRunner, timing: Timing) -> None:
        self.fleet = fleet
        self.queue = queue
        self.settler = settler
        self.migrations = migrations
        self.timing = timing

    async def run(self, job: Job, request: CopyRequest) -> None:
        slots = self.queue.slots
        assert slots is not None
        async with slots:
            if job.state.finished:
                return
            job.set_state(JobState.CHECKING, f"Checking the copy of '{job.vm_name}'")
            vm = await self.migrations.fresh_vm(job, request.destination)
            if vm is None:
                return
            snap = self.fleet.snapshot()
            plan = build_copy_plan(snap, vm, request)
            problems = blocking(check_copy(snap, plan, self.queue.busy - {vm.key}))
            if problems:
                job.fail(" ".join(p.message for p in problems),
                         "\n".join(f"{p.code}: {p.message}" for p in problems))
                return
            undo = self.settler.new_log()
            try:
                try:
                    uuid = await self._copy(job, plan, undo)
                except Exception as exc:
                    await self._undo(job, plan, undo, exc)
                    return
                undo.keep(list(undo.entries))  # the volumes are the new VM's
                await self.fleet.read(plan.destination)
                job.done(f"'{plan.name}' (UUID {uuid}) is a copy of '{vm.name}' on "
                         f"'{plan.destination}', halted")
            finally:
                self.settler.release(undo)

    async def _copy(self, job: Job, plan: CopyPlan, undo: UndoLog) -> str:
        fleet, src, dest = self.fleet, plan.source, plan.destination
        backed = await backing_files(fleet, src, {d.dev: d.source_path for d in plan.disks
                                                  if d.source_path})
        if backed:
            raise MoveFailed(backing_refusal(
                plan.vm.name, backed, "Copy VM copies each disk as one file; make a "
                "standalone image first (qemu-img convert), or migrate the VM directly, "
                "which copies the whole chain into one image."))
        kept = await layouts(fleet, src, {d.dev: d.source_path for d in plan.disks
                                          if d.source_path})
        wanted = []
        for d in plan.disks:
            assert d.target_sr is not None
            wanted.append(NewVolume(d.dev, d.target_sr, d.volume_name(plan.name), d.capacity,
                                    d.format, kept.get(d.dev)))

        def entry(sr: str, name: str) -> Cleanup:
            # No VM owns it until the copy is defined: removed unless a domain uses it.
            return Cleanup(CleanupKind.VOLUME, dest, fleet.host_uuid(dest), job.title,
                           sr=sr, volume=name)

        new_paths = await make_volumes(fleet, job, undo, dest, wanted, entry)
        if job.cancel_requested:
            raise Cancelled()
        await copy_and_verify(fleet, job, src, dest, [
            DiskCopy(d.dev, d.source_path or "", new_paths[d.dev], d.allocation or d.capacity)
            for d in plan.disks], partial(still_halted, fleet, src, plan.vm.uuid, plan.vm.name),
            self.timing.progress_interval)
        if job.cancel_requested:
            raise Cancelled()
        xml = await fleet.call(src, fleet.link(src).migratable_xml, plan.vm.uuid, True)
        meta = replace(metadata_of(plan.vm), home_server=dest, evacuated_from=None)
        job.set_state(JobState.FINISHING, f"Defining '{plan.name}' on '{dest}'")
        return await fleet.call(dest, fleet.link(dest).define,
                                copy_domain(xml, plan.name, new_paths, meta,
                                            {d.dev: d.target_sr for d in plan.disks
                                             if d.target_sr}))

    async def _undo(self, job: Job, plan: CopyPlan, undo: UndoLog, exc: Exception) -> None:
        if not isinstance(exc, VirtError | Cancelled | MoveFailed):
            log.exception("copy of %s stopped by a bug", plan.vm.name)
        left = await self.settler.unwind(undo, job.messages.append)
        await self.fleet.read(plan.destination)
        later = ("Nothing this job made is left behind." if not left else
                 f"What it made on '{plan.destination}' ("
                 + ", ".join(e.path or e.volume for e in left)
                 + ") is recorded and removed by the next xencenter-lite command or console "
                 "that can reach it.")
        if isinstance(exc, Cancelled) or job.cancel_requested:
            job.cancelled(f"Cancelled; no copy was made. {later}")
        elif isinstance(exc, MoveFailed):
            job.fail(f"{exc} No copy was made. {later}")
        elif isinstance(exc, VirtError):
            f = friendly(exc.code, exc.raw)
            job.fail(f"{f.message} No copy was made. {later}", f.raw)
        else:
            job.fail(f"An internal error stopped the copy (see details). No copy was made. "
                     f"{later}", repr(exc))
