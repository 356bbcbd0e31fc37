"""The fault sweep: run a job once to learn every call it makes, then again once per call
and per way of going wrong, and check after each that nothing was lost.

The invariants, checked with libvirt itself (not the engine's model) once the faulty engine
has ended and a fresh engine (the next command, with no faults) has started and finished
what was left for it:
- the VM is defined on exactly one server, and runs (a halted VM: stays halted);
- every volume the job created is gone, unless the VM runs on it;
- the VM's disks exist and hold the data written before the job;
- the job ended (done, failed or cancelled) with a message;
- no clean-up is left pending.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.faults.faultlink import Call, FaultPlan, fault_links
from tests.labtools import created_paths, pattern_intact, virsh, where_defined
from xencenter_lite.core.domxml import parse_domain
from xencenter_lite.core.inventory import InventoryConfig
from xencenter_lite.core.jobs import Job
from xencenter_lite.engine import Engine

# The faulty engine's deadline for a call, and how long a hung call then takes: a hang is
# a call that outlives the deadline and goes through afterwards.
ANSWER_TIMEOUT = 1.5
HANG = 2.5
# Calls made again and again (the progress of a migration): the first two are swept.
REPEATED = {"job_stats": 2, "balloon_actual": 2}


@dataclass
class Outcome:
    job: str  # "storage migration", ...
    call: Call
    kind: str
    fired: bool
    state: str = ""  # the job's end
    where: str = ""  # where the VM ended up: "source" / "destination" / "server"
    pending_after_job: int = 0  # clean-ups the faulty engine left for the next one
    problems: list[str] = field(default_factory=list)
    error: str = ""  # the job's message when it failed or was cancelled
    seconds: float = 0.0  # the whole case: the faulty run, the next engine, the checks

    def to_json(self) -> dict[str, Any]:
        return {"job": self.job, "call": str(self.call), "fault": self.kind,
                "fired": self.fired, "state": self.state, "where": self.where,
                "pending_after_job": self.pending_after_job, "problems": self.problems,
                "error": self.error, "seconds": round(self.seconds, 2)}


@dataclass
class JobSpec:
    """One kind of job to sweep: how to start it from where the VM is now."""

    name: str
    vm: str
    uris: dict[str, str]
    start: Callable[[Engine, str, str], list[Job]]  # engine, VM's server, uuid -> jobs
    other: Callable[[str], str]  # the VM's server now -> the server the job goes to
    expect: str = "done"  # how the job ends without a fault
    vm_state: str = "running"  # how the VM must be wherever it ends up (virsh domstate)


def sweep_targets(trace: list[Call]) -> list[Call]:
    out: list[Call] = []
    for call in trace:
        if call.occurrence > REPEATED.get(call.method, 99) or call in out:
            continue
        out.append(call)
    return out


def disk_files(uri: str, name: str) -> list[tuple[str, str]]:
    dx = parse_domain(virsh(uri, "dumpxml", name))
    return [(d.path or "", d.format) for d in dx.disks if d.device == "disk"]


async def run_case(inventory: InventoryConfig, spec: JobSpec, call: Call | None, kind: str,
                   state_dir: Path, slow: dict[str, float] | None = None,
                   failing: frozenset[str] = frozenset()) -> tuple[Outcome, list[Call]]:
    """One run of the job with `call` going wrong (None: the dry run); `slow`: calls the
    servers take their time to begin, `failing`: calls that always fail (see FaultPlan)."""
    began = time.monotonic()
    (server, _state), = where_defined(spec.uris, spec.vm)
    uuid = virsh(spec.uris[server], "domuuid", spec.vm).strip()
    dest = spec.other(server)
    roles = {server: "source", dest: "destination"} if dest != server else {server: "server"}
    plan = FaultPlan(roles=roles, hang=HANG, slow=dict(slow or {}), failing=failing)
    engine = Engine(inventory, link_factory=fault_links(plan), answer_timeout=ANSWER_TIMEOUT,
                    progress_interval=0.2, state_dir=state_dir)
    engine.reconcile_wait = 2.0
    engine.fresh_for = 600.0  # the job reads nothing again: its calls are the same each run
    await engine.start(watch=False)
    plan.arm(call, kind)
    jobs = spec.start(engine, server, uuid)
    await asyncio.wait_for(engine.wait(jobs), 120)
    plan.disarm()
    (job,) = jobs
    outcome = Outcome(spec.name, call or Call("-", "-", 0), kind, plan.fired,
                      state=job.state.value,
                      error=" | ".join(filter(None, (job.error, job.error_details))))
    outcome.pending_after_job = len(engine.pending_cleanups())
    if not (job.error or job.messages):
        outcome.problems.append("the job ended without a message")
    if not job.state.finished:
        outcome.problems.append(f"the job did not end ({job.state.value})")
    trace = list(plan.trace)
    # A hung call goes through once its time is up: let it, before anyone looks.
    await asyncio.sleep(max(0.0, plan.hung_until - time.monotonic()) + 0.2)
    await engine.close()

    # The next command: no faults; it finishes what the faulty engine could not.
    later = Engine(inventory, state_dir=state_dir)
    await later.start(watch=False)
    try:
        end = time.monotonic() + 45
        while later.pending_cleanups() and time.monotonic() < end:
            await asyncio.sleep(0.25)  # libvirt ending an aborted migration, say
            await later.refresh()
            await later.settle_pending()
        left = later.pending_cleanups()
        if left:
            outcome.problems.append("left pending: " + "; ".join(c.describe() for c in left))
    finally:
        await later.close()

    places = where_defined(spec.uris, spec.vm)
    if len(places) != 1:
        outcome.problems.append(f"the VM is defined on {places}")
    else:
        where, state = places[0]
        outcome.where = roles.get(where, where)
        if state != spec.vm_state:
            outcome.problems.append(f"the VM is {state} on {where}")
        in_use = set()
        for path, fmt in disk_files(spec.uris[where], spec.vm):
            in_use.add(path)
            if not os.path.exists(path):
                outcome.problems.append(f"its disk {path} is gone")
            elif not pattern_intact(path, fmt):
                outcome.problems.append(f"its disk {path} lost its data")
        stray = [p for p in created_paths(job) if os.path.exists(p) and p not in in_use]
        if stray:
            outcome.problems.append(f"left behind: {stray}")
        if job.state.value == "done" and outcome.where == "source":
            outcome.problems.append("the job says done but the VM did not move")
        if (job.state.value != "done" and outcome.where == "destination"
                and "could not find out where" not in (job.error or "")):
            # (A job that says it could not find out is right whichever way it went.)
            outcome.problems.append(f"the job says {job.state.value} but the VM moved")
    outcome.seconds = time.monotonic() - began
    return outcome, trace


async def sweep(inventory: InventoryConfig, spec: JobSpec, kinds: tuple[str, ...],
                state_dir: Path, report: Callable[[Outcome], Awaitable[None] | None],
                share: tuple[int, int] = (0, 1)) -> list[Outcome]:
    """Sweep `spec`'s calls; with `share` (i, n), only every n-th call from the i-th (the
    same job on n guests sweeps its calls n times faster, side by side)."""
    dry, trace = await run_case(inventory, spec, None, "none", state_dir)
    if dry.state != spec.expect:
        dry.problems.append(f"without a fault the job ended {dry.state}, not {spec.expect}: "
                            f"{dry.error}")
    if dry.problems:
        return [dry]  # reported with the others; the sweep needs a clean first run
    outcomes: list[Outcome] = []
    for target in sweep_targets(trace)[share[0]::share[1]]:
        for kind in kinds:
            outcome, _ = await run_case(inventory, spec, target, kind, state_dir)
            outcomes.append(outcome)
            maybe = report(outcome)
            if maybe is not None:
                await maybe
    return outcomes


def tally(outcomes: list[Outcome]) -> dict[str, Any]:
    fired = [o for o in outcomes if o.fired]
    return {
        "cases": len(outcomes),
        "faults_injected": len(fired),
        "by_job_and_fault": {f"{j} / {k}": n for (j, k), n in sorted(Counter(
            (o.job, o.kind) for o in fired).items())},
        "job_end": dict(sorted(Counter(o.state for o in fired).items())),
        "vm_ended_on": dict(sorted(Counter(o.where for o in fired).items())),
        "left_for_the_next_engine": sum(1 for o in fired if o.pending_after_job),
        "with_problems": [o.to_json() for o in outcomes if o.problems],
    }


REPORT_DIR = "XCL_FAULT_REPORT_DIR"


def write_report(name: str, summary: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """With $XCL_FAULT_REPORT_DIR set, keep a sweep's tally and every outcome there
    (scripts/faults_report.py turns them into docs/faults.md)."""
    folder = os.environ.get(REPORT_DIR)
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / f"{name}.json").write_text(
            json.dumps({"summary": summary, "outcomes": rows}, indent=1))
