"""The Performance tab: a running VM's or a server's CPU, memory, disk and network, live.

While the tab is on show, the selected object's counters are read every few seconds in the
background (engine.counters, on the server's worker) and the figures between two readings
are added to its history (core.perf); nothing is read while the tab is hidden. Each
object keeps its history for as long as the console runs (the latest few objects), so
going back to a VM shows what was seen before.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import shiboken6
from PySide6.QtCore import QTimer
from PySide6.QtGui import QHideEvent, QShowEvent
from PySide6.QtWidgets import QGridLayout, QLabel, QVBoxLayout, QWidget

from xencenter_lite.core.model import VM, Server, VmState
from xencenter_lite.core.perf import FiguresUnavailable, History
from xencenter_lite.ui.charts import LineChart
from xencenter_lite.ui.common import format_rate, format_size, spawn

INTERVAL_MS = 2000  # between two readings
SPAN = 300.0  # seconds shown
KEEP_OBJECTS = 20  # histories kept (the latest objects shown)

HistoryKey = tuple[str, str, str]  # ("vm", server, uuid) or ("server", name, "")


def _percent(v: float) -> str:
    return f"{v:.1f} %" if v < 10 else f"{v:.0f} %"


class PerformanceTab(QWidget):
    def __init__(self, engine: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("performanceTab")
        self.engine = engine
        self.status = QLabel(self)
        self.status.setObjectName("performanceStatus")
        self.status.setWordWrap(True)
        self.cpu = LineChart("CPU", _percent, fixed_max=100.0, span=SPAN, parent=self)
        self.memory = LineChart("Memory", format_size, span=SPAN, binary=True, parent=self)
        self.disk = LineChart("Disk", format_rate, span=SPAN, binary=True, parent=self)
        self.network = LineChart("Network", format_rate, span=SPAN, binary=True, parent=self)
        grid = QGridLayout()
        for i, chart in enumerate((self.cpu, self.memory, self.disk, self.network)):
            grid.addWidget(chart, i // 2, i % 2)
        layout = QVBoxLayout(self)
        layout.addWidget(self.status)
        layout.addLayout(grid, 1)
        self.key: HistoryKey | None = None
        self.title = ""
        self.histories: OrderedDict[HistoryKey, History] = OrderedDict()
        self._reading = False
        self.timer = QTimer(self)
        self.timer.setInterval(INTERVAL_MS)
        self.timer.timeout.connect(self.read_now)

    # ---- what is shown -------------------------------------------------------------------
    def show_object(self, obj: VM | Server | None) -> None:
        key: HistoryKey | None = None
        why = ""
        if isinstance(obj, VM):
            key = ("vm", obj.server, obj.uuid)
            self.title = f"'{obj.name}'"
            if obj.state is not VmState.RUNNING:
                why = (f"'{obj.name}' is {obj.state.value}: its figures are read while it "
                       "runs.")
        elif isinstance(obj, Server):
            key = ("server", obj.name, "")
            self.title = f"'{obj.name}'"
            if not obj.connected:
                why = f"'{obj.name}' is not connected: its figures are read once it is."
        changed = key != self.key
        self.key = key if not why else None
        if why:
            self.status.setText(why)
        elif changed or not self.status.text():
            self.status.setText(f"{self.title}: reading every {INTERVAL_MS // 1000} s…")
        self._draw()
        if changed and self.isVisible():
            self.read_now()

    def history(self) -> History | None:
        return self.histories.get(self.key) if self.key is not None else None

    def _draw(self) -> None:
        h = self.history()
        points = list(h) if h is not None else []
        server = self.key is not None and self.key[0] == "server"
        self.cpu.set_series([("CPU", [(p.at, p.cpu_percent) for p in points])])
        self.memory.set_series([("Used", [(p.at, p.memory_used) for p in points]),
                                ("Total", [(p.at, p.memory_total) for p in points])])
        # A server's disk and network are its running VMs' together (what libvirt counts).
        self.disk.set_series([("VMs' reads" if server else "Read",
                               [(p.at, p.disk_read_bps) for p in points]),
                              ("VMs' writes" if server else "Write",
                               [(p.at, p.disk_write_bps) for p in points])])
        self.network.set_series([("VMs' received" if server else "Received",
                                  [(p.at, p.net_rx_bps) for p in points]),
                                 ("VMs' sent" if server else "Sent",
                                  [(p.at, p.net_tx_bps) for p in points])])

    # ---- reading -------------------------------------------------------------------------
    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.timer.start()
        self.read_now()

    def hideEvent(self, event: QHideEvent) -> None:
        self.timer.stop()
        super().hideEvent(event)

    def read_now(self) -> None:
        if self.key is not None and not self._reading:
            self._reading = True
            spawn(self._read(self.key))

    async def _read(self, key: HistoryKey) -> None:
        try:
            counters = await self.engine.counters(key[1], key[2] or None)
        except FiguresUnavailable as exc:
            if shiboken6.isValid(self) and key == self.key:
                self.status.setText(f"{self.title}: no figures now: {exc}")
            return
        finally:  # whatever the answer, the next tick reads again
            if shiboken6.isValid(self):
                self._reading = False
        if not shiboken6.isValid(self):
            return
        h = self.histories.get(key)
        if h is None:
            h = self.histories[key] = History(keep=int(2 * SPAN * 1000 / INTERVAL_MS))
            while len(self.histories) > KEEP_OBJECTS:
                self.histories.popitem(last=False)
        self.histories.move_to_end(key)
        h.add(counters)
        if key == self.key:
            self.status.setText(f"{self.title}: read every {INTERVAL_MS // 1000} s"
                                + ("" if len(h) else " (the figures need two readings)"))
            self._draw()
