"""Migration policies on the lab: a guest that dirties memory faster than the migration is
allowed to send it (24 MiB/s against a cap of 8 MiB/s), moved under each policy.

The busy guest is made by this module from web-1's definition (its own name, disk and
console; 256 MiB, dirty_mib = 24) and removed at the end, so no other test sees it."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import _complete, until
from tests.labtools import guest_logs, virsh, vm_named, wait_working, where_defined
from xencenter_lite.core.jobs import Job, JobState
from xencenter_lite.core.model import VmState
from xencenter_lite.core.plan import MigrationRequest
from xencenter_lite.core.policy import MigrationSettings, Policy
from xencenter_lite.engine import Engine
from xencenter_lite.lab.records import dirty_rates, read_records, serial_log

BUSY = "busy-t"
POOL = ("lab-a1", "lab-a2")
CAP_MIB_S = 8  # the migration's bandwidth: a third of what the guest dirties
SR = "Shared storage"


@pytest.fixture(scope="module")
def busy(engine: Engine, loop: asyncio.AbstractEventLoop, state_dir: Path
         ) -> Iterator[dict[str, str]]:
    def run(coro: Any, timeout: float = 120) -> Any:
        return _complete(loop, asyncio.wait_for(coro, timeout))

    snap = run(engine.refresh())
    uris = {name: s.uri for name, s in snap.servers.items()}
    web = vm_named(engine, "web-1")
    xml = virsh(uris[web.server], "dumpxml", "--inactive", "web-1")
    xml = re.sub(r"<uuid>.*?</uuid>", "", xml)
    xml = re.sub(r"<metadata>.*?</metadata>", "", xml, flags=re.S)
    xml = re.sub(r"<mac address=[^>]*>", "", xml)
    xml = re.sub(r"<(memory|currentMemory) unit='KiB'>\d+<", r"<\1 unit='KiB'>262144<", xml)
    xml = xml.replace("xcl.dirty_mib=8", "xcl.dirty_mib=24").replace("web-1", BUSY)
    uri = uris["lab-a1"]
    virsh(uri, "vol-create-as", SR, f"{BUSY}-vda.qcow2", "32M", "--format", "qcow2")
    path = Path(state_dir, "busy.xml")
    path.write_text(xml)
    virsh(uri, "define", str(path))
    virsh(uri, "start", BUSY)
    run(engine.refresh())
    wait_working(engine, run, state_dir, BUSY)
    yield uris
    for u in uris.values():
        for action in ("destroy", "undefine"):
            subprocess.run(["virsh", "-c", u, action, BUSY], capture_output=True)
    subprocess.run(["virsh", "-c", uri, "vol-delete", "--pool", SR, f"{BUSY}-vda.qcow2"],
                   capture_output=True)
    run(engine.refresh())


def _console(state_dir: Path) -> str:
    return "".join(serial_log(state_dir, s, BUSY).read_bytes().decode(errors="replace")
                   for s in POOL if serial_log(state_dir, s, BUSY).exists())


def _healthy(state_dir: Path) -> None:
    text = _console(state_dir)
    assert "panic" not in text and "BUG:" not in text, text[-3000:]


def _start(engine: Engine, run: Any, state_dir: Path, settings: MigrationSettings
           ) -> tuple[Job, str, str, int]:
    """The busy guest, really dirtying at least twice what the migration may send (its own
    report after its first), sent to the pool's other member; returns the job, source,
    destination and the last record before."""
    seen = len(dirty_rates(_console(state_dir)))
    run(until(lambda: len(dirty_rates(_console(state_dir))) >= max(2, seen + 1), timeout=30))
    rates = dirty_rates(_console(state_dir))
    assert rates[-1] >= 2 * CAP_MIB_S, rates
    before = wait_working(engine, run, state_dir, BUSY)
    vm = vm_named(engine, BUSY)
    dest = POOL[1] if vm.server == POOL[0] else POOL[0]
    (job,) = engine.migrate([MigrationRequest(vm.key, dest, network="management",
                                              bandwidth_mib_s=CAP_MIB_S,
                                              settings=settings)])
    return job, vm.server, dest, before


def _runs_once_on(engine: Engine, run: Any, uris: dict[str, str], server: str) -> None:
    run(engine.refresh())
    assert where_defined(uris, BUSY) == [(server, "running")]
    assert [(v.server, v.state) for v in engine.snapshot().vms_named(BUSY)] == [
        (server, VmState.RUNNING)]


def _records_intact(engine: Engine, run: Any, state_dir: Path, before: int) -> None:
    after = wait_working(engine, run, state_dir, BUSY)
    assert after > before, guest_logs(engine, state_dir, BUSY)
    disk = vm_named(engine, BUSY).hard_disks[-1]
    assert disk.path is not None
    found = read_records(disk.path, disk.format)
    assert found.intact, found.summary()
    assert found.last is not None and found.last >= before, found.summary()


def test_auto_converge_moves_the_busy_guest(
        busy: dict[str, str], engine: Engine, run: Any, state_dir: Path) -> None:
    job, _src, dest, before = _start(engine, run, state_dir, MigrationSettings())
    details: list[str] = []
    job.subscribe(lambda j: j.detail and details.append(j.detail))
    emulated = vm_named(engine, BUSY).emulated
    run(engine.wait([job]), 300)
    assert job.state is JobState.DONE, (job.error, job.policy_log)
    assert job.policy and "auto-converge" in job.policy
    if emulated:
        # A TCG guest is not throttled (QEMU 7.2 lost its pages when it was): the downtime
        # climbs to the maximum, then the guest is paused until the copy completes.
        assert "no vCPU throttling" in job.policy
        raised = [n for n in job.policy_log if "allowed downtime raised to" in n]
        assert len(raised) == 3, job.policy_log
        assert "paused so that the copy completes" in job.policy_log[-1], job.policy_log
        assert "to finish the copy, then resumed" in job.messages[-1], job.messages
    else:
        assert any("Throttling the guest's vCPUs" in n for n in job.policy_log), job.policy_log
        assert any("converging: throttle" in d for d in details), details[-5:]
        assert job.downtime_ms is not None and job.downtime_ms <= 300 + 100
    _runs_once_on(engine, run, busy, dest)
    _healthy(state_dir)
    _records_intact(engine, run, state_dir, before)


def test_minimal_downtime_gives_up_and_the_guest_stays_where_it_was(
        busy: dict[str, str], engine: Engine, run: Any, state_dir: Path) -> None:
    job, src, _dest, before = _start(engine, run, state_dir, MigrationSettings(
        Policy.MINIMAL_DOWNTIME, max_downtime_ms=100))
    run(engine.wait([job]), 300)
    assert job.state is JobState.FAILED, (job.state, job.policy_log)
    steps = [n for n in job.policy_log if "allowed downtime raised to" in n]
    assert [re.search(r"raised to (\d+) ms", n).group(1) for n in steps] == [  # type: ignore[union-attr]
        "50", "75", "100"], job.policy_log
    assert job.error and "within the allowed downtime of 100 ms" in job.error, job.error
    assert f"keeps running on '{src}'" in job.error
    _runs_once_on(engine, run, busy, src)
    _healthy(state_dir)
    _records_intact(engine, run, state_dir, before)


def _in_post_copy(engine: Engine, run: Any, state_dir: Path) -> tuple[Job, str, str, int]:
    """The busy guest's migration under the post-copy policy, once it has switched."""
    job, src, dest, before = _start(engine, run, state_dir,
                                    MigrationSettings(Policy.POST_COPY))
    run(until(lambda: job.state is JobState.POST_COPY or job.state.finished, timeout=240), 250)
    assert job.state is JobState.POST_COPY, (job.state, job.error, job.policy_log)
    return job, src, dest, before


def test_post_copy_finishes_and_cannot_be_cancelled_once_begun(
        busy: dict[str, str], engine: Engine, run: Any, state_dir: Path) -> None:
    job, _src, dest, before = _in_post_copy(engine, run, state_dir)
    refusal = run(engine.cancel(job))
    assert refusal and "cannot be undone" in refusal
    assert not job.cancel_requested
    run(engine.wait([job]), 300)
    assert job.state is JobState.DONE, (job.error, job.error_details, job.policy_log)
    assert any("switched to post-copy" in n for n in job.policy_log)
    _runs_once_on(engine, run, busy, dest)
    _healthy(state_dir)
    _records_intact(engine, run, state_dir, before)


def _qemu_pid(engine: Engine, server: str) -> int:
    uri = engine.snapshot().servers[server].uri
    run_dir = Path(uri.split("socket=", 1)[1]).parent
    return int((run_dir / "qemu" / f"{BUSY}.pid").read_text())


def test_a_fault_during_post_copy_is_reported_as_it_is(
        busy: dict[str, str], engine: Engine, run: Any, state_dir: Path) -> None:
    job, src, dest, _before = _in_post_copy(engine, run, state_dir)
    os.kill(_qemu_pid(engine, src), signal.SIGKILL)  # the source dies mid post-copy
    run(engine.wait([job]), 300)
    assert job.state is JobState.FAILED, (job.state, job.messages)
    assert job.error and "failed during post-copy" in job.error, job.error
    found = where_defined(busy, BUSY)
    # What the job says is what the servers say: gone from the source, and on the
    # destination as libvirt left it; nothing was removed by the job there.
    assert f"gone from '{src}'" in job.error or f"on '{src}'" in job.error, job.error
    assert "the VM is lost" in job.error, job.error
    on_dest = [state for server, state in found if server == dest]
    if on_dest:
        assert "paused" in on_dest[0] or "running" in on_dest[0], found
    # Its disk is still there (on the shared SR): nothing was unwound.
    virsh(busy[dest], "pool-refresh", SR)
    assert f"{BUSY}-vda.qcow2" in virsh(busy[dest], "vol-list", SR)
