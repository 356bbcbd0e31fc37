"""Small pieces every part of the console uses."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from PySide6.QtCore import QLocale, Qt
from PySide6.QtWidgets import QDialog, QLabel

log = logging.getLogger(__name__)
_background: set[asyncio.Task[Any]] = set()

# Roles shared by the console's item models.
KeyRole = Qt.ItemDataRole.UserRole + 1  # ("vm"|"server"|"pool"|"sr"|"folder", identity)
KindRole = Qt.ItemDataRole.UserRole + 2


def format_size(n: int | float) -> str:
    """Bytes in binary units, as the operator's locale writes them ("128.0 MiB"): the units
    the engine's messages use too (core.units), so a VM of 128 MiB reads the same in every
    tab, dialog and refusal."""
    return QLocale().formattedDataSize(int(n), 1, QLocale.DataSizeFormat.DataSizeIecFormat)


def format_rate(bytes_per_second: int | float) -> str:
    """A transfer rate in the same units ("12.5 MiB/s")."""
    return f"{format_size(bytes_per_second)}/s"


def whole_percent(percent: float) -> int:
    """A job's percentage as every view shows it (Events, status bar, its bar): rounded the
    same way, never 100 before the job has all its bytes."""
    whole = round(percent)
    return 99 if whole == 100 and percent < 100 else whole


def star_text(stars: int) -> str:
    """A placement rating as five stars, filled and hollow ("★★★☆☆")."""
    return "★" * stars + "☆" * (5 - stars)


_kept: set[QDialog] = set()  # parentless dialogs shown with open() live until closed


def problem_label(name: str) -> QLabel:
    """The red, word-wrapped line under a dialog's choices that says what stops it (hidden
    until there is something to say)."""
    label = QLabel()
    label.setObjectName(name)
    label.setWordWrap(True)
    label.setStyleSheet("color: #b71c1c;")
    label.hide()
    return label


def keep_until_closed(dialog: QDialog) -> None:
    """A dialog opened without blocking stays alive while shown and goes away once closed."""
    if dialog.parent() is None:
        _kept.add(dialog)
        dialog.finished.connect(lambda _: _kept.discard(dialog))
    dialog.finished.connect(dialog.deleteLater)


def show_non_modal(dialog: QDialog) -> None:
    """Show `dialog` beside the main window, blocking nothing."""
    dialog.setWindowModality(Qt.WindowModality.NonModal)
    keep_until_closed(dialog)
    dialog.show()
    dialog.raise_()
    dialog.activateWindow()


def spawn(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    """Run `coro` on the loop without awaiting it; keep it alive and log its failure."""
    task = asyncio.ensure_future(coro)
    _background.add(task)

    def done(t: asyncio.Task[Any]) -> None:
        _background.discard(t)
        if not t.cancelled() and t.exception() is not None:
            log.error("background task failed", exc_info=t.exception())

    task.add_done_callback(done)
    return task
