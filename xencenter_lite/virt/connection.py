"""One libvirt server: its connection, what it holds, and its events."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import libvirt
import libvirtaio

from xencenter_lite.core.domxml import (
    DomainXml,
    VolumeLayout,
    disk_path_of,
    io_targets,
    parse_domain,
    parse_network,
    parse_pool,
    referenced_paths,
    referenced_volumes,
    rewrite_domain,
    volume_backing,
    volume_layout,
    volume_xml,
)
from xencenter_lite.core.inventory import redact_secret
from xencenter_lite.core.metadata import KEY, NAMESPACE, VmMetadata, render_metadata
from xencenter_lite.core.model import SR, VM, Disk, Nic, VirtualNetwork, VmState
from xencenter_lite.core.perf import Counters
from xencenter_lite.virt.link import (
    DiskFiles,
    HostIdentity,
    MigrationSpec,
    Removal,
    ServerReading,
    VirtError,
    VolumeDigest,
)

_events_started = False
_register_lock = threading.Lock()


def _ignore_libvirt_errors(_ctx: object, _err: object) -> None:
    """libvirt prints every error to stderr by default; we report them ourselves."""


libvirt.registerErrorHandler(_ignore_libvirt_errors, None)


class _LoopEvents:
    """libvirt's event callbacks, carried out by libvirtaio on the event loop's thread.

    libvirt calls add/update/remove from whichever thread is using a connection (our
    worker threads included), but libvirtaio touches the asyncio loop directly, which is
    only safe on the loop's own thread. So every call is handed to the loop in order with
    call_soon_threadsafe; the ids libvirt gets back are ours, mapped to libvirtaio's.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.impl = libvirtaio.virEventAsyncIOImpl(loop=loop)
        self.ids: dict[int, int] = {}
        self.removed: set[int] = set()  # libvirt let go of these: never call them again
        self.counter = itertools.count(1)

    def _later(self, fn: Callable[[], object]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing left to watch
            self.loop.call_soon_threadsafe(fn)

    def add_handle(self, fd: int, event: int, cb: Any, opaque: Any) -> int:
        ours = next(self.counter)

        def relay(_watch: int, fd: int, events: int, opaque: Any) -> None:
            if ours not in self.removed:
                cb(ours, fd, events, opaque)

        def add() -> None:
            self.ids[ours] = self.impl._add_handle(fd, event, relay, opaque)

        self._later(add)
        return ours

    def update_handle(self, watch: int, event: int) -> None:
        self._later(lambda: self.impl._update_handle(self.ids[watch], event)
                    if watch in self.ids else None)

    def remove_handle(self, watch: int) -> int:
        self.removed.add(watch)
        self._later(lambda: self.impl._remove_handle(self.ids.pop(watch))
                    if watch in self.ids else None)
        return 0

    def add_timeout(self, timeout: int, cb: Any, opaque: Any) -> int:
        ours = next(self.counter)

        def relay(_timer: int, opaque: Any) -> None:
            if ours not in self.removed:
                cb(ours, opaque)

        def add() -> None:
            self.ids[ours] = self.impl._add_timeout(timeout, relay, opaque)

        self._later(add)
        return ours

    def update_timeout(self, timer: int, timeout: int) -> None:
        self._later(lambda: self.impl._update_timeout(self.ids[timer], timeout)
                    if timer in self.ids else None)

    def remove_timeout(self, timer: int) -> int:
        self.removed.add(timer)
        self._later(lambda: self.impl._remove_timeout(self.ids.pop(timer))
                    if timer in self.ids else None)
        return 0

    def register(self) -> None:
        libvirt.virEventRegisterImpl(self.add_handle, self.update_handle, self.remove_handle,
                                     self.add_timeout, self.update_timeout,
                                     self.remove_timeout)


def start_libvirt_events() -> None:
    """Start delivering libvirt events (and keepalive) for this process. Once per process.

    libvirtaio runs libvirt's side of the events on an asyncio loop of its own, in a thread
    of its own: libvirt's handlers take the connection's locks, and a worker thread waiting
    on a server that stopped answering can hold one, which must never freeze the caller's
    loop (the Qt loop under qasync). Callbacks given to ServerLink.watch are called on that
    thread; hand them to your loop with call_soon_threadsafe."""
    global _events_started
    with _register_lock:
        if _events_started:
            return
        events_loop = asyncio.new_event_loop()
        _LoopEvents(events_loop).register()
        threading.Thread(target=events_loop.run_forever, name="libvirt-events",
                         daemon=True).start()
        _events_started = True


def virt_error(exc: libvirt.libvirtError) -> VirtError:
    return VirtError(exc.get_error_message() or str(exc), exc.get_error_code())


@contextlib.contextmanager
def virt_errors() -> Iterator[None]:
    try:
        yield
    except libvirt.libvirtError as exc:
        raise virt_error(exc) from exc


_STATE = {
    libvirt.VIR_DOMAIN_RUNNING: VmState.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: VmState.RUNNING,
    libvirt.VIR_DOMAIN_PAUSED: VmState.PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: VmState.RUNNING,
    libvirt.VIR_DOMAIN_SHUTOFF: VmState.HALTED,
    libvirt.VIR_DOMAIN_CRASHED: VmState.CRASHED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: VmState.SUSPENDED,
}


F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class _DomainMarks:
    """Which domains are transient, have snapshots or a saved state (UUIDs): three calls
    for a server instead of up to three per VM (each a round trip to a remote server)."""

    transient: frozenset[str]
    with_snapshots: frozenset[str]
    saved: frozenset[str]


def _domain_marks(conn: libvirt.virConnect) -> _DomainMarks | None:
    """None when this libvirt cannot filter its domain list so (each VM is asked then)."""

    def uuids(flag: int) -> frozenset[str]:
        return frozenset(d.UUIDString() for d in conn.listAllDomains(flag))

    try:
        return _DomainMarks(uuids(libvirt.VIR_CONNECT_LIST_DOMAINS_TRANSIENT),
                            uuids(libvirt.VIR_CONNECT_LIST_DOMAINS_HAS_SNAPSHOT),
                            uuids(libvirt.VIR_CONNECT_LIST_DOMAINS_MANAGEDSAVE))
    except libvirt.libvirtError:
        return None


def _one_at_a_time(method: F) -> F:
    """Run a LibvirtLink method holding the link's lock: one thread on a connection at a time.

    libvirt 9.0's client can crash (in its private I/O loop) when the connection is closed
    under several threads waiting in calls on it, which is what keepalive does to a server
    that stopped answering; with one caller per connection that cannot happen."""

    @functools.wraps(method)
    def locked(self: LibvirtLink, *args: Any, **kwargs: Any) -> Any:
        while True:  # the lock of the connection as it is now (open() replaces both)
            lock = self._lock
            with lock:
                if lock is self._lock:
                    return method(self, *args, **kwargs)

    return locked  # type: ignore[return-value]


def _code(exc: libvirt.libvirtError) -> int | None:
    code = exc.get_error_code()
    return int(code) if code is not None else None


def _refresh(pool: libvirt.virStoragePool) -> None:
    """Refresh a pool (files made outside libvirt appear). libvirt refuses while a volume
    of the pool is being created or removed ("has asynchronous jobs running"): wait a
    little, then go on without (the volumes libvirt itself made are listed anyway). Any
    other failure (the connection) raises."""
    for attempt in range(10):
        try:
            pool.refresh(0)
            return
        except libvirt.libvirtError as exc:
            if "asynchronous jobs" not in (exc.get_error_message() or ""):
                raise virt_error(exc) from exc
        if attempt < 9:
            time.sleep(0.1)


def host_uuid_of(capabilities: str) -> str:
    """The host UUID in a capabilities document (libvirtd.conf's host_uuid, else the
    machine's SMBIOS UUID)."""
    root = ET.fromstring(capabilities)
    return (root.findtext("./host/uuid") or "").strip()


class LibvirtLink:
    """The connection to one libvirt server (implements virt.link.ServerLink)."""

    def __init__(self, name: str, uri: str) -> None:
        self.name = name
        self.uri = uri
        self.conn: libvirt.virConnect | None = None
        self._lock = threading.RLock()
        self._callbacks: list[int] = []
        # Domain XML -> what parse_domain made of it, for the domains of the last reading:
        # a domain whose XML did not change is not parsed again.
        self._parsed: dict[str, DomainXml] = {}

    # ---- connection ---------------------------------------------------------------------
    def open(self) -> HostIdentity:
        """Open a new connection, with a lock of its own: a thread still stuck in a call
        on the previous one (a server that stopped answering) holds only the old lock.
        Returns what the host says it is."""
        lock = threading.RLock()
        with lock:
            self._lock = lock
            self._open()
            conn = self._c()
            with virt_errors():
                return HostIdentity(host_uuid_of(conn.getCapabilities()), conn.getHostname())

    def _open(self) -> None:
        try:
            self.conn = libvirt.open(self.uri)
        except libvirt.libvirtError as exc:
            err = virt_error(exc)
            raise VirtError(redact_secret(err.raw, self.uri), err.code) from None
        with contextlib.suppress(libvirt.libvirtError):
            self.conn.setKeepAlive(5, 3)

    def close(self) -> None:
        """Let go of the connection. It is not closed here: a worker thread may still be
        inside a call on it (a server that stopped answering); libvirt closes it when the
        last reference goes, which is safe where closing under a running call is not."""
        conn, self.conn = self.conn, None
        callbacks, self._callbacks = self._callbacks, []
        if conn is None or not self._lock.acquire(blocking=False):
            return  # a call is stuck on it: leave it be (watch() ignores its close callback)
        try:
            for cb in callbacks:
                with contextlib.suppress(libvirt.libvirtError):
                    conn.domainEventDeregisterAny(cb)
            with contextlib.suppress(libvirt.libvirtError):
                conn.unregisterCloseCallback()
        finally:
            self._lock.release()

    @property
    def alive(self) -> bool:
        try:
            return self.conn is not None and self.conn.isAlive() == 1
        except libvirt.libvirtError:
            return False

    def _c(self) -> libvirt.virConnect:
        if self.conn is None:
            raise VirtError(f"not connected to {self.name}")
        return self.conn

    @_one_at_a_time
    def watch(self, on_change: Callable[[], None], on_close: Callable[[], None]) -> None:
        """Call `on_change` on domain and storage events, `on_close` if the link drops.

        Callbacks run on libvirt's event thread (see start_libvirt_events)."""
        conn = self._c()

        def domain_event(*_args: Any) -> None:
            on_change()

        def closed(*_args: Any) -> None:
            if self.conn is conn:  # not a connection already replaced
                on_close()

        with virt_errors():
            for ev in (libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                       libvirt.VIR_DOMAIN_EVENT_ID_METADATA_CHANGE,
                       libvirt.VIR_DOMAIN_EVENT_ID_BLOCK_JOB_2,
                       libvirt.VIR_DOMAIN_EVENT_ID_JOB_COMPLETED):
                self._callbacks.append(conn.domainEventRegisterAny(None, ev, domain_event, None))
            conn.storagePoolEventRegisterAny(
                None, libvirt.VIR_STORAGE_POOL_EVENT_ID_LIFECYCLE, domain_event, None)
            conn.registerCloseCallback(closed, None)

    # ---- reading ------------------------------------------------------------------------
    @_one_at_a_time
    def read(self, refresh_pools: bool = True) -> ServerReading:
        conn = self._c()
        with virt_errors():
            hostname = conn.getHostname()
            info = conn.getInfo()
            host_memory = int(info[1]) * 1024 * 1024
            free_memory = int(conn.getFreeMemory())
            srs = self._read_srs(conn, refresh_pools)
            parsed: dict[str, DomainXml] = {}
            vms = []
            domains = conn.listAllDomains()
            marks = _domain_marks(conn)
            for dom in domains:
                try:
                    vms.append(self._read_vm(conn, dom, srs, parsed, marks))
                except libvirt.libvirtError as exc:
                    # A domain that went away while we looked (the end of a migration, an
                    # incoming copy removed) is simply not there any more.
                    if _code(exc) != libvirt.VIR_ERR_NO_DOMAIN:
                        raise
            networks = self._read_networks(conn)
        # The host's bridges as far as libvirt shows them without its interface driver
        # (whose udev back end corrupts the daemon's memory under concurrent calls: seen
        # here, and known elsewhere): those its networks use and its running VMs' NICs sit on.
        bridges = {n.bridge for n in networks or () if n.bridge and n.active}
        bridges |= {b for dx in parsed.values() for nic in dx.nics if (b := nic.bridge)}
        self._parsed = parsed
        return ServerReading(hostname, host_memory, free_memory, tuple(vms), srs, networks,
                             frozenset(bridges))

    @staticmethod
    def _read_networks(conn: libvirt.virConnect) -> tuple[VirtualNetwork, ...] | None:
        """The server's libvirt networks (None: this libvirt has no network driver)."""
        try:
            nets = conn.listAllNetworks()
        except libvirt.libvirtError:
            return None
        out = []
        for net in nets:
            try:
                bridge, forward = parse_network(net.XMLDesc(0))
                out.append(VirtualNetwork(net.name(), net.isActive() == 1, bridge, forward))
            except libvirt.libvirtError:
                continue  # it vanished while we looked
        return tuple(out)

    def _read_srs(self, conn: libvirt.virConnect, refresh: bool) -> tuple[SR, ...]:
        out = []
        for pool in conn.listAllStoragePools():
            try:
                active = pool.isActive() == 1
                if active and refresh:
                    with contextlib.suppress(libvirt.libvirtError):
                        pool.refresh(0)
                px = parse_pool(pool.XMLDesc(0))
                _state, capacity, allocation, available = pool.info()
                out.append(SR(server=self.name, uuid=pool.UUIDString(), name=pool.name(),
                              type=px.type, path=px.path, capacity=capacity,
                              allocation=allocation, available=available, active=active,
                              source=px.source))
            except libvirt.libvirtError:
                continue  # the pool vanished while we looked
        return tuple(out)

    def _read_vm(self, conn: libvirt.virConnect, dom: libvirt.virDomain,
                 srs: tuple[SR, ...], parsed: dict[str, DomainXml],
                 marks: _DomainMarks | None = None) -> VM:
        state_code, max_mem_kib, cur_mem_kib, vcpus, _cpu = dom.info()
        state = _STATE.get(state_code, VmState.OTHER)
        xml = dom.XMLDesc(0)
        dx = self._parsed.get(xml) or parsed.get(xml) or parse_domain(xml)
        parsed[xml] = dx
        disks = []
        for d in dx.disks:
            capacity = allocation = 0
            sr_name, path = None, d.path
            if d.path and d.source_type == "volume" and d.pool:
                # Named by pool and volume (virt-manager may write so): its SR is that pool,
                # its file the volume's.
                try:
                    vol = conn.storagePoolLookupByName(d.pool).storageVolLookupByName(d.path)
                    path = vol.path()
                    _t, capacity, allocation = vol.info()
                    sr_name = d.pool if any(s.name == d.pool for s in srs) else None
                except libvirt.libvirtError:
                    path = None  # no such pool or volume here: no file to speak of
            elif d.path and d.source_type == "file":
                sr = max((s for s in srs if s.contains(d.path)), key=lambda s: len(s.path),
                         default=None)
                sr_name = sr.name if sr else None
                try:
                    _t, capacity, allocation = conn.storageVolLookupByPath(d.path).info()
                except libvirt.libvirtError:
                    with contextlib.suppress(libvirt.libvirtError):
                        capacity, allocation, _phys = dom.blockInfo(d.dev)
            disks.append(Disk(dev=d.dev, device=d.device, source_type=d.source_type,
                              path=path, format=d.format, capacity=capacity,
                              allocation=allocation, sr=sr_name, readonly=d.readonly))
        job = False
        if state is VmState.RUNNING:
            with contextlib.suppress(libvirt.libvirtError):
                job = dom.jobInfo()[0] in (libvirt.VIR_DOMAIN_JOB_BOUNDED,
                                           libvirt.VIR_DOMAIN_JOB_UNBOUNDED)
        uuid = dom.UUIDString()
        snapshots = 0
        if marks is None or uuid in marks.with_snapshots:
            with contextlib.suppress(libvirt.libvirtError):
                snapshots = int(dom.snapshotNum(0))
        saved = False
        if state is VmState.HALTED:
            if marks is not None:
                saved = uuid in marks.saved
            else:
                with contextlib.suppress(libvirt.libvirtError):
                    saved = dom.hasManagedSaveImage(0) == 1
        persistent = (uuid not in marks.transient if marks is not None
                      else dom.isPersistent() == 1)
        return VM(server=self.name, uuid=uuid, name=dom.name(), state=state,
                  memory=int(max_mem_kib) * 1024, vcpus=int(vcpus), disks=tuple(disks),
                  home_server=dx.metadata.home_server, folder=dx.metadata.folder,
                  has_hostdev=dx.has_hostdev, persistent=persistent,
                  virt_type=dx.virt_type, has_balloon=dx.has_balloon,
                  nics=tuple(Nic(n.mac, n.type, n.source, n.model) for n in dx.nics),
                  job_running=job,
                  current_memory=int(cur_mem_kib) * 1024 if state is VmState.RUNNING else 0,
                  dynamic_min=dx.metadata.dynamic_min, dynamic_max=dx.metadata.dynamic_max,
                  snapshots=snapshots, evacuated_from=dx.metadata.evacuated_from,
                  managed_save=saved, cpu=dx.cpu, arch=dx.arch)

    @_one_at_a_time
    def locate(self, uuid: str) -> VmState | None:
        """The VM's state here, None when this server has no such VM.

        Raises VirtError when the server cannot answer, so "absent" is never a guess."""
        try:
            dom = self._c().lookupByUUIDString(uuid)
            return _STATE.get(dom.state()[0], VmState.OTHER)
        except libvirt.libvirtError as exc:
            if _code(exc) == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise virt_error(exc) from exc

    @_one_at_a_time
    def job_stats(self, uuid: str) -> dict[str, int]:
        """libvirt's statistics of the VM's running job ({} when there is none, or no VM).

        Raises VirtError when the server cannot answer."""
        try:
            stats = self._c().lookupByUUIDString(uuid).jobStats(0)
        except libvirt.libvirtError as exc:
            if _code(exc) in (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_OPERATION_INVALID,
                              libvirt.VIR_ERR_NO_SUPPORT):
                return {}
            raise virt_error(exc) from exc
        if stats.get("type") not in (libvirt.VIR_DOMAIN_JOB_BOUNDED,
                                     libvirt.VIR_DOMAIN_JOB_UNBOUNDED):
            return {}
        return {k: int(v) for k, v in stats.items() if isinstance(v, int | float)}

    @_one_at_a_time
    def counters(self, uuid: str | None) -> Counters:
        conn = self._c()
        now = time.monotonic()
        with virt_errors():
            if uuid is None:
                return self._server_counters(conn, now)
            dom = conn.lookupByUUIDString(uuid)
            if dom.isActive() != 1:
                raise VirtError(f"'{dom.name()}' is not running: it has no performance "
                                "figures", libvirt.VIR_ERR_OPERATION_INVALID)
            _state, _max, current_kib, vcpus, cpu_ns = dom.info()
            used = total = None
            with contextlib.suppress(libvirt.libvirtError):
                mem = dom.memoryStats()
                # What the guest says it uses (its balloon driver reporting); without it
                # nothing is said (QEMU's own resident memory is not the guest's use).
                if "available" in mem and "unused" in mem:
                    used = (int(mem["available"]) - int(mem["unused"])) * 1024
                    total = int(mem["available"]) * 1024
            if total is None:
                total = int(current_kib) * 1024
            disks, nics = io_targets(dom.XMLDesc(0))
            rd = wr = rx = tx = 0
            for dev in disks:
                with contextlib.suppress(libvirt.libvirtError):
                    _rq, rbytes, _wq, wbytes, _err = dom.blockStats(dev)
                    rd, wr = rd + max(int(rbytes), 0), wr + max(int(wbytes), 0)
            for dev in nics:
                with contextlib.suppress(libvirt.libvirtError):
                    stats = dom.interfaceStats(dev)
                    rx, tx = rx + max(int(stats[0]), 0), tx + max(int(stats[4]), 0)
            return Counters(at=now, cpu_busy_ns=int(cpu_ns), cpus=int(vcpus),
                            memory_used=used, memory_total=total, disk_read=rd,
                            disk_write=wr, net_rx=rx, net_tx=tx)

    @staticmethod
    def _server_counters(conn: libvirt.virConnect, now: float) -> Counters:
        cpu = conn.getCPUStats(libvirt.VIR_NODE_CPU_STATS_ALL_CPUS)
        total_ns = sum(int(v) for v in cpu.values())
        busy_ns = total_ns - int(cpu.get("idle", 0)) - int(cpu.get("iowait", 0))
        info = conn.getInfo()
        try:
            mem = conn.getMemoryStats(libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS)
            total = int(mem["total"]) * 1024
            free = sum(int(mem.get(k, 0)) for k in ("free", "buffers", "cached")) * 1024
        except (libvirt.libvirtError, KeyError):
            total, free = int(info[1]) * 1024 * 1024, int(conn.getFreeMemory())
        # The VMs' disk and network traffic together, where libvirt gives them in one call.
        rd = wr = rx = tx = None
        try:
            stats = conn.getAllDomainStats(
                libvirt.VIR_DOMAIN_STATS_BLOCK | libvirt.VIR_DOMAIN_STATS_INTERFACE,
                libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE)
        except libvirt.libvirtError:
            stats = []
        if stats:
            rd = wr = rx = tx = 0
            for _dom, values in stats:
                for key, value in values.items():
                    if not isinstance(value, int):
                        continue
                    if key.startswith("block.") and key.endswith(".rd.bytes"):
                        rd += value
                    elif key.startswith("block.") and key.endswith(".wr.bytes"):
                        wr += value
                    elif key.startswith("net.") and key.endswith(".rx.bytes"):
                        rx += value
                    elif key.startswith("net.") and key.endswith(".tx.bytes"):
                        tx += value
        return Counters(at=now, cpu_busy_ns=max(busy_ns, 0), cpus=int(info[2]),
                        cpu_total_ns=total_ns, memory_used=max(total - free, 0),
                        memory_total=total, disk_read=rd, disk_write=wr, net_rx=rx, net_tx=tx)

    @_one_at_a_time
    def disk_files(self, uuid: str, dev: str) -> DiskFiles:
        with virt_errors():
            dom = self._c().lookupByUUIDString(uuid)
            live = disk_path_of(dom.XMLDesc(0), dev) if dom.isActive() == 1 else None
            persistent = (disk_path_of(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), dev)
                          if dom.isPersistent() == 1 else None)
        return DiskFiles(live, persistent)

    @_one_at_a_time
    def migratable_xml(self, uuid: str, inactive: bool = False) -> str:
        flags = libvirt.VIR_DOMAIN_XML_MIGRATABLE | libvirt.VIR_DOMAIN_XML_SECURE
        if inactive:
            flags |= libvirt.VIR_DOMAIN_XML_INACTIVE
        with virt_errors():
            return str(self._c().lookupByUUIDString(uuid).XMLDesc(flags))

    # ---- storage ------------------------------------------------------------------------
    def _pool(self, sr: str) -> libvirt.virStoragePool:
        with virt_errors():
            return self._c().storagePoolLookupByName(sr)

    @staticmethod
    def _looked_up(lookup: Callable[[], libvirt.virStorageVol],
                   refresh: Callable[[], None]) -> libvirt.virStorageVol | None:
        """The volume `lookup` finds, looked for again after `refresh`; None only when
        libvirt says there is none. Any other failure (a dropped connection, a missing
        pool) raises: it is never taken for "gone"."""
        for attempt in range(2):
            try:
                return lookup()
            except libvirt.libvirtError as exc:
                if _code(exc) != libvirt.VIR_ERR_NO_STORAGE_VOL:
                    raise virt_error(exc) from exc
            if attempt == 0:
                refresh()
        return None

    def _volume_named(self, sr: str, name: str) -> libvirt.virStorageVol | None:
        pool = self._pool(sr)
        return self._looked_up(lambda: pool.storageVolLookupByName(name),
                               lambda: _refresh(pool))

    def _volume_at(self, path: str) -> libvirt.virStorageVol | None:
        conn = self._c()

        def refresh_all() -> None:
            with virt_errors():
                pools = conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE)
            for pool in pools:
                try:
                    _refresh(pool)
                except VirtError as exc:
                    if exc.code != libvirt.VIR_ERR_NO_STORAGE_POOL:
                        raise

        return self._looked_up(lambda: conn.storageVolLookupByPath(path), refresh_all)

    @_one_at_a_time
    def volume_names(self, sr: str) -> frozenset[str]:
        pool = self._pool(sr)
        _refresh(pool)
        with virt_errors():
            return frozenset(pool.listVolumes())

    @_one_at_a_time
    def create_volume(self, sr: str, name: str, capacity: int, fmt: str,
                      layout: VolumeLayout | None = None) -> str:
        """Create volume `name` (exactly: libvirt refuses one that exists) in SR `sr`, a
        qcow2 one with `layout`; returns its path."""
        pool = self._pool(sr)
        with virt_errors():
            vol = pool.createXML(volume_xml(name, capacity, fmt, layout), 0)
            return str(vol.path())

    @_one_at_a_time
    def volume_capacity(self, sr: str, name: str) -> int | None:
        vol = self._volume_named(sr, name)
        if vol is None:
            return None
        with virt_errors():
            return int(vol.info()[1])

    @_one_at_a_time
    def volume_path(self, sr: str, name: str) -> str | None:
        vol = self._volume_named(sr, name)
        if vol is None:
            return None
        with virt_errors():
            return str(vol.path())

    def _in_use(self, path: str) -> bool:
        conn = self._c()
        with virt_errors():
            domains = conn.listAllDomains()
        for dom in domains:
            try:
                xmls = [dom.XMLDesc(0)]
                if dom.isActive() == 1 and dom.isPersistent() == 1:
                    xmls.append(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
                xmls += [snap.getXMLDesc(0) for snap in dom.listAllSnapshots(0)]
            except libvirt.libvirtError as exc:
                if _code(exc) == libvirt.VIR_ERR_NO_DOMAIN:
                    continue  # it went away while we looked
                raise virt_error(exc) from exc
            if any(path in referenced_paths(x) for x in xmls):
                return True
            if any(self._volume_path(pool, name) == path
                   for x in xmls for pool, name in referenced_volumes(x)):
                return True
        return False

    def _volume_path(self, pool: str, name: str) -> str | None:
        """The path of volume `name` in pool `pool` (None: no such pool or volume)."""
        try:
            return str(self._c().storagePoolLookupByName(pool).storageVolLookupByName(name)
                       .path())
        except libvirt.libvirtError as exc:
            if _code(exc) in (libvirt.VIR_ERR_NO_STORAGE_POOL, libvirt.VIR_ERR_NO_STORAGE_VOL):
                return None
            raise virt_error(exc) from exc

    @_one_at_a_time
    def volume_backing(self, path: str) -> str | None:
        with virt_errors():
            return volume_backing(self._c().storageVolLookupByPath(path).XMLDesc(0))

    @_one_at_a_time
    def volume_layout(self, path: str) -> VolumeLayout:
        with virt_errors():
            return volume_layout(self._c().storageVolLookupByPath(path).XMLDesc(0))

    @_one_at_a_time
    def compare_cpu(self, cpu: str, virt_type: str, arch: str) -> str | None:
        """None when this server's hypervisor can run a guest with this <cpu> (or its driver
        cannot compare CPUs: then libvirt's own migration check is all there is), else
        libvirt's reason (the features it lacks)."""
        try:
            self._c().compareHypervisorCPU(
                None, arch, None, virt_type, cpu,
                libvirt.VIR_CONNECT_COMPARE_CPU_FAIL_INCOMPATIBLE)
        except libvirt.libvirtError as exc:
            if _code(exc) == libvirt.VIR_ERR_CPU_INCOMPATIBLE:
                return exc.get_error_message() or str(exc)
            if _code(exc) in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_OPERATION_UNSUPPORTED):
                return None
            raise virt_error(exc) from exc
        return None

    @_one_at_a_time
    def volume_in_use(self, path: str) -> bool:
        """A domain here (running, defined, or in one of its snapshots) refers to `path`."""
        return self._in_use(path)

    def _remove(self, vol: libvirt.virStorageVol | None) -> Removal:
        if vol is None:
            return Removal.GONE
        with virt_errors():
            path = str(vol.path())
        if self._in_use(path):
            return Removal.IN_USE
        try:
            vol.delete(0)
        except libvirt.libvirtError as exc:
            if _code(exc) == libvirt.VIR_ERR_NO_STORAGE_VOL:
                return Removal.GONE
            raise virt_error(exc) from exc
        return Removal.REMOVED

    @_one_at_a_time
    def remove_volume(self, path: str) -> Removal:
        """Remove the volume at `path` unless a domain here uses it."""
        return self._remove(self._volume_at(path))

    @_one_at_a_time
    def remove_volume_named(self, sr: str, name: str) -> Removal:
        """Remove volume `name` of SR `sr` unless a domain here uses it."""
        return self._remove(self._volume_named(sr, name))

    # ---- domains ------------------------------------------------------------------------
    @_one_at_a_time
    def set_metadata(self, uuid: str, meta: VmMetadata) -> None:
        with virt_errors():
            dom = self._c().lookupByUUIDString(uuid)
            flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG
            if dom.isActive():
                flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
            dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                            render_metadata(meta, namespaced=False), KEY, NAMESPACE, flags)

    @_one_at_a_time
    def set_balloon(self, uuid: str, size: int) -> None:
        """Ask the running VM's balloon to leave it `size` bytes."""
        with virt_errors():
            self._c().lookupByUUIDString(uuid).setMemoryFlags(size // 1024,
                                                               libvirt.VIR_DOMAIN_AFFECT_LIVE)

    @_one_at_a_time
    def balloon_actual(self, uuid: str) -> int:
        """Bytes the guest really holds now, as its balloon driver reports them."""
        with virt_errors():
            stats = self._c().lookupByUUIDString(uuid).memoryStats()
        return int(stats.get("actual", 0)) * 1024

    @_one_at_a_time
    def abort_job(self, uuid: str) -> None:
        with virt_errors():
            self._c().lookupByUUIDString(uuid).abortJob()

    def set_max_downtime(self, uuid: str, ms: int) -> None:
        """The downtime the running migration may take to finish (QEMU stops the guest for
        its last pass once what is left can be sent in this time)."""
        with virt_errors():
            self._c().lookupByUUIDString(uuid).migrateSetMaxDowntime(ms, 0)

    def start_post_copy(self, uuid: str) -> None:
        """Switch the running migration (started with post-copy enabled) to post-copy."""
        with virt_errors():
            self._c().lookupByUUIDString(uuid).migrateStartPostCopy(0)

    @_one_at_a_time
    def power(self, uuid: str, action: str) -> None:
        calls: dict[str, Callable[[Any], Any]] = {
            "start": lambda d: d.create(),
            "shutdown": lambda d: d.shutdown(),
            "destroy": lambda d: d.destroy(),
            "reboot": lambda d: d.reboot(0),
            "suspend": lambda d: d.suspend(),
            "resume": lambda d: d.resume(),
            "start-paused": lambda d: d.createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED),
        }
        if action not in calls:
            raise ValueError(f"no power operation {action!r}")
        with virt_errors():
            calls[action](self._c().lookupByUUIDString(uuid))

    def _domain_or_none(self, uuid: str) -> libvirt.virDomain | None:
        """The domain, None when the server has no such domain (other failures raise)."""
        try:
            return self._c().lookupByUUIDString(uuid)
        except libvirt.libvirtError as exc:
            if _code(exc) == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise

    def _if_paused(self, uuid: str, act: Callable[[libvirt.virDomain], object]) -> bool:
        """`act` on the domain if it is there and paused; True if it was."""
        with virt_errors():
            dom = self._domain_or_none(uuid)
            if dom is None or dom.state()[0] != libvirt.VIR_DOMAIN_PAUSED:
                return False
            act(dom)
        return True

    @_one_at_a_time
    def resume_if_paused(self, uuid: str) -> None:
        """A failed migration may leave the source VM paused; let it run again."""
        self._if_paused(uuid, lambda d: d.resume())

    @_one_at_a_time
    def define(self, xml: str) -> str:
        with virt_errors():
            return str(self._c().defineXML(xml).UUIDString())

    @_one_at_a_time
    def halt_if_paused(self, uuid: str) -> bool:
        return self._if_paused(uuid, lambda d: d.destroy())

    @_one_at_a_time
    def save_if_paused(self, uuid: str) -> bool:
        return self._if_paused(uuid, lambda d: d.managedSave(libvirt.VIR_DOMAIN_SAVE_RUNNING))

    @_one_at_a_time
    def remove_incoming(self, uuid: str) -> bool:
        """Remove the half of a failed migration libvirt left here: a paused or stopped
        domain. A running one is never touched. True if one was removed."""
        with virt_errors():
            dom = self._domain_or_none(uuid)
            if dom is None:
                return False
            if dom.state()[0] in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED,
                                  libvirt.VIR_DOMAIN_SHUTDOWN):
                return False
            if dom.isActive() == 1:
                dom.destroy()
            if dom.isPersistent() == 1:
                dom.undefine()
        return True

    @_one_at_a_time
    def persist_disk(self, uuid: str, dev: str, path: str, fmt: str) -> None:
        """Make the VM's persistent definition use `path` for disk `dev`."""
        with virt_errors():
            dom = self._c().lookupByUUIDString(uuid)
            if dom.isPersistent() != 1:
                return
            inactive = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE
                                   | libvirt.VIR_DOMAIN_XML_SECURE)
            if disk_path_of(inactive, dev) == path:
                return
            pools: dict[str, str] = {}
            with contextlib.suppress(libvirt.libvirtError):  # (a disk named by pool stays so)
                pools[dev] = self._c().storageVolLookupByPath(path).storagePoolLookupByVolume(
                    ).name()
            self._c().defineXML(rewrite_domain(inactive, {dev: path}, formats={dev: fmt},
                                               pools=pools))

    # ---- long operations ------------------------------------------------------------------
    def migrate(self, spec: MigrationSpec) -> None:
        """Live-migrate the VM (on a connection of its own; see virt.migrate)."""
        from xencenter_lite.virt import migrate

        migrate.migrate(self.uri, spec)

    @_one_at_a_time
    def completed_downtime(self, uuid: str) -> int | None:
        """The downtime (ms) of the VM's last migration, from its completed job's statistics.

        Asked of the destination, which keeps them too: with UNDEFINE_SOURCE the source's
        domain, and its statistics, are gone once the migration call returns."""
        try:
            # KEEP_COMPLETED: leave them for anyone else who looks (virsh domjobinfo
            # --completed).
            stats = self._c().lookupByUUIDString(uuid).jobStats(
                libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED
                | libvirt.VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED)
        except libvirt.libvirtError:
            return None
        downtime = stats.get("downtime")
        return int(downtime) if isinstance(downtime, int | float) else None

    def block_copy(self, uuid: str, dev: str, dest_path: str, fmt: str,
                   progress: Callable[[int, int], None], cancel: threading.Event,
                   bandwidth_mib_s: int | None = None) -> None:
        from xencenter_lite.virt import migrate

        migrate.block_copy(self.uri, uuid, dev, dest_path, fmt, progress, cancel,
                           bandwidth_mib_s)

    def send_volume(self, path: str, dest_uri: str, dest_path: str,
                    progress: Callable[[int, int], None], cancel: threading.Event
                    ) -> VolumeDigest:
        from xencenter_lite.virt import migrate

        return migrate.send_volume(self.uri, path, dest_uri, dest_path, progress, cancel)

    def volume_digest(self, path: str, progress: Callable[[int, int], None],
                      cancel: threading.Event) -> VolumeDigest:
        from xencenter_lite.virt import migrate

        return migrate.volume_digest(self.uri, path, progress, cancel)
