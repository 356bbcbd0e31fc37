"""The Memory tab, as XenCenter's: a VM's memory against its static maximum with its
Dynamic Memory Control range marked, or a server's memory shared out between its running
VMs, its own use and what is free; drawn as a bar (QPainter) with a legend in words.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPaintEvent, QPalette, QPen
from PySide6.QtWidgets import QLabel, QPushButton, QSizePolicy, QVBoxLayout, QWidget

from xencenter_lite.core.model import VM, Server, Snapshot, VmState
from xencenter_lite.ui.charts import COLOURS
from xencenter_lite.ui.common import format_size

FREE = "#d9d9d9"
OWN = "#7f7f7f"
TOP_VMS = 8  # a server's largest VMs drawn one by one; the rest together


@dataclass(frozen=True)
class Segment:
    label: str
    size: int  # bytes
    colour: str


@dataclass(frozen=True)
class Bar:
    total: int  # bytes the bar stands for
    segments: tuple[Segment, ...]
    marks: tuple[tuple[str, int], ...] = ()  # (label, bytes): lines across the bar

    def summary(self) -> str:
        parts = [f"{s.label}: {format_size(s.size)}" for s in self.segments]
        parts += [f"{label}: {format_size(at)}" for label, at in self.marks]
        return f"{format_size(self.total)} in all; " + "; ".join(parts)


def vm_bar(vm: VM) -> Bar:
    """A VM against its static maximum: what it has now, and its dynamic range."""
    marks: tuple[tuple[str, int], ...] = ()
    if vm.dynamic_min is not None and vm.dynamic_max is not None:
        marks = (("Dynamic minimum", vm.dynamic_min), ("Dynamic maximum", vm.dynamic_max))
    if vm.state is not VmState.RUNNING:
        return Bar(vm.memory, (Segment("Not running", vm.memory, FREE),), marks)
    now = min(vm.memory_in_use, vm.memory)
    segments = [Segment("Current memory", now, COLOURS[0])]
    if vm.memory > now:
        segments.append(Segment("Up to the static maximum", vm.memory - now, FREE))
    return Bar(vm.memory, tuple(segments), marks)


def server_bar(snap: Snapshot, server: Server) -> Bar:
    """A server's memory: each running VM's (the largest one by one), the server's own use
    (what is neither a VM's nor free) and what is free."""
    vms = sorted((v for v in snap.vms_on(server.name) if v.state is not VmState.HALTED),
                 key=lambda v: (-v.memory_in_use, v.name.lower()))
    segments = [Segment(f"'{v.name}'", v.memory_in_use, COLOURS[i % len(COLOURS)])
                for i, v in enumerate(vms[:TOP_VMS])]
    rest = vms[TOP_VMS:]
    if rest:
        segments.append(Segment(f"{len(rest)} other VMs", sum(v.memory_in_use for v in rest),
                                "#bcbd22"))
    used_by_vms = sum(v.memory_in_use for v in vms)
    own = server.host_memory - server.free_memory - used_by_vms
    if own > 0:
        segments.append(Segment("The server's own use", own, OWN))
    segments.append(Segment("Free", server.free_memory, FREE))
    return Bar(server.host_memory, tuple(segments))


class MemoryBar(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bar = Bar(0, ())
        self.setAccessibleName("Memory")
        # The bar, the marks' names above it and up to five lines of legend.
        self.setMinimumHeight(6 * self.fontMetrics().height() + 50)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def sizeHint(self) -> QSize:
        return QSize(480, self.minimumHeight())

    def show_bar(self, bar: Bar) -> None:
        self.bar = bar
        self.setAccessibleDescription(bar.summary() if bar.total else "")
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        bar = self.bar
        if bar.total <= 0:
            return
        p = QPainter(self)
        text = self.palette().color(QPalette.ColorRole.WindowText)
        fm = p.fontMetrics()
        line = fm.height()
        area = QRectF(4, line + 6, self.width() - 8, 26)
        x = area.left()
        for s in bar.segments:
            w = area.width() * s.size / bar.total
            p.fillRect(QRectF(x, area.top(), max(w, 0), area.height()), QColor(s.colour))
            x += w
        p.setPen(QPen(text, 1))
        p.drawRect(area)
        for label, at in bar.marks:  # the dynamic range: a line across, its name above
            mx = area.left() + area.width() * min(at, bar.total) / bar.total
            p.setPen(QPen(QColor("#d62728"), 2))
            p.drawLine(QPointF(mx, area.top() - 4), QPointF(mx, area.bottom() + 4))
            p.setPen(text)
            short = label.replace("Dynamic ", "dyn. ")
            width = fm.horizontalAdvance(short)
            left = min(max(mx - width / 2, 0), self.width() - width)
            p.drawText(QRectF(left, 0, width + 2, line), Qt.AlignmentFlag.AlignLeft, short)
        # Legend: a square of each colour and its words, on as many lines as it takes.
        x, y = 4.0, area.bottom() + 8
        for s in bar.segments:
            words = f"{s.label}: {format_size(s.size)}"
            width = fm.horizontalAdvance(words) + 30
            if x + width > self.width() and x > 4:
                x, y = 4.0, y + line + 2
            p.fillRect(QRectF(x, y + line / 2 - 4, 10, 8), QColor(s.colour))
            p.setPen(text)
            p.drawText(QRectF(x + 14, y, width, line), Qt.AlignmentFlag.AlignLeft, words)
            x += width
        p.end()


class MemoryTab(QWidget):
    """A VM's or a server's memory; a VM's has the memory dialog's button."""

    def __init__(self, open_dialog: Callable[[], object], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("memoryTab")
        self.heading = QLabel(self)
        self.heading.setObjectName("memoryHeading")
        self.heading.setWordWrap(True)
        self.bar = MemoryBar(self)
        self.edit = QPushButton("&Edit…", self)
        self.edit.setObjectName("memoryEditButton")
        self.edit.setToolTip("Dynamic Memory Control: the VM's memory range and the memory it "
                             "has now")
        self.edit.clicked.connect(open_dialog)
        layout = QVBoxLayout(self)
        layout.addWidget(self.heading)
        layout.addWidget(self.bar)
        layout.addWidget(self.edit, 0, Qt.AlignmentFlag.AlignLeft)
        layout.addStretch(1)

    def show_object(self, snap: Snapshot, obj: VM | Server) -> None:
        if isinstance(obj, VM):
            self.edit.show()
            dynamic = ("Dynamic Memory Control: from "
                       f"{format_size(obj.dynamic_min)} to {format_size(obj.dynamic_max)}"
                       if obj.dynamic_min is not None and obj.dynamic_max is not None
                       else "Dynamic Memory Control: not set (the VM has its static maximum)")
            self.heading.setText(f"'{obj.name}': static maximum {format_size(obj.memory)}. "
                                 f"{dynamic}.")
            self.bar.show_bar(vm_bar(obj))
            return
        self.edit.hide()
        if not obj.connected:
            self.heading.setText(f"'{obj.name}' is not connected: its memory is not known.")
            self.bar.show_bar(Bar(0, ()))
            return
        running = sum(1 for v in snap.vms_on(obj.name) if v.state is not VmState.HALTED)
        self.heading.setText(f"'{obj.name}': {format_size(obj.host_memory)}, "
                             f"{format_size(obj.free_memory)} free; {running} VM(s) running.")
        self.bar.show_bar(server_bar(snap, obj))
