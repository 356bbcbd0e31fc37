"""The engine: one live model of the fleet and the jobs that move VMs, shared by CLI and GUI.

It runs on an asyncio loop (qasync's Qt loop in the GUI, a plain one in the CLI). Blocking
libvirt calls go to worker threads; libvirt events come through libvirtaio on a thread of
their own, are handed to the loop, and trigger a fresh reading of the server they came
from, with a slow poll as a fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, ParamSpec, TypeVar

from xencenter_lite.core.checks import (
    Problem,
    blocking,
    check_disk_move,
    check_plans,
    squeeze_targets,
)
from xencenter_lite.core.domxml import rewrite_domain
from xencenter_lite.core.errors import ABORTED, STOPPED_ANSWERING, friendly
from xencenter_lite.core.inventory import InventoryConfig, NetworkConfig, ServerConfig, redact_uri
from xencenter_lite.core.jobs import Job, JobKind, JobState, phase_from_stats, progress_from_stats
from xencenter_lite.core.metadata import VmMetadata
from xencenter_lite.core.model import SR, VM, Network, Pool, Server, Snapshot, VmState
from xencenter_lite.core.plan import (
    DiskMovePlan,
    MigrationPlan,
    MigrationRequest,
    build_plan,
    volume_name_for,
)
from xencenter_lite.core.units import format_bytes
from xencenter_lite.virt import ServerLink, ServerReading, VirtError, start_libvirt_events
from xencenter_lite.virt import migrate as vmigrate

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_CONCURRENCY = 3
STARTUP_NOTIFY_INTERVAL = 0.1  # seconds
# A queued migration waits at most this long for the one queued before it to send data.
STAGGER_WAIT = 3.0  # seconds
# A migration's checks use a server's reading begun this recently (and with no event from
# the server since) instead of reading it again.
FRESH_FOR = 1.0  # seconds


@dataclass
class _ServerState:
    link: ServerLink
    reading: ServerReading | None = None
    connected: bool = False
    error: str | None = None
    retry_delay: float = 1.0
    reconnect_task: asyncio.Task[None] | None = None
    refresh_task: asyncio.Task[None] | None = None
    dirty: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Readings asked for and readings done, counted: callers who asked while another
    # reading was under way share the next one instead of each reading the server again.
    reads_asked: int = 0
    reads_done: int = 0
    read_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    read_at: float = float("-inf")  # loop time the reading held began


class Engine:
    def __init__(
        self,
        inventory: InventoryConfig,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        poll_interval: float = 5.0,
        progress_interval: float = 0.4,
    ) -> None:
        self.inventory = inventory
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.progress_interval = progress_interval
        # A server whose reading or job statistics take longer than this is treated as lost
        # (libvirt's keepalive should say so first, but cannot when its own locks are held
        # by a thread waiting on that server).
        self.answer_timeout = 15.0
        self._servers = {
            s.name: _ServerState(ServerLink(s.name, s.uri)) for s in inventory.servers
        }
        self._calls = ThreadPoolExecutor(max_workers=8, thread_name_prefix="libvirt")
        self._long = ThreadPoolExecutor(max_workers=max(4, concurrency * 2),
                                        thread_name_prefix="libvirt-job")
        self._slots: asyncio.Semaphore | None = None
        self._jobs: list[Job] = []
        self._active: dict[tuple[str, str], Job] = {}
        self._job_tasks: dict[int, asyncio.Task[None]] = {}
        self._cancel_events: dict[int, threading.Event] = {}
        # What failed jobs could not remove because the server was unreachable.
        self._pending: dict[str, list[tuple[str, str]]] = {}
        self.reconcile_wait = 90.0  # how long a job waits for a lost source to come back
        self.dmc_timeout = 30.0  # how long squeezed guests get to give their memory back
        self._squeezed: dict[int, list[tuple[str, str, int]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._listeners: list[Callable[[Snapshot], None]] = []
        self._job_listeners: list[Callable[[Job], None]] = []
        self._snapshot: Snapshot | None = None
        # While start() connects the fleet, listeners hear of changes at most every
        # STARTUP_NOTIFY_INTERVAL seconds (a hundred servers answering at once would
        # otherwise redraw the console a hundred times); snapshot() is always current.
        self._coalescing = False
        self._last_notified = float("-inf")
        self._notify_handle: asyncio.TimerHandle | None = None
        self._poll_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._last_queued: Job | None = None  # the migration queued last

    # ---- life cycle ---------------------------------------------------------------------
    async def start(self, *, watch: bool = True) -> None:
        """Connect to every server (in parallel) and read what it holds."""
        self._loop = asyncio.get_running_loop()
        self._slots = asyncio.Semaphore(self.concurrency)
        if watch:
            start_libvirt_events()
        self._coalescing = True
        try:
            await asyncio.gather(*(self._connect(name, watch) for name in self._servers))
        finally:
            self._coalescing = False
            if self._notify_handle is not None and not self._closed:
                self._notify()  # when start() returns, listeners have the final state
        if watch:
            self._poll_task = self._spawn(self._poll_forever())

    async def close(self) -> None:
        self._closed = True
        if self._notify_handle is not None:
            self._notify_handle.cancel()
            self._notify_handle = None
        for task in list(self._tasks):
            if not task.done() and task is not asyncio.current_task():
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for st in self._servers.values():
            await self._run(st.link.close)
        self._calls.shutdown(wait=False, cancel_futures=True)
        self._long.shutdown(wait=False, cancel_futures=True)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._calls, lambda: fn(*args, **kwargs))

    async def _connect(self, name: str, watch: bool) -> None:
        """(Re)connect `name`; one attempt at a time per server."""
        st = self._servers[name]
        async with st.lock:
            if st.connected and not self._closed:
                return  # another attempt got there first
            await self._run(st.link.close)
            await self._attempt(name, watch)

    async def _attempt(self, name: str, watch: bool) -> None:
        st = self._servers[name]
        began = asyncio.get_running_loop().time()
        try:
            # One trip to a worker thread for both: with a hundred servers connecting at
            # once, each server's reading is in as soon as it is read, not queued behind
            # every other server's connection.
            reading = await self._run(_open_and_read, st.link)
        except VirtError as exc:
            st.connected, st.error = False, friendly(exc.code, exc.raw).message
            log.warning("cannot connect to %s (%s): %s", name, redact_uri(st.link.uri), exc.raw)
            await self._run(st.link.close)
            self._changed()
            if watch and not self._closed:
                self._schedule_reconnect(name)
            return
        _keep(st, reading)
        st.read_at = began
        st.connected, st.error, st.retry_delay = True, None, 1.0
        self._changed()  # show what it holds now; registering for its events can follow
        if self._pending.get(name):
            self._spawn(self._clean_up_after(name))
        if watch:
            loop = asyncio.get_running_loop()

            def changed() -> None:
                loop.call_soon_threadsafe(self.request_refresh, name)

            def lost() -> None:
                loop.call_soon_threadsafe(self._lost, name)

            try:
                await self._run(st.link.watch, changed, lost)
            except VirtError as exc:
                log.warning("no events from %s: %s (polling only)", name, exc.raw)

    def _lost(self, name: str) -> None:
        st = self._servers[name]
        if not st.connected or self._closed:
            return
        st.connected, st.error = False, "connection lost"
        self._changed()
        self._schedule_reconnect(name)

    def _schedule_reconnect(self, name: str) -> None:
        st = self._servers[name]
        if st.reconnect_task is not None and not st.reconnect_task.done():
            return

        async def retry() -> None:
            while not self._closed and not st.connected:
                await asyncio.sleep(st.retry_delay)
                st.retry_delay = min(st.retry_delay * 2, 30.0)
                await self._connect(name, watch=True)

        st.reconnect_task = self._spawn(retry())

    async def _poll_forever(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.poll_interval)
            for name, st in self._servers.items():
                if st.connected:
                    self.request_refresh(name)

    def request_refresh(self, name: str) -> None:
        """Read `name` again soon; events in a burst are folded into one reading."""
        st = self._servers[name]
        st.dirty = True
        if st.refresh_task is None or st.refresh_task.done():
            st.refresh_task = self._spawn(self._refresh_soon(name))

    async def _refresh_soon(self, name: str) -> None:
        await asyncio.sleep(0.1)
        st = self._servers[name]
        while st.dirty and not self._closed:
            st.dirty = False
            await self.refresh(name)

    async def refresh(self, name: str | None = None) -> Snapshot:
        """Read one server (or all) now and return the new snapshot."""
        names = [name] if name else list(self._servers)
        await asyncio.gather(*(self._read(n) for n in names))
        return self.snapshot()

    async def _read(self, name: str) -> None:
        """Read `name` again; returns once a reading that began after this call is in.

        Several jobs finishing at once ask for the same servers: one reading serves all who
        asked before it began (the link takes one call at a time, so they would queue)."""
        st = self._servers[name]
        st.reads_asked += 1
        ticket = st.reads_asked
        async with st.read_lock:
            if st.reads_done >= ticket:
                return  # a reading that began after we asked is in
            began = st.reads_asked
            await self._read_now(name)
            st.reads_done = max(st.reads_done, began)

    async def _read_now(self, name: str) -> None:
        st = self._servers[name]
        if not st.connected:
            return
        began = asyncio.get_running_loop().time()
        try:
            reading = await asyncio.wait_for(self._run(st.link.read), self.answer_timeout)
        except TimeoutError:
            log.warning("%s did not answer within %.0f s", name, self.answer_timeout)
            self._lost(name)
            return
        except VirtError as exc:
            if not await self._run(lambda: st.link.alive):
                self._lost(name)
            else:
                log.info("reading %s failed: %s", name, exc.raw)
            return
        st.read_at = began
        if _keep(st, reading):
            self._changed()

    # ---- the model ----------------------------------------------------------------------
    def subscribe(self, listener: Callable[[Snapshot], None]) -> None:
        """Called on the loop with each new snapshot."""
        self._listeners.append(listener)

    def subscribe_jobs(self, listener: Callable[[Job], None]) -> None:
        """Called on the loop whenever any job changes (including when it is created)."""
        self._job_listeners.append(listener)

    def _changed(self) -> None:
        self._snapshot = None
        if not self._listeners:
            return
        if self._coalescing and self._loop is not None:
            due = self._last_notified + STARTUP_NOTIFY_INTERVAL
            if self._loop.time() < due:
                if self._notify_handle is None:
                    self._notify_handle = self._loop.call_at(due, self._notify)
                return
        self._notify()

    def _notify(self) -> None:
        if self._notify_handle is not None:
            self._notify_handle.cancel()
            self._notify_handle = None
        if self._loop is not None:
            self._last_notified = self._loop.time()
        snap = self.snapshot()
        for listener in list(self._listeners):
            listener(snap)

    def snapshot(self) -> Snapshot:
        if self._snapshot is None:
            self._snapshot = self._build_snapshot()
        return self._snapshot

    def _build_snapshot(self) -> Snapshot:
        inv = self.inventory
        pools = {p.name: Pool(p.name, p.members, p.default_sr, p.ha_enabled) for p in inv.pools}
        networks = {
            n.name: Network(n.name, n.name == inv.management_network, n.rate)
            for n in inv.networks
        }
        pool_of = {m: p for p in reversed(inv.pools) for m in p.members}  # first pool wins
        servers: dict[str, Server] = {}
        vms: dict[str, tuple[VM, ...]] = {}
        srs: list[SR] = []
        for cfg in inv.servers:
            st = self._servers[cfg.name]
            pool = pool_of.get(cfg.name)
            r = st.reading if st.connected else None
            servers[cfg.name] = Server(
                name=cfg.name, uri=cfg.uri, pool=pool.name if pool else None,
                addresses=dict(cfg.networks), connected=st.connected, error=st.error,
                hostname=r.hostname if r else "", host_memory=r.host_memory if r else 0,
                free_memory=r.free_memory if r else 0, memory_limit=cfg.vm_memory_limit,
                default_sr=cfg.default_sr,
            )
            if r is not None:
                srs.extend(r.srs)
                vms[cfg.name] = r.vms
        # An SR is shared when every member of the server's pool has it at the same path.
        by_name: dict[tuple[str, str], set[str]] = {}
        for sr in srs:
            by_name.setdefault((sr.name, sr.path), set()).add(sr.server)
        shared_srs = []
        for sr in srs:
            pool = pool_of.get(sr.server)
            shared = (pool is not None and len(pool.members) > 1
                      and set(pool.members) <= by_name[(sr.name, sr.path)])
            shared_srs.append(replace(sr, shared=shared) if shared else sr)
        return Snapshot.of_servers(servers, pools, networks, vms, tuple(shared_srs))

    async def add_server(self, server: ServerConfig, pool: str | None = None) -> None:
        """Manage one more server from now on (the console's Add Server; the caller has
        already written it into the inventory file)."""
        if server.name in self._servers:
            raise ValueError(f"a server named '{server.name}' is already managed")
        inv = self.inventory
        if pool is not None and all(p.name != pool for p in inv.pools):
            raise ValueError(f"there is no pool named '{pool}'")
        known = {n.name for n in inv.networks}
        self.inventory = replace(
            inv, servers=(*inv.servers, server),
            pools=tuple(replace(p, members=(*p.members, server.name)) if p.name == pool else p
                        for p in inv.pools),
            networks=tuple(sorted((*inv.networks, *(NetworkConfig(n) for n in server.networks
                                                    if n not in known)),
                                  key=lambda n: n.name)))
        self._servers[server.name] = _ServerState(ServerLink(server.name, server.uri))
        self._changed()
        await self._connect(server.name, watch=self._poll_task is not None)

    def link(self, server: str) -> ServerLink:
        return self._servers[server].link

    # ---- planning and checks --------------------------------------------------------------
    @property
    def busy(self) -> set[tuple[str, str]]:
        return set(self._active)

    def plan(self, request: MigrationRequest) -> MigrationPlan:
        snap = self.snapshot()
        vm = snap.vm(request.vm)
        if vm is None:
            raise LookupError(f"no VM {request.vm[1]} on {request.vm[0]}")
        return build_plan(snap, vm, request)

    def check(self, plans: Iterable[MigrationPlan]) -> list[Problem]:
        return check_plans(self.snapshot(), plans, self.busy)

    async def precheck(
        self, requests: Iterable[MigrationRequest]
    ) -> tuple[list[MigrationPlan], list[Problem]]:
        """Read the servers involved again, then plan and check `requests` together.

        What the console runs in the background for each candidate destination."""
        requests = list(requests)
        names = {r.vm[0] for r in requests} | {r.destination for r in requests}
        await asyncio.gather(*(self._read(n) for n in names if n in self._servers))
        snap = self.snapshot()
        plans = []
        for r in requests:
            vm = snap.vm(r.vm)
            if vm is not None:
                plans.append(build_plan(snap, vm, r))
        problems = check_plans(snap, plans, self.busy)
        missing = len(requests) - len(plans)
        if missing:
            problems.insert(0, Problem("VM_GONE", f"{missing} of the chosen VMs no longer "
                                       "exist; refresh and choose again."))
        return plans, problems

    # ---- jobs -----------------------------------------------------------------------------
    @property
    def jobs(self) -> list[Job]:
        return list(self._jobs)

    def _new_job(self, job: Job) -> Job:
        self._jobs.append(job)
        for listener in self._job_listeners:
            job.subscribe(listener)
        job._changed()
        return job

    def migrate(self, requests: Iterable[MigrationRequest], *,
                skip_checks: frozenset[str] = frozenset()) -> list[Job]:
        """Queue one job per request; each checks again before it moves anything.

        `skip_checks` names problem codes the caller takes responsibility for (a script
        that knows an SR grows in time, a test that drives a real fault past a check);
        neither the CLI nor the console offers it."""
        jobs = []
        snap = self.snapshot()
        for req in requests:
            vm = snap.vm(req.vm)
            name = vm.name if vm else req.vm[1]
            job = self._new_job(Job(
                kind=JobKind.MIGRATE, title=f"Migrating '{name}' to '{req.destination}'",
                vm_key=req.vm, vm_name=name, source=req.vm[0], destination=req.destination))
            if self._refuse_if_busy(job):
                jobs.append(job)
                continue
            previous, self._last_queued = self._last_queued, job
            self._job_tasks[job.id] = self._spawn(
                self._guard(job, self._run_migration(job, req, previous, skip_checks)))
            jobs.append(job)
        self._changed()
        return jobs

    def move_disk(self, vm_key: tuple[str, str], dev: str, sr: str,
                  bandwidth_mib_s: int | None = None) -> Job:
        snap = self.snapshot()
        vm = snap.vm(vm_key)
        name = vm.name if vm else vm_key[1]
        job = self._new_job(Job(
            kind=JobKind.MOVE_DISK, title=f"Moving disk {dev} of '{name}' to SR '{sr}'",
            vm_key=vm_key, vm_name=name, source=vm_key[0], destination=vm_key[0]))
        if self._refuse_if_busy(job):
            return job
        self._job_tasks[job.id] = self._spawn(
            self._guard(job, self._run_disk_move(job, dev, sr, bandwidth_mib_s)))
        self._changed()
        return job

    def _refuse_if_busy(self, job: Job) -> bool:
        """Fail `job` at once when its VM is already being moved; else claim the VM."""
        if job.vm_key in self._active:
            job.fail(f"'{job.vm_name}' already has a migration or disk move running; wait for "
                     "it to finish or cancel it.")
            return True
        self._active[job.vm_key] = job
        return False

    async def _guard(self, job: Job, coro: Any) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            job.cancelled("Stopped because the console closed.")
            raise
        except Exception as exc:  # a bug must not leave a job spinning forever
            log.exception("job %s crashed", job.title)
            job.fail("An internal error stopped the job (see details).", repr(exc))
        finally:
            if self._active.get(job.vm_key) is job:
                del self._active[job.vm_key]
            self._cancel_events.pop(job.id, None)
            if not self._closed:
                self._changed()

    async def cancel(self, job: Job) -> None:
        """Ask a job to stop. Queued jobs stop at once; running ones roll back."""
        if job.state.finished:
            return
        job.cancel_requested = True
        if job.state is JobState.QUEUED:
            job.cancelled()
            return
        cancel_event = self._cancel_events.get(job.id)
        if cancel_event is not None:
            cancel_event.set()
        if job.kind is JobKind.MIGRATE and job.state in (JobState.COPYING_DISKS,
                                                         JobState.COPYING_MEMORY):
            with contextlib.suppress(VirtError):
                await self._run(self.link(job.source).abort_job, job.vm_key[1])

    async def wait(self, jobs: Iterable[Job]) -> None:
        tasks = [self._job_tasks.get(j.id) for j in jobs]
        await asyncio.gather(*(t for t in tasks if t is not None), return_exceptions=True)

    # ---- migration ------------------------------------------------------------------------
    async def _run_migration(self, job: Job, req: MigrationRequest, previous: Job | None,
                             skip_checks: frozenset[str] = frozenset()) -> None:
        slots = self._slots
        assert slots is not None
        await slots.acquire()
        held = True

        def release() -> None:  # once the data has moved; finishing needs no slot
            nonlocal held
            if held:
                held = False
                slots.release()

        try:
            if job.state.finished:
                return  # cancelled while queued
            await self._check_and_migrate(job, req, previous, skip_checks, release)
        finally:
            release()

    async def _check_and_migrate(self, job: Job, req: MigrationRequest, previous: Job | None,
                                 skip_checks: frozenset[str],
                                 release_slot: Callable[[], None]) -> None:
        job.set_state(JobState.CHECKING, "Checking the migration")
        vm = await self._fresh_vm(job, req.destination)
        if vm is None:
            return
        snap = self.snapshot()
        plan = build_plan(snap, vm, req)
        busy = self.busy - {req.vm}
        problems = [p for p in blocking(check_plans(snap, [plan], busy))
                    if p.code not in skip_checks]
        if problems:
            job.fail(" ".join(p.message for p in problems),
                     "\n".join(f"{p.code}: {p.message}" for p in problems))
            return
        await self._after(previous, job)
        if job.cancel_requested:
            job.cancelled()
            return
        await self._execute_migration(job, plan, release_slot)

    async def _fresh_vm(self, job: Job, other_server: str) -> VM | None:
        """The VM as it is now (None: gone, the job failed): the job's servers are read
        again unless their readings began under FRESH_FOR seconds ago with no event from
        them since (a command's own start, or the reading after another job ended)."""
        now = asyncio.get_running_loop().time()
        names = {n for n in {job.source, other_server} & set(self._servers)
                 if self._servers[n].dirty or now - self._servers[n].read_at > FRESH_FOR}
        await asyncio.gather(*(self._read(n) for n in names))
        vm = self.snapshot().vm(job.vm_key)
        if vm is None:
            job.fail(f"'{job.vm_name}' no longer exists on '{job.source}'.")
        return vm

    async def _execute_migration(self, job: Job, plan: MigrationPlan,
                                 release_slot: Callable[[], None]) -> None:
        src_link, dest_link = self.link(plan.source), self.link(plan.destination)
        uuid = plan.vm.uuid
        created: list[str] = []
        job.bytes_total = plan.bytes_to_copy
        try:
            await self._squeeze(job, plan)
            new_paths: dict[str, str] = {}
            for d in plan.copied_disks:
                assert d.target_sr is not None
                name = volume_name_for(d.source_path, d.dev, plan.vm.name, d.format)
                path = await self._run(dest_link.create_volume, d.target_sr, name,
                                       d.capacity, d.format)
                created.append(path)
                new_paths[d.dev] = path
                job.messages.append(f"Created {path} on '{plan.destination}'")
            if job.cancel_requested:
                raise _Cancelled()
            meta = replace(metadata_of(plan.vm), home_server=plan.home_server)
            live_xml = await self._run(src_link.migratable_xml, uuid)
            conf_xml = await self._run(src_link.migratable_xml, uuid, True)
            spec = vmigrate.MigrationSpec(
                uuid=uuid,
                dest_uri=dest_link.uri,
                address=plan.address or "",
                dest_xml=rewrite_domain(live_xml, new_paths, meta),
                persist_xml=rewrite_domain(conf_xml, new_paths, meta),
                migrate_disks=tuple(new_paths),
                keep_shared_disks=any(not d.copy for d in plan.disks),
                bandwidth_mib_s=plan.bandwidth_mib_s,
                tls=plan.tls,
            )
            job.set_state(JobState.COPYING_DISKS if new_paths else JobState.COPYING_MEMORY,
                          f"Sending {'disks and memory' if new_paths else 'memory'} to "
                          f"{plan.address} over the '{plan.network}' network")
            loop = asyncio.get_running_loop()
            fut = loop.run_in_executor(self._long, vmigrate.migrate, src_link.uri, spec)
            await self._follow_migration(job, uuid, fut)
            job.downtime_ms = fut.result()
            # The VM runs on the destination: the next queued migration need not wait for
            # the old disks to go and both servers to be read again.
            release_slot()
        except _DmcFailed as exc:
            await self._release(job)
            job.fail(str(exc))
            return
        except (VirtError, _Cancelled) as exc:
            await self._migration_failed(job, plan, created, exc)
            await self._release(job)
            return
        self._squeezed.pop(job.id, None)
        job.set_state(JobState.FINISHING, "Removing the old disks from the source")
        await self._finish_migration(job, plan)

    async def _after(self, previous: Job | None, job: Job) -> None:
        """Migrations begin one after another: each once the one queued before it sends
        data (or has ended), waiting STAGGER_WAIT seconds at most. Moves that begin
        together share the link evenly and end together, and the link then idles while
        all of them switch over and the next ones start (about a second each time). The
        wait comes before the destination volumes are made: the first move's start does
        not share its servers with the others' preparations."""
        if previous is None:
            return
        loop = asyncio.get_running_loop()
        end = loop.time() + STAGGER_WAIT
        while (previous.bytes_done == 0 and not previous.state.finished
               and not job.cancel_requested and loop.time() < end):
            await asyncio.sleep(0.05)

    async def _follow_migration(self, job: Job, uuid: str,
                                fut: asyncio.Future[int | None]) -> None:
        link = self.link(job.source)
        abort_sent = False
        while not fut.done():
            await asyncio.wait([fut], timeout=self.progress_interval)
            if fut.done():
                break
            try:
                _stats, abort_sent = await self._migration_tick(job, link, uuid, abort_sent,
                                                                call=fut)
            except VirtError:
                # The source stopped answering; stop waiting for the migration call (it
                # returns when the source does) and settle the job from where the VM is.
                fut.add_done_callback(lambda f: f.cancelled() or f.exception())
                raise

    async def _migration_tick(self, job: Job, link: ServerLink, uuid: str, abort_sent: bool,
                              call: asyncio.Future[Any] | None = None,
                              ) -> tuple[dict[str, int], bool]:
        """One look at the migration the source runs: abort it (once) if the job was
        cancelled, else report its progress and phase. Returns its statistics ({}: no job
        any more) and whether the abort is sent. Raises VirtError(STOPPED_ANSWERING) when
        the source does not answer within answer_timeout, after marking it lost.

        When `call` (the migration call) returns first, the reading is left to finish on
        its own: while a migration ends, libvirt holds its domain, and a reading of it (or
        of another VM on that server, queued behind it) can wait a second or more."""
        if job.cancel_requested and not abort_sent:
            try:
                await self._run(link.abort_job, uuid)
                abort_sent = True
            except VirtError:
                pass  # no job in libvirt yet (or none any more); try again next tick
        reading = asyncio.ensure_future(asyncio.wait_for(self._run(link.job_stats, uuid),
                                                         self.answer_timeout))
        if call is not None:
            try:
                await asyncio.wait([reading, call], return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not reading.done():
                    reading.add_done_callback(lambda r: r.cancelled() or r.exception())
            if not reading.done():
                return {}, abort_sent
        try:
            stats = await reading
        except TimeoutError:
            self._lost(job.source)
            raise VirtError(STOPPED_ANSWERING) from None
        if stats and not job.cancel_requested:
            done, total = progress_from_stats(stats, job.bytes_total)
            if total:
                job.progress(done, total)
            phase = phase_from_stats(stats)
            if phase is not job.state:
                job.set_state(phase, "Copying memory" if phase is JobState.COPYING_MEMORY
                              else None)
        return stats, abort_sent

    async def _finish_migration(self, job: Job, plan: MigrationPlan) -> None:
        src_link = self.link(plan.source)
        for d in plan.copied_disks:
            if d.source_path is None:
                continue
            try:
                await self._run(src_link.delete_volume, d.source_path)
                job.messages.append(f"Removed {d.source_path} from '{plan.source}'")
            except VirtError as exc:
                job.messages.append(f"Could not remove {d.source_path}: {exc.raw}")
        await asyncio.gather(self._read(plan.source), self._read(plan.destination))
        job.done(f"'{plan.vm.name}' now runs on '{plan.destination}'")

    async def _locate(self, server: str, uuid: str, wait: float) -> VmState | bool | None:
        """Where the VM is on `server`: its state, None if absent, False if unanswerable.

        Waits up to `wait` seconds for a lost server to come back before giving up."""
        loop = asyncio.get_running_loop()
        end = loop.time() + wait
        delay = 0.5
        st = self._servers[server]
        while True:
            if st.connected:
                try:
                    return await self._run(st.link.locate, uuid)
                except VirtError:
                    if not await self._run(lambda: st.link.alive):
                        self._lost(server)
            if loop.time() >= end or self._closed:
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            if not st.connected and (st.reconnect_task is None or st.reconnect_task.done()):
                # Opening a connection to a daemon that accepts but never answers does not
                # time out; give up on waiting for it at the deadline, let it go on alone.
                attempt = self._spawn(self._connect(server, watch=self._poll_task is not None))
                await asyncio.wait([attempt], timeout=max(0.0, end - loop.time()))

    async def _migration_failed(self, job: Job, plan: MigrationPlan, created: list[str],
                                exc: Exception) -> None:
        """Find out where the VM really runs, then undo what this job made."""
        uuid, src, dest = plan.vm.uuid, plan.source, plan.destination
        if not self._servers[src].connected:
            job.set_state(job.state, f"Lost the connection to '{src}'; waiting for it to come "
                          f"back to find out where '{plan.vm.name}' runs")
        where_src = await self._locate(src, uuid, wait=0 if self._servers[src].connected
                                       else self.reconcile_wait)
        if isinstance(where_src, VmState) and await self._follow_orphaned(job, src, uuid):
            where_src = await self._locate(src, uuid, wait=0)
        where_dest = await self._locate(dest, uuid, wait=0)
        if where_src in (None, False) and where_dest is VmState.RUNNING:
            # The VM moved even though the call reported an error (or we lost the source
            # while it finished): the migration is done.
            job.set_state(JobState.FINISHING, "The VM runs on the destination")
            job.downtime_ms = await self._run(vmigrate.completed_downtime,
                                              self.link(dest).uri, uuid)
            await self._finish_migration(job, plan)
            return
        if where_src is False:
            job.fail(f"Lost the connection to '{src}' and could not find out where "
                     f"'{plan.vm.name}' runs; the disks on '{dest}' are kept until it is known. "
                     "Check both servers when the connection is back.",
                     exc.raw if isinstance(exc, VirtError) else None)
            return
        await self._run(vmigrate.resume_if_paused, self.link(src).uri, uuid)
        if where_dest is False:
            self._pending.setdefault(dest, []).extend(
                [("domain", f"{src}/{uuid}")] + [("volume", p) for p in created])
            job.messages.append(f"'{dest}' cannot be reached: what this job made there is "
                                "removed when it is back")
        else:
            if where_dest is not None and await self._run(self.link(dest).undefine_leftover,
                                                          uuid):
                job.messages.append(f"Removed the incomplete VM from '{dest}'")
            await self._remove_volumes(job, dest, created)
        await asyncio.gather(self._read(src), self._read(dest))
        if isinstance(exc, _Cancelled) or job.cancel_requested or (
            isinstance(exc, VirtError) and exc.code == ABORTED
        ):
            job.cancelled(f"Cancelled; '{plan.vm.name}' keeps running on '{src}'.")
            return
        assert isinstance(exc, VirtError)
        f = friendly(exc.code, exc.raw)
        job.fail(f"{f.message} '{plan.vm.name}' keeps running on '{src}'.", f.raw)

    async def _follow_orphaned(self, job: Job, src: str, uuid: str) -> bool:
        """If the source still runs the migration our call lost track of (its connection
        dropped, the migration did not), follow it to its end. True if there was one, or if
        the source stopped answering again: either way, where the VM is must be asked anew."""
        link = self.link(src)
        abort_sent = following = False
        while not self._closed:
            try:
                stats, abort_sent = await self._migration_tick(job, link, uuid, abort_sent)
            except VirtError:
                return True
            if not stats:
                return following
            if not following:
                following = True
                job.set_state(job.state, f"The connection to '{src}' is back and the "
                              "migration is still running there; following it")
            await asyncio.sleep(self.progress_interval)
        return following

    async def _remove_volumes(self, job: Job | None, server: str, paths: list[str]) -> None:
        for path in paths:
            try:
                await self._run(self.link(server).delete_volume, path)
                if job is not None:
                    job.messages.append(f"Removed {path} from '{server}'")
            except VirtError as err:
                if job is not None:
                    job.messages.append(f"Could not remove {path}: {err.raw}")
                if not self._servers[server].connected:
                    self._pending.setdefault(server, []).append(("volume", path))

    async def _clean_up_after(self, server: str) -> None:
        """Remove what failed jobs left on `server` while it could not be reached."""
        todo, self._pending[server] = self._pending.get(server, []), []
        in_use = {d.path for v in self.snapshot().vms_on(server) for d in v.disks}
        for kind, what in todo:
            if kind == "domain":
                src, uuid = what.split("/", 1)
                # Only the incomplete copy: the VM must be running on its source.
                if await self._locate(src, uuid, wait=0) not in (None, False):
                    await self._run(self.link(server).undefine_leftover, uuid)
            elif what not in in_use:
                await self._remove_volumes(None, server, [what])
        if todo:
            log.info("cleaned up after failed jobs on %s: %s", server, todo)

    # ---- Dynamic Memory Control -----------------------------------------------------------
    async def _squeeze(self, job: Job, plan: MigrationPlan) -> None:
        """Balloon the destination's VMs down so the incoming VM fits, and check they did."""
        dest = plan.destination
        targets = squeeze_targets(self.snapshot(), dest, plan.vm.memory)
        if not targets:
            return
        link = self.link(dest)
        changed = self._squeezed.setdefault(job.id, [])
        freed = sum(vm.memory_in_use - size for vm, size in targets)
        job.messages.append(f"Freeing {format_bytes(freed)} on '{dest}' with Dynamic Memory "
                            "Control: " + ", ".join(f"'{vm.name}' to {format_bytes(size)}"
                                                    for vm, size in targets))
        try:
            for vm, size in targets:
                changed.append((dest, vm.uuid, vm.memory_in_use))
                await self._run(link.set_balloon, vm.uuid, size)
        except VirtError as exc:
            raise _DmcFailed(f"Could not balloon a VM on '{dest}': {exc.raw}. Nothing was "
                             "copied; the memory of its VMs was restored.") from exc
        loop = asyncio.get_running_loop()
        end = loop.time() + self.dmc_timeout
        slack = 4 * 1024 * 1024
        while True:
            stubborn = []
            for vm, size in targets:
                try:
                    actual = await self._run(link.balloon_actual, vm.uuid)
                except VirtError:
                    actual = vm.memory_in_use
                if actual > size + slack:
                    stubborn.append(vm.name)
            if not stubborn:
                break
            if loop.time() > end:
                raise _DmcFailed(
                    f"Could not free enough memory on '{dest}' with Dynamic Memory Control: "
                    + ", ".join(f"'{n}'" for n in stubborn) + " did not give memory back "
                    "(is the balloon driver loaded in the guest?). Nothing was copied; the "
                    "memory of its VMs was restored.")
            await asyncio.sleep(0.25)
        await self._read(dest)

    async def _release(self, job: Job) -> None:
        """Give back the memory this job squeezed out of other VMs."""
        for server, uuid, size in self._squeezed.pop(job.id, []):
            try:
                await self._run(self.link(server).set_balloon, uuid, size)
                job.messages.append(f"Restored the memory of VM {uuid} on '{server}'")
            except VirtError as exc:
                job.messages.append(f"Could not restore the memory of VM {uuid}: {exc.raw}")
        await self._read(job.destination)

    async def set_dynamic_memory(self, vm_key: tuple[str, str], dynamic_min: int,
                                 dynamic_max: int) -> None:
        """Set a VM's Dynamic Memory Control range; a running VM is ballooned into it."""
        vm = self.snapshot().vm(vm_key)
        if vm is None:
            raise LookupError(f"no VM {vm_key[1]} on {vm_key[0]}")
        if not 0 < dynamic_min <= dynamic_max <= vm.memory:
            raise ValueError(
                f"The dynamic range of '{vm.name}' must satisfy 0 < minimum <= maximum <= "
                f"{format_bytes(vm.memory)} (its static maximum).")
        link = self.link(vm.server)
        await self._run(link.set_metadata, vm.uuid,
                        replace(metadata_of(vm), dynamic_min=dynamic_min,
                                dynamic_max=dynamic_max))
        if vm.is_running and not dynamic_min <= vm.memory_in_use <= dynamic_max:
            size = min(max(vm.memory_in_use, dynamic_min), dynamic_max)
            await self._run(link.set_balloon, vm.uuid, size)
        await self._read(vm.server)

    async def set_memory(self, vm_key: tuple[str, str], size: int) -> None:
        """Balloon a running VM to `size` bytes, inside its dynamic range."""
        vm = self.snapshot().vm(vm_key)
        if vm is None:
            raise LookupError(f"no VM {vm_key[1]} on {vm_key[0]}")
        if not vm.is_running:
            raise ValueError(f"'{vm.name}' is not running; its balloon can't be set.")
        low = vm.dynamic_min if vm.dynamic_min is not None else 1
        high = vm.dynamic_max if vm.dynamic_max is not None else vm.memory
        if not low <= size <= high:
            raise ValueError(f"The memory of '{vm.name}' must stay between "
                             f"{format_bytes(low)} and {format_bytes(high)}.")
        await self._run(self.link(vm.server).set_balloon, vm.uuid, size)
        await self._read(vm.server)

    # ---- live disk move -------------------------------------------------------------------
    def plan_disk_move(self, vm_key: tuple[str, str], dev: str, sr: str) -> DiskMovePlan:
        vm = self.snapshot().vm(vm_key)
        if vm is None:
            raise LookupError(f"no VM {vm_key[1]} on {vm_key[0]}")
        return DiskMovePlan(vm, dev, sr)

    def check_disk_move(self, plan: DiskMovePlan) -> list[Problem]:
        return check_disk_move(self.snapshot(), plan, self.busy - {plan.vm.key})

    async def _run_disk_move(self, job: Job, dev: str, sr: str,
                             bandwidth_mib_s: int | None) -> None:
        assert self._slots is not None
        async with self._slots:
            if job.state.finished:
                return
            job.set_state(JobState.CHECKING, "Checking the disk move")
            vm = await self._fresh_vm(job, job.source)
            if vm is None:
                return
            snap = self.snapshot()
            plan = DiskMovePlan(vm, dev, sr)
            problems = blocking(check_disk_move(snap, plan, self.busy - {vm.key}))
            if problems:
                job.fail(" ".join(p.message for p in problems))
                return
            disk = vm.disk(dev)
            assert disk is not None and disk.path is not None
            link = self.link(vm.server)
            new_path: str | None = None
            cancel = threading.Event()
            self._cancel_events[job.id] = cancel
            job.bytes_total = disk.capacity
            loop = asyncio.get_running_loop()

            def progress(cur: int, end: int) -> None:
                loop.call_soon_threadsafe(job.progress, cur, end)

            try:
                new_path = await self._run(
                    link.create_volume, sr,
                    volume_name_for(disk.path, dev, vm.name, disk.format),
                    disk.capacity, disk.format)
                job.messages.append(f"Created {new_path}")
                if job.cancel_requested:
                    raise vmigrate.CopyCancelled()
                job.set_state(JobState.COPYING_DISKS, f"Copying disk {dev} to SR '{sr}'")
                await loop.run_in_executor(
                    self._long, lambda: vmigrate.block_copy(
                        link.uri, vm.uuid, dev, new_path or "", disk.format, progress, cancel,
                        bandwidth_mib_s))
            except (VirtError, vmigrate.CopyCancelled) as exc:
                if new_path is not None:
                    with contextlib.suppress(VirtError):
                        await self._run(link.delete_volume, new_path)
                        job.messages.append(f"Removed {new_path}")
                await self._read(vm.server)
                if isinstance(exc, vmigrate.CopyCancelled):
                    job.cancelled(f"Cancelled; disk {dev} stays on SR '{disk.sr}'.")
                else:
                    f = friendly(exc.code, exc.raw)
                    job.fail(f"{f.message} Disk {dev} stays on SR '{disk.sr}'.", f.raw)
                return
            job.set_state(JobState.FINISHING, "Removing the old disk")
            try:
                await self._run(link.delete_volume, disk.path)
                job.messages.append(f"Removed {disk.path}")
            except VirtError as exc:
                job.messages.append(f"Could not remove {disk.path}: {exc.raw}")
            await self._read(vm.server)
            job.done(f"Disk {dev} of '{vm.name}' is now on SR '{sr}'")

    # ---- metadata -------------------------------------------------------------------------
    async def set_folder(self, vm_key: tuple[str, str], folder: str) -> None:
        vm = self.snapshot().vm(vm_key)
        if vm is None:
            raise LookupError(f"no VM {vm_key[1]} on {vm_key[0]}")
        meta = replace(metadata_of(vm), folder=folder)
        await self._run(self.link(vm.server).set_metadata, vm.uuid, meta)
        await self._read(vm.server)


def _open_and_read(link: ServerLink) -> ServerReading:
    link.open()
    return link.read()


def _keep(st: _ServerState, reading: ServerReading) -> bool:
    """Store a server's new reading; False when nothing in it changed.

    What did not change keeps the objects of the previous reading (the whole reading, or
    each unchanged VM and SR), so listeners can tell changes by identity and the console
    redraws only what changed: the slow poll of a quiet fleet costs no redraw at all."""
    old = st.reading
    if old is None:
        st.reading = reading
        return True
    if reading == old:
        return False
    old_vms = {v.key: v for v in old.vms}
    old_srs = {(s.uuid, s.name): s for s in old.srs}
    st.reading = replace(
        reading,
        vms=tuple(_same(old_vms.get(v.key), v) for v in reading.vms),
        srs=tuple(_same(old_srs.get((s.uuid, s.name)), s) for s in reading.srs))
    return True


def _same(old: T | None, new: T) -> T:
    return old if old is not None and old == new else new


class _Cancelled(Exception):
    pass


class _DmcFailed(Exception):
    """Dynamic Memory Control could not free the memory a migration needs."""


def metadata_of(vm: VM) -> VmMetadata:
    """The VM's own metadata as it stands, to be changed with dataclasses.replace."""
    return VmMetadata(home_server=vm.home_server, folder=vm.folder,
                      dynamic_min=vm.dynamic_min, dynamic_max=vm.dynamic_max)
