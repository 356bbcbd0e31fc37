"""Migration policies: how a live migration of a busy VM is brought to an end.

A VM that dirties memory faster than the link carries it never finishes a plain live
migration. The operator picks a policy and limits (MigrationSettings); while libvirt
migrates, the engine feeds the Governor libvirt's job statistics (Sample) and carries out
what it answers (Action): raise the allowed downtime a step, switch to post-copy, pause the
guest, or give up. Stalls are told from the statistics (the memory left at each pass's start
not shrinking, the guest dirtying as fast as the link sends), never from wall time alone.
Pure: no libvirt, no Qt.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

DEFAULT_MAX_DOWNTIME_MS = 300
MAX_DOWNTIME_RANGE = (10, 60_000)  # ms an operator may allow
MAX_PARALLEL = 32
AUTO_CONVERGE_INITIAL = 50  # % of vCPU time taken when throttling starts (QEMU: 20)
AUTO_CONVERGE_INCREMENT = 25  # % more at each pass that still does not converge (QEMU: 10)
STALL_WINDOW = 4.0  # seconds without progress (from pass 2 on) that make a stall
PROGRESS = 0.9  # a pass progresses when it starts with under 90 % of the best before it
DOWNTIME_STEPS = 4  # the allowed downtime goes max/4, max/2, 3max/4, max

POST_COPY_RISK = (
    "Post-copy runs the VM on the destination before all of its memory is there: if the "
    "network or either server fails during post-copy, the VM is lost on both servers, and "
    "once post-copy has begun the migration cannot be cancelled."
)


class Policy(Enum):
    MINIMAL_DOWNTIME = "minimal-downtime"
    AUTO_CONVERGE = "auto-converge"
    POST_COPY = "post-copy"

    @property
    def label(self) -> str:
        return {Policy.MINIMAL_DOWNTIME: "Minimal downtime",
                Policy.AUTO_CONVERGE: "Auto-converge (slow the guest down if needed)",
                Policy.POST_COPY: "Post-copy (finish on the destination)"}[self]

    @property
    def summary(self) -> str:
        return {
            Policy.MINIMAL_DOWNTIME: "raise the allowed downtime step by step up to the "
            "maximum; if the VM still cannot be moved, stop and leave it running where it is",
            Policy.AUTO_CONVERGE: "raise the allowed downtime step by step, and throttle the "
            "guest's vCPUs until its memory can be copied",
            Policy.POST_COPY: "once the first pass is done and the copy does not converge, "
            "run the VM on the destination and fetch its memory from the source as it is "
            "needed",
        }[self]


class OnTimeout(Enum):
    ABORT = "abort"
    POST_COPY = "post-copy"
    SUSPEND = "suspend"


@dataclass(frozen=True)
class MigrationSettings:
    policy: Policy = Policy.AUTO_CONVERGE
    max_downtime_ms: int = DEFAULT_MAX_DOWNTIME_MS
    timeout_s: int | None = None  # from the start of the memory copy; None: no limit
    on_timeout: OnTimeout = OnTimeout.ABORT
    compression: bool = False  # xbzrle for memory
    parallel: int | None = None  # connections (None: one)

    @property
    def post_copy_allowed(self) -> bool:
        """Post-copy must be enabled when the migration starts, to be switched to later."""
        return self.policy is Policy.POST_COPY or (
            self.timeout_s is not None and self.on_timeout is OnTimeout.POST_COPY)

    @property
    def downtime_steps(self) -> tuple[int, ...]:
        m = self.max_downtime_ms
        return tuple(sorted({max(1, m * i // DOWNTIME_STEPS)
                             for i in range(1, DOWNTIME_STEPS + 1)}))

    def problems(self) -> list[str]:
        """What is wrong with these settings, each saying what to do (empty: fine)."""
        out = []
        lo, hi = MAX_DOWNTIME_RANGE
        if not lo <= self.max_downtime_ms <= hi:
            out.append(f"a maximum downtime of {self.max_downtime_ms} ms is out of range; "
                       f"give {lo} to {hi} ms.")
        if self.timeout_s is not None and self.timeout_s < 1:
            out.append(f"a timeout of {self.timeout_s} s is too short; give at least 1 s, or "
                       "none.")
        if self.parallel is not None and not 2 <= self.parallel <= MAX_PARALLEL:
            out.append(f"{self.parallel} parallel connections is out of range; give 2 to "
                       f"{MAX_PARALLEL}, or none for one.")
        if self.parallel is not None and self.compression:
            out.append("compression and parallel connections cannot be used together "
                       "(QEMU refuses xbzrle on a multi-connection migration); choose one.")
        return out

    def describe(self) -> str:
        parts = [f"policy {self.policy.value}", f"max downtime {self.max_downtime_ms} ms"]
        if self.timeout_s is not None:
            parts.append(f"timeout {self.timeout_s} s, then {self.on_timeout.value}")
        if self.compression:
            parts.append("compression xbzrle")
        if self.parallel:
            parts.append(f"{self.parallel} parallel connections")
        return ", ".join(parts)


@dataclass(frozen=True)
class Sample:
    """One reading of a running migration's statistics, `elapsed` seconds into the job."""

    elapsed: float
    iteration: int = 0  # memory pass (1: the first full copy)
    remaining: int = 0  # bytes of memory still to send in this pass
    dirty_bps: float = 0.0  # bytes the guest dirties per second
    transfer_bps: float = 0.0  # bytes of memory sent per second
    throttle: int = 0  # % of vCPU time auto-converge takes
    postcopy_requests: int = 0
    expected_downtime_ms: int | None = None
    disks_pending: bool = False  # disks still being mirrored: memory not begun

    @classmethod
    def from_stats(cls, stats: dict[str, int], elapsed: float) -> Sample:
        """From libvirt's job statistics (virDomainGetJobStats field names)."""
        page = stats.get("memory_page_size", 4096) or 4096
        disk_total, disk_done = stats.get("disk_total", 0), stats.get("disk_processed", 0)
        downtime = stats.get("downtime")
        return cls(
            elapsed=elapsed,
            iteration=stats.get("memory_iteration", 0),
            remaining=stats.get("memory_remaining", 0),
            dirty_bps=float(stats.get("memory_dirty_rate", 0) * page),
            transfer_bps=float(stats.get("memory_bps", 0)),
            throttle=stats.get("auto_converge_throttle", 0),
            postcopy_requests=stats.get("memory_postcopy_requests", 0),
            expected_downtime_ms=downtime,
            disks_pending=bool(disk_total and disk_done < disk_total
                               and not stats.get("memory_processed", 0)),
        )


class Act(Enum):
    SET_DOWNTIME = "set-downtime"
    POST_COPY = "post-copy"
    SUSPEND = "suspend"
    ABORT = "abort"
    NOTE = "note"  # nothing to do: something worth keeping in Events (a throttle level)


@dataclass(frozen=True)
class Action:
    act: Act
    note: str  # what the engine did and why, for Events
    downtime_ms: int | None = None


def _mib(n: float) -> str:
    return f"{n / 1048576:.1f} MiB"


@dataclass
class Governor:
    """Decides, sample by sample, what the engine does to bring the migration to an end."""

    settings: MigrationSettings
    window: float = STALL_WINDOW
    # QEMU throttles the guest's vCPUs (auto-converge). Not for a TCG-emulated guest: with
    # QEMU 7.2 such guests came out of throttled migrations with pages of memory lost.
    throttles: bool = True
    step: int = 0  # index into settings.downtime_steps
    switched: bool = False  # post-copy begun
    suspended: bool = False
    gave_up: str | None = None
    memory_from: float | None = None  # elapsed at the first memory sample
    last: Sample | None = None
    _pass: int = 0
    _best: int | None = None  # lowest pass-start remaining since pass 2
    _since: float | None = None  # elapsed when the copy last progressed (or an action ran)
    _dirty_since: float | None = None
    _throttle: int = 0
    _timed_out: bool = False

    def __post_init__(self) -> None:
        # Minimal downtime climbs from the lowest step. Auto-converge and post-copy allow the
        # maximum from the start: QEMU throttles (or post-copy takes over) meanwhile, and a
        # lower start would only make a guest that converges at the maximum take longer.
        if self.settings.policy is Policy.POST_COPY or (
                self.settings.policy is Policy.AUTO_CONVERGE and self.throttles):
            self.step = len(self.settings.downtime_steps) - 1

    def start(self) -> list[Action]:
        """What to set before the first sample: the first allowed downtime."""
        ms = self.downtime_ms
        return [Action(Act.SET_DOWNTIME, f"Allowed downtime set to {ms} ms",
                       ms)]

    @property
    def downtime_ms(self) -> int:
        return self.settings.downtime_steps[self.step]

    def feed(self, s: Sample) -> list[Action]:
        """Take one sample; returns what to do now (usually nothing)."""
        if self.switched or self.suspended or self.gave_up or s.disks_pending:
            self.last = s
            return []
        if s.iteration < 1:
            self.last = s
            return []
        if self.memory_from is None:
            self.memory_from = s.elapsed
        out: list[Action] = []
        if s.throttle != self._throttle and s.throttle > 0:
            out.append(Action(
                Act.NOTE, f"Throttling the guest's vCPUs to {s.throttle} % (pass "
                          f"{s.iteration}) so that its memory can be copied"))
        self._throttle = s.throttle
        self._watch(s)
        self.last = s
        timeout = self.settings.timeout_s
        if timeout is not None and not self._timed_out and s.elapsed - self.memory_from >= timeout:
            self._timed_out = True
            out.append(self._on_timeout(s))
            return out
        if self.stalled(s):
            action = self._on_stall(s)
            if action is not None:
                out.append(action)
        return out

    def _watch(self, s: Sample) -> None:
        if s.iteration != self._pass:  # a new pass: its first reading is (about) its start
            self._pass = s.iteration
            if s.iteration >= 2:
                if self._best is None or s.remaining < PROGRESS * self._best:
                    self._since = s.elapsed
                if self._best is None or s.remaining < self._best:
                    self._best = s.remaining
        # (From pass 3: pass 2 may still carry much of the first pass's backlog on a slow
        # link, and is not yet a sign that the copy cannot converge.)
        if s.iteration >= 3 and s.transfer_bps > 0 and s.dirty_bps >= s.transfer_bps:
            if self._dirty_since is None:
                self._dirty_since = s.elapsed
        else:
            self._dirty_since = None

    def stalled(self, s: Sample | None = None) -> bool:
        """No pass since pass 2 began has started under 90 % of the best before it for a
        window, or (from pass 3) the guest has dirtied at least as fast as the link sends
        for half a window."""
        s = s or self.last
        if s is None or s.iteration < 2 or self._since is None:
            return False
        if s.elapsed - self._since >= self.window:
            return True
        return self._dirty_since is not None and s.elapsed - self._dirty_since >= self.window / 2

    def _restart_clock(self, s: Sample) -> None:
        self._since = s.elapsed
        self._dirty_since = None

    def _why(self, s: Sample) -> str:
        return (f"pass {s.iteration}, {_mib(s.remaining)} left, the guest dirties "
                f"{_mib(s.dirty_bps)}/s against {_mib(s.transfer_bps)}/s sent")

    def _on_stall(self, s: Sample) -> Action | None:
        policy = self.settings.policy
        self._restart_clock(s)
        if policy is Policy.POST_COPY:
            self.switched = True
            return Action(Act.POST_COPY, "Not converging (" + self._why(s)
                          + "): switched to post-copy")
        steps = self.settings.downtime_steps
        if self.step + 1 < len(steps):
            self.step += 1
            ms = steps[self.step]
            return Action(Act.SET_DOWNTIME, "Not converging (" + self._why(s)
                          + f"): allowed downtime raised to {ms} ms", ms)
        if policy is Policy.MINIMAL_DOWNTIME:
            self.gave_up = self.give_up_message(s)
            return Action(Act.ABORT, self.gave_up)
        if not self.throttles:
            if self._best is not None and s.remaining > self._best:
                return None  # paused once this pass is down to the working set, not before
            self.suspended = True
            return Action(Act.SUSPEND, "Not converging at the maximum downtime ("
                          + self._why(s) + "), and a TCG-emulated guest is not "
                          "throttled: paused so that the copy completes; it is "
                          "resumed on the destination")
        return None  # auto-converge: QEMU raises the throttle itself, pass by pass

    def give_up_message(self, s: Sample) -> str:
        return (f"The migration cannot finish within the allowed downtime of "
                f"{self.settings.max_downtime_ms} ms: {self._why(s)}. Allow a longer "
                "downtime (--max-downtime), or use the auto-converge or post-copy policy.")

    def _on_timeout(self, s: Sample) -> Action:
        then = self.settings.on_timeout
        what = (f"Timed out after {self.settings.timeout_s} s of memory copy ({self._why(s)})")
        if then is OnTimeout.POST_COPY:
            self.switched = True
            return Action(Act.POST_COPY, what + ": switched to post-copy")
        if then is OnTimeout.SUSPEND:
            self.suspended = True
            return Action(Act.SUSPEND, what + ": guest paused so that the copy "
                          "completes; it is resumed on the destination")
        self.gave_up = (what + ". Nothing was changed: the VM keeps running where it was. "
                        "Allow a longer --timeout, or choose --on-timeout post-copy or "
                        "suspend.")
        return Action(Act.ABORT, self.gave_up)

    def phase(self) -> str:
        """The phase in words: disks, memory pass N, converging: throttle X %, post-copy."""
        s = self.last
        if self.switched:
            return "post-copy"
        if s is None or s.disks_pending:
            return "copying disks"
        if self.suspended:
            return f"memory pass {s.iteration}, guest paused"
        if s.throttle:
            return f"converging: throttle {s.throttle} %"
        return f"memory pass {max(1, s.iteration)}"

    def expected_downtime_ms(self) -> int | None:
        s = self.last
        if s is None:
            return None
        if s.expected_downtime_ms is not None:
            return s.expected_downtime_ms
        if s.transfer_bps > 0:
            return int(1000 * s.remaining / s.transfer_bps)
        return None

    def status(self) -> str:
        """One line for progress: phase, dirty against sent, expected downtime."""
        s = self.last
        parts = [self.phase()]
        if s is not None and s.iteration >= 1 and not self.switched:
            parts.append(f"{_mib(s.remaining)} left")
            parts.append(f"dirtied {_mib(s.dirty_bps)}/s vs sent {_mib(s.transfer_bps)}/s")
            dt = self.expected_downtime_ms()
            if dt is not None:
                parts.append(f"downtime ≈ {dt} ms (allowed {self.downtime_ms})")
        elif s is not None and self.switched:
            parts.append(f"{s.postcopy_requests} page requests from the destination")
        return ", ".join(parts)
