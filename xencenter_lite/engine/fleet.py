"""The fleet: one connection and one worker per server, what each holds, and the snapshot.

Servers are known by what libvirt says they are: the host UUID in their capabilities. Two
inventory entries that reach the same host are never both used: the later one is refused,
with a message naming both. Every call on a server goes to that server's worker with a
deadline; a server that lets a call wait past it is given up on (its worker retired with
the stuck call) and connected again with a new worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, TypeVar

from xencenter_lite.core.errors import STOPPED_ANSWERING, friendly
from xencenter_lite.core.inventory import InventoryConfig, ServerConfig, redact_uri
from xencenter_lite.core.model import SR, VM, Network, Pool, Server, Sharing, Snapshot, VmState
from xencenter_lite.engine.worker import Worker, WorkerRetired
from xencenter_lite.virt import HostIdentity, ServerLink, ServerReading, VirtError

log = logging.getLogger(__name__)
_NO_REFUSALS: Mapping[str, str] = MappingProxyType({})
T = TypeVar("T")

STARTUP_NOTIFY_INTERVAL = 0.1  # seconds
# Listeners are told of changes at most once per this many times what telling them cost
# the last time: in a large fleet (a snapshot of 20,000 VMs and the trees redrawn from it
# take tens of milliseconds) changes arriving one server at a time are folded together,
# so the loop stays free for the rest. Below NOTIFY_COST_FREE every change is told at once.
NOTIFY_COST_FACTOR = 4.0
NOTIFY_COST_FREE = 0.01  # seconds
# Connections being opened at once. A connection is mostly waiting for a remote server
# (network round trips, ssh and TLS handshakes): many at once make a fleet appear as fast
# as its slowest server answers; a bound keeps a thousand-server inventory from starting a
# thousand ssh processes and threads in the same instant. The bound is reached in steps
# (CONNECT_RAMP more every CONNECT_RAMP_EVERY seconds): where connecting costs this
# machine's CPU instead (many servers answering at once), the first ones finish, and show,
# before the rest share the CPU with them.
CONNECT_LIMIT = 256
CONNECT_RAMP = 32
CONNECT_RAMP_EVERY = 0.1  # seconds
# The slow poll reads the servers one after another, at least this far apart: a fleet of
# 1,000 servers is read again every 50 s rather than all at once every poll interval.
POLL_SPACING = 0.05  # seconds

LinkFactory = Callable[[ServerConfig], ServerLink]

# Why a server the operator disconnected is not connected (shown after "Disconnected: ").
DISCONNECTED = "disconnected by you (Server ▸ Connect connects it again)"


@dataclass
class ServerState:
    config: ServerConfig
    link: ServerLink
    worker: Worker
    identity: HostIdentity | None = None  # from the last connection that answered
    refused: str | None = None  # why this entry is not used (the same host as another)
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
    generation: int = 0  # connections made so far
    # The operator disconnected it (Server ▸ Disconnect): no retry, no reading, until they
    # connect it again.
    held: bool = False
    # Lost (or never reached) since it last answered: its next connection is news.
    missed: bool = False


class Fleet:
    """Connections, readings and the snapshot of every server in the inventory."""

    def __init__(self, inventory: InventoryConfig, link_factory: LinkFactory, *,
                 poll_interval: float, answer_timeout: float) -> None:
        self.inventory = inventory
        self.link_factory = link_factory
        self.poll_interval = poll_interval
        # A server whose call takes longer than this is treated as lost (libvirt's
        # keepalive should say so first, but cannot when its own locks are held by a
        # thread waiting on that server).
        self.answer_timeout = answer_timeout
        self.watching = False
        self.servers: dict[str, ServerState] = {
            s.name: self._state(s) for s in inventory.servers}
        self.sharing: Callable[[str, SR], Sharing] = lambda _pool, _sr: Sharing.UNVERIFIED
        # Whether the host (by UUID) is in maintenance mode (the engine's marks).
        self.maintenance: Callable[[str], bool] = lambda _host_uuid: False
        self._listeners: list[Callable[[Snapshot], None]] = []
        self._connected_hooks: list[Callable[[str], None]] = []
        # (server, None when it answers again | why it was lost or cannot be reached)
        self._event_hooks: list[Callable[[str, str | None], None]] = []
        self._snapshot: Snapshot | None = None
        self._sr_views: dict[tuple[str, str, str], tuple[SR, SR]] = {}
        # Host UUID -> {VM.cpu_key: None when that host's hypervisor can run the CPU, else
        # libvirt's reason}. Asked once per host and CPU definition (a handful in a fleet).
        self._cpu: dict[str, dict[str, str | None]] = {}
        # Host UUID -> its refusals alone, as snapshots show them (a new mapping at each
        # change: a snapshot never changes under its readers).
        self._cpu_refusals: dict[str, Mapping[str, str]] = {}
        self._coalescing = False
        self._last_notified = float("-inf")
        self._notify_cost = 0.0  # seconds the last _notify took (snapshot and listeners)
        self._notify_handle: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._opening: asyncio.Semaphore | None = None  # made on the loop that uses it
        self.loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    def _state(self, config: ServerConfig) -> ServerState:
        return ServerState(config, self.link_factory(config), Worker(config.name))

    # ---- tasks ----------------------------------------------------------------------------
    def spawn(self, coro: Awaitable[T]) -> asyncio.Task[T]:
        task: asyncio.Task[T] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        self.closed = True
        if self._notify_handle is not None:
            self._notify_handle.cancel()
            self._notify_handle = None
        for task in list(self._tasks):
            if not task.done() and task is not asyncio.current_task():
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for st in self.servers.values():
            st.link.close()  # never blocks: a stuck connection is only let go of
            st.worker.retire()

    # ---- calls ----------------------------------------------------------------------------
    async def call(self, name: str, fn: Callable[..., T], *args: Any,
                   timeout: float | None = None) -> T:
        """`fn(*args)` on `name`'s worker, within `timeout` (default: answer_timeout).

        A server that lets the call wait longer is given up on (marked lost, its worker
        retired) and VirtError(STOPPED_ANSWERING) is raised."""
        st = self.servers[name]
        worker = st.worker
        try:
            fut = worker.submit(lambda: fn(*args))
        except WorkerRetired:
            raise VirtError(f"not connected to {name}") from None
        try:
            return await asyncio.wait_for(fut, self.answer_timeout if timeout is None
                                          else timeout)
        except TimeoutError:
            log.warning("%s did not answer within %.1f s", name,
                        self.answer_timeout if timeout is None else timeout)
            if st.worker is worker:
                self.lost(name, "stopped answering")
            raise VirtError(STOPPED_ANSWERING) from None
        except WorkerRetired as exc:  # the worker was retired under the call
            raise VirtError(f"not connected to {name} ({exc})") from None
        except VirtError:
            # A failed call may be the call's fault or the connection's: a connection that
            # is gone is given up on now, not at the next reading.
            if st.worker is worker and st.connected and not await self._still_alive(st):
                self.lost(name, "connection lost")
            raise

    async def _still_alive(self, st: ServerState) -> bool:
        link = st.link
        try:
            return await asyncio.wait_for(st.worker.submit(lambda: link.alive),
                                          self.answer_timeout)
        except (TimeoutError, WorkerRetired):
            return False

    def link(self, name: str) -> ServerLink:
        return self.servers[name].link

    def host_uuid(self, name: str) -> str:
        ident = self.servers[name].identity
        return ident.uuid if ident is not None else ""

    def is_connected(self, name: str) -> bool:
        return self.servers[name].connected

    def generation(self, name: str) -> int:
        """Which of `name`'s connections is the current one: it changes whenever one is
        given up on or opened (see connection_broke)."""
        return self.servers[name].generation

    async def connection_broke(self, name: str, since: int) -> bool:
        """Whether `name`'s connection of generation `since` is gone: given up on already,
        or found dead now (and then given up on). A call that failed on a connection that
        still works was answered by the server, not cut off."""
        st = self.servers[name]
        if not st.connected or st.generation != since:
            return True
        if await self._still_alive(st):
            return False
        if st.generation == since:
            self.lost(name, "connection lost")
        return True

    # ---- connecting -----------------------------------------------------------------------
    async def connect_all(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._coalescing = True
        try:
            await asyncio.gather(*(self.connect(name) for name in self.servers))
        finally:
            self._coalescing = False
            if self._notify_handle is not None and not self.closed:
                self._notify()  # when start() returns, listeners have the final state

    def on_event(self, hook: Callable[[str, str | None], None]) -> None:
        """Called on the loop when a server is lost or cannot be reached the first time
        (with why), and when it answers again after that (with None)."""
        self._event_hooks.append(hook)

    def _event(self, name: str, why: str | None) -> None:
        for hook in list(self._event_hooks):
            hook(name, why)

    def on_connected(self, hook: Callable[[str], None]) -> None:
        """Called on the loop each time a server (re)connects and its reading is in."""
        self._connected_hooks.append(hook)

    async def connect(self, name: str) -> None:
        """(Re)connect `name`; one attempt at a time per server."""
        st = self.servers[name]
        async with st.lock:
            if (st.connected or st.refused or st.held) and not self.closed:
                return  # another attempt got there first, or the operator said not to
            await self._attempt(name)

    def _new_worker(self, st: ServerState) -> Worker:
        st.worker.retire()
        st.link.close()
        st.worker = Worker(st.config.name)
        st.generation += 1
        return st.worker

    async def _attempt(self, name: str) -> None:
        st = self.servers[name]
        self._new_worker(st)
        began = asyncio.get_running_loop().time()
        try:
            # One trip to the worker for both: each server's reading is in as soon as it
            # is read. Opening a connection to a daemon that accepts but never answers does
            # not time out by itself: the deadline covers it.
            async with self._opening_gate():  # (the deadline starts when the call is made)
                identity, reading = await self.call(
                    name, _open_and_read, st.link, timeout=max(self.answer_timeout, 5.0))
        except VirtError as exc:
            st.connected, st.error = False, friendly(exc.code, exc.raw).message
            log.warning("cannot connect to %s (%s): %s", name, redact_uri(st.link.uri), exc.raw)
            st.link.close()
            self.changed()
            if not st.missed and not self.closed:  # news once, not at every retry
                st.missed = True
                self._event(name, st.error)
            if self.watching and not self.closed:
                self.schedule_reconnect(name)
            return
        st.identity = identity
        twin = self._twin(name)
        if twin is not None:
            self._refuse(twin[0], twin[1])
            if twin[0] == name:
                return
        keep(st, reading)
        st.read_at = began
        st.connected, st.error, st.retry_delay = True, None, 1.0
        self.changed()  # show what it holds now; registering for its events can follow
        if st.missed:
            st.missed = False
            self._event(name, None)
        for hook in list(self._connected_hooks):
            hook(name)
        if self.watching:
            loop = asyncio.get_running_loop()

            def on_change() -> None:
                loop.call_soon_threadsafe(self.request_refresh, name)

            generation = st.generation

            def on_close() -> None:
                def lost() -> None:
                    if st.generation == generation:
                        self.lost(name, "connection lost")
                loop.call_soon_threadsafe(lost)

            try:
                await self.call(name, st.link.watch, on_change, on_close)
            except VirtError as exc:
                log.warning("no events from %s: %s (polling only)", name, exc.raw)

    def _opening_gate(self) -> asyncio.Semaphore:
        if self._opening is None:
            gate = self._opening = asyncio.Semaphore(min(CONNECT_RAMP, CONNECT_LIMIT))

            async def ramp() -> None:
                permits = min(CONNECT_RAMP, CONNECT_LIMIT)
                while permits < CONNECT_LIMIT and not self.closed:
                    await asyncio.sleep(CONNECT_RAMP_EVERY)
                    more = min(CONNECT_RAMP, CONNECT_LIMIT - permits)
                    for _ in range(more):
                        gate.release()  # (an asyncio.Semaphore grows with each release)
                    permits += more

            self.spawn(ramp())
        return self._opening

    def _twin(self, name: str) -> tuple[str, str] | None:
        """(entry to refuse, the entry it duplicates) when `name` reaches a host another
        entry reaches too: the one later in the inventory is refused."""
        me = self.servers[name].identity
        if me is None or not me.uuid:
            return None
        order = list(self.servers)
        for other, st in self.servers.items():
            if other == name or st.refused or st.identity is None:
                continue
            if st.identity.uuid == me.uuid:
                first, second = sorted((name, other), key=order.index)
                return second, first
        return None

    def _refuse(self, name: str, twin: str) -> None:
        st = self.servers[name]
        uuid = st.identity.uuid if st.identity else "?"
        st.refused = (f"the same server as '{twin}' (host UUID {uuid}); two inventory entries "
                      "reach it: remove one of them")
        log.warning("%s is %s", name, st.refused)
        st.connected, st.error, st.reading = False, st.refused, None
        self._new_worker(st)
        self.changed()

    def check_new(self, identity: HostIdentity) -> str | None:
        """The inventory entry that already reaches the host `identity` names (None: none)."""
        return next((n for n, st in self.servers.items() if st.identity is not None
                     and not st.refused and st.identity.uuid == identity.uuid), None)

    def add(self, config: ServerConfig) -> None:
        self.servers[config.name] = self._state(config)

    def lost(self, name: str, why: str) -> None:
        """Give up on the server's connection (and its worker); reconnect if watching."""
        st = self.servers[name]
        if not st.connected or self.closed:
            return
        st.connected, st.error = False, why
        self._new_worker(st)
        self.changed()
        if not st.missed:
            st.missed = True
            self._event(name, why)
        self.schedule_reconnect(name)

    async def reconnect(self, name: str) -> None:
        """Connect to `name` again now, not at its next retry (a new connection even if the
        old one seems fine)."""
        st = self.servers[name]
        st.held = False
        if st.reconnect_task is not None and not st.reconnect_task.done():
            st.reconnect_task.cancel()
        if st.connected:
            st.connected, st.error = False, "reconnecting"
            self._new_worker(st)
            self.changed()
        st.retry_delay = 1.0
        await self.connect(name)
        if not st.connected and self.watching and not self.closed:
            self.schedule_reconnect(name)

    async def disconnect(self, name: str) -> None:
        """Close the connection to `name` and keep it closed (no retries) until reconnect()."""
        st = self.servers[name]
        st.held = True
        if st.reconnect_task is not None and not st.reconnect_task.done():
            st.reconnect_task.cancel()
        async with st.lock:  # an attempt under way ends first (and finds it held)
            st.connected, st.error = False, DISCONNECTED
            self._new_worker(st)
        self.changed()

    def remove(self, name: str) -> None:
        """Stop managing `name`: its connection closes, its tasks end, it leaves the snapshot
        (the caller has taken it out of the inventory)."""
        st = self.servers.pop(name)
        st.held = True
        for task in (st.reconnect_task, st.refresh_task):
            if task is not None and not task.done():
                task.cancel()
        st.link.close()
        st.worker.retire()
        self.changed()

    def schedule_reconnect(self, name: str) -> None:
        st = self.servers[name]
        if st.refused or st.held or (st.reconnect_task is not None
                                     and not st.reconnect_task.done()):
            return

        async def retry() -> None:
            while not self.closed and not st.connected and not st.refused and not st.held:
                await asyncio.sleep(st.retry_delay)
                st.retry_delay = min(st.retry_delay * 2, 30.0)
                await self.connect(name)

        st.reconnect_task = self.spawn(retry())

    async def poll_forever_with(self, each: Callable[[], Awaitable[None]]) -> None:
        """The slow poll (a fallback for missed events): read each connected server again,
        one after another, so that each is read every poll_interval — or, in a fleet too
        large for that, POLL_SPACING apart — and run `each` every poll_interval."""
        sweep = self.spawn(self._sweep_forever())
        try:
            while not self.closed:
                await asyncio.sleep(self.poll_interval)
                await each()
        finally:
            sweep.cancel()

    @property
    def poll_cycle(self) -> float:
        """How often the slow poll reads each connected server (when watching)."""
        n = sum(1 for st in self.servers.values() if st.connected)
        return max(self.poll_interval, n * POLL_SPACING)

    async def _sweep_forever(self) -> None:
        while not self.closed:
            names = [n for n, st in self.servers.items() if st.connected]
            if not names:
                await asyncio.sleep(self.poll_interval)
                continue
            gap = max(self.poll_interval / len(names), POLL_SPACING)
            for name in names:
                await asyncio.sleep(gap)
                st = self.servers.get(name)  # (it may have been removed meanwhile)
                if st is not None and st.connected and not self.closed:
                    self.request_refresh(name)

    # ---- reading --------------------------------------------------------------------------
    def request_refresh(self, name: str) -> None:
        """Read `name` again soon; events in a burst are folded into one reading."""
        st = self.servers[name]
        st.dirty = True
        if st.refresh_task is None or st.refresh_task.done():
            st.refresh_task = self.spawn(self._refresh_soon(name))

    async def _refresh_soon(self, name: str) -> None:
        await asyncio.sleep(0.1)
        st = self.servers[name]
        while st.dirty and not self.closed:
            st.dirty = False
            await self.read(name)

    async def refresh(self, name: str | None = None) -> Snapshot:
        """Read one server (or all) now and return the new snapshot."""
        names = [name] if name else list(self.servers)
        await asyncio.gather(*(self.read(n) for n in names))
        return self.snapshot()

    async def read(self, name: str) -> None:
        """Read `name` again; returns once a reading that began after this call is in.

        Several jobs finishing at once ask for the same servers: one reading serves all who
        asked before it began (the worker takes one call at a time, so they would queue)."""
        st = self.servers[name]
        st.reads_asked += 1
        ticket = st.reads_asked
        async with st.read_lock:
            if st.reads_done >= ticket:
                return  # a reading that began after we asked is in
            began = st.reads_asked
            await self._read_now(name)
            st.reads_done = max(st.reads_done, began)

    async def _read_now(self, name: str) -> None:
        st = self.servers[name]
        if not st.connected:
            return
        began = asyncio.get_running_loop().time()
        try:
            reading = await self.call(name, st.link.read)
        except VirtError as exc:
            if st.connected:  # (a connection that is gone was given up on within call())
                log.info("reading %s failed: %s", name, exc.raw)
            return
        st.read_at = began
        if keep(st, reading):
            self.changed()

    async def fresh(self, names: set[str], fresh_for: float) -> None:
        """Read these servers again unless their readings began under `fresh_for` seconds
        ago with no event from them since."""
        now = asyncio.get_running_loop().time()
        await asyncio.gather(*(self.read(n) for n in names if n in self.servers
                               and (self.servers[n].dirty
                                    or now - self.servers[n].read_at > fresh_for)))

    async def locate(self, server: str, uuid: str, wait: float) -> VmState | bool | None:
        """Where the VM is on `server`: its state, None if absent, False if unanswerable.

        Waits up to `wait` seconds for a lost server to come back before giving up."""
        loop = asyncio.get_running_loop()
        end = loop.time() + wait
        delay = 0.5
        st = self.servers[server]
        while True:
            if st.connected:
                with contextlib.suppress(VirtError):  # a lost server: call() gave it up
                    return await self.call(server, st.link.locate, uuid)
            if loop.time() >= end or self.closed:
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            if not st.connected and (st.reconnect_task is None or st.reconnect_task.done()):
                attempt = self.spawn(self.connect(server))
                await asyncio.wait([attempt], timeout=max(0.0, end - loop.time()))

    async def compare_cpus(self, dest: str, vms: Iterable[VM]) -> None:
        """Ask `dest`'s hypervisor about the CPU definitions of `vms` it was not asked about
        yet; its refusals show in the snapshot (Server.cpu_refusals). A server that cannot
        answer (not connected, no such API) is left unasked: nothing is refused for it."""
        st = self.servers.get(dest)
        if st is None or not st.connected or st.identity is None:
            return
        host = st.identity.uuid
        answers = self._cpu.setdefault(host, {})
        refused = False
        for vm in vms:
            key = vm.cpu_key
            if not key or key in answers:
                continue
            try:
                why = await self.call(dest, st.link.compare_cpu, vm.cpu, vm.virt_type, vm.arch)
            except VirtError as exc:
                log.info("could not compare %s's CPU on %s: %s", vm.name, dest, exc)
                continue
            answers[key] = why
            refused = refused or why is not None
        if refused:
            self._cpu_refusals[host] = {k: why for k, why in answers.items() if why is not None}
            self.changed()

    # ---- the model ------------------------------------------------------------------------
    def subscribe(self, listener: Callable[[Snapshot], None]) -> None:
        self._listeners.append(listener)

    def changed(self) -> None:
        self._snapshot = None
        if not self._listeners or self.loop is None:
            if self._listeners:
                self._notify()
            return
        spacing = NOTIFY_COST_FACTOR * self._notify_cost
        if self._coalescing:
            spacing = max(spacing, STARTUP_NOTIFY_INTERVAL)
        elif self._notify_cost < NOTIFY_COST_FREE:
            spacing = 0.0
        due = self._last_notified + spacing
        if self.loop.time() < due:
            if self._notify_handle is None:
                self._notify_handle = self.loop.call_at(due, self._notify)
            return
        self._notify()

    def _notify(self) -> None:
        if self._notify_handle is not None:
            self._notify_handle.cancel()
            self._notify_handle = None
        began = time.perf_counter()
        snap = self.snapshot()
        for listener in list(self._listeners):
            listener(snap)
        self._notify_cost = time.perf_counter() - began
        if self.loop is not None:
            self._last_notified = self.loop.time()

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
        views: dict[tuple[str, str, str], tuple[SR, SR]] = {}
        for cfg in inv.servers:
            st = self.servers[cfg.name]
            pool = pool_of.get(cfg.name)
            r = st.reading if st.connected else None
            known = st.identity.uuid if st.identity and not st.refused else ""
            servers[cfg.name] = Server(
                name=cfg.name, uri=cfg.uri, pool=pool.name if pool else None,
                addresses=dict(cfg.networks), connected=st.connected, error=st.error,
                held=st.held,
                hostname=r.hostname if r else "", host_memory=r.host_memory if r else 0,
                free_memory=r.free_memory if r else 0, memory_limit=cfg.vm_memory_limit,
                default_sr=cfg.default_sr,
                host_uuid=known, maintenance=bool(known) and self.maintenance(known),
                virtual_networks=(r.networks or ()) if r else (),
                networks_known=r is not None and r.networks is not None,
                bridges=r.bridges if r else frozenset(),
                cpu_refusals=self._cpu_refusals.get(known, _NO_REFUSALS),
            )
            if r is not None:
                for sr in r.srs:
                    sharing = self.sharing(pool.name, sr) if pool is not None else Sharing.LOCAL
                    srs.append(self._sr_view(sr, sharing, views))
                vms[cfg.name] = r.vms
        self._sr_views = views
        return Snapshot.of_servers(servers, pools, networks, vms, tuple(srs))

    def _sr_view(self, sr: SR, sharing: Sharing,
                 views: dict[tuple[str, str, str], tuple[SR, SR]]) -> SR:
        """The SR with its sharing verdict; the same object as in the last snapshot when
        neither changed (the console redraws by identity)."""
        key = (sr.server, sr.uuid, sr.name)
        old = self._sr_views.get(key)
        if old is not None and old[0] is sr and old[1].sharing is sharing:
            view = old[1]
        else:
            view = sr if sr.sharing is sharing else replace(sr, sharing=sharing)
        views[key] = (sr, view)
        return view


def _open_and_read(link: ServerLink) -> tuple[HostIdentity, ServerReading]:
    identity = link.open()
    return identity, link.read()


def keep(st: ServerState, reading: ServerReading) -> bool:
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
