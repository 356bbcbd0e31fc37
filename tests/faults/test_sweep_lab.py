"""The fault sweep on real servers: a storage migration, a memory-only migration, a live
disk move, a halted VM's move by each of its two paths (sent directly, and through the
console's volume streams), and a storage migration and a disk move cancelled once data
moves (so the roll-back's own calls are swept too), each with every call it makes
failing, hanging past the engine's deadline, or losing its answer with the connection. See
sweep.py for what is checked after each.

The guests are small VMs made by virt-install (no OS: SeaBIOS waits), so a run takes about
a second. With XCL_FAULT_REPORT_DIR set, every outcome and the tally are kept there
(scripts/faults_report.py writes docs/faults.md from them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.faultlink import BUG, DETACH, KINDS, Call
from tests.faults.sweep import JobSpec, Outcome, run_case, sweep, tally, write_report
from tests.labtools import fill_pattern, host_path, remove_vm, sr_path, virsh, virt_install
from xencenter_lite.core.inventory import load_inventory
from xencenter_lite.core.plan import DataPath, MigrationRequest
from xencenter_lite.engine import Engine

pytestmark = pytest.mark.lab

GUESTS = {  # name: (server, SR)
    "sw-storage": ("lab-a1", "Local storage"),
    "sw-storage2": ("lab-a1", "Local storage"),
    "sw-memory": ("lab-a1", "Shared storage"),
    "sw-disk": ("lab-b1", "Local storage"),
    "sw-cancel": ("lab-a2", "Local storage"),
    "sw-cancel2": ("lab-a2", "Local storage"),
    "sw-dcancel": ("lab-b1", "Local storage"),
    "sw-halted": ("lab-a2", "Local storage"),
    "sw-halted2": ("lab-a2", "Local storage"),
    "sw-halted3": ("lab-a2", "Local storage"),
    "sw-stream": ("lab-a2", "Local storage"),
    "sw-stream2": ("lab-a2", "Local storage"),
}
HALTED = {"sw-halted", "sw-halted2", "sw-halted3", "sw-stream", "sw-stream2"}


@pytest.fixture(scope="module")
def guests(lab_inventory: Path, state_dir: Path) -> Iterator[dict[str, str]]:
    uris = {s.name: s.uri for s in load_inventory(lab_inventory).servers}
    for name, (server, sr) in GUESTS.items():
        for uri in uris.values():
            remove_vm(uri, name)
        volume = f"{name}.qcow2"
        virsh(uris[server], "vol-create-as", sr, volume, "16M", "--format", "qcow2")
        fill_pattern(host_path(state_dir, server, f"{sr_path(uris[server], sr)}/{volume}"),
                     "qcow2")
        virt_install(uris[server], name, f"vol={sr}/{volume}", memory_mib=32)
        if name in HALTED:
            virsh(uris[server], "destroy", name)
    yield uris
    for name in GUESTS:
        for uri in uris.values():
            remove_vm(uri, name)


def _cancel_once_sending(engine: Engine, job: Any) -> None:
    """The operator presses Cancel once data moves: the sweep then covers the roll-back."""
    async def cancel() -> None:
        while job.bytes_done == 0 and not job.state.finished:
            await asyncio.sleep(0.05)
        await engine.cancel(job)

    _background.add(asyncio.ensure_future(cancel()))


_background: set[Any] = set()


def _migration(name: str, uris: dict[str, str], pair: tuple[str, str], sr: str | None,
               label: str, cancelled: bool = False, halted: bool = False,
               via: DataPath | None = None) -> JobSpec:
    def start(engine: Engine, server: str, uuid: str) -> list[Any]:
        dest = pair[1] if server == pair[0] else pair[0]
        jobs = engine.migrate([MigrationRequest((server, uuid), dest, sr=sr,
                                                bandwidth_mib_s=1 if cancelled else None,
                                                data_path=via)])
        if cancelled:
            _cancel_once_sending(engine, jobs[0])
        return jobs

    return JobSpec(label, name, uris, start,
                   lambda server: pair[1] if server == pair[0] else pair[0],
                   expect="cancelled" if cancelled else "done",
                   vm_state="shut off" if halted else "running")


def _disk_move(name: str, uris: dict[str, str], cancelled: bool = False) -> JobSpec:
    srs = ("Local storage", "Fast storage")

    def start(engine: Engine, server: str, uuid: str) -> list[Any]:
        vm = engine.snapshot().vm((server, uuid))
        assert vm is not None and vm.hard_disks
        disk = vm.hard_disks[0]
        to = srs[1] if disk.sr == srs[0] else srs[0]
        job = engine.move_disk((server, uuid), disk.dev, to,
                               bandwidth_mib_s=1 if cancelled else None)
        if cancelled:
            _cancel_once_sending(engine, job)
        return [job]

    return JobSpec("cancelled disk move" if cancelled else "disk move", name, uris, start,
                   lambda server: server, expect="cancelled" if cancelled else "done")


def test_every_call_of_three_jobs_going_wrong_loses_nothing(
        lab_inventory: Path, guests: dict[str, str], run: Any, tmp_path: Path) -> None:
    inventory = load_inventory(lab_inventory)
    # (spec, share): the longest sweeps run on two or three guests, a share of the calls
    # each (a halted VM sent directly makes the most calls: a third each).
    runs = [
        *((_migration(name, guests, ("lab-a1", "lab-b1"), "Local storage",
                      "storage migration"), (i, 2))
          for i, name in enumerate(("sw-storage", "sw-storage2"))),
        (_migration("sw-memory", guests, ("lab-a1", "lab-a2"), None, "memory-only migration"),
         (0, 1)),
        (_disk_move("sw-disk", guests), (0, 1)),
        *((_migration(name, guests, ("lab-a2", "lab-b1"), "Local storage",
                      "cancelled storage migration", cancelled=True), (i, 2))
          for i, name in enumerate(("sw-cancel", "sw-cancel2"))),
        (_disk_move("sw-dcancel", guests, cancelled=True), (0, 1)),
        *((_migration(name, guests, ("lab-a2", "lab-b1"), "Local storage",
                      "halted VM sent directly", halted=True, via=DataPath.DIRECT), (i, 3))
          for i, name in enumerate(("sw-halted", "sw-halted2", "sw-halted3"))),
        *((_migration(name, guests, ("lab-a2", "lab-b1"), "Local storage",
                      "halted VM through the console", halted=True, via=DataPath.STREAM),
           (i, 2)) for i, name in enumerate(("sw-stream", "sw-stream2"))),
    ]
    specs = [spec for spec, _share in runs]
    seen: list[Outcome] = []

    def report(outcome: Outcome) -> None:
        seen.append(outcome)

    async def all_three() -> list[list[Outcome]]:
        # A guest per job, engines of their own: the sweeps run side by side.
        return await asyncio.gather(*(sweep(inventory, spec, KINDS, tmp_path / spec.vm, report,
                                            share) for spec, share in runs))

    results = run(all_three(), 1500)
    outcomes = [o for r in results for o in r]
    summary = tally(outcomes)
    write_report("lab", summary, [o.to_json() for o in outcomes])
    assert summary["with_problems"] == [], "\n".join(
        f"{o['job']} {o['call']} {o['fault']}: ended {o['state']} on {o['where']}: "
        f"{o['problems']} ({o['error']})" for o in summary["with_problems"])
    # The sweep really went wrong in each job at every kind of fault.
    for spec in {s.name: s for s in specs}.values():
        for kind in KINDS:
            fired = [o for o in outcomes if o.job == spec.name and o.kind == kind and o.fired]
            assert len(fired) >= 5, (spec.name, kind, len(fired))


@pytest.mark.parametrize("target, ends, where", [
    (Call("destination", "create_volume", 1), "failed", "source"),
    (Call("source", "migratable_xml", 1), "failed", "source"),  # volumes made by then
    (Call("source", "migrate", 1), "failed", "source"),
    (Call("destination", "completed_downtime", 1), "done", "destination"),  # after the move
], ids=lambda v: str(v))
def test_a_bug_mid_migration_is_settled_like_any_failure(
        lab_inventory: Path, guests: dict[str, str], run: Any, tmp_path: Path,
        target: Call, ends: str, where: str) -> None:
    """An exception that is not a libvirt error (a bug) anywhere in the job still ends in
    the undo log being unwound, or the move finished: never a VM twice or a volume left."""
    spec = _migration("sw-storage", guests, ("lab-a1", "lab-b1"), "Local storage",
                      "storage migration")
    outcome, _trace = run(run_case(load_inventory(lab_inventory), spec, target, BUG, tmp_path),
                          180)
    assert outcome.fired and outcome.problems == [], outcome.to_json()
    assert (outcome.state, outcome.where) == (ends, where), outcome.to_json()
    if ends == "failed":
        assert "internal error" in outcome.error and "keeps running on" in outcome.error



@pytest.mark.parametrize("kind", KINDS[1:], ids=str)  # hang, drop
def test_a_look_before_the_source_begins_the_migration_does_not_decide_it(
        lab_inventory: Path, guests: dict[str, str], run: Any, tmp_path: Path,
        kind: str) -> None:
    """The source is slow to begin the migration (2 s) and the engine's own connection to
    it goes at the first look at its progress. Found again, the source shows the VM and no
    migration yet: the job must wait for the migration call (its own connection), not say
    the VM stays and unwind what the migration is about to use."""
    spec = _migration("sw-storage", guests, ("lab-a1", "lab-b1"), "Local storage",
                      "storage migration")
    outcome, _trace = run(run_case(load_inventory(lab_inventory), spec,
                                   Call("source", "job_stats", 1), kind, tmp_path,
                                   slow={"migrate": 2.0}), 180)
    assert outcome.fired and outcome.problems == [], outcome.to_json()
    assert (outcome.state, outcome.where) == ("done", "destination"), outcome.to_json()


def _slow_storage_migration(guests: dict[str, str]) -> JobSpec:
    """sw-storage to the other server's Local storage at 2 MiB/s: long enough to be caught
    in the middle."""
    def start(engine: Engine, server: str, uuid: str) -> list[Any]:
        dest = "lab-b1" if server == "lab-a1" else "lab-a1"
        return engine.migrate([MigrationRequest((server, uuid), dest, sr="Local storage",
                                                bandwidth_mib_s=2)])

    return JobSpec("storage migration", "sw-storage", guests, start,
                   lambda server: "lab-b1" if server == "lab-a1" else "lab-a1")


def test_a_migration_still_running_without_its_call_is_waited_for_not_decided(
        lab_inventory: Path, guests: dict[str, str], run: Any, tmp_path: Path) -> None:
    """The link goes the moment the migration is asked for; the source carries it out (slowly:
    2 MiB/s) and cannot say so (its job statistics fail). Found again, the VM is on the source
    and its copy waits on the destination: both halves there means libvirt is migrating it,
    so the job waits for one half to go instead of saying the VM stays and unwinding."""
    outcome, _trace = run(run_case(load_inventory(lab_inventory), _slow_storage_migration(guests),
                                   Call("source", "migrate", 1), DETACH, tmp_path,
                                   failing=frozenset({"job_stats"})), 240)
    assert outcome.fired and outcome.problems == [], outcome.to_json()
    assert (outcome.state, outcome.where) == ("done", "destination"), outcome.to_json()


def test_a_destination_that_does_not_answer_the_first_look_does_not_decide_it(
        lab_inventory: Path, guests: dict[str, str], run: Any, tmp_path: Path) -> None:
    """As above, and the destination is too busy to answer the job's first look for the VM
    (2 s, past the engine's deadline: starting the VM's incoming copy, say). Not knowing
    whether the copy is there is not knowing that it is not: the job looks again instead of
    saying the VM stays on the source and unwinding under the migration."""
    outcome, trace = run(run_case(load_inventory(lab_inventory), _slow_storage_migration(guests),
                                  Call("source", "migrate", 1), DETACH, tmp_path,
                                  slow={"destination.locate#1": 2.0},
                                  failing=frozenset({"job_stats"})), 240)
    assert Call("destination", "locate", 1) in trace
    assert outcome.fired and outcome.problems == [], (outcome.problems, outcome.error)
    assert (outcome.state, outcome.where) == ("done", "destination"), outcome.to_json()
