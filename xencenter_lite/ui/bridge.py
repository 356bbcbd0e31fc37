"""The engine's news as Qt signals: one EngineBridge per engine.

The engine has plain listeners and no unsubscribe, and it outlives every widget. The
bridge is the one listener the console gives it; widgets connect their slots to the
bridge's signals, and Qt drops a connection when its widget goes. Emission is direct (the
engine tells its listeners on the Qt loop), so a slot runs when the news comes, as before.
"""

from __future__ import annotations

import weakref
from typing import Any

from PySide6.QtCore import QObject, Signal

_bridges: weakref.WeakKeyDictionary[Any, EngineBridge] = weakref.WeakKeyDictionary()


class EngineBridge(QObject):
    snapshotChanged = Signal(object)  # a new Snapshot
    jobChanged = Signal(object)  # a Job made or changed
    serverEvent = Signal(object)  # a server lost or back (a finished Job of kind SERVER)

    def __init__(self, engine: Any) -> None:
        super().__init__()
        # (An engine of the console's tests may have only some of the channels.)
        if hasattr(engine, "subscribe"):
            engine.subscribe(self.snapshotChanged.emit)
        if hasattr(engine, "subscribe_jobs"):
            engine.subscribe_jobs(self.jobChanged.emit)
        if hasattr(engine, "subscribe_server_events"):
            engine.subscribe_server_events(self.serverEvent.emit)


def bridge(engine: Any) -> EngineBridge:
    """The engine's bridge (made the first time it is asked for)."""
    found = _bridges.get(engine)
    if found is None:
        found = _bridges[engine] = EngineBridge(engine)
    return found
