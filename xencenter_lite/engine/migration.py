"""One live migration, from its checks to the last old disk removed.

Every change on a server goes into the job's undo log before it is made: the VMs ballooned
down on the destination, each volume created there, the destination's half of the
migration. Whatever ends the job, the runner first finds out where the VM really runs
(asking both servers, waiting a while for a lost source), then either finishes the move
(the VM runs on the destination) or unwinds the log; what cannot be proven safe to undo
now stays recorded and is finished later, by this engine or the next.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from xencenter_lite.core.checks import Problem, blocking, check_plans
from xencenter_lite.core.cleanup import Cleanup, CleanupKind, finishing_message
from xencenter_lite.core.domxml import rewrite_domain, rewrite_nics
from xencenter_lite.core.errors import (
    ABORTED,
    NOT_VALID_NOW,
    STOPPED_ANSWERING,
    connection_lost,
    friendly,
)
from xencenter_lite.core.jobs import (
    Job,
    JobState,
    phase_from_stats,
    progress_from_stats,
    wire_rate_from_stats,
)
from xencenter_lite.core.metadata import VmMetadata
from xencenter_lite.core.model import VM, VmState
from xencenter_lite.core.plan import (
    DataPath,
    MigrationPlan,
    MigrationRequest,
    build_plan,
    volume_name_for,
)
from xencenter_lite.core.policy import (
    AUTO_CONVERGE_INCREMENT,
    AUTO_CONVERGE_INITIAL,
    Act,
    Action,
    Governor,
    Policy,
    Sample,
)
from xencenter_lite.engine.dmc import Dmc, DmcFailed, metadata_of
from xencenter_lite.engine.fleet import Fleet
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
from xencenter_lite.engine.worker import run_long
from xencenter_lite.virt import MigrationSpec, ServerLink, VirtError

log = logging.getLogger(__name__)

START_TIMEOUT = 60.0  # seconds a server has to start a VM (paused) before it is given up on


@dataclass
class Timing:
    """The engine's time settings, shared by its runners (and changed on the Engine)."""

    progress_interval: float = 0.4
    # A job's checks use a server's reading begun this recently (and with no event from
    # the server since) instead of reading it again.
    fresh_for: float = 1.0
    reconcile_wait: float = 90.0  # how long a job waits for a lost source to come back
    # How long a migration call is waited for once its source stopped answering the
    # engine (keepalive ends the call within about 20 s of silence; this is the backstop).
    call_grace: float = 60.0
    # How long a job that lost its migration call waits while both halves of the VM are
    # there (libvirt still migrating it) before it says it cannot tell where the VM runs.
    in_flight_wait: float = 600.0
    # How long a job whose migration call lost its connection watches for the migration
    # to show (its copy appearing on the destination, a job on the source) before it takes
    # the VM still on the source, with nothing on the destination, for a migration that
    # never began: the source may carry out the call it was sent a moment later.
    lost_call_grace: float = 15.0
    # Seconds without progress in a migration's memory copy that make a stall (see
    # core.policy): what the migration policy acts on.
    stall_window: float = 4.0


class MigrationRunner:
    def __init__(self, fleet: Fleet, queue: JobQueue, settler: Settler, dmc: Dmc,
                 timing: Timing) -> None:
        self.fleet = fleet
        self.queue = queue
        self.settler = settler
        self.dmc = dmc
        self.timing = timing
        self.governors: dict[int, Governor] = {}  # by job id: the live migrations' policies
        self.paused_at: dict[int, float] = {}  # by job id: when the policy paused the guest

    # ---- queue and checks -----------------------------------------------------------------
    async def run(self, job: Job, req: MigrationRequest, previous: Job | None,
                  skip_checks: frozenset[str], batch: asyncio.Semaphore | None = None
                  ) -> None:
        """`batch`: a limit of this job's batch (maintenance mode's parallel moves), held
        with one of the queue's slots."""
        slots = self.queue.slots
        assert slots is not None
        held: list[asyncio.Semaphore] = []
        n = self.queue.concurrency
        waits = ((batch, "for one of this evacuation's moves to end"),
                 (slots, f"for a free slot ({n} migration{'s' if n != 1 else ''} at a time)"))
        try:
            for sem, waiting in waits:
                if sem is not None:
                    if sem.locked():
                        job.set_detail(f"waiting {waiting}")
                    await sem.acquire()
                    held.append(sem)
            job.set_detail(None)
        except BaseException:
            for sem in held:
                sem.release()
            raise

        def release() -> None:  # once the data has moved; finishing needs no slot
            while held:
                held.pop().release()

        try:
            if job.state.finished:
                return  # cancelled while queued
            await self._check_and_migrate(job, req, previous, skip_checks, release)
        finally:
            release()

    async def fresh_vm(self, job: Job, other_server: str) -> VM | None:
        """The VM as it is now (None: gone, the job failed): the job's servers are read
        again unless their readings began under fresh_for seconds ago with no event from
        them since (a command's own start, or the reading after another job ended)."""
        await self.fleet.fresh({job.source, other_server}, self.timing.fresh_for)
        vm = self.fleet.snapshot().vm(job.vm_key)
        if vm is None:
            job.fail(f"'{job.vm_name}' no longer exists on '{job.source}'.")
        return vm

    async def _check_and_migrate(self, job: Job, req: MigrationRequest, previous: Job | None,
                                 skip_checks: frozenset[str],
                                 release_slot: Callable[[], None]) -> None:
        job.set_state(JobState.CHECKING, "Checking the migration")
        vm = await self.fresh_vm(job, req.destination)
        if vm is None:
            return
        await self.fleet.compare_cpus(req.destination, [vm])
        snap = self.fleet.snapshot()
        plan = build_plan(snap, vm, req)
        busy = self.queue.busy - {req.vm}
        problems = [p for p in blocking(check_plans(snap, [plan], busy))
                    if p.code not in skip_checks]
        if problems:
            _refuse(job, problems)
            return
        await self.queue.after(previous, job)
        if job.cancel_requested:
            job.cancelled()
            return
        await self._execute(job, plan, release_slot)

    # ---- the move -------------------------------------------------------------------------
    async def _execute(self, job: Job, plan: MigrationPlan,
                       release_slot: Callable[[], None]) -> None:
        undo = self.settler.new_log()
        connection = self.fleet.generation(plan.source)
        try:
            try:
                await self._move(job, plan, undo)
            except Exception as exc:  # whatever ends the move: find out, then undo
                if not isinstance(exc, VirtError | Cancelled | DmcFailed | MoveFailed):
                    log.exception("migration of %s stopped by a bug", plan.vm.name)
                if not await self._recover(job, plan, undo, exc, connection):
                    return
            release_slot()  # the VM runs on the destination: the next job may begin
            await self._finish(job, plan, undo)
        finally:
            self.governors.pop(job.id, None)
            self.paused_at.pop(job.id, None)
            # Anything still written down (a server that could not be reached, the console
            # closing mid-job) is the store's now: finished by this engine or the next.
            self.settler.release(undo)

    def _two_servers(self, plan: MigrationPlan) -> tuple[str, str]:
        src, dest = plan.source, plan.destination
        src_host, dest_host = self.fleet.host_uuid(src), self.fleet.host_uuid(dest)
        if not src_host or not dest_host or src_host == dest_host:
            raise VirtError(f"'{src}' and '{dest}' are not proven to be two servers (host "
                            f"UUIDs {src_host or '?'} and {dest_host or '?'})")
        return src_host, dest_host

    def _record_old_disks(self, job: Job, plan: MigrationPlan, undo: UndoLog) -> None:
        # The old disks are written down before the move: if this process ends while libvirt
        # finishes it, the next engine removes them (and only if the VM is then on the
        # destination without them).
        src_host, dest_host = self._two_servers(plan)
        for d in plan.copied_disks:
            if d.source_path and not d.loose:  # (a loose file has no SR to go through)
                undo.record(Cleanup(CleanupKind.OLD_DISK, plan.source, src_host, job.title,
                                    vm_uuid=plan.vm.uuid, vm_name=plan.vm.name,
                                    vm_home=plan.destination, vm_home_uuid=dest_host,
                                    path=d.source_path))

    def _record_incoming(self, job: Job, plan: MigrationPlan, undo: UndoLog) -> None:
        src_host, dest_host = self._two_servers(plan)
        undo.record(Cleanup(CleanupKind.INCOMING_DOMAIN, plan.destination, dest_host,
                            job.title, vm_uuid=plan.vm.uuid, vm_name=plan.vm.name,
                            vm_home=plan.source, vm_home_uuid=src_host))

    async def _move(self, job: Job, plan: MigrationPlan, undo: UndoLog) -> None:
        if plan.offline:
            await self._move_halted(job, plan, undo)
            return
        fleet = self.fleet
        src, dest, uuid = plan.source, plan.destination, plan.vm.uuid
        src_link, dest_link = fleet.link(src), fleet.link(dest)
        self._two_servers(plan)
        job.bytes_total = plan.bytes_to_copy
        await self.dmc.squeeze(job, plan, undo)
        new_paths = await self._make_volumes(job, plan, undo)
        if job.cancel_requested:
            raise Cancelled()
        meta = replace(metadata_of(plan.vm), home_server=plan.home_server,
                       evacuated_from=plan.evacuated_from)
        live_xml = await fleet.call(src, src_link.migratable_xml, uuid)
        conf_xml = await fleet.call(src, src_link.migratable_xml, uuid, True)
        spec = MigrationSpec(
            uuid=uuid,
            dest_uri=dest_link.uri,
            address=plan.address or "",
            dest_xml=_for_destination(plan, live_xml, new_paths, meta),
            persist_xml=_for_destination(plan, conf_xml, new_paths, meta),
            migrate_disks=tuple(new_paths),
            keep_shared_disks=any(not d.copy for d in plan.disks),
            bandwidth_mib_s=plan.bandwidth_mib_s,
            tls=plan.tls,
            persistent=plan.vm.persistent,
            **_policy_spec(plan),
        )
        governor = Governor(plan.settings, window=self.timing.stall_window,
                            throttles=not plan.vm.emulated)
        self.governors[job.id] = governor
        job.policy = plan.settings.describe() + (
            " (a TCG-emulated guest: no vCPU throttling; paused at the end if it must be)"
            if plan.vm.emulated and plan.settings.policy is Policy.AUTO_CONVERGE else "")
        self._record_old_disks(job, plan, undo)
        self._record_incoming(job, plan, undo)
        job.set_state(JobState.COPYING_DISKS if new_paths else JobState.COPYING_MEMORY,
                      f"Sending {'disks and memory' if new_paths else 'memory'} to "
                      f"{plan.address} over the '{plan.network}' network ({job.policy})")
        call = run_long(f"migrate-{plan.vm.name}", lambda: src_link.migrate(spec))
        await self._follow(job, uuid, call, governor)
        call.result()
        try:
            job.downtime_ms = await fleet.call(dest, dest_link.completed_downtime, uuid)
        except VirtError:
            job.downtime_ms = None

    async def _move_halted(self, job: Job, plan: MigrationPlan, undo: UndoLog) -> None:
        """A halted VM. Sent directly: started paused and migrated as a live VM is (see
        _start_paused). Through the console: each copied disk streamed to its new volume
        and read back to verify it, then libvirt moves the definition (defined there,
        undefined here, in one call); until that call the VM is untouched on the source.
        It never runs either way. (A disk on a backing file goes directly or not at all:
        the streams copy one file.)"""
        fleet = self.fleet
        src, dest, uuid = plan.source, plan.destination, plan.vm.uuid
        src_link, dest_link = fleet.link(src), fleet.link(dest)
        self._two_servers(plan)
        backed = await backing_files(fleet, src, {d.dev: d.source_path for d in
                                                  plan.copied_disks
                                                  if d.source_path and not d.loose})
        remedy = ("Move it directly (--via direct: both servers need the memory to hold it "
                  "paused, and libvirt copies the whole chain into one image).")
        if plan.data_path is DataPath.STREAM and backed:
            raise MoveFailed(backing_refusal(plan.vm.name, backed, remedy))
        new_paths = await self._make_volumes(job, plan, undo)
        if job.cancel_requested:
            raise Cancelled()
        meta = replace(metadata_of(plan.vm), home_server=plan.home_server,
                       evacuated_from=plan.evacuated_from)
        if plan.data_path is DataPath.DIRECT:
            if await self._start_paused(job, plan, undo):
                await self._send_paused(job, plan, undo, new_paths, meta)
                return
            if backed:
                raise MoveFailed(backing_refusal(plan.vm.name, backed, remedy))
            plan = replace(plan, data_path=DataPath.STREAM)
        conf_xml = await fleet.call(src, src_link.migratable_xml, uuid, True)
        self._record_old_disks(job, plan, undo)
        # What is sent (and read back) is each file's allocated data: holes are not.
        allocated = {d.dev: d.allocation for d in plan.vm.hard_disks}
        await copy_and_verify(fleet, job, src, dest, [
            DiskCopy(d.dev, d.source_path or "", new_paths[d.dev],
                     allocated.get(d.dev) or d.capacity) for d in plan.copied_disks],
            partial(still_halted, fleet, src, uuid, plan.vm.name),
            self.timing.progress_interval)
        if job.cancel_requested:
            raise Cancelled()
        self._record_incoming(job, plan, undo)
        persist_xml = _for_destination(plan, conf_xml, new_paths, meta)
        spec = MigrationSpec(uuid=uuid, dest_uri=dest_link.uri, address="", dest_xml="",
                             persist_xml=persist_xml, offline=True)
        job.set_state(JobState.FINISHING, f"Defining '{plan.vm.name}' on '{dest}' and "
                      f"removing its definition from '{src}'")
        call = run_long(f"define-{plan.vm.name}", lambda: src_link.migrate(spec))
        await call

    async def _start_paused(self, job: Job, plan: MigrationPlan, undo: UndoLog) -> bool:
        """Start the halted VM with its CPUs stopped, to send it directly. False when it
        would not start and the streams may be used instead (the path was not chosen)."""
        fleet, src = self.fleet, plan.source
        for server in (src, plan.destination):  # turned off again wherever it is paused
            undo.record(Cleanup(CleanupKind.STARTED_PAUSED, server, fleet.host_uuid(server),
                                job.title, vm_uuid=plan.vm.uuid, vm_name=plan.vm.name,
                                save=plan.vm.managed_save))
        if plan.vm.managed_save:
            job.set_state(JobState.COPYING_DISKS, f"Restoring '{plan.vm.name}' paused from "
                          f"its saved state on '{src}' to send it directly")
        else:
            job.set_state(JobState.COPYING_DISKS, f"Starting '{plan.vm.name}' paused on "
                          f"'{src}' (no guest code runs) to send it directly")
        try:
            # (Starting a QEMU can take longer than an answer: it gets a deadline of its own.)
            await fleet.call(src, fleet.link(src).power, plan.vm.uuid, "start-paused",
                             timeout=max(START_TIMEOUT, fleet.answer_timeout))
        except VirtError as exc:
            if plan.path_chosen or exc.raw == STOPPED_ANSWERING:
                raise
            left = await self.settler.unwind(undo, job.messages.append,
                                             CleanupKind.STARTED_PAUSED)
            if left:  # it may have started after all: not known how it is
                raise
            job.messages.append(f"'{plan.vm.name}' would not start paused on '{src}' "
                                f"({exc.raw}); its disks go through the console instead")
            return False
        return True

    async def _send_paused(self, job: Job, plan: MigrationPlan, undo: UndoLog,
                           new_paths: dict[str, str], meta: Any) -> None:
        """The paused VM migrates as a live one does (its disks copied by libvirt over the
        chosen network); the job's end turns it off on the destination."""
        fleet, src, dest, uuid = self.fleet, plan.source, plan.destination, plan.vm.uuid
        src_link, dest_link = fleet.link(src), fleet.link(dest)
        job.bytes_total = plan.vm.memory + sum(d.capacity for d in plan.copied_disks)
        live_xml = await fleet.call(src, src_link.migratable_xml, uuid)
        conf_xml = await fleet.call(src, src_link.migratable_xml, uuid, True)
        spec = MigrationSpec(
            uuid=uuid, dest_uri=dest_link.uri, address=plan.address or "",
            dest_xml=_for_destination(plan, live_xml, new_paths, meta),
            persist_xml=_for_destination(plan, conf_xml, new_paths, meta),
            migrate_disks=tuple(new_paths),
            keep_shared_disks=any(not d.copy for d in plan.disks),
            bandwidth_mib_s=plan.bandwidth_mib_s, tls=plan.tls)
        self._record_old_disks(job, plan, undo)
        self._record_incoming(job, plan, undo)
        job.set_state(JobState.COPYING_DISKS, f"Sending the disks of '{plan.vm.name}' to "
                      f"{plan.address} over the '{plan.network}' network")
        call = run_long(f"migrate-{plan.vm.name}", lambda: src_link.migrate(spec))
        await self._follow(job, uuid, call)
        call.result()

    async def _make_volumes(self, job: Job, plan: MigrationPlan,
                            undo: UndoLog) -> dict[str, str]:
        """Create each copied disk's volume on the destination, each written down first."""
        fleet, dest = self.fleet, plan.destination
        # (A loose file's layout cannot be read through an SR: its copy gets the default.)
        kept = await layouts(fleet, plan.source, {d.dev: d.source_path for d in
                                                  plan.copied_disks
                                                  if d.source_path and not d.loose})
        wanted = []
        for d in plan.copied_disks:
            assert d.target_sr is not None
            wanted.append(NewVolume(d.dev, d.target_sr, volume_name_for(
                d.source_path, d.dev, plan.vm.name, d.format), d.capacity, d.format,
                kept.get(d.dev)))

        def entry(sr: str, name: str) -> Cleanup:
            return Cleanup(CleanupKind.VOLUME, dest, fleet.host_uuid(dest), job.title,
                           vm_uuid=plan.vm.uuid, vm_name=plan.vm.name, vm_home=plan.source,
                           vm_home_uuid=fleet.host_uuid(plan.source), sr=sr, volume=name)

        return await make_volumes(fleet, job, undo, dest, wanted, entry)

    async def _follow(self, job: Job, uuid: str, call: asyncio.Future[None],
                      governor: Governor | None = None) -> None:
        """Report the migration's progress until its call returns.

        The call runs on a connection of its own, and how it ends is what says how the
        migration went: a look at the source cannot, since the source may not have begun
        the migration it was just asked for. So a source that stops answering the engine's
        connection is waited for (the fleet reconnects it; progress resumes), and the call
        with it: keepalive ends the call within about 20 s if the source is gone for good.
        Only past `call_grace` is the call let go of (VirtError; the job settles then from
        where the VM turns out to be)."""
        fleet, src = self.fleet, job.source
        link = fleet.link(src)
        loop = asyncio.get_running_loop()
        abort_sent = False
        lost_at: float | None = None
        began = loop.time()
        pending: list[Action] = governor.start() if governor else []
        while not call.done():
            await asyncio.wait([call], timeout=self.timing.progress_interval)
            if call.done():
                break
            if not fleet.is_connected(src):
                lost_at = loop.time() if lost_at is None else lost_at
                if loop.time() - lost_at < self.timing.call_grace:
                    continue
                call.add_done_callback(lambda f: f.cancelled() or f.exception())
                raise VirtError(STOPPED_ANSWERING)
            lost_at = None
            try:
                stats, abort_sent = await self.tick(job, link, uuid, abort_sent, call=call)
            except VirtError:
                continue  # one look failed (or the source went): the migration call decides
            if governor is None or not stats or job.cancel_requested or call.done():
                continue
            pending += governor.feed(Sample.from_stats(stats, loop.time() - began))
            job.set_detail(governor.status())
            pending = await self._act(job, uuid, pending)

    async def _act(self, job: Job, uuid: str, actions: list[Action]) -> list[Action]:
        """Carry out what the migration policy decided; returns what must be tried again
        (a downtime libvirt would not take yet: the migration had not begun)."""
        fleet, src = self.fleet, job.source
        link = fleet.link(src)
        again: list[Action] = []
        for a in actions:
            try:
                if a.act is Act.SET_DOWNTIME:
                    assert a.downtime_ms is not None
                    await fleet.call(src, link.set_max_downtime, uuid, a.downtime_ms)
                    job.note(a.note)
                elif a.act is Act.POST_COPY:
                    await fleet.call(src, link.start_post_copy, uuid)
                    job.note(a.note)
                    job.set_state(JobState.POST_COPY, "Post-copy: the VM runs on "
                                  f"'{job.destination}' and fetches the rest of its memory "
                                  f"from '{src}'; it cannot be cancelled now")
                elif a.act is Act.SUSPEND:
                    self.paused_at[job.id] = asyncio.get_running_loop().time()
                    await fleet.call(src, link.power, uuid, "suspend")
                    job.note(a.note)
                elif a.act is Act.ABORT:
                    job.note(a.note)
                    await fleet.call(src, link.abort_job, uuid)
                else:
                    job.note(a.note)
            except VirtError as exc:
                if a.act is Act.SET_DOWNTIME and exc.code == NOT_VALID_NOW:
                    again.append(a)  # no migration job yet: next look
                elif a.act is Act.ABORT:
                    again.append(a)
                else:
                    job.note(f"{a.note}: failed ({exc.raw})")
        return again

    async def tick(self, job: Job, link: ServerLink, uuid: str, abort_sent: bool,
                   call: asyncio.Future[Any] | None = None) -> tuple[dict[str, int], bool]:
        """One look at the migration the source runs: abort it (once) if the job was
        cancelled, else report its progress and phase. Returns its statistics ({}: no job
        any more) and whether the abort is sent. Raises VirtError when the source does not
        answer within the fleet's deadline (it is then marked lost).

        When `call` (the migration call) returns first, the reading is left to finish on
        its own: while a migration ends, libvirt holds its domain, and a reading of it (or
        of another VM on that server, queued behind it) can wait a second or more."""
        fleet, src = self.fleet, job.source
        if job.cancel_requested and not abort_sent:
            try:
                await fleet.call(src, link.abort_job, uuid)
                abort_sent = True
            except VirtError as exc:
                if exc.raw == STOPPED_ANSWERING:
                    raise
                # no job in libvirt yet (or none any more); try again next tick
        reading = asyncio.ensure_future(fleet.call(src, link.job_stats, uuid))
        if call is not None:
            try:
                await asyncio.wait([reading, call], return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not reading.done():
                    reading.add_done_callback(lambda r: r.cancelled() or r.exception())
            if not reading.done():
                return {}, abort_sent
        stats = await reading
        if stats and not job.cancel_requested:
            done, total = progress_from_stats(stats, job.bytes_total)
            phase = phase_from_stats(stats, job.state)
            if total:
                job.progress(done, total, wire_rate=wire_rate_from_stats(stats, phase))
            if phase is not job.state and job.state is not JobState.POST_COPY:
                job.set_state(phase, "Copying memory" if phase is JobState.COPYING_MEMORY
                              else None)
        return stats, abort_sent

    # ---- the end --------------------------------------------------------------------------
    async def _finish(self, job: Job, plan: MigrationPlan, undo: UndoLog) -> None:
        """The VM runs on the destination: what the job made is the VM's; the old disks go."""
        fleet, src, dest = self.fleet, plan.source, plan.destination
        # (A halted VM sent directly arrived paused: its STARTED_PAUSED entries turn it off.)
        undo.keep([e for e in undo.entries
                   if e.kind not in (CleanupKind.OLD_DISK, CleanupKind.STARTED_PAUSED)])
        job.set_state(JobState.FINISHING, finishing_message({e.kind for e in undo.entries}))
        left = await self.settler.unwind(undo, job.messages.append)
        await asyncio.gather(fleet.read(src), fleet.read(dest))
        if plan.offline:
            message = f"'{plan.vm.name}' is now on '{dest}', halted" + (
                " with its saved state" if plan.vm.managed_save else "")
        elif plan.vm.state is VmState.PAUSED:
            message = await self._paused_arrival(job, plan)
        elif (g := self.governors.get(job.id)) is not None and g.suspended:
            message = await self._resume_after_suspend(job, plan)
        else:
            message = f"'{plan.vm.name}' now runs on '{dest}'"
        if left:
            message += (f"; {len(left)} old disk(s) stay on '{src}' until it can be proven "
                        "safe to remove them: " + ", ".join(e.path for e in left))
        loose = [d.source_path for d in plan.copied_disks if d.loose and d.source_path]
        if loose:
            message += (f"; its old file(s) {', '.join(loose)}, in no SR, stay on '{src}' "
                        "(remove them there when they are no longer wanted)")
        job.done(message)

    async def _paused_arrival(self, job: Job, plan: MigrationPlan) -> str:
        """A paused VM arrives paused; resumed there if the operator asked for it."""
        name, dest = plan.vm.name, plan.destination
        if not plan.resume:
            return f"'{name}' is now on '{dest}', paused (as it was)"
        try:
            await self.fleet.call(dest, self.fleet.link(dest).power, plan.vm.uuid, "resume")
        except VirtError as exc:
            job.messages.append(f"Could not resume '{name}' on '{dest}': {exc.raw}")
            return f"'{name}' is now on '{dest}', still paused: resuming it failed ({exc.raw})"
        await self.fleet.read(dest)
        return f"'{name}' is now on '{dest}' and runs again (resumed after the migration)"

    async def _resume_after_suspend(self, job: Job, plan: MigrationPlan) -> str:
        """The policy paused the guest so that its copy completes: it runs again there."""
        name, dest = plan.vm.name, plan.destination
        try:
            await self.fleet.call(dest, self.fleet.link(dest).resume_if_paused, plan.vm.uuid)
        except VirtError as exc:
            job.messages.append(f"Could not resume '{name}' on '{dest}': {exc.raw}")
            return (f"'{name}' is now on '{dest}', still paused: it was paused to finish the "
                    f"copy and resuming it failed ({exc.raw}); resume it there")
        await self.fleet.read(dest)
        since = self.paused_at.get(job.id)
        took = (f" {asyncio.get_running_loop().time() - since:.1f} s" if since is not None
                else "")
        return f"'{name}' now runs on '{dest}' (paused{took} to finish the copy, then resumed)"

    async def _post_copy_failed(self, job: Job, plan: MigrationPlan, undo: UndoLog,
                                exc: Exception) -> bool:
        """The migration ended badly after the switch to post-copy. The VM's memory is
        split between the servers: nothing is resumed and nothing is removed on either
        (unwinding would destroy the half that holds the newest memory), and the job says
        where the VM is. True if it turns out to run on the destination after all."""
        fleet, uuid = self.fleet, plan.vm.uuid
        name, src, dest = plan.vm.name, plan.source, plan.destination
        where_src = await fleet.locate(src, uuid, wait=min(10.0, self.timing.reconcile_wait))
        where_dest = await fleet.locate(dest, uuid, wait=min(10.0, self.timing.reconcile_wait))
        if where_src in (None, False) and where_dest is VmState.RUNNING:
            job.set_state(JobState.FINISHING, "Post-copy ended: the VM runs on the destination")
            return True
        undo.keep(undo.entries)  # not to be undone, now or by a later engine
        raw = exc.raw if isinstance(exc, VirtError) else str(exc)

        def said(where: VmState | bool | None, server: str) -> str:
            if where is None:
                return f"gone from '{server}'"
            if not isinstance(where, VmState):
                return f"unknown on '{server}' (it does not answer)"
            return f"{where.value} on '{server}'"

        lost = where_dest is None or where_src is None
        job.fail(
            f"The migration of '{name}' failed during post-copy: it is "
            f"{said(where_src, src)} and {said(where_dest, dest)}. Its memory is split "
            "between the two servers, so neither can run it alone"
            + (" and the VM is lost." if lost else
               ". Nothing was removed from either server. Restore the network between them "
               "and resume the migration there (virsh migrate --postcopy-resume); if that "
               "cannot be done, the VM is lost."), raw)
        await asyncio.gather(fleet.read(src), fleet.read(dest), return_exceptions=True)
        return False

    async def _recover(self, job: Job, plan: MigrationPlan, undo: UndoLog,
                       exc: Exception, connection: int) -> bool:
        """Find out where the VM really runs, then undo what this job made. True when the
        VM turns out to run on the destination (the move is to be finished). `connection`:
        the source's connection the job began on (Fleet.generation)."""
        fleet = self.fleet
        uuid, src, dest = plan.vm.uuid, plan.source, plan.destination
        governor = self.governors.get(job.id)
        if job.state is JobState.POST_COPY:
            return await self._post_copy_failed(job, plan, undo, exc)
        suspended = governor is not None and governor.suspended
        if not fleet.is_connected(src):
            job.set_state(job.state, f"Lost the connection to '{src}'; waiting for it to "
                          f"come back to find out where '{plan.vm.name}' runs")
        # How the VM is once it has arrived: as it was (a migration does not start a halted VM
        # nor resume a paused one; a paused one may be resumed there, later, by the job).
        # (A halted VM sent directly arrives paused, and is turned off by the job's end.)
        direct = plan.data_path is DataPath.DIRECT
        paused = direct or suspended  # (paused by the job: arrives paused)
        arrived = {VmState.RUNNING, plan.vm.state} | ({VmState.PAUSED} if paused else set())
        # The call's own connection broke (or the engine's with it), not the source's to
        # the destination (whose failure the source reports on a connection that still
        # works: the source knows the migration ended, and how).
        lost = (isinstance(exc, VirtError) and connection_lost(exc.code, exc.raw)
                and (exc.cut or await fleet.connection_broke(src, connection)))
        where_src, where_dest = await self._whereabouts(
            job, src, dest, uuid, paused_arrival=plan.vm.state is VmState.PAUSED or paused,
            call_lost=lost)
        if where_src in (None, False) and where_dest in arrived:
            # The VM moved even though the call reported an error (or we lost the source
            # while it finished): the migration is done.
            job.set_state(JobState.FINISHING, "The VM runs on the destination")
            try:
                job.downtime_ms = await fleet.call(dest, fleet.link(dest).completed_downtime,
                                                   uuid)
            except VirtError:
                job.downtime_ms = None
            return True
        if isinstance(where_src, VmState) and plan.vm.state is VmState.RUNNING:
            # (Only a VM that ran: one the operator paused stays paused.)
            try:
                await fleet.call(src, fleet.link(src).resume_if_paused, uuid)
            except VirtError as err:
                job.messages.append(f"Could not resume '{plan.vm.name}' on '{src}': {err.raw}")
        left = await self.settler.unwind(undo, job.messages.append)
        await asyncio.gather(fleet.read(src), fleet.read(dest))
        raw = exc.raw if isinstance(exc, VirtError) else (str(exc) if isinstance(
            exc, DmcFailed | Cancelled | MoveFailed) else repr(exc))
        if where_src is False:
            if where_dest is False and fleet.is_connected(src):
                job.fail(f"'{dest}' does not answer, so the job could not find out where "
                         f"'{plan.vm.name}' runs (libvirt may have moved it there). "
                         + _left_note(left, plan.vm.name, src) + " Check both servers.", raw)
            elif fleet.is_connected(src):
                # (The source answers, but not where the VM is, or libvirt was still
                # migrating it when in_flight_wait ran out.)
                job.fail(f"'{src}' answers, but the job could not find out where "
                         f"'{plan.vm.name}' runs (libvirt may still be migrating it). "
                         + _left_note(left, plan.vm.name, src) + " Check both servers.", raw)
            else:
                job.fail(f"Lost the connection to '{src}' and could not find out where "
                         f"'{plan.vm.name}' runs. " + _left_note(left, plan.vm.name, src)
                         + " Check both servers when the connection is back.", raw)
            return False
        if where_src is None:
            job.fail(f"'{plan.vm.name}' is on neither '{src}' nor (running) on '{dest}' any "
                     "more; check both servers. " + _left_note(left, plan.vm.name, src), raw)
            return False
        keeps = (f"'{plan.vm.name}' keeps running on '{src}'." if plan.vm.is_running else
                 f"'{plan.vm.name}' stays on '{src}', {plan.vm.state.value}.")
        later = (" " + _left_note(left, plan.vm.name, src)) if left else ""
        if governor is not None and governor.gave_up and not job.cancel_requested:
            job.fail(f"{governor.gave_up} {keeps}{later}", raw)
            return False
        if isinstance(exc, Cancelled) or job.cancel_requested or (
            isinstance(exc, VirtError) and exc.code == ABORTED
        ):
            job.cancelled(f"Cancelled; {keeps}{later}")
            return False
        if isinstance(exc, DmcFailed | MoveFailed):
            job.fail(f"{exc} {keeps}{later}")
            return False
        if isinstance(exc, VirtError):
            f = friendly(exc.code, exc.raw)
            job.fail(f"{f.message} {keeps}{later}", f.raw)
            return False
        job.fail(f"An internal error stopped the job (see details). {keeps}{later}", raw)
        return False

    async def _whereabouts(self, job: Job, src: str, dest: str, uuid: str,
                           paused_arrival: bool = False, call_lost: bool = False
                           ) -> tuple[VmState | bool | None, VmState | bool | None]:
        """Where the VM is on the source and on the destination, once that is settled: a
        source that does not answer is waited for (reconcile_wait), a migration still
        running there is followed to its end, and one that is ending (the VM gone from the
        source, its copy not yet resumed on the destination) is given a moment. When the
        migration call lost its connection (`call_lost`), a VM still on the source with
        nothing on the destination is watched for lost_call_grace: the source may begin the
        migration it was sent after the connection went. A destination that does not answer
        is waited for too (its copy may be there) unless the source said the migration
        failed and still runs the VM; (False, False) when it never answered."""
        fleet = self.fleet
        loop = asyncio.get_running_loop()
        end = loop.time() + self.timing.reconcile_wait
        grace_end = loop.time() + self.timing.lost_call_grace if call_lost else 0.0
        watching = False
        flight_end: float | None = None
        dest_wait = 0.0  # how long the next look at the destination waits for it to answer
        while True:
            where_src = await fleet.locate(src, uuid, wait=max(0.0, end - loop.time()))
            if isinstance(where_src, VmState):
                # Still there: follow a migration libvirt still runs to its end, then look
                # again (it may have ended, the VM gone, while we looked for a job).
                await self._follow_orphaned(job, src, uuid)
                where_src = await fleet.locate(src, uuid, wait=0)
            where_dest = await fleet.locate(dest, uuid, wait=dest_wait)
            if where_dest is False and (call_lost or where_src is None):
                # The destination does not answer: whether the VM's copy is there is not
                # known, which is not knowing that it is not. (When the source itself said
                # the migration failed and still runs the VM, it stays: that is known.)
                last = max(end, grace_end)
                if loop.time() >= last or fleet.closed:
                    return False, False
                job.set_state(job.state, f"'{dest}' does not answer; waiting for it to "
                              f"find out where '{job.vm_name}' runs")
                dest_wait = max(0.0, last - loop.time())
                continue
            dest_wait = 0.0
            incoming = where_dest in (VmState.PAUSED, VmState.OTHER)
            if isinstance(where_src, VmState) and incoming:
                # Both halves are there: libvirt is still migrating it, whether or not the
                # source said so (a look at its job can fail behind the migration's own
                # work). Wait for one half to go, not deciding meanwhile.
                if flight_end is None:
                    flight_end = loop.time() + self.timing.in_flight_wait
                    job.set_state(job.state, f"'{job.vm_name}' is on '{src}' and its copy "
                                  f"waits on '{dest}': the migration is still running there; "
                                  "waiting for it to end")
                if loop.time() >= flight_end or fleet.closed:
                    return False, where_dest  # not known where it will run
                await asyncio.sleep(self.timing.progress_interval)
                continue
            if (isinstance(where_src, VmState) and where_dest is None
                    and loop.time() < grace_end and not fleet.closed):
                if not watching:
                    watching = True
                    job.set_state(job.state, f"The connection broke under the migration "
                                  f"call; watching whether '{src}' migrates "
                                  f"'{job.vm_name}' all the same before deciding")
                await asyncio.sleep(self.timing.progress_interval)
                continue
            # (A paused VM arrives paused: gone from the source, it has arrived. libvirt
            # removes the source's half only once the destination's is complete.)
            ending = where_src is None and incoming and not paused_arrival
            if not ending or loop.time() >= end or fleet.closed:
                return where_src, where_dest
            await asyncio.sleep(0.25)

    async def _follow_orphaned(self, job: Job, src: str, uuid: str) -> bool:
        """If the source still runs the migration our call lost track of (its connection
        dropped, the migration did not), follow it to its end. True if there was one, or if
        the source stopped answering again: either way, where the VM is must be asked anew."""
        link = self.fleet.link(src)
        abort_sent = following = False
        while not self.fleet.closed:
            try:
                stats, abort_sent = await self.tick(job, link, uuid, abort_sent)
            except VirtError:
                return True
            if not stats:
                return following
            if not following:
                following = True
                job.set_state(job.state, f"The connection to '{src}' is back and the "
                              "migration is still running there; following it")
            await asyncio.sleep(self.timing.progress_interval)
        return following


def _left_note(left: Iterable[Cleanup], vm_name: str, src: str) -> str:
    # The old disks are written down too, but were not made by the job: they are removed
    # only if the VM turns out to run on the destination, so they are not named here.
    items = [e for e in left if e.kind is not CleanupKind.OLD_DISK]
    if not items:
        return "Nothing this job made is left behind."
    where = sorted({e.server for e in items})
    what = ", ".join(e.path or e.volume or e.describe() for e in items)
    return (f"What this job made on {', '.join(repr(w) for w in where)} ({what}) is recorded "
            "and removed by the next xencenter-lite command or console that can prove "
            f"'{vm_name}' runs on '{src}'.")


def _refuse(job: Job, problems: list[Problem]) -> None:
    job.fail(" ".join(p.message for p in problems),
             "\n".join(f"{p.code}: {p.message}" for p in problems))


def _for_destination(plan: MigrationPlan, xml: str, new_paths: dict[str, str],
                     meta: VmMetadata) -> str:
    """The VM's XML as the destination gets it: each copied disk on its new file, our
    metadata, each NIC on the network or bridge chosen for it (--nic, the Networking page)."""
    pools = {d.dev: d.target_sr for d in plan.copied_disks if d.target_sr}
    return rewrite_nics(rewrite_domain(xml, new_paths, meta, pools=pools), plan.nic_rewrites)


def _policy_spec(plan: MigrationPlan) -> dict[str, Any]:
    """The MigrationSpec fields the plan's migration settings call for."""
    settings = plan.settings
    return {
        # (Not for a TCG-emulated guest: see Governor.throttles.)
        "auto_converge": ((AUTO_CONVERGE_INITIAL, AUTO_CONVERGE_INCREMENT)
                          if settings.policy is Policy.AUTO_CONVERGE and not plan.vm.emulated
                          else None),
        "post_copy": settings.post_copy_allowed,
        "compression": settings.compression,
        "parallel": settings.parallel,
    }
