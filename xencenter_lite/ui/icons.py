"""Small painted icons for the resources tree, so state reads at a glance without image files.

Each icon is a base shape (VM screen, server box, pool, SR cylinder) with an optional status
badge, drawn once at 32 px and cached.
"""

from __future__ import annotations

from functools import cache

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QIcon, QPainter, QPainterPath, QPen, QPixmap, QPolygonF
from PySide6.QtWidgets import QApplication, QStyle

GREEN, RED, GREY, ORANGE, BLUE = "#2e9d3a", "#c62828", "#8a8a8a", "#ef8a00", "#2f5d8a"


def _vm(p: QPainter) -> None:
    p.setPen(QPen(QColor("#34495e"), 2))
    p.setBrush(QColor("#dce6f0"))
    p.drawRoundedRect(QRectF(3, 5, 24, 17), 2, 2)
    p.drawLine(QPointF(15, 22), QPointF(15, 26))
    p.drawLine(QPointF(9, 27), QPointF(21, 27))


def _server(p: QPainter, top: float = 3, height: float = 26) -> None:
    p.setPen(QPen(QColor("#3b3b3b"), 2))
    p.setBrush(QColor("#c9ced6"))
    p.drawRoundedRect(QRectF(7, top, 17, height), 2, 2)
    for y in (top + 5, top + 10):
        p.drawLine(QPointF(10, y), QPointF(21, y))


def _pool(p: QPainter) -> None:
    p.setPen(QPen(QColor("#3b3b3b"), 2))
    for x in (2.0, 14.0):
        p.setBrush(QColor("#c9ced6"))
        p.drawRoundedRect(QRectF(x, 6, 13, 22), 2, 2)
        p.drawLine(QPointF(x + 3, 11), QPointF(x + 10, 11))


def _sr(p: QPainter) -> None:
    p.setPen(QPen(QColor("#5d4037"), 2))
    p.setBrush(QColor("#d7ccc8"))
    body = QPainterPath()
    body.moveTo(5, 8)
    body.lineTo(5, 24)
    body.arcTo(QRectF(5, 20, 22, 8), 180, 180)
    body.lineTo(27, 8)
    p.drawPath(body)
    p.drawEllipse(QRectF(5, 4, 22, 8))


def _badge(p: QPainter, kind: str) -> None:
    p.setPen(QPen(QColor("white"), 1.5))
    area = QRectF(17, 17, 14, 14)
    if kind == "running":
        p.setBrush(QColor(GREEN))
        p.drawEllipse(area)
        p.setBrush(QColor("white"))
        p.setPen(Qt.PenStyle.NoPen)
        p.drawPolygon(QPolygonF([QPointF(21.5, 20.5), QPointF(21.5, 27.5), QPointF(27.5, 24)]))
    elif kind == "halted":
        p.setBrush(QColor(RED))
        p.drawEllipse(area)
        p.setBrush(QColor("white"))
        p.drawRect(QRectF(21, 21, 6, 6))
    elif kind == "paused":
        p.setBrush(QColor(GREY))
        p.drawEllipse(area)
        p.setBrush(QColor("white"))
        p.drawRect(QRectF(21, 20.5, 2, 7))
        p.drawRect(QRectF(25, 20.5, 2, 7))
    elif kind == "migrating":
        p.setBrush(QColor(ORANGE))
        p.drawEllipse(area)
        p.setPen(QPen(QColor("white"), 2))
        p.drawLine(QPointF(20, 24), QPointF(28, 24))
        p.drawLine(QPointF(25, 21), QPointF(28, 24))
        p.drawLine(QPointF(25, 27), QPointF(28, 24))
    elif kind == "disconnected":
        p.setBrush(QColor(RED))
        p.drawEllipse(area)
        p.setPen(QPen(QColor("white"), 2))
        p.drawLine(QPointF(21, 21), QPointF(27, 27))
        p.drawLine(QPointF(27, 21), QPointF(21, 27))
    elif kind == "maintenance":  # a spanner on blue: nothing is placed here for now
        p.setBrush(QColor(BLUE))
        p.drawEllipse(area)
        p.setPen(QPen(QColor("white"), 2.5))
        p.drawLine(QPointF(20.5, 27.5), QPointF(25, 23))
        p.setPen(QPen(QColor("white"), 1.8))
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawEllipse(QRectF(24, 19.5, 4.5, 4.5))
    elif kind == "connected":
        p.setBrush(QColor(GREEN))
        p.drawEllipse(QRectF(21, 21, 9, 9))


_SHAPES = {"vm": _vm, "server": _server, "pool": _pool, "sr": _sr}


@cache
def icon(name: str) -> QIcon:
    """`name` is "shape" or "shape-badge", e.g. "vm-running", "server-disconnected"."""
    if name == "folder":
        return QApplication.style().standardIcon(QStyle.StandardPixmap.SP_DirIcon)
    if name == "root":
        return QApplication.style().standardIcon(QStyle.StandardPixmap.SP_ComputerIcon)
    if name == "group":
        return QApplication.style().standardIcon(QStyle.StandardPixmap.SP_DriveNetIcon)
    shape, _, badge = name.partition("-")
    pix = QPixmap(32, 32)
    pix.fill(Qt.GlobalColor.transparent)
    p = QPainter(pix)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.setBrush(QBrush())
    _SHAPES[shape](p)
    if badge:
        _badge(p, badge)
    p.end()
    return QIcon(pix)
