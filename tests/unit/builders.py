"""Builders for the unit tests: a small hand-built fleet, no libvirt, no Qt.

The standard fleet (`standard_fleet()`, also the `fleet` fixture):

* pool "Production": lab-a1 and lab-a2, default SR "Shared storage" (same path on both);
  each member also has its own "Local storage" at its own path;
* standalone lab-b1 (default SR "Local storage") with "Local storage", "Fast storage" and
  a 64 MiB "Small storage";
* networks "management" (the management network, 25 MiB/s) and "storage" (200 MiB/s);
  every server has an address on both.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from xencenter_lite.core.checks import Problem
from xencenter_lite.core.model import (
    SR,
    VM,
    Disk,
    Network,
    Pool,
    Server,
    Sharing,
    Snapshot,
    VmState,
)
from xencenter_lite.core.plan import MigrationPlan, MigrationRequest, build_plan

MIB = 1024**2
GIB = 1024**3

SHARED_PATH = "/srv/nfs/shared"
LOCAL_PATH = {
    "lab-a1": "/srv/lab-a1/local",
    "lab-a2": "/srv/lab-a2/local",
    "lab-b1": "/srv/lab-b1/local",
}
FAST_PATH = "/srv/lab-b1/fast"
SMALL_PATH = "/srv/lab-b1/small"

ADDRESSES = {
    "lab-a1": {"management": "192.0.2.11", "storage": "198.51.100.11"},
    "lab-a2": {"management": "192.0.2.12", "storage": "198.51.100.12"},
    "lab-b1": {"management": "192.0.2.21", "storage": "198.51.100.21"},
}


def make_sr(server: str, name: str, path: str, *, type: str = "dir", capacity: int = 100 * GIB,
            available: int = 50 * GIB, **kw: Any) -> SR:
    return SR(server=server, uuid=f"sr-{server}-{name.replace(' ', '-').lower()}", name=name,
              type=type, path=path, capacity=capacity, allocation=capacity - available,
              available=available, **kw)


def disk(dev: str, path: str | None, sr: str | None, *, capacity: int = 10 * GIB,
         fmt: str = "qcow2", source_type: str = "file", device: str = "disk") -> Disk:
    return Disk(dev=dev, device=device, source_type=source_type, path=path, format=fmt,
                capacity=capacity, allocation=capacity // 10, sr=sr)


def cdrom(path: str | None, dev: str = "sda") -> Disk:
    return Disk(dev=dev, device="cdrom", source_type="file", path=path, format="raw",
                readonly=True)


def shared_disk(vm_name: str, dev: str = "vda", **kw: Any) -> Disk:
    return disk(dev, f"{SHARED_PATH}/{vm_name}-{dev}.qcow2", "Shared storage", **kw)


def local_disk(server: str, vm_name: str, dev: str = "vda", **kw: Any) -> Disk:
    return disk(dev, f"{LOCAL_PATH[server]}/{vm_name}-{dev}.qcow2", "Local storage", **kw)


def codes(problems: list[Problem]) -> list[str]:
    return [p.code for p in problems]


@dataclass
class Fleet:
    """A mutable builder for a Snapshot; `snapshot()` freezes the current state."""

    servers: dict[str, Server] = field(default_factory=dict)
    pools: dict[str, Pool] = field(default_factory=dict)
    networks: dict[str, Network] = field(default_factory=dict)
    srs: list[SR] = field(default_factory=list)
    vms: list[VM] = field(default_factory=list)

    def snapshot(self) -> Snapshot:
        return Snapshot(dict(self.servers), dict(self.pools), dict(self.networks),
                        tuple(self.vms), tuple(self.srs))

    # ---- changes ----------------------------------------------------------------------
    def server(self, name: str, **changes: Any) -> Server:
        self.servers[name] = replace(self.servers[name], **changes)
        return self.servers[name]

    def pool(self, name: str, **changes: Any) -> Pool:
        self.pools[name] = replace(self.pools[name], **changes)
        return self.pools[name]

    def sr(self, server: str, name: str, **changes: Any) -> SR:
        for i, s in enumerate(self.srs):
            if s.server == server and s.name == name:
                self.srs[i] = replace(s, **changes)
                return self.srs[i]
        raise KeyError((server, name))

    def add_sr(self, server: str, name: str, path: str, **kw: Any) -> SR:
        sr = make_sr(server, name, path, **kw)
        self.srs.append(sr)
        return sr

    def vm(self, name: str, server: str = "lab-a1", *, disks: tuple[Disk, ...] | None = None,
           memory: int = 1 * GIB, state: VmState = VmState.RUNNING, **kw: Any) -> VM:
        if disks is None:
            disks = (shared_disk(name),)
        vm = VM(server=server, uuid=f"uuid-{name}", name=name, state=state, memory=memory,
                vcpus=1, disks=disks, **kw)
        self.vms.append(vm)
        return vm

    def plan(self, vm: VM, destination: str, **request: Any) -> MigrationPlan:
        return build_plan(self.snapshot(), vm, MigrationRequest(vm.key, destination, **request))


def standard_fleet() -> Fleet:
    f = Fleet()
    f.networks = {
        "management": Network("management", management=True, rate=25 * MIB),
        "storage": Network("storage", rate=200 * MIB),
    }
    f.pools = {"Production": Pool("Production", ("lab-a1", "lab-a2"),
                                  default_sr="Shared storage")}
    for name in ("lab-a1", "lab-a2", "lab-b1"):
        pool = "Production" if name.startswith("lab-a") else None
        f.servers[name] = Server(
            name=name, uri=f"qemu+ssh://root@{name}/system", pool=pool,
            addresses=dict(ADDRESSES[name]), connected=True, hostname=name,
            host_memory=16 * GIB, free_memory=8 * GIB, host_uuid=f"host-uuid-{name}",
            default_sr="Local storage" if pool is None else None,
        )
        f.add_sr(name, "Local storage", LOCAL_PATH[name])
    for name in ("lab-a1", "lab-a2"):
        f.add_sr(name, "Shared storage", SHARED_PATH, type="netfs", sharing=Sharing.VERIFIED,
                 capacity=500 * GIB, available=200 * GIB)
    f.add_sr("lab-b1", "Fast storage", FAST_PATH)
    f.add_sr("lab-b1", "Small storage", SMALL_PATH, capacity=64 * MIB, available=64 * MIB)
    return f
