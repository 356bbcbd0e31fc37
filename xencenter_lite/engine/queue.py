"""Jobs and the queue: who is being moved, how many move at once, and in which order."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from xencenter_lite.core.jobs import Job

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 3
# A queued migration waits at most this long for the one queued before it to send data.
STAGGER_WAIT = 3.0  # seconds


class JobQueue:
    def __init__(self, concurrency: int, spawn: Callable[[Coroutine[Any, Any, None]],
                                                         asyncio.Task[None]]) -> None:
        self.concurrency = concurrency
        self._spawn = spawn
        self.slots: asyncio.Semaphore | None = None
        self.jobs: list[Job] = []
        self.active: dict[tuple[str, str], Job] = {}  # VM -> the job moving it
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.cancel_events: dict[int, threading.Event] = {}
        self._listeners: list[Callable[[Job], None]] = []
        self.last_queued: Job | None = None  # the migration queued last
        self.on_end: list[Callable[[Job], None]] = []
        self.stagger_wait = STAGGER_WAIT

    def start(self) -> None:
        self.slots = asyncio.Semaphore(self.concurrency)

    def subscribe(self, listener: Callable[[Job], None]) -> None:
        self._listeners.append(listener)

    @property
    def busy(self) -> set[tuple[str, str]]:
        return set(self.active)

    def new(self, job: Job) -> Job:
        self.jobs.append(job)
        for listener in self._listeners:
            job.subscribe(listener)
        job._changed()
        return job

    def claim(self, job: Job) -> bool:
        """Claim the job's VM; False (the job failed at once) when it is already moving."""
        if job.vm_key in self.active:
            job.fail(f"'{job.vm_name}' already has a migration or disk move running; wait for "
                     "it to finish or cancel it.")
            return False
        self.active[job.vm_key] = job
        return True

    def run(self, job: Job, coro: Coroutine[Any, Any, None]) -> None:
        self.tasks[job.id] = self._spawn(self._guard(job, coro))

    async def _guard(self, job: Job, coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            job.cancelled("Stopped because the console closed.")
            raise
        except Exception as exc:  # a bug must not leave a job spinning forever
            log.exception("job %s crashed", job.title)
            job.fail("An internal error stopped the job (see details).", repr(exc))
        finally:
            if self.active.get(job.vm_key) is job:
                del self.active[job.vm_key]
            self.cancel_events.pop(job.id, None)
            for hook in list(self.on_end):
                hook(job)

    async def wait(self, jobs: Iterable[Job]) -> None:
        tasks = [self.tasks.get(j.id) for j in jobs]
        await asyncio.gather(*(t for t in tasks if t is not None), return_exceptions=True)

    def running(self) -> list[Job]:
        return [j for j in self.jobs if not j.state.finished]

    async def after(self, previous: Job | None, job: Job) -> None:
        """Migrations begin one after another: each once the one queued before it sends
        data (or has ended), waiting stagger_wait seconds at most. Moves that begin
        together share the link evenly and end together, and the link then idles while
        all of them switch over and the next ones start (about a second each time). The
        wait comes before the destination volumes are made: the first move's start does
        not share its servers with the others' preparations."""
        if previous is None:
            return
        loop = asyncio.get_running_loop()
        end = loop.time() + self.stagger_wait
        while (previous.bytes_done == 0 and not previous.state.finished
               and not job.cancel_requested and loop.time() < end):
            await asyncio.sleep(0.05)
