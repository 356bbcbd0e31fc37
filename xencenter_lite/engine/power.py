"""The power operations' runner: checked first, asked of the VM's server, and followed
until the VM is in the state the operation leads to (core.power)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from xencenter_lite.core.errors import friendly
from xencenter_lite.core.jobs import Job, JobState
from xencenter_lite.core.model import VmState
from xencenter_lite.core.power import PowerAction, check_power
from xencenter_lite.virt import VirtError

if TYPE_CHECKING:
    from xencenter_lite.engine.fleet import Fleet
    from xencenter_lite.engine.migration import MigrationRunner
    from xencenter_lite.engine.queue import JobQueue

# What each operation asks of libvirt (the link's power()).
_CALL = {
    PowerAction.START: "start",
    PowerAction.SHUTDOWN: "shutdown",
    PowerAction.FORCE_SHUTDOWN: "destroy",
    PowerAction.REBOOT: "reboot",
    PowerAction.SUSPEND: "suspend",
    PowerAction.RESUME: "resume",
}
SETTLE_WAIT = 15.0  # seconds a started, forced off, paused or resumed VM has to get there
POLL = 0.5


class PowerRunner:
    def __init__(self, fleet: Fleet, queue: JobQueue, migrations: MigrationRunner) -> None:
        self.fleet = fleet
        self.queue = queue
        self.migrations = migrations

    async def run(self, job: Job, action: PowerAction, timeout: float,
                  force_after: bool) -> None:
        """`timeout`: how long a clean shutdown waits for the guest; then, with
        `force_after`, the VM is forced off, else the job fails and the VM keeps running."""
        fleet, server = self.fleet, job.source
        job.set_state(JobState.CHECKING, f"Checking that '{job.vm_name}' can "
                      f"{action.label.lower()}")
        vm = await self.migrations.fresh_vm(job, server)
        if vm is None:
            return
        problems = check_power(fleet.snapshot(), vm, action, self.queue.busy - {vm.key})
        if problems:
            job.fail(" ".join(p.message for p in problems),
                     "\n".join(f"{p.code}: {p.message}" for p in problems))
            return
        link = fleet.link(server)
        job.set_state(JobState.POWERING, f"{action.doing} '{vm.name}' on '{server}'")
        try:
            await fleet.call(server, link.power, vm.uuid, _CALL[action])
            if action is PowerAction.REBOOT:
                job.done(f"'{vm.name}' was asked to reboot (its guest restarts itself)")
                return
            wait = timeout if action is PowerAction.SHUTDOWN else SETTLE_WAIT
            state = await self._wait_for(job, vm.uuid, action, wait)
            if isinstance(state, VmState) and state is action.ends_in:
                job.done(f"'{vm.name}' is {state.value} on '{server}'")
                return
            if job.cancel_requested:
                job.cancelled(f"Stopped waiting for '{vm.name}'; it was asked to shut down "
                              "and may still do so.")
                return
            if action is PowerAction.SHUTDOWN and force_after:
                job.messages.append(f"'{vm.name}' did not shut down within {timeout:.0f} s; "
                                    "forcing it off")
                await fleet.call(server, link.power, vm.uuid, "destroy")
                state = await self._wait_for(job, vm.uuid, PowerAction.FORCE_SHUTDOWN,
                                             SETTLE_WAIT)
                if state is VmState.HALTED:
                    job.done(f"'{vm.name}' did not shut down within {timeout:.0f} s and was "
                             "forced off")
                    return
            now = (state.value if isinstance(state, VmState)
                   else "gone" if state is None else "not known (the server does not answer)")
            if action is PowerAction.SHUTDOWN:
                job.fail(f"'{vm.name}' did not shut down within {timeout:.0f} s (its guest "
                         f"may not act on the request) and is {now}; Force Shut Down turns "
                         "it off.")
            else:
                job.fail(f"'{vm.name}' is {now} on '{server}', not "
                         f"{action.ends_in.value if action.ends_in else 'running'}.")
        except VirtError as exc:
            f = friendly(exc.code, exc.raw)
            job.fail(f"{action.label} of '{vm.name}' failed: {f.message}", f.raw)
        finally:
            await fleet.read(server)

    async def _wait_for(self, job: Job, uuid: str, action: PowerAction,
                        wait: float) -> VmState | bool | None:
        """The VM's state once it is `action.ends_in`, or when `wait` is up or the job is
        cancelled (a shutdown only)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + wait
        while True:
            state = await self.fleet.locate(job.source, uuid, wait=0)
            if state is action.ends_in or loop.time() >= end:
                return state
            if job.cancel_requested and action is PowerAction.SHUTDOWN:
                return state
            await asyncio.sleep(POLL)
