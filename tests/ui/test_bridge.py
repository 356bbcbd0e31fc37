"""The engine's news reach the console through one EngineBridge per engine: every widget's
slot gets them, and a widget that is gone gets nothing (and breaks nothing)."""

from __future__ import annotations

from typing import Any

import shiboken6
from PySide6.QtWidgets import QWidget

from tests.ui.fakes import FakeEngine
from xencenter_lite.core.model import Snapshot
from xencenter_lite.ui.bridge import bridge
from xencenter_lite.ui.resources import follow_engine


class Watcher(QWidget):
    def __init__(self, engine: FakeEngine) -> None:
        super().__init__()
        self.seen: list[Snapshot] = []
        follow_engine(engine, self.on_snapshot)

    def on_snapshot(self, snap: Snapshot) -> None:
        assert shiboken6.isValid(self)
        self.seen.append(snap)


def test_one_bridge_per_engine_and_a_widget_gone_hears_nothing(fake: FakeEngine,
                                                               qtbot: Any) -> None:
    assert bridge(fake) is bridge(fake)
    assert len(fake.listeners) == 1  # the bridge: the engine's only console listener
    first, second = Watcher(fake), Watcher(fake)
    qtbot.addWidget(second)
    fake.push()
    assert len(first.seen) == len(second.seen) == 1
    shiboken6.delete(first)  # the widget goes (its C++ object deleted)
    fake.push()
    assert len(second.seen) == 2 and second.seen[-1] is fake.snapshot()
    assert len(fake.listeners) == 1  # nothing more was subscribed for the new watchers
