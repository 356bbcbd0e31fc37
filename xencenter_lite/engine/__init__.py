"""The engine: one live model of the fleet and the jobs that move VMs, shared by CLI and GUI.

It runs on an asyncio loop (qasync's Qt loop in the GUI, a plain one in the CLI). Blocking
libvirt calls go to a worker per server; libvirt events come through libvirtaio on a thread
of their own, are handed to the loop, and trigger a fresh reading of the server they came
from, with a slow poll as a fallback.

In parts: `fleet` (connections, workers, readings, the snapshot, server identity),
`sharing` (proving SRs shared), `undo` and `settle` (the undo log, kept on disk, and
carrying it out), `queue` (jobs and slots), `migration`, `disk_move` and `dmc` (the runners),
`power` (start, shut down, reboot, suspend, resume), `maintenance` (which servers are in
maintenance mode).
Engine is the façade the CLI and the console use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from xencenter_lite.core.checks import Code, Problem, check_disk_move, check_plans
from xencenter_lite.core.cleanup import Cleanup
from xencenter_lite.core.copy import CopyPlan, CopyRequest, build_copy_plan, check_copy
from xencenter_lite.core.errors import friendly
from xencenter_lite.core.folders import norm_folder, vms_in_folder
from xencenter_lite.core.inventory import InventoryConfig, NetworkConfig, ServerConfig
from xencenter_lite.core.jobs import Job, JobKind, JobState
from xencenter_lite.core.model import VM, Snapshot
from xencenter_lite.core.perf import Counters, FiguresUnavailable
from xencenter_lite.core.placement import Evacuation, Rating, evacuation_plans, plan_evacuation
from xencenter_lite.core.placement import rank as rank_servers
from xencenter_lite.core.plan import DiskMovePlan, MigrationPlan, MigrationRequest, build_plan
from xencenter_lite.core.power import PowerAction, check_start_on
from xencenter_lite.engine.copy import CopyRunner
from xencenter_lite.engine.disk_move import DiskMoveRunner
from xencenter_lite.engine.dmc import Dmc, metadata_of
from xencenter_lite.engine.fleet import Fleet, LinkFactory
from xencenter_lite.engine.folders import FolderStore
from xencenter_lite.engine.maintenance import MaintenanceMarks
from xencenter_lite.engine.migration import MigrationRunner, Timing
from xencenter_lite.engine.power import PowerRunner
from xencenter_lite.engine.queue import DEFAULT_CONCURRENCY, JobQueue
from xencenter_lite.engine.settle import Settler
from xencenter_lite.engine.sharing import SharingProofs
from xencenter_lite.engine.undo import PendingStore, state_dir_for
from xencenter_lite.engine.worker import Worker
from xencenter_lite.virt import HostIdentity, LibvirtLink, ServerLink, VirtError
from xencenter_lite.virt import start_libvirt_events as _start_libvirt_events

__all__ = ["DEFAULT_CONCURRENCY", "Engine", "NewServer", "metadata_of"]

log = logging.getLogger(__name__)

SERVER_EVENTS_KEPT = 200  # the latest servers lost and back (Events lists those it was told)


@dataclass(frozen=True)
class NewServer:
    """What a server about to be added turned out to be."""

    reachable: bool
    error: str | None = None  # why it cannot be reached
    host_uuid: str = ""
    same_as: str | None = None  # the inventory entry that already reaches this host


def _libvirt_link(config: ServerConfig) -> ServerLink:
    return LibvirtLink(config.name, config.uri)


class Engine:
    def __init__(
        self,
        inventory: InventoryConfig,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        poll_interval: float = 5.0,
        progress_interval: float = 0.4,
        answer_timeout: float = 15.0,
        link_factory: LinkFactory = _libvirt_link,
        state_dir: Path | None = None,
    ) -> None:
        self.fleet = Fleet(inventory, link_factory, poll_interval=poll_interval,
                           answer_timeout=answer_timeout)
        self.timing = Timing(progress_interval=progress_interval)
        self.store = PendingStore(state_dir or state_dir_for(inventory.path))
        self.settler = Settler(self.fleet, self.store)
        self.sharing = SharingProofs(self.fleet, self.settler)
        self.fleet.sharing = self.sharing.sharing_of
        self.marks = MaintenanceMarks(self.store.directory)
        self.folder_store = FolderStore(self.store.directory)
        self.fleet.maintenance = self.marks.marked
        self.queue = JobQueue(concurrency, self.fleet.spawn)
        self.dmc = Dmc(self.fleet)
        self.migrations = MigrationRunner(self.fleet, self.queue, self.settler, self.dmc,
                                          self.timing)
        self.disk_moves = DiskMoveRunner(self.fleet, self.queue, self.settler,
                                         self.migrations)
        self.powers = PowerRunner(self.fleet, self.queue, self.migrations)
        self.copies = CopyRunner(self.fleet, self.queue, self.settler, self.migrations,
                                 self.timing)
        self.queue.on_end.append(self._job_ended)
        self.fleet.on_connected(self._server_connected)
        self.fleet.on_event(self._server_event)
        # Servers lost and back, as finished events (JobKind.SERVER) for Events; not jobs.
        self.server_events: list[Job] = []
        self._server_event_listeners: list[Callable[[Job], None]] = []
        self.close_wait = 20.0  # how long closing waits for running jobs to roll back
        self._poll_task: asyncio.Task[None] | None = None
        self._started = False

    # ---- settings ---------------------------------------------------------------------------
    @property
    def inventory(self) -> InventoryConfig:
        return self.fleet.inventory

    @property
    def concurrency(self) -> int:
        return self.queue.concurrency

    @property
    def answer_timeout(self) -> float:
        return self.fleet.answer_timeout

    @answer_timeout.setter
    def answer_timeout(self, value: float) -> None:
        self.fleet.answer_timeout = value

    @property
    def reconcile_wait(self) -> float:
        """How long a job waits for a lost source to come back to learn where its VM is."""
        return self.timing.reconcile_wait

    @reconcile_wait.setter
    def reconcile_wait(self, value: float) -> None:
        self.timing.reconcile_wait = value

    @property
    def dmc_timeout(self) -> float:
        return self.dmc.timeout

    @dmc_timeout.setter
    def dmc_timeout(self, value: float) -> None:
        self.dmc.timeout = value

    @property
    def fresh_for(self) -> float:
        """A job's checks use a server's reading begun this recently (and with no event
        from it since) instead of reading it again."""
        return self.timing.fresh_for

    @fresh_for.setter
    def fresh_for(self, value: float) -> None:
        self.timing.fresh_for = value

    # ---- life cycle ---------------------------------------------------------------------
    async def start(self, *, watch: bool = True) -> None:
        """Connect to every server (in parallel), read what it holds, prove which SRs are
        shared, and finish what earlier jobs could not undo. `watch`: follow libvirt's
        events, poll, and reconnect lost servers (the console); the CLI reads once.
        Keepalive runs either way, so a server that stops answering is noticed in seconds."""
        self.queue.start()
        _start_libvirt_events()
        self.fleet.watching = watch
        self.store.open()
        await self.fleet.connect_all()
        if await self.sharing.prove_all():
            self.fleet.changed()
        await self.settler.settle_pending()
        self._started = True
        if watch:
            self._poll_task = self.fleet.spawn(self._poll())

    async def _poll(self) -> None:
        await self.fleet.poll_forever_with(self._each_poll)

    async def _each_poll(self) -> None:
        if self.marks.changed():  # another command entered or left maintenance mode
            self.fleet.changed()
        await self.settler.settle_pending()

    def _server_connected(self, name: str) -> None:
        if not self._started:
            return  # start() proves and settles once every server has answered

        async def again() -> None:
            self.sharing.forget(name)
            if await self.sharing.prove_all():
                self.fleet.changed()
            await self.settler.settle_pending()

        self.fleet.spawn(again())

    def _server_event(self, name: str, why: str | None) -> None:
        if why is None:
            event = Job(JobKind.SERVER, f"Connected to '{name}' again", ("", ""), "", name, name)
            event.done(f"'{name}' answers again; its VMs and SRs are read anew.")
        else:
            st = self.fleet.servers.get(name)
            title = (f"Lost the connection to '{name}'" if st is not None and st.identity
                     else f"Cannot connect to '{name}'")
            event = Job(JobKind.SERVER, title, ("", ""), "", name, name)
            event.fail(f"'{name}': {why}. The console connects again as soon as it answers "
                       "(Server ▸ Connect tries now).")
        self.server_events.append(event)
        del self.server_events[:-SERVER_EVENTS_KEPT]  # a server that flaps all day
        for listener in list(self._server_event_listeners):
            listener(event)

    def subscribe_server_events(self, listener: Callable[[Job], None]) -> None:
        """Called on the loop with each server event (already finished) as it happens."""
        self._server_event_listeners.append(listener)

    def _job_ended(self, job: Job) -> None:
        if self.fleet.closed:
            return
        self.fleet.changed()
        if self.settler.pending():
            self.fleet.spawn(self.settler.settle_pending())

    async def close(self) -> None:
        """Stop: running jobs are cancelled and given close_wait seconds to roll back;
        what they could not undo by then is kept for the next engine."""
        running = self.queue.running()
        for job in running:
            with contextlib.suppress(VirtError):
                await self.cancel(job)
        tasks = [t for j in running if (t := self.queue.tasks.get(j.id)) is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=self.close_wait)
        await self.fleet.close()
        self.store.close()

    # ---- the model ----------------------------------------------------------------------
    def subscribe(self, listener: Callable[[Snapshot], None]) -> None:
        """Called on the loop with each new snapshot."""
        self.fleet.subscribe(listener)

    def subscribe_jobs(self, listener: Callable[[Job], None]) -> None:
        """Called on the loop whenever any job changes (including when it is created)."""
        self.queue.subscribe(listener)

    def snapshot(self) -> Snapshot:
        return self.fleet.snapshot()

    def request_refresh(self, name: str) -> None:
        self.fleet.request_refresh(name)

    async def refresh(self, name: str | None = None) -> Snapshot:
        """Read one server (or all) now and return the new snapshot."""
        return await self.fleet.refresh(name)

    def link(self, server: str) -> ServerLink:
        return self.fleet.link(server)

    async def counters(self, server: str, uuid: str | None = None) -> Counters:
        """The performance counters of a running VM on `server` (by UUID), or of the server
        itself. Raises FiguresUnavailable, saying why, when there are none to read now."""
        if server not in self.fleet.servers or not self.fleet.is_connected(server):
            raise FiguresUnavailable(f"'{server}' is not connected")
        try:
            return await self.fleet.call(server, self.fleet.link(server).counters, uuid)
        except VirtError as exc:
            raise FiguresUnavailable(friendly(exc.code, exc.raw).message) from exc

    def pending_cleanups(self) -> list[Cleanup]:
        """What failed jobs (of this engine or earlier ones) left to undo once safe."""
        return self.settler.pending()

    async def settle_pending(self) -> None:
        await self.settler.settle_pending()

    # ---- servers ------------------------------------------------------------------------
    async def identify(self, uri: str, timeout: float = 15.0) -> HostIdentity:
        """Connect to `uri` once and say what host it is. Raises VirtError when it cannot
        be reached."""
        link = self.fleet.link_factory(ServerConfig(name="(new server)", uri=uri))
        worker = Worker("identify")
        try:
            return await asyncio.wait_for(worker.submit(link.open), timeout)
        except TimeoutError:
            raise VirtError(f"it did not answer within {timeout:.0f} s") from None
        finally:
            link.close()
            worker.retire()

    async def reconnect(self, name: str) -> None:
        """Connect to server `name` again now, rather than at its next retry."""
        await self.fleet.reconnect(name)

    def server_in_use(self, name: str) -> str | None:
        """Why `name` cannot be disconnected or removed now, in words (None: it can)."""
        if name not in self.fleet.servers:
            return f"there is no server named '{name}' in the inventory"
        running = [j for j in self.jobs
                   if not j.state.finished and name in (j.source, j.destination)]
        if running:
            return (f"{len(running)} job(s) use it ({running[0].title}); wait for them to "
                    "end or cancel them first")
        return None

    async def disconnect(self, name: str) -> None:
        """Close the connection to server `name`; it stays closed (no retries) until
        reconnect(). Refused while a job uses it."""
        why = self.server_in_use(name)
        if why is not None:
            raise ValueError(f"'{name}' cannot be disconnected: {why}")
        await self.fleet.disconnect(name)

    def removal_refused(self, name: str) -> str | None:
        """Why server `name` cannot leave the inventory now (None: it can): a job uses it,
        or an earlier job's clean-up waits for it (it must answer for that to finish)."""
        why = self.server_in_use(name)
        if why is not None:
            return why
        if [s.name for s in self.inventory.servers] == [name]:
            return "it is the only server in the inventory, which lists at least one"
        waiting = [c for c in self.pending_cleanups() if name in (c.server, c.vm_home)]
        if waiting:
            return (f"{len(waiting)} clean-up(s) left by earlier jobs wait for it "
                    f"({waiting[0].describe()}); they are finished once it answers")
        return None

    async def remove_server(self, name: str) -> None:
        """Stop managing server `name` (the console's Remove; the caller has already taken
        it out of the inventory file). A pool left with no member goes too."""
        why = self.removal_refused(name)
        if why is not None:
            raise ValueError(f"'{name}' cannot be removed: {why}")
        inv = self.inventory
        pools = tuple(replace(p, members=tuple(m for m in p.members if m != name))
                      for p in inv.pools)
        self.fleet.inventory = replace(
            inv, servers=tuple(s for s in inv.servers if s.name != name),
            pools=tuple(p for p in pools if p.members))
        self.fleet.remove(name)

    def set_default_sr(self, kind: str, name: str, sr: str) -> None:
        """Make `sr` the default SR of pool (kind "pool") or standalone server (kind
        "server") `name` from now on (the console's Set as Default SR; the caller has
        already written it into the inventory file)."""
        inv = self.inventory
        if kind == "pool":
            if all(p.name != name for p in inv.pools):
                raise ValueError(f"there is no pool named '{name}'")
            self.fleet.inventory = replace(inv, pools=tuple(
                replace(p, default_sr=sr) if p.name == name else p for p in inv.pools))
        else:
            if inv.server(name) is None:
                raise ValueError(f"there is no server named '{name}'")
            servers = tuple(replace(s, default_sr=sr) if s.name == name else s
                            for s in inv.servers)
            self.fleet.inventory = replace(inv, servers=servers)
        self.fleet.changed()

    async def vet_new_server(self, uri: str) -> NewServer:
        """What Add Server asks before it writes anything: can `uri` be reached, and is it
        a server the inventory already has under another name?"""
        try:
            identity = await self.identify(uri)
        except VirtError as exc:
            return NewServer(reachable=False, error=friendly(exc.code, exc.raw).message
                             + f" ({exc.raw})")
        return NewServer(reachable=True, host_uuid=identity.uuid,
                         same_as=self.fleet.check_new(identity))

    async def add_server(self, server: ServerConfig, pool: str | None = None) -> None:
        """Manage one more server from now on (the console's Add Server; the caller has
        already written it into the inventory file)."""
        if server.name in self.fleet.servers:
            raise ValueError(f"a server named '{server.name}' is already managed")
        inv = self.inventory
        if pool is not None and all(p.name != pool for p in inv.pools):
            raise ValueError(f"there is no pool named '{pool}'")
        known = {n.name for n in inv.networks}
        self.fleet.inventory = replace(
            inv, servers=(*inv.servers, server),
            pools=tuple(replace(p, members=(*p.members, server.name)) if p.name == pool else p
                        for p in inv.pools),
            networks=tuple(sorted((*inv.networks, *(NetworkConfig(n) for n in server.networks
                                                    if n not in known)),
                                  key=lambda n: n.name)))
        self.fleet.add(server)
        self.fleet.changed()
        await self.fleet.connect(server.name)
        refused = self.fleet.servers[server.name].refused
        if refused:
            raise ValueError(f"'{server.name}' is {refused}")

    # ---- planning and checks --------------------------------------------------------------
    @property
    def busy(self) -> set[tuple[str, str]]:
        return self.queue.busy

    def with_defaults(self, request: MigrationRequest) -> MigrationRequest:
        """The request with the inventory's migration settings where it names none."""
        if request.settings is not None:
            return request
        return replace(request, settings=self.inventory.migration)

    def plan(self, request: MigrationRequest) -> MigrationPlan:
        request = self.with_defaults(request)
        snap = self.snapshot()
        vm = snap.vm(request.vm)
        if vm is None:
            raise LookupError(f"no VM {request.vm[1]} on {request.vm[0]}")
        return build_plan(snap, vm, request)

    def check(self, plans: Iterable[MigrationPlan]) -> list[Problem]:
        return check_plans(self.snapshot(), plans, self.busy)

    async def ask_cpus(self, requests: Iterable[MigrationRequest]) -> None:
        """Ask each destination whether it can run the CPUs of the VMs going there (once per
        server and CPU definition): check() then knows the answers."""
        snap = self.snapshot()
        moving: dict[str, list[VM]] = {}
        for r in requests:
            if (vm := snap.vm(r.vm)) is not None and vm.cpu_key:
                moving.setdefault(r.destination, []).append(vm)
        await asyncio.gather(*(self.fleet.compare_cpus(d, v) for d, v in moving.items()))

    async def precheck(
        self, requests: Iterable[MigrationRequest]
    ) -> tuple[list[MigrationPlan], list[Problem]]:
        """Plan and check `requests` together on current readings of the servers involved.

        What the console runs in the background for each candidate destination, for every
        server in a menu: a server is read again only when an event came from it since its
        reading, or when that reading is older than the slow poll keeps readings (the job
        itself checks again on readings under a second old before it moves anything)."""
        requests = [self.with_defaults(r) for r in requests]
        names = {r.vm[0] for r in requests} | {r.destination for r in requests}
        fleet = self.fleet
        await fleet.fresh(names, fleet.poll_cycle + 1.0 if self._poll_task is not None
                          else self.timing.fresh_for)
        await self.ask_cpus(requests)
        snap = self.snapshot()
        plans = []
        for r in requests:
            vm = snap.vm(r.vm)
            if vm is not None:
                plans.append(build_plan(snap, vm, r))
        problems = check_plans(snap, plans, self.busy)
        missing = len(requests) - len(plans)
        if missing:
            problems.insert(0, Problem(Code.VM_GONE, f"{missing} of the chosen VMs no longer "
                                       "exist; refresh and choose again."))
        return plans, problems

    def plan_disk_move(self, vm_key: tuple[str, str], dev: str, sr: str) -> DiskMovePlan:
        vm = self.snapshot().vm(vm_key)
        if vm is None:
            raise LookupError(f"no VM {vm_key[1]} on {vm_key[0]}")
        return DiskMovePlan(vm, dev, sr)

    def check_disk_move(self, plan: DiskMovePlan) -> list[Problem]:
        return check_disk_move(self.snapshot(), plan, self.busy - {plan.vm.key})

    def plan_copy(self, request: CopyRequest) -> CopyPlan:
        snap = self.snapshot()
        vm = snap.vm(request.vm)
        if vm is None:
            raise LookupError(f"no VM {request.vm[1]} on {request.vm[0]}")
        return build_copy_plan(snap, vm, request)

    def check_copy(self, plan: CopyPlan) -> list[Problem]:
        return check_copy(self.snapshot(), plan, self.busy - {plan.vm.key})

    # ---- jobs -----------------------------------------------------------------------------
    @property
    def jobs(self) -> list[Job]:
        return list(self.queue.jobs)

    def copy(self, request: CopyRequest) -> Job:
        """Copy VM: a new halted VM with its own copies of the disks (core.copy)."""
        vm = self.snapshot().vm(request.vm)
        name = vm.name if vm else request.vm[1]
        job = self.queue.new(Job(
            kind=JobKind.COPY, title=f"Copying '{name}' to '{request.name}' on "
            f"'{request.destination}'", vm_key=request.vm, vm_name=name,
            source=request.vm[0], destination=request.destination))
        if not self.queue.claim(job):
            return job
        self.queue.run(job, self.copies.run(job, request))
        self.fleet.changed()
        return job

    def migrate(self, requests: Iterable[MigrationRequest], *,
                skip_checks: frozenset[str] = frozenset(),
                parallel: int | None = None) -> list[Job]:
        """Queue one job per request; each checks again before it moves anything.

        `parallel`: at most this many of these jobs move data at once (besides the queue's
        own limit). `skip_checks` names problem codes the caller takes responsibility for
        (a script that knows an SR grows in time, a test that drives a real fault past a
        check); neither the CLI nor the console offers it."""
        jobs = []
        batch = asyncio.Semaphore(parallel) if parallel else None
        snap = self.snapshot()
        for req in map(self.with_defaults, requests):
            vm = snap.vm(req.vm)
            name = vm.name if vm else req.vm[1]
            job = self.queue.new(Job(
                kind=JobKind.MIGRATE, title=f"Migrating '{name}' to '{req.destination}'",
                vm_key=req.vm, vm_name=name, source=req.vm[0], destination=req.destination))
            jobs.append(job)
            if not self.queue.claim(job):
                continue
            previous, self.queue.last_queued = self.queue.last_queued, job
            self.queue.run(job, self.migrations.run(job, req, previous, skip_checks, batch))
        self.fleet.changed()
        return jobs

    def move_disk(self, vm_key: tuple[str, str], dev: str, sr: str,
                  bandwidth_mib_s: int | None = None) -> Job:
        vm = self.snapshot().vm(vm_key)
        name = vm.name if vm else vm_key[1]
        job = self.queue.new(Job(
            kind=JobKind.MOVE_DISK, title=f"Moving disk {dev} of '{name}' to SR '{sr}'",
            vm_key=vm_key, vm_name=name, source=vm_key[0], destination=vm_key[0]))
        if not self.queue.claim(job):
            return job
        self.queue.run(job, self.disk_moves.run(job, dev, sr, bandwidth_mib_s))
        self.fleet.changed()
        return job

    def power(self, vm_key: tuple[str, str], action: PowerAction, *,
              timeout: float = 120.0, force_after: bool = False) -> Job:
        """Start, shut down, force off, reboot, suspend or resume a VM, as a job. A clean
        shutdown waits `timeout` seconds for the guest, then forces it off only with
        `force_after`; it can be cancelled while it waits."""
        vm = self.snapshot().vm(vm_key)
        name = vm.name if vm else vm_key[1]
        job = self.queue.new(Job(
            kind=JobKind.POWER, title=f"{action.doing} '{name}'", vm_key=vm_key,
            vm_name=name, source=vm_key[0], destination=vm_key[0]))
        if not self.queue.claim(job):
            return job
        self.queue.run(job, self.powers.run(job, action, timeout, force_after))
        self.fleet.changed()
        return job

    async def start_on(self, vm_key: tuple[str, str], server: str) -> list[Job]:
        """Start on Server: a halted VM's definition moves to `server` (which sees its disks:
        core.power.check_start_on), then it starts there; on its own server, Start. Returns
        the jobs, once they have ended."""
        if server == vm_key[0]:
            job = self.power(vm_key, PowerAction.START)
            await self.wait([job])
            return [job]
        await self.fleet.fresh({vm_key[0], server}, self.timing.fresh_for)
        vm = self.snapshot().vm(vm_key)
        problems = (check_start_on(self.snapshot(), vm, server, self.busy) if vm else
                    [Problem(Code.VM_GONE, f"There is no VM {vm_key[1]} on '{vm_key[0]}'.")])
        if problems:  # said by a job in Events, as any refusal is
            name = vm.name if vm else vm_key[1]
            refused = self.queue.new(Job(
                kind=JobKind.POWER, title=f"Starting '{name}' on '{server}'", vm_key=vm_key,
                vm_name=name, source=vm_key[0], destination=server))
            refused.fail(" ".join(p.message for p in problems),
                         "\n".join(f"{p.code}: {p.message}" for p in problems))
            self.fleet.changed()
            return [refused]
        (move,) = self.migrate([MigrationRequest(vm_key, server)])
        await self.wait([move])
        if move.state is not JobState.DONE:
            return [move]
        moved = next((v for v in self.snapshot().vms_on(server) if v.uuid == vm_key[1]), None)
        if moved is None:
            return [move]
        start = self.power(moved.key, PowerAction.START)
        await self.wait([start])
        return [move, start]

    # ---- placement and maintenance mode --------------------------------------------------
    def rank(self, vm_key: tuple[str, str],
             request: MigrationRequest | None = None) -> list[Rating]:
        """Every other server rated for the VM, the best that can take it first."""
        snap = self.snapshot()
        vm = snap.vm(vm_key)
        if vm is None:
            raise LookupError(f"no VM {vm_key[1]} on {vm_key[0]}")
        return rank_servers(snap, vm, self.busy - {vm_key}, request)

    def in_maintenance(self, server: str) -> bool:
        srv = self.snapshot().servers.get(server)
        return srv is not None and srv.maintenance

    async def plan_maintenance(self, server: str,
                               choices: dict[str, str | None] | None = None
                               ) -> tuple[list[Evacuation], list[Problem]]:
        """What entering maintenance mode on `server` would do, read fresh: a row per VM
        (where it goes, or why it stays) and the problems of the moves taken together."""
        if server not in self.fleet.servers:
            raise LookupError(f"there is no server named '{server}' in the inventory")
        snap = await self.fleet.refresh()
        leaving = [vm for vm in snap.vms_on(server) if vm.cpu_key]
        if leaving:  # placement passes over servers that cannot run a VM's CPU
            await asyncio.gather(*(self.fleet.compare_cpus(d, leaving)
                                   for d in snap.servers if d != server))
            snap = self.snapshot()
        rows = plan_evacuation(snap, server, self.busy, choices)
        problems = check_plans(snap, evacuation_plans(rows), self.busy)
        return rows, problems

    def enter_maintenance(self, server: str, rows: Iterable[Evacuation],
                          parallel: int = DEFAULT_CONCURRENCY) -> list[Job]:
        """Mark `server` in maintenance mode (nothing is placed or migrated onto it from now
        on), then move its VMs as `rows` say, `parallel` at a time. Each VM remembers the
        server it left, so exit_maintenance brings it back."""
        host = self._host_of(server)
        self.marks.mark(host, server)
        self.fleet.changed()
        requests = [MigrationRequest(r.vm.key, r.destination, evacuated_from=host)
                    for r in rows if r.destination is not None]
        return self.migrate(requests, parallel=parallel)

    def evacuated_from(self, server: str) -> list[VM]:
        """The VMs that left `server` when it entered maintenance mode, wherever they run."""
        host = self.fleet.host_uuid(server)
        if not host:
            return []
        return sorted((v for v in self.snapshot().vms
                       if v.evacuated_from == host and v.server != server),
                      key=lambda v: (v.name, v.uuid))

    async def exit_maintenance(self, server: str, bring_back: bool = True,
                               parallel: int = DEFAULT_CONCURRENCY) -> list[Job]:
        """Take `server` out of maintenance mode and, with `bring_back`, migrate the VMs
        that left it back; without, they stay where they are and forget they left."""
        host = self._host_of(server)
        self.marks.unmark(host)
        self.fleet.changed()
        await self.fleet.refresh()
        back = self.evacuated_from(server)
        if bring_back:
            return self.migrate([MigrationRequest(v.key, server) for v in back],
                                parallel=parallel)
        for vm in back:
            meta = replace(metadata_of(vm), evacuated_from=None)
            await self.fleet.call(vm.server, self.link(vm.server).set_metadata, vm.uuid, meta)
        await asyncio.gather(*(self.fleet.read(n) for n in {v.server for v in back}))
        return []

    def _host_of(self, server: str) -> str:
        if server not in self.fleet.servers:
            raise LookupError(f"there is no server named '{server}' in the inventory")
        host = self.fleet.host_uuid(server)
        if not host:
            raise LookupError(f"'{server}' has not been reached yet, so it is not known which "
                              "host it is; connect to it first")
        return host

    async def cancel(self, job: Job) -> str | None:
        """Ask a job to stop. Queued jobs stop at once; running ones roll back. Returns why
        the job cannot be cancelled now (a migration in post-copy), or None."""
        if job.state.finished:
            return None
        refusal = job.cancel_refusal
        if refusal is not None:
            return refusal
        job.cancel_requested = True
        if job.state is JobState.QUEUED:
            job.cancelled()
            return None
        cancel_event = self.queue.cancel_events.get(job.id)
        if cancel_event is not None:
            cancel_event.set()
        if job.kind is JobKind.MIGRATE and job.state in (JobState.COPYING_DISKS,
                                                         JobState.COPYING_MEMORY):
            with contextlib.suppress(VirtError):
                await self.fleet.call(job.source, self.link(job.source).abort_job,
                                      job.vm_key[1])
        return None

    async def wait(self, jobs: Iterable[Job]) -> None:
        await self.queue.wait(jobs)

    # ---- Dynamic Memory Control and metadata -------------------------------------------------
    async def set_dynamic_memory(self, vm_key: tuple[str, str], dynamic_min: int,
                                 dynamic_max: int) -> None:
        """Set a VM's Dynamic Memory Control range; a running VM is ballooned into it."""
        await self.dmc.set_dynamic_memory(vm_key, dynamic_min, dynamic_max)

    async def set_memory(self, vm_key: tuple[str, str], size: int) -> None:
        """Balloon a running VM to `size` bytes, inside its dynamic range."""
        await self.dmc.set_memory(vm_key, size)

    async def set_folder(self, vm_key: tuple[str, str], folder: str) -> None:
        """Put the VM in `folder` ("" for none); the folder it leaves stays (folders()), as in
        XenCenter a folder is there until it is deleted."""
        vm = self.snapshot().vm(vm_key)
        if vm is None:
            raise LookupError(f"no VM {vm_key[1]} on {vm_key[0]}")
        meta = replace(metadata_of(vm), folder=norm_folder(folder))
        await self.fleet.call(vm.server, self.link(vm.server).set_metadata, vm.uuid, meta)
        self.folder_store.add([vm.folder])
        await self.fleet.read(vm.server)

    # ---- folders --------------------------------------------------------------------------
    def folders(self) -> frozenset[str]:
        """The folders kept apart from their VMs: made with New Folder, or left empty."""
        return self.folder_store.all()

    def add_folder(self, path: str) -> str:
        path = norm_folder(path)
        if not path:
            raise ValueError("a folder needs a name")
        self.folder_store.add([path])
        return path

    async def rename_folder(self, old: str, new: str) -> None:
        """`old` and everything in it become `new`: each VM in it is told its new folder."""
        old, new = norm_folder(old), norm_folder(new)
        if not old or not new:
            raise ValueError("a folder needs a name")
        for vm in vms_in_folder(self.snapshot().vms, old):
            await self.set_folder(vm.key, new + norm_folder(vm.folder)[len(old):])
        self.folder_store.rename(old, new)

    async def delete_folder(self, folder: str) -> int:
        """Delete `folder` and the folders in it; their VMs go to no folder (nothing else
        happens to them). Returns how many VMs that was."""
        folder = norm_folder(folder)
        vms = vms_in_folder(self.snapshot().vms, folder)
        for vm in vms:
            await self.set_folder(vm.key, "")
        self.folder_store.remove(folder)
        return len(vms)
