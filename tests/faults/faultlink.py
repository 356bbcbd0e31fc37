"""A real link with one call made to go wrong: the middle tier between the pure core and
the lab.

FaultLink wraps the engine's real LibvirtLink (the libvirt test driver's, or a lab
server's) and counts every call the engine makes on it. When the armed call comes, it is
made to:

- fail: the server refuses it (nothing is done; libvirt's internal-error code);
- hang: it waits longer than the engine's deadline, then goes through after all (a server
  that answers late: the engine has given up on it by then);
- drop: it is done, but the answer is lost with the connection (the worst case of a cut
  link); every later call on that connection fails too, and `alive` says so, until the
  engine opens a new one;
- bug: it raises an exception that is not a libvirt error (a bug in the product);
- detach: it is sent, and the connection goes at once while the server carries it out (a
  link cut under a long call: the server goes on with the migration it was asked for).

A plan can also make some calls slow to begin (`slow`: method -> seconds), a server that
takes its time with a request while it answers others: a migration the source has not yet
begun when the engine looks, say; and make some always fail (`failing`: methods), a server
that cannot answer one kind of question, such as a job's statistics behind a busy domain.

Nothing here pretends to be libvirt: every call that goes through is the real one.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from xencenter_lite.core.inventory import ServerConfig
from xencenter_lite.virt import LibvirtLink, ServerLink, VirtError

FAIL, HANG, DROP, BUG, DETACH = "fail", "hang", "drop", "bug", "detach"
KINDS = (FAIL, HANG, DROP)
INTERNAL_ERROR = 1  # VIR_ERR_INTERNAL_ERROR
SYSTEM_ERROR = 38  # VIR_ERR_SYSTEM_ERROR: what a dropped connection gives


class InjectedBug(RuntimeError):
    """Stands for a bug in the product: not a libvirt error."""


@dataclass(frozen=True)
class Call:
    role: str  # "source", "destination" (or "server" for a disk move)
    method: str
    occurrence: int  # the n-th call of `method` on that server since the plan was armed

    def __str__(self) -> str:
        return f"{self.role}.{self.method}#{self.occurrence}"


@dataclass
class FaultPlan:
    """Which call goes wrong, and how; and a trace of the calls made while armed."""

    roles: dict[str, str] = field(default_factory=dict)  # server name -> role
    target: Call | None = None
    kind: str = FAIL
    hang: float = 2.5  # seconds a hung call waits before it goes through
    armed: bool = False
    fired: bool = False
    trace: list[Call] = field(default_factory=list)
    _counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    hung_until: float = 0.0  # monotonic time the hung call goes through
    # Seconds before a call begins: by method ("migrate": every such call) or by one call
    # while armed ("destination.locate#1").
    slow: dict[str, float] = field(default_factory=dict)
    failing: frozenset[str] = frozenset()  # methods that fail every time while armed

    def arm(self, target: Call | None = None, kind: str = FAIL) -> None:
        with self._lock:
            self.target, self.kind = target, kind
            self.armed, self.fired = True, False
            self.trace.clear()
            self._counts.clear()

    def disarm(self) -> None:
        with self._lock:
            self.armed = False

    def hit(self, server: str, method: str) -> tuple[str | None, float]:
        """Count the call; the kind of fault if it is the armed one, and how long it is to
        wait before it begins (see `slow`)."""
        with self._lock:
            delay = self.slow.get(method, 0.0)
            if not self.armed:
                return None, delay
            role = self.roles.get(server, server)
            self._counts[(role, method)] += 1
            call = Call(role, method, self._counts[(role, method)])
            self.trace.append(call)
            delay = max(delay, self.slow.get(str(call), 0.0))
            if not self.fired and call == self.target:
                self.fired = True
                if self.kind == HANG:
                    self.hung_until = time.monotonic() + self.hang
                return self.kind, delay
            return None, delay


# Methods that are not calls on the server.
_LOCAL = frozenset({"close"})


class FaultLink:
    """A ServerLink that passes every call to a real one, except the armed call."""

    def __init__(self, real: LibvirtLink, plan: FaultPlan) -> None:
        self._real = real
        self._plan = plan
        self.name = real.name
        self.uri = real.uri
        self._dropped = False
        self._on_close: Callable[[], None] | None = None

    @property
    def alive(self) -> bool:
        return not self._dropped and self._real.alive

    def open(self) -> Any:
        self._dropped = False  # a new connection
        return self._call("open", self._real.open)

    def close(self) -> None:
        self._real.close()

    def watch(self, on_change: Callable[[], None], on_close: Callable[[], None]) -> None:
        self._on_close = on_close
        self._call("watch", self._real.watch, on_change, on_close)

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._real, name)
        if name.startswith("_") or name in _LOCAL or not callable(target):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._call(name, target, *args, **kwargs)

        return call

    def _call(self, method: str, target: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self._dropped:
            raise VirtError("internal error: client socket is closed", INTERNAL_ERROR)
        kind, delay = self._plan.hit(self.name, method)
        if delay:
            time.sleep(delay)
        if kind is None and method in self._plan.failing and self._plan.armed:
            raise VirtError(f"internal error: {method} cannot be answered now", INTERNAL_ERROR)
        if kind is None:
            return target(*args, **kwargs)
        if kind == FAIL:
            raise VirtError(f"internal error: injected failure of {method}", INTERNAL_ERROR)
        if kind == BUG:
            raise InjectedBug(f"injected bug in {method}")
        if kind == HANG:
            time.sleep(self._plan.hang)
            return target(*args, **kwargs)
        if kind == DETACH:
            threading.Thread(target=lambda: _quietly(target, *args, **kwargs),
                             daemon=True).start()
            self._dropped = True
            if self._on_close is not None:
                self._on_close()
            raise VirtError("End of file while reading data: Input/output error", SYSTEM_ERROR)
        # DROP: the server does it; the answer is lost with the connection.
        try:
            target(*args, **kwargs)
        finally:
            self._dropped = True
            if self._on_close is not None:
                self._on_close()
        raise VirtError("End of file while reading data: Input/output error", SYSTEM_ERROR)


def _quietly(target: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """A detached call: its answer (or error) goes nowhere, as with a cut connection."""
    with contextlib.suppress(Exception):  # nobody is there to hear it
        target(*args, **kwargs)


def fault_links(plan: FaultPlan) -> Callable[[ServerConfig], ServerLink]:
    """A link factory for Engine(link_factory=...): every server's link is a FaultLink."""

    def make(config: ServerConfig) -> ServerLink:
        return FaultLink(LibvirtLink(config.name, config.uri), plan)  # type: ignore[return-value]

    return make
