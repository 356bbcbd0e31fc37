"""Threads for blocking libvirt calls: one worker per server connection, one thread per
long operation.

libvirt serializes the calls on one connection anyway, so a server needs one thread, and
a server that stops answering then holds only its own: the reads, cancels and clean-ups
of every other server go on. When a server is given up on, its worker is retired with
whatever call is stuck in it, and the next connection gets a new one. The threads are
daemons: a command that has printed its outcome exits even if a call is still stuck on a
server that stopped answering.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class WorkerRetired(RuntimeError):
    """The server's worker was given up on: the call was not made."""


class Worker:
    """Runs the calls given to it one after another on a thread of its own."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._calls: queue.SimpleQueue[
            tuple[Callable[[], Any], concurrent.futures.Future[Any]] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._retired = False

    def submit(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Queue `fn`; its result (or exception) arrives on the running loop's future."""
        if self._retired:
            raise WorkerRetired(f"the worker of {self.name} is retired")
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name=f"libvirt-{self.name}",
                                            daemon=True)
            self._thread.start()
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._calls.put((fn, fut))
        return asyncio.wrap_future(fut)

    def retire(self) -> None:
        """Take no more calls; the thread ends after the call it is in (if it ever ends)."""
        if not self._retired:
            self._retired = True
            self._calls.put(None)

    @property
    def retired(self) -> bool:
        return self._retired

    def _serve(self) -> None:
        while True:
            item = self._calls.get()
            if item is None:
                # Calls queued behind the retirement are answered, not left waiting.
                while True:
                    try:
                        rest = self._calls.get_nowait()
                    except queue.Empty:
                        return
                    if rest is not None and rest[1].set_running_or_notify_cancel():
                        rest[1].set_exception(WorkerRetired(f"{self.name} was given up on"))
            fn, fut = item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn())
            except BaseException as exc:  # handed to the caller, whatever it is
                fut.set_exception(exc)


def run_long(name: str, fn: Callable[[], T]) -> asyncio.Future[T]:
    """Run a long blocking operation (a migration, a disk copy) on a daemon thread of its
    own; the result arrives on the running loop's future."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, exc: BaseException | None) -> None:
        if fut.done():
            return
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)  # type: ignore[arg-type]

    def body() -> None:
        try:
            result = fn()
        except BaseException as exc:
            with _closed_loop_ok():
                loop.call_soon_threadsafe(settle, None, exc)
            return
        with _closed_loop_ok():
            loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=body, name=f"libvirt-{name}", daemon=True).start()
    return fut


class _closed_loop_ok:
    """The loop may be closed by the time a long call ends (a command that has exited)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *_rest: object) -> bool:
        return kind is RuntimeError
