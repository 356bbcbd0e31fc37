"""The live model of the fleet as plain, immutable data.

Everything the checks, the plans and the UI need to know about servers, pools, SRs, VMs and
their disks, with no reference to libvirt or Qt. The libvirt layer fills these in; a new
snapshot replaces the old one as events arrive. Objects are identified by server + UUID
(pools and shared SRs by name), never by position or display name alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from itertools import chain

SUPPORTED_SR_TYPES = frozenset({"dir", "fs", "netfs"})
# Pool types whose storage lives on the network: the same source seen from two servers is
# the same storage. Directory and file-system pools are local unless a probe proves not.
NETWORK_SR_TYPES = frozenset({"netfs", "rbd", "gluster", "iscsi", "iscsi-direct", "sheepdog",
                              "vstorage"})


class Sharing(Enum):
    """Whether an SR is the same storage on every member of its server's pool."""

    LOCAL = "local"  # one server's own (no pool, or no other member has one of that name)
    VERIFIED = "verified"  # proven: a network pool of the same source, or a probe volume
    # made through one member was seen through every other
    NOT_SHARED = "not shared"  # same name (and path) on each member, but not the same storage
    UNVERIFIED = "unverified"  # could not be proven (yet): a member unreachable, probe failed

    @property
    def label(self) -> str:
        return _SHARING_LABELS[self]


_SHARING_LABELS = {
    Sharing.LOCAL: "No",
    Sharing.VERIFIED: "Shared (verified)",
    Sharing.NOT_SHARED: "Same name on each server, but not shared",
    Sharing.UNVERIFIED: "Not verified (treated as not shared)",
}


class VmState(Enum):
    RUNNING = "running"
    PAUSED = "paused"
    HALTED = "halted"
    CRASHED = "crashed"
    SUSPENDED = "suspended"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Disk:
    """One virtual disk (a VDI) attached to a VM."""

    dev: str  # target device, e.g. "vda"
    device: str  # "disk" or "cdrom"
    source_type: str  # libvirt disk type: "file", "block", "network", "volume"...
    path: str | None  # source file; None for an empty CD drive or a non-file disk
    format: str  # driver type, e.g. "qcow2", "raw"
    capacity: int = 0  # bytes
    allocation: int = 0  # bytes
    sr: str | None = None  # name of the SR holding it, if any
    readonly: bool = False

    @property
    def is_cdrom(self) -> bool:
        return self.device == "cdrom"

    @property
    def is_file(self) -> bool:
        """A file: named by its path, or by pool and volume (`type='volume'`, whose path the
        reading found)."""
        return self.source_type in ("file", "volume") and self.path is not None


@dataclass(frozen=True, slots=True)
class Nic:
    """One network interface of a VM (a VIF)."""

    mac: str
    kind: str  # libvirt's interface type: "network", "bridge", "user", "direct", ...
    source: str  # the libvirt network's or bridge's name ("" for other kinds)
    model: str = ""

    @property
    def target(self) -> str:
        """Where it is plugged, as --nic writes it: "NETWORK" or "bridge:NAME"."""
        if self.kind == "network":
            return self.source
        if self.kind == "bridge":
            return f"bridge:{self.source}"
        return ""

    @property
    def described(self) -> str:
        return describe_nic_target(self.target) if self.target else f"a {self.kind} interface"


def describe_nic_target(target: str) -> str:
    """ "lan" -> "network 'lan'", "bridge:br0" -> "bridge 'br0'". """
    kind, name = parse_nic_target(target)
    return f"{kind} '{name}'"


def parse_nic_target(target: str) -> tuple[str, str]:
    """ "lan" -> ("network", "lan"); "bridge:br0" -> ("bridge", "br0")."""
    if target.startswith("bridge:"):
        return "bridge", target[len("bridge:"):]
    return "network", target


@dataclass(frozen=True, slots=True)
class VirtualNetwork:
    """A libvirt network on a server (virsh net-list --all)."""

    name: str
    active: bool
    bridge: str = ""  # the host bridge its NICs are plugged into ("" when it has none)
    forward: str = ""  # its forward mode: "nat", "route", "bridge"...; "" isolated


@dataclass(frozen=True, slots=True)
class VM:
    server: str
    uuid: str
    name: str
    state: VmState
    memory: int  # bytes, current maximum memory of the guest
    vcpus: int
    disks: tuple[Disk, ...] = ()
    home_server: str | None = None
    folder: str = ""
    has_hostdev: bool = False
    persistent: bool = True
    job_running: bool = False  # libvirt reports an active job (e.g. a migration) on it
    current_memory: int = 0  # bytes the balloon leaves the guest now (0: not known)
    dynamic_min: int | None = None  # Dynamic Memory Control range, bytes
    dynamic_max: int | None = None
    snapshots: int = 0  # libvirt's snapshots of the VM (internal or external)
    evacuated_from: str | None = None  # host UUID of the server it left for maintenance
    managed_save: bool = False  # halted with a saved state (virsh managedsave) to resume
    virt_type: str = "kvm"  # libvirt's domain type: "kvm", or "qemu" (TCG emulation)
    has_balloon: bool = True  # a balloon device: Dynamic Memory Control can squeeze it
    nics: tuple[Nic, ...] = ()
    cpu: str = ""  # its <cpu> definition (a model and features; "" for host-passthrough)
    arch: str = "x86_64"

    @property
    def cpu_key(self) -> str:
        """What a destination's hypervisor is asked about: its CPU under its domain type."""
        return f"{self.virt_type} {self.arch} {self.cpu}" if self.cpu else ""

    @property
    def emulated(self) -> bool:
        """Run by TCG (software emulation), not by KVM."""
        return self.virt_type == "qemu"

    @property
    def key(self) -> tuple[str, str]:
        return (self.server, self.uuid)

    @property
    def is_running(self) -> bool:
        return self.state is VmState.RUNNING

    @property
    def memory_in_use(self) -> int:
        """What the VM holds on its server now: its balloon size if known, else its maximum."""
        return self.current_memory or self.memory

    @property
    def reclaimable(self) -> int:
        """What Dynamic Memory Control could take back by squeezing it to its dynamic minimum."""
        if (self.state is not VmState.RUNNING or self.dynamic_min is None
                or not self.has_balloon):
            return 0
        return max(0, self.memory_in_use - self.dynamic_min)

    def disk(self, dev: str) -> Disk | None:
        return next((d for d in self.disks if d.dev == dev), None)

    @property
    def hard_disks(self) -> tuple[Disk, ...]:
        return tuple(d for d in self.disks if not d.is_cdrom)


@dataclass(frozen=True, slots=True)
class SR:
    """A storage repository: one libvirt storage pool as seen from one server."""

    server: str
    uuid: str
    name: str
    type: str  # libvirt pool type: "dir", "fs", "netfs", "logical", ...
    path: str  # target path
    capacity: int
    allocation: int
    available: int
    active: bool = True
    sharing: Sharing = Sharing.LOCAL
    source: str = ""  # where a network pool's storage comes from ("nfs-1:/export")

    @property
    def shared(self) -> bool:
        """Proven to be the same storage on every member of the server's pool."""
        return self.sharing is Sharing.VERIFIED

    @property
    def supported(self) -> bool:
        return self.type in SUPPORTED_SR_TYPES

    def contains(self, path: str) -> bool:
        root = self.path.rstrip("/") + "/"
        return path.startswith(root)


@dataclass(frozen=True, slots=True)
class Server:
    name: str
    uri: str
    pool: str | None
    addresses: dict[str, str] = field(default_factory=dict)  # network name -> address
    connected: bool = False
    error: str | None = None  # why it is disconnected
    held: bool = False  # the operator disconnected it: it stays so until they connect it
    hostname: str = ""
    host_memory: int = 0  # bytes libvirt reports for the whole host
    free_memory: int = 0  # bytes libvirt reports free
    memory_limit: int | None = None  # configured limit for VMs, bytes
    default_sr: str | None = None  # standalone server's default SR
    host_uuid: str = ""  # what libvirt says the host is (its capabilities); "" until known
    maintenance: bool = False  # in maintenance mode: nothing is placed or migrated onto it
    virtual_networks: tuple[VirtualNetwork, ...] = ()
    networks_known: bool = True  # False: its libvirt cannot list networks (no driver)
    # The host's bridges known to be there: used by its networks or its running VMs' NICs
    # (libvirt's interface driver, which would list them all, is not safe to call).
    bridges: frozenset[str] = frozenset()
    # CPU definitions (VM.cpu_key) its hypervisor was asked about and cannot run, with
    # libvirt's reason (the features it lacks); what was not asked about is not here.
    cpu_refusals: Mapping[str, str] = field(default_factory=dict)

    def virtual_network(self, name: str) -> VirtualNetwork | None:
        return next((n for n in self.virtual_networks if n.name == name), None)

    @property
    def nic_targets(self) -> list[str]:
        """Where a NIC can be plugged here, as --nic writes it: its active networks, then
        its bridges."""
        return ([n.name for n in sorted(self.virtual_networks, key=lambda n: n.name)
                 if n.active] + [f"bridge:{b}" for b in sorted(self.bridges)])

    def vm_memory_available(self, running_vm_memory: int) -> int:
        """Memory a new VM can use: what libvirt reports, capped by the configured limit."""
        if self.memory_limit is None:
            return self.free_memory
        return max(0, min(self.free_memory, self.memory_limit - running_vm_memory))


@dataclass(frozen=True)
class Pool:
    name: str
    members: tuple[str, ...]
    default_sr: str | None = None
    ha_enabled: bool = False


@dataclass(frozen=True)
class Network:
    name: str
    management: bool = False
    rate: int | None = None  # bytes per second, when known


@dataclass(frozen=True)
class Snapshot:
    """Everything known at one moment.

    Lookups by key, server or name go through indexes built on first use (a snapshot never
    changes), so the console can look up a VM per row or per event at any fleet size."""

    servers: dict[str, Server]
    pools: dict[str, Pool]
    networks: dict[str, Network]
    vms: tuple[VM, ...] = ()
    srs: tuple[SR, ...] = ()

    @classmethod
    def of_servers(cls, servers: dict[str, Server], pools: dict[str, Pool],
                   networks: dict[str, Network], vms_by_server: dict[str, tuple[VM, ...]],
                   srs: tuple[SR, ...] = ()) -> Snapshot:
        """A snapshot made from VMs already grouped by server (as the engine reads them, each
        group's VMs on that server): `vms` is the groups in order, and the by-server index
        comes with them instead of being computed again from every VM."""
        snap = cls(servers, pools, networks, tuple(chain.from_iterable(vms_by_server.values())),
                   srs)
        snap.__dict__["_vms_by_server"] = {s: g for s, g in vms_by_server.items() if g}
        return snap

    # ---- indexes (computed once per snapshot; the first match wins, as a scan would) -----
    @cached_property
    def _vm_by_key(self) -> dict[tuple[str, str], VM]:
        index: dict[tuple[str, str], VM] = {}
        for v in self.vms:
            index.setdefault(v.key, v)
        return index

    @cached_property
    def _vms_by_server(self) -> dict[str, tuple[VM, ...]]:
        groups: dict[str, list[VM]] = {}
        for v in self.vms:
            groups.setdefault(v.server, []).append(v)
        return {server: tuple(vms) for server, vms in groups.items()}

    @cached_property
    def _vms_by_name(self) -> dict[str, tuple[VM, ...]]:
        """Name or UUID -> VMs, each once and in snapshot order."""
        groups: dict[str, list[VM]] = {}
        for v in self.vms:
            groups.setdefault(v.name, []).append(v)
            if v.uuid != v.name:
                groups.setdefault(v.uuid, []).append(v)
        return {name: tuple(vms) for name, vms in groups.items()}

    @cached_property
    def _vms_by_uuid(self) -> dict[str, tuple[VM, ...]]:
        groups: dict[str, list[VM]] = {}
        for v in self.vms:
            groups.setdefault(v.uuid, []).append(v)
        return {uuid: tuple(vms) for uuid, vms in groups.items()}

    @cached_property
    def _twins(self) -> dict[str, tuple[VM, ...]]:
        """UUID -> VMs, for the UUIDs listed more than once (usually none)."""
        uuids = [v.uuid for v in self.vms]
        if len(set(uuids)) == len(uuids):
            return {}
        seen: set[str] = set()
        twice: set[str] = set()
        for u in uuids:
            (twice if u in seen else seen).add(u)
        groups: dict[str, list[VM]] = {}
        for v in self.vms:
            if v.uuid in twice:
                groups.setdefault(v.uuid, []).append(v)
        return {uuid: tuple(vms) for uuid, vms in groups.items()}

    @cached_property
    def _srs_by_server(self) -> dict[str, tuple[SR, ...]]:
        groups: dict[str, list[SR]] = {}
        for s in self.srs:
            groups.setdefault(s.server, []).append(s)
        return {server: tuple(srs) for server, srs in groups.items()}

    @cached_property
    def _sr_by_name(self) -> dict[tuple[str, str], SR]:
        index: dict[tuple[str, str], SR] = {}
        for s in self.srs:
            index.setdefault((s.server, s.name), s)
        return index

    # ---- lookups -------------------------------------------------------------------------
    def pool_of(self, server: str) -> Pool | None:
        srv = self.servers.get(server)
        if srv is None or srv.pool is None:
            return None
        return self.pools.get(srv.pool)

    def vm(self, key: tuple[str, str]) -> VM | None:
        group = self._vms_by_server.get(key[0], ())
        if len(group) <= 64:  # a look through the server's VMs costs less than an index
            return next((v for v in group if v.uuid == key[1]), None)
        return self._vm_by_key.get(key)

    def vms_named(self, name: str) -> list[VM]:
        """VMs called `name`, or the VM whose UUID it is, in snapshot order."""
        return list(self._vms_by_name.get(name, ()))

    def vms_with_uuid(self, uuid: str) -> list[VM]:
        """Every VM with this UUID: one, or two while a migration lists the incoming copy."""
        twins = self._twins.get(uuid)
        return list(twins if twins is not None else self._vms_by_uuid.get(uuid, ()))

    def uuids_listed_twice(self) -> frozenset[str]:
        """UUIDs of VMs listed more than once (a migration in flight lists its paused
        incoming copy on the destination too)."""
        return frozenset(self._twins)

    def vms_on(self, server: str) -> list[VM]:
        return list(self._vms_by_server.get(server, ()))

    def srs_on(self, server: str) -> list[SR]:
        return list(self._srs_by_server.get(server, ()))

    def sr(self, server: str, name: str) -> SR | None:
        return self._sr_by_name.get((server, name))

    def sr_for_path(self, server: str, path: str) -> SR | None:
        """The SR on `server` whose directory holds `path` (longest match wins)."""
        found = [s for s in self._srs_by_server.get(server, ()) if s.contains(path)]
        return max(found, key=lambda s: len(s.path), default=None)

    def running_memory(self, server: str) -> int:
        return sum(v.memory_in_use for v in self._vms_by_server.get(server, ())
                   if v.state is not VmState.HALTED)

    def memory_available(self, server: str) -> int:
        srv = self.servers[server]
        return srv.vm_memory_available(self.running_memory(server))

    def memory_reclaimable(self, server: str) -> int:
        """Memory Dynamic Memory Control can free on `server` by squeezing its VMs."""
        return sum(v.reclaimable for v in self._vms_by_server.get(server, ()))

    def memory_available_with_dmc(self, server: str) -> int:
        """What a new VM could get once the other VMs are squeezed to their dynamic minimum."""
        srv = self.servers[server]
        freed = self.memory_reclaimable(server)
        free = srv.free_memory + freed
        if srv.memory_limit is None:
            return free
        return max(0, min(free, srv.memory_limit - (self.running_memory(server) - freed)))

    def management_network(self) -> str | None:
        return next((n.name for n in self.networks.values() if n.management), None)
