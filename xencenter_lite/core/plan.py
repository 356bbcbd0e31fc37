"""Migration plans: what the operator asked for, resolved against the live model.

A request names a VM, a destination server and optionally SRs and a network; the plan says
exactly what will happen: a memory-only live migration (XenMotion) when every disk can stay
where it is because the destination sees the same SR, otherwise a storage migration
(Storage XenMotion) that copies each disk into its chosen SR. Plans never fail to build:
anything wrong with them is reported by the checks, all at once.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from enum import Enum

from xencenter_lite.core.model import VM, Nic, Snapshot, VmState, parse_nic_target
from xencenter_lite.core.policy import MigrationSettings


class MigrationKind(Enum):
    MEMORY = "memory-only"
    STORAGE = "storage"


class DataPath(Enum):
    """How a VM and its disks get to the destination."""

    LIVE = "live"  # a running or paused VM: libvirt migrates it, disks over the network
    DEFINITION = "definition"  # a halted VM whose disks all stay (shared SR): its definition
    # A halted VM's disks through libvirt's volume streams, by way of the console's two
    # connections (sparse: holes are not sent), then its definition.
    STREAM = "stream"
    # A halted VM started paused on its server (no guest code runs), its disks and state
    # sent by libvirt straight to the destination over the chosen network, as a live
    # migration's are, then turned off there: halted, as it was.
    DIRECT = "direct"

    @property
    def offline(self) -> bool:
        return self is not DataPath.LIVE


@dataclass(frozen=True)
class MigrationRequest:
    vm: tuple[str, str]  # (server, uuid)
    destination: str
    sr: str | None = None  # every copied disk goes here
    disk_srs: dict[str, str] = field(default_factory=dict)  # dev -> SR, wins over `sr`
    network: str | None = None
    bandwidth_mib_s: int | None = None  # cap the transfer (MiB/s); None = as fast as possible
    tls: bool = False  # encrypt the migration stream with libvirt's TLS
    # Maintenance mode: the host UUID of the server the VM leaves, kept in the VM's metadata
    # so leaving maintenance brings it back; its home server stays as it was.
    evacuated_from: str | None = None
    resume: bool = False  # a paused VM: resume it on the destination (else it stays paused)
    # A halted VM whose disks are copied: how (None: directly when both servers have the
    # memory to hold it paused and the destination an address on the network, else
    # through the console).
    data_path: DataPath | None = None
    # How a live migration is brought to an end (None: the inventory's [migration] default).
    settings: MigrationSettings | None = None
    # NIC (MAC) -> where to plug it on the destination: "NETWORK" or "bridge:NAME" (the
    # wizard's Networking page, --nic); unmapped NICs keep the network or bridge they have.
    nics: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NicPlacement:
    nic: Nic
    target: str  # "NETWORK" or "bridge:NAME" on the destination ("" for other NIC kinds)
    mapped: bool  # chosen (--nic, the Networking page), not just kept

    @property
    def changed(self) -> bool:
        return bool(self.target) and self.target != self.nic.target


@dataclass(frozen=True)
class DiskPlacement:
    dev: str
    source_path: str | None
    source_sr: str | None
    target_sr: str | None  # None: no SR could be chosen
    capacity: int
    format: str
    copy: bool  # False: the destination sees the disk where it is (shared SR)
    supported: bool = True  # a file on a dir/fs/netfs SR, or a file in no SR (`loose`)
    # A file in no SR of its server: copied like any other (its sharing cannot be proven),
    # and its old file stays (there is no SR to remove it through, nor to stream it from).
    loose: bool = False


@dataclass(frozen=True)
class MigrationPlan:
    vm: VM
    destination: str
    kind: MigrationKind
    disks: tuple[DiskPlacement, ...]
    network: str | None
    address: str | None  # the destination's address on `network`
    bandwidth_mib_s: int | None = None
    unknown_devs: tuple[str, ...] = ()  # --disk DEV=SR naming a disk the VM does not have
    nics: tuple[NicPlacement, ...] = ()
    unknown_macs: tuple[str, ...] = ()  # --nic MAC=... naming a NIC the VM does not have
    tls: bool = False
    evacuated_from: str | None = None  # see MigrationRequest
    data_path: DataPath = DataPath.LIVE
    resume: bool = False  # see MigrationRequest (only ever True for a paused VM)
    path_chosen: bool = False  # the operator chose data_path (else a direct move that
    # cannot start the VM paused falls back to the streams)
    settings: MigrationSettings = field(default_factory=MigrationSettings)

    @property
    def source(self) -> str:
        return self.vm.server

    @property
    def offline(self) -> bool:
        """The VM is halted: nothing runs while it moves, and it stays halted."""
        return self.data_path.offline

    @property
    def needs_memory(self) -> int:
        """What the destination must have free for the VM to arrive (a halted VM: none; one
        sent directly holds its memory there for a moment, but falls back to the streams
        unless that path was chosen)."""
        if self.data_path is DataPath.LIVE or (self.data_path is DataPath.DIRECT
                                               and self.path_chosen):
            return self.vm.memory
        return 0

    @property
    def uses_network(self) -> bool:
        """The data goes between the servers over plan.network."""
        return self.data_path in (DataPath.LIVE, DataPath.DIRECT)

    @property
    def home_server(self) -> str:
        """The VM's home server afterwards: where it goes, unless it only leaves a server
        in maintenance for a while (then the one it had)."""
        if self.evacuated_from:
            return self.vm.home_server or self.vm.server
        return self.destination

    @property
    def nic_rewrites(self) -> dict[str, tuple[str, str]]:
        """The NICs plugged elsewhere on the destination: MAC -> (type, name)."""
        return {p.nic.mac: parse_nic_target(p.target) for p in self.nics if p.changed}

    @property
    def copied_disks(self) -> tuple[DiskPlacement, ...]:
        return tuple(d for d in self.disks if d.copy)

    @property
    def bytes_to_copy(self) -> int:
        return self.needs_memory + sum(d.capacity for d in self.copied_disks)


def default_network(snapshot: Snapshot, destination: str) -> str | None:
    """The first non-management network the destination has an address on, else management."""
    srv = snapshot.servers.get(destination)
    if srv is None or not srv.addresses:
        return None
    mgmt = snapshot.management_network()
    names = sorted(srv.addresses)
    others = [n for n in names if n != mgmt]
    return others[0] if others else names[0]


def default_sr(snapshot: Snapshot, destination: str) -> str | None:
    """The destination pool's default SR, else the standalone server's."""
    pool = snapshot.pool_of(destination)
    if pool is not None and pool.default_sr:
        return pool.default_sr
    srv = snapshot.servers.get(destination)
    return srv.default_sr if srv is not None else None


def _stays_put(snapshot: Snapshot, vm: VM, destination: str, path: str | None,
               sr_name: str | None) -> bool:
    """The destination sees this very disk: through an SR of the same name and path that is
    proven to be the same storage on both (SR.shared).

    The same name and path is not enough: virt-install's `default` pool is at
    /var/lib/libvirt/images on every host, and each host's files there are its own.
    """
    if path is None or sr_name is None:
        return False
    pool = snapshot.pool_of(vm.server)
    if destination != vm.server and (pool is None or destination not in pool.members):
        return False
    target = snapshot.sr(destination, sr_name)
    source = snapshot.sr(vm.server, sr_name)
    return (
        target is not None and source is not None and target.path == source.path
        and target.shared and source.shared and target.contains(path)
    )


def build_plan(snapshot: Snapshot, vm: VM, request: MigrationRequest) -> MigrationPlan:
    dest = request.destination
    placements: list[DiskPlacement] = []
    for disk in vm.hard_disks:
        wanted = request.disk_srs.get(disk.dev, request.sr)
        loose = disk.is_file and disk.sr is None
        supported = disk.is_file
        if supported and disk.sr is not None:
            sr = snapshot.sr(vm.server, disk.sr)
            supported = sr is not None and sr.supported
        if wanted in (None, disk.sr) and _stays_put(snapshot, vm, dest, disk.path, disk.sr):
            target, copy = disk.sr, False
        else:
            target, copy = wanted or default_sr(snapshot, dest), True
        placements.append(DiskPlacement(
            dev=disk.dev, source_path=disk.path, source_sr=disk.sr, target_sr=target,
            capacity=disk.capacity, format=disk.format, copy=copy, supported=supported,
            loose=loose,
        ))
    kind = MigrationKind.STORAGE if any(p.copy for p in placements) else MigrationKind.MEMORY
    network = request.network or default_network(snapshot, dest)
    srv = snapshot.servers.get(dest)
    address = srv.addresses.get(network) if srv is not None and network else None
    devs = {d.dev for d in vm.hard_disks}
    wanted_nics = {mac.lower(): target for mac, target in request.nics.items()}
    nics = tuple(NicPlacement(n, wanted_nics.get(n.mac, n.target), n.mac in wanted_nics)
                 for n in vm.nics)
    if vm.state is not VmState.HALTED:
        data_path = DataPath.LIVE
    elif vm.managed_save and request.data_path in (None, DataPath.DIRECT):
        # Its saved state goes only one way: restored paused, migrated, saved again there.
        data_path = DataPath.DIRECT
    elif kind is MigrationKind.MEMORY:
        data_path = DataPath.DEFINITION
    elif request.data_path in (DataPath.STREAM, DataPath.DIRECT):
        data_path = request.data_path
    else:
        fits = all(srv in snapshot.servers and snapshot.memory_available(srv) >= vm.memory
                   for srv in (vm.server, dest))
        data_path = DataPath.DIRECT if fits and address else DataPath.STREAM
    return MigrationPlan(
        vm=vm, destination=dest, kind=kind, disks=tuple(placements), network=network,
        address=address, bandwidth_mib_s=request.bandwidth_mib_s,
        unknown_devs=tuple(sorted(set(request.disk_srs) - devs)), tls=request.tls,
        nics=nics, unknown_macs=tuple(sorted(set(wanted_nics) - {n.mac for n in vm.nics})),
        evacuated_from=request.evacuated_from, data_path=data_path,
        resume=request.resume and vm.state is VmState.PAUSED,
        path_chosen=data_path is request.data_path or (
            vm.managed_save and data_path is DataPath.DIRECT),
        settings=request.settings or MigrationSettings(),
    )


@dataclass(frozen=True)
class DiskMovePlan:
    """Live move of one disk of a running VM to another SR on the same server."""

    vm: VM
    dev: str
    target_sr: str

    @property
    def server(self) -> str:
        return self.vm.server


def volume_name_for(source_path: str | None, dev: str, vm_name: str, fmt: str) -> str:
    """The name a copied disk gets in its new SR: the same file name when there is one."""
    if source_path:
        return posixpath.basename(source_path)
    return f"{vm_name}-{dev}.{fmt}"


def free_volume_name(wanted: str, existing: set[str] | frozenset[str]) -> str:
    """`wanted`, or `stem-N.ext` with the first N not taken in the SR."""
    if wanted not in existing:
        return wanted
    stem, dot, ext = wanted.rpartition(".")
    if not dot:
        stem, ext = wanted, ""
    n = 1
    while True:
        candidate = f"{stem}-{n}.{ext}" if ext else f"{stem}-{n}"
        if candidate not in existing:
            return candidate
        n += 1
