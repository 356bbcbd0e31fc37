"""A fake engine over a hand-built fleet shaped like the lab, for console tests."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from tests.unit.builders import Fleet, disk, local_disk, shared_disk, standard_fleet
from xencenter_lite.core.checks import check_plans
from xencenter_lite.core.folders import norm_folder, vms_in_folder
from xencenter_lite.core.inventory import InventoryConfig
from xencenter_lite.core.jobs import Job
from xencenter_lite.core.model import VmState
from xencenter_lite.core.plan import MigrationRequest, build_plan
from xencenter_lite.engine.folders import FolderStore

WEB = ("lab-a1", "uuid-web-1")
DB = ("lab-a1", "uuid-db-1")
BUILD = ("lab-a2", "uuid-build-1")
MIB = 1024 * 1024


class FakeEngine:
    """Just enough engine for console tests without libvirt: a snapshot changed by hand,
    the real pure plans and checks, and a record of what the console asked for."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self._snap = fleet.snapshot()
        self.listeners: list[Any] = []
        self.job_listeners: list[Any] = []
        self.busy: set[tuple[str, str]] = set()
        self.jobs: list[Job] = []
        self.migrated: list[list[MigrationRequest]] = []
        self.started_on: list[tuple[tuple[str, str], str]] = []
        self.removed: list[str] = []
        self.server_events: list[Job] = []
        self.server_listeners: list[Any] = []
        self.inventory = InventoryConfig(Path("inventory.toml"), ())  # [migration] defaults
        self.folder_store = FolderStore(Path(tempfile.mkdtemp(prefix="xcl-folders-")))

    def snapshot(self) -> Any:
        return self._snap

    def subscribe(self, listener: Any) -> None:
        self.listeners.append(listener)

    def subscribe_jobs(self, listener: Any) -> None:
        self.job_listeners.append(listener)

    def push(self) -> None:
        self._snap = self.fleet.snapshot()
        for fn in list(self.listeners):
            fn(self._snap)

    def subscribe_server_events(self, listener: Any) -> None:
        self.server_listeners.append(listener)

    def server_event(self, event: Job) -> None:
        self.server_events.append(event)
        for fn in list(self.server_listeners):
            fn(event)

    def push_job(self, job: Job) -> None:
        if job not in self.jobs:
            self.jobs.append(job)
        for fn in list(self.job_listeners):
            fn(job)

    def plan(self, request: MigrationRequest) -> Any:
        vm = self._snap.vm(request.vm)
        if vm is None:
            raise LookupError(request.vm)
        return build_plan(self._snap, vm, request)

    def check(self, plans: Any) -> Any:
        return check_plans(self._snap, plans, self.busy)

    async def precheck(self, requests: Any) -> Any:
        plans = [self.plan(r) for r in requests]
        return plans, check_plans(self._snap, plans, self.busy)

    def migrate(self, requests: Any) -> list[Job]:
        self.migrated.append(list(requests))
        return []

    async def start_on(self, vm_key: tuple[str, str], server: str) -> list[Job]:
        self.started_on.append((vm_key, server))
        return []

    async def cancel(self, job: Job) -> None:
        job.cancelled()

    async def wait(self, jobs: Any) -> None:
        return None

    # ---- servers (the engine's rules, as tests/faults/test_servers.py proves them) ----------
    def server_in_use(self, name: str) -> str | None:
        running = [j for j in self.jobs
                   if not j.state.finished and name in (j.source, j.destination)]
        return f"{len(running)} job(s) use it ({running[0].title})" if running else None

    def removal_refused(self, name: str) -> str | None:
        return self.server_in_use(name)

    async def reconnect(self, name: str) -> None:
        self.fleet.servers[name] = replace(self.fleet.servers[name], connected=True,
                                           held=False, error=None)
        self.push()

    async def disconnect(self, name: str) -> None:
        self.fleet.servers[name] = replace(self.fleet.servers[name], connected=False,
                                           held=True, error="disconnected by you")
        self.push()

    async def remove_server(self, name: str) -> None:
        self.removed.append(name)

    def set_default_sr(self, kind: str, name: str, sr: str) -> None:
        if kind == "pool":
            self.fleet.pools[name] = replace(self.fleet.pools[name], default_sr=sr)
        else:
            self.fleet.servers[name] = replace(self.fleet.servers[name], default_sr=sr)
        self.push()

    async def set_folder(self, vm_key: tuple[str, str], folder: str) -> None:
        vm = self._snap.vm(vm_key)
        assert vm is not None
        change(self.fleet, vm_key[1].removeprefix("uuid-"), folder=norm_folder(folder))
        self.folder_store.add([vm.folder])
        self.push()

    # ---- folders: the engine's (xencenter_lite.engine), over the real FolderStore ------------
    def folders(self) -> frozenset[str]:
        return self.folder_store.all()

    def add_folder(self, path: str) -> str:
        self.folder_store.add([norm_folder(path)])
        return norm_folder(path)

    async def rename_folder(self, old: str, new: str) -> None:
        for vm in vms_in_folder(self._snap.vms, old):
            await self.set_folder(vm.key, new + norm_folder(vm.folder)[len(old):])
        self.folder_store.rename(old, new)

    async def delete_folder(self, folder: str) -> int:
        vms = vms_in_folder(self._snap.vms, folder)
        for vm in vms:
            await self.set_folder(vm.key, "")
        self.folder_store.remove(folder)
        return len(vms)


def lab_fleet() -> Fleet:
    """The lab's shape: web-1 and db-1 on lab-a1, build-1 (halted) on lab-a2, app-1 on lab-b1."""
    f = standard_fleet()
    f.vm("web-1", "lab-a1", folder="/Web")
    f.vm("db-1", "lab-a1", folder="/Databases/Prod",
         disks=(local_disk("lab-a1", "db-1"), local_disk("lab-a1", "db-1", "vdb")))
    f.vm("build-1", "lab-a2", state=VmState.HALTED, disks=(shared_disk("build-1"),))
    f.vm("app-1", "lab-b1", disks=(disk("vda", "/srv/lab-b1/local/app-1.qcow2",
                                        "Local storage"),))
    return f


def change(fleet: Fleet, name: str, **changes: Any) -> None:
    for i, vm in enumerate(fleet.vms):
        if vm.name == name:
            fleet.vms[i] = replace(vm, **changes)
            return
    raise KeyError(name)
