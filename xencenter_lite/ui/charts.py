"""A line chart drawn with QPainter: figures over time (a VM's CPU, a transfer's rate).

One widget, several series sharing a time axis and a value axis from zero to a rounded
maximum. The latest value of each series is written beside its name in the legend, and the
same words are the widget's accessible description, so the figures can be read as well as
looked at.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPaintEvent, QPalette, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

Formatter = Callable[[float], str]

# Colours a series takes in turn (distinct for the common kinds of colour blindness).
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd")


@dataclass
class Series:
    name: str
    colour: str
    points: list[tuple[float, float | None]]  # (time in seconds, value; None: not known)


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5 or 5 × 10ⁿ at or above `value` (an axis' top)."""
    if value <= 0:
        return 1.0
    step = 10.0 ** math.floor(math.log10(value))
    for m in (1, 2, 2.5, 5, 10):
        if m * step >= value * 0.999:
            return m * step
    return 10 * step


def nice_bytes_ceiling(value: float, least: float = 1024.0) -> float:
    """An axis' top for bytes (or bytes per second): a round number of the binary unit the
    value is in (1, 2, 2.5 or 5 × 10ⁿ KiB, MiB, GiB...), at least `least`."""
    value = max(value, least)
    unit = 1024.0 ** min(int(math.log(value, 1024)), 6)
    return nice_ceiling(value / unit) * unit


class LineChart(QWidget):
    """Series over the last `span` seconds (or over the whole of their time, when None)."""

    def __init__(self, title: str, fmt: Formatter, *, fixed_max: float | None = None,
                 span: float | None = None, binary: bool = False,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.binary = binary  # values are bytes: the axis' top is a round binary size
        self.title = title
        self.fmt = fmt
        self.fixed_max = fixed_max
        self.span = span
        self.series: list[Series] = []
        self.setAccessibleName(title)
        self.setMinimumHeight(130)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def sizeHint(self) -> QSize:
        return QSize(420, 170)

    def set_series(self, series: Sequence[tuple[str, Sequence[tuple[float, float | None]]]]
                   ) -> None:
        self.series = [Series(name, COLOURS[i % len(COLOURS)], list(points))
                       for i, (name, points) in enumerate(series)]
        self.setAccessibleDescription(self.summary())
        self.update()

    def latest(self, name: str) -> float | None:
        for s in self.series:
            if s.name == name:
                return next((v for _t, v in reversed(s.points) if v is not None), None)
        raise KeyError(name)

    def summary(self) -> str:
        """The latest figures in words ("CPU: 12.5 %"), or that there are none yet."""
        parts = []
        for s in self.series:
            value = self.latest(s.name)
            parts.append(f"{s.name}: {self.fmt(value) if value is not None else 'not reported'}")
        return "; ".join(parts) if any(s.points for s in self.series) else "No figures yet"

    # ---- geometry ------------------------------------------------------------------------
    def _ranges(self) -> tuple[float, float, float]:
        """(first time, last time, top value) of what is drawn."""
        times = [t for s in self.series for t, _v in s.points]
        values = [v for s in self.series for _t, v in s.points if v is not None]
        t1 = max(times, default=0.0)
        t0 = min(times, default=0.0) if self.span is None else t1 - self.span
        highest = max(values, default=0.0)
        top = self.fixed_max if self.fixed_max is not None else (
            nice_bytes_ceiling(highest) if self.binary else nice_ceiling(highest))
        return t0, max(t1, t0 + 1e-9), top

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal = self.palette()
        text = pal.color(QPalette.ColorRole.WindowText)
        grid = QColor(text)
        grid.setAlpha(40)
        fm = p.fontMetrics()
        line = fm.height()
        t0, t1, top = self._ranges()
        left = max(fm.horizontalAdvance(self.fmt(top * i / 4)) for i in range(5)) + 8
        plot = QRectF(left, line + 4, self.width() - left - 8,
                      self.height() - 3 * line - 10)
        p.setPen(text)
        p.drawText(QRectF(left, 0, self.width() - left, line), Qt.AlignmentFlag.AlignLeft,
                   self.title)
        if plot.width() <= 10 or plot.height() <= 10:
            return
        # Grid: four horizontal lines with their values, the time span at the bottom.
        for i in range(5):
            y = plot.bottom() - plot.height() * i / 4
            p.setPen(QPen(grid, 1))
            p.drawLine(QPointF(plot.left(), y), QPointF(plot.right(), y))
            p.setPen(text)
            p.drawText(QRectF(0, y - line / 2, left - 4, line),
                       Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                       self.fmt(top * i / 4))
        seconds = t1 - t0
        p.drawText(QRectF(plot.left(), plot.bottom() + 2, plot.width(), line),
                   Qt.AlignmentFlag.AlignLeft, f"{_duration(seconds)} ago")
        p.drawText(QRectF(plot.left(), plot.bottom() + 2, plot.width(), line),
                   Qt.AlignmentFlag.AlignRight, "now")
        # The series: a gap where a value is not known, a dot for a value on its own.
        for s in self.series:
            colour = QColor(s.colour)
            path = QPainterPath()
            run: list[QPointF] = []
            for t, v in [*s.points, (math.inf, None)]:
                if t < t0:
                    continue
                if v is None:
                    if len(run) == 1:
                        p.setPen(Qt.PenStyle.NoPen)
                        p.setBrush(colour)
                        p.drawEllipse(run[0], 2.5, 2.5)
                    run = []
                    continue
                at = QPointF(plot.left() + plot.width() * (t - t0) / (t1 - t0),
                             plot.bottom() - plot.height() * min(v, top) / top)
                if run:
                    path.lineTo(at)
                else:
                    path.moveTo(at)
                run.append(at)
            p.setPen(QPen(colour, 2))
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawPath(path)
        # Legend with the latest values.
        x = plot.left()
        y = plot.bottom() + line + 4
        for s in self.series:
            value = self.latest(s.name)
            label = f"{s.name}: {self.fmt(value) if value is not None else 'not reported'}"
            p.fillRect(QRectF(x, y + line / 2 - 4, 10, 8), QColor(s.colour))
            p.setPen(text)
            p.drawText(QRectF(x + 14, y, fm.horizontalAdvance(label) + 2, line),
                       Qt.AlignmentFlag.AlignLeft, label)
            x += fm.horizontalAdvance(label) + 30
        p.end()


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 120:
        return f"{seconds} s"
    return f"{seconds // 60} min"
