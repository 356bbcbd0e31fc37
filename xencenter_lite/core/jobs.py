"""Jobs: one migration, disk move or power operation each, with the state an operator
watches.

The engine drives jobs through their states; listeners (CLI progress line, Events view)
read them. Nothing here talks to libvirt or Qt.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum


class JobState(Enum):
    QUEUED = "queued"
    CHECKING = "checking"
    COPYING_DISKS = "copying disks"
    COPYING_MEMORY = "copying memory"
    POST_COPY = "post-copy"  # the VM runs on the destination, fetching its memory: no way back
    POWERING = "in progress"  # a power operation: asked of the server, waiting for the VM
    FINISHING = "finishing"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)

    @property
    def running(self) -> bool:
        return not self.finished and self is not JobState.QUEUED


class JobKind(Enum):
    MIGRATE = "migrate"
    MOVE_DISK = "move-disk"
    POWER = "power"
    COPY = "copy"
    SERVER = "server"  # a server's connection lost or back: an event, no progress, no cancel


_ids = itertools.count(1)


TRANSFER_POINTS = 1200


class RateMeter:
    """Transfer rate over the last few seconds, from (time, bytes done) samples."""

    def __init__(self, window: float = 3.0) -> None:
        self.window = window
        self.samples: deque[tuple[float, int]] = deque()

    def add(self, now: float, done: int) -> float | None:
        self.samples.append((now, done))
        while len(self.samples) > 2 and now - self.samples[0][0] > self.window:
            self.samples.popleft()
        t0, b0 = self.samples[0]
        if now - t0 <= 0:
            return None
        return max(0.0, (done - b0) / (now - t0))


@dataclass
class Job:
    kind: JobKind
    title: str  # "Migrating 'web-1' to 'lab-a2'"
    vm_key: tuple[str, str]
    vm_name: str
    source: str
    destination: str
    id: int = field(default_factory=lambda: next(_ids))
    state: JobState = JobState.QUEUED
    bytes_done: int = 0
    bytes_total: int = 0
    rate: float | None = None  # bytes per second
    downtime_ms: int | None = None
    messages: list[str] = field(default_factory=list)
    error: str | None = None  # friendly
    error_details: str | None = None  # raw libvirt text
    created: float = field(default_factory=time.monotonic)
    at: float = field(default_factory=time.time)  # when it was made, on the wall clock
    started: float | None = None
    ended: float | None = None
    cancel_requested: bool = False
    detail: str | None = None  # the live phase in words ("memory pass 3, 12 MiB left, ...")
    policy: str | None = None  # the migration settings in words (see core.policy)
    policy_log: list[str] = field(default_factory=list)  # what the policy made the engine do
    # The transfer over time, for its graph: (seconds since the job began, bytes per second
    # measured then, bytes still to send). At most TRANSFER_POINTS: a long job keeps every
    # other point once it has that many, so its whole course stays drawn.
    transfer: list[tuple[float, float | None, int]] = field(default_factory=list, repr=False)
    _meter: RateMeter = field(default_factory=RateMeter, repr=False)
    _listeners: list[Callable[[Job], None]] = field(default_factory=list, repr=False)

    # ---- observation ----------------------------------------------------------------------
    def subscribe(self, listener: Callable[[Job], None]) -> None:
        self._listeners.append(listener)

    def _changed(self) -> None:
        for listener in list(self._listeners):
            listener(self)

    @property
    def percent(self) -> float:
        if self.state is JobState.DONE:
            return 100.0
        if self.bytes_total <= 0:
            return 0.0
        return min(100.0, 100.0 * self.bytes_done / self.bytes_total)

    @property
    def eta(self) -> float | None:
        if not self.rate or self.bytes_total <= 0 or self.state.finished:
            return None
        return max(0.0, (self.bytes_total - self.bytes_done) / self.rate)

    @property
    def elapsed(self) -> float:
        if self.started is None:
            return 0.0
        return (self.ended or time.monotonic()) - self.started

    @property
    def status(self) -> str:
        """The state in words, with the live detail while running."""
        if self.kind is JobKind.SERVER:
            return "not connected" if self.state is JobState.FAILED else "connected"
        if self.detail and not self.state.finished:
            return f"{self.state.value}: {self.detail}"
        return self.state.value

    @property
    def cancel_refusal(self) -> str | None:
        """Why this job cannot be cancelled now (None: it can)."""
        if self.state is JobState.POST_COPY:
            return (f"'{self.vm_name}' already runs on '{self.destination}' and fetches the "
                    f"rest of its memory from '{self.source}' (post-copy): the migration "
                    "cannot be undone now; it ends when the memory is all there.")
        return None

    # ---- transitions (called by the engine) ------------------------------------------------
    def set_detail(self, detail: str | None) -> None:
        if self.state.finished or detail == self.detail:
            return
        self.detail = detail
        self._changed()

    def note(self, text: str) -> None:
        """Something the migration policy made the engine do (kept for Events)."""
        if self.state.finished:
            return
        self.policy_log.append(text)
        self.messages.append(text)
        self._changed()

    def set_state(self, state: JobState, message: str | None = None) -> None:
        if self.state.finished:
            return
        if self.started is None and state is not JobState.QUEUED:
            self.started = time.monotonic()
        self.state = state
        if state.finished:
            self.ended = time.monotonic()
            self.rate = None
        if message:
            self.messages.append(message)
        self._changed()

    def progress(self, done: int, total: int, now: float | None = None,
                 wire_rate: float | None = None) -> None:
        """Bytes done of `total`; `wire_rate`: bytes per second libvirt measured on the wire
        (what the rate then says), else the rate is that of `done` over the last seconds."""
        if self.state.finished:
            return
        now = time.monotonic() if now is None else now
        self.bytes_total = max(total, 0)
        self.bytes_done = max(0, min(done, self.bytes_total)) if total > 0 else max(done, 0)
        self.rate = self._meter.add(now, self.bytes_done)
        if wire_rate is not None and wire_rate > 0:
            self.rate = wire_rate
        began = self.started if self.started is not None else self.created
        if len(self.transfer) >= TRANSFER_POINTS:
            del self.transfer[1::2]
        self.transfer.append((max(0.0, now - began), self.rate,
                              max(0, self.bytes_total - self.bytes_done)))
        self._changed()

    # A finished job is final: a late fail/cancel/done must not rewrite its outcome.
    def fail(self, message: str, details: str | None = None) -> None:
        if self.state.finished:
            return
        self.error, self.error_details = message, details
        self.set_state(JobState.FAILED, message)

    def cancelled(self, message: str = "Cancelled by the operator.") -> None:
        if self.state.finished:
            return
        self.error = message
        self.set_state(JobState.CANCELLED, message)

    def done(self, message: str | None = None) -> None:
        if self.state.finished:
            return
        if self.bytes_total:
            self.bytes_done = self.bytes_total
        self.set_state(JobState.DONE, message)


def progress_from_stats(stats: dict[str, int], expected: int) -> tuple[int, int]:
    """(bytes done, bytes in all) of a migration from libvirt's job stats. Until the memory
    copy begins libvirt counts only the disks in its total; `expected` (the plan's disks and
    memory) keeps the whole from growing at the switch, so the percentage does not fall
    back from the disks' 100 % to half."""
    return stats.get("data_processed", 0), max(stats.get("data_total", 0), expected)


def wire_rate_from_stats(stats: dict[str, int], phase: JobState) -> float | None:
    """The rate on the wire while memory is copied (QEMU's own measure of the migration
    stream, as libvirt gives it); None otherwise. The bytes libvirt counts as processed
    include the zero pages and the unallocated parts of disks, which cross the wire as a
    few bytes each: over a 25 MiB/s link their rate can read 200 MiB/s."""
    if phase is not JobState.COPYING_MEMORY:
        return None
    bps = stats.get("memory_bps", 0)
    return float(bps) if bps > 0 else None


def phase_from_stats(stats: dict[str, int], current: JobState) -> JobState:
    """Disks are mirrored first, then memory; tell which from libvirt's job stats. A phase
    only moves forward: until libvirt has started the disks' mirrors (no disk total yet)
    nothing is known and the job stays as it is, and once memory is being copied it stays
    so (the mirrors keep a few bytes behind while memory moves)."""
    disk_total = stats.get("disk_total", 0)
    disk_done = stats.get("disk_processed", 0)
    if current is JobState.COPYING_MEMORY or stats.get("memory_processed", 0) > 0:
        return JobState.COPYING_MEMORY
    if disk_total:
        return JobState.COPYING_DISKS if disk_done < disk_total else JobState.COPYING_MEMORY
    return current
