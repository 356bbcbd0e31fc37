"""Start the console: Qt application, qasync loop, engine, main window.

The window appears at once and servers fill in as they connect (engine.start runs after
show). One exception hook logs every unexpected error and shows it in a non-modal dialog,
so a bug in a slot or a background task never passes silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import traceback
from pathlib import Path
from types import TracebackType
from typing import Any

os.environ["QT_API"] = "pyside6"  # before qasync is imported: it must pick PySide6

import qasync
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QMessageBox

from xencenter_lite.core.inventory import load_inventory

log = logging.getLogger("xencenter_lite")
_error_box: QMessageBox | None = None


def show_error(summary: str, details: str) -> None:
    """Log the error and show it in one non-modal dialog (later errors replace the text)."""
    global _error_box
    log.error("%s\n%s", summary, details)
    if QApplication.instance() is None:
        return
    box = _error_box
    if box is None or not box.isVisible():
        box = QMessageBox(QMessageBox.Icon.Critical, "XenCenter Lite",
                          "", QMessageBox.StandardButton.Close)
        box.setObjectName("errorDialog")
        box.setWindowModality(Qt.WindowModality.NonModal)
        _error_box = box
    box.setText(f"An unexpected error occurred:\n\n{summary}")
    box.setDetailedText(details)
    box.show()


def _excepthook(kind: type[BaseException], exc: BaseException,
                tb: TracebackType | None) -> None:
    show_error(f"{kind.__name__}: {exc}", "".join(traceback.format_exception(kind, exc, tb)))


def _loop_exception(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    exc = context.get("exception")
    if exc is None:
        show_error(str(context.get("message")), str(context))
        return
    _excepthook(type(exc), exc, exc.__traceback__)


def install_exception_hook(loop: asyncio.AbstractEventLoop | None = None) -> None:
    sys.excepthook = _excepthook
    if loop is not None:
        loop.set_exception_handler(_loop_exception)


def run_gui(inventory_path: str | os.PathLike[str]) -> int:
    """Run the console until its window closes; InventoryError propagates (bad file)."""
    from xencenter_lite.engine import Engine
    from xencenter_lite.ui.main_window import MainWindow

    inventory = load_inventory(Path(inventory_path))
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName("XenCenter Lite")
    app.setQuitOnLastWindowClosed(False)  # we stop the engine first, then quit
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    install_exception_hook(loop)

    async def main() -> None:
        engine = Engine(inventory)
        window = MainWindow(engine)
        closed = asyncio.Event()
        window.closed.connect(closed.set)
        window.show()
        starting = asyncio.ensure_future(engine.start())
        await closed.wait()
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
        await engine.close()

    with loop:
        loop.run_until_complete(main())
    return 0
