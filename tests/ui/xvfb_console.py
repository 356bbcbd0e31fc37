"""The console in a process of its own on a real X display (Xvfb), for a test that drives
it with a real pointer (tests/ui/test_real_pointer.py).

Run as `python -m tests.ui.xvfb_console INVENTORY VM POOL`: the real engine on the
inventory, the real main window. Once the tree shows them, it prints (one JSON line) the
screen coordinates of the VM's row and the pool's row; then it watches for a Migrate VM
wizard and prints which VMs it is for and its destination, and exits. Everything printed
is read from the outside of the product, as a test would look at the screen.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import qasync
from PySide6.QtWidgets import QApplication

from xencenter_lite.core.inventory import load_inventory
from xencenter_lite.engine import Engine
from xencenter_lite.ui.main_window import MainWindow
from xencenter_lite.ui.wizard import MigrateWizard


def say(**what: object) -> None:
    print(json.dumps(what), flush=True)


def main() -> int:
    inventory, vm_name, pool = sys.argv[1:4]
    app = QApplication(sys.argv[:1])
    app.setQuitOnLastWindowClosed(False)
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    engine = Engine(load_inventory(inventory))
    window = MainWindow(engine)
    window.resize(1000, 700)
    window.move(0, 0)
    window.show()

    async def run() -> None:
        await engine.start()
        pane = window.resources
        vm = next(v for v in engine.snapshot().vms if v.name == vm_name)
        deadline = time.monotonic() + 30
        while not (pane.index_of(("vm", vm.key)).isValid()
                   and pane.index_of(("pool", pool)).isValid()):
            if time.monotonic() > deadline:
                say(error="the tree never showed the VM and the pool")
                return
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # mapped and painted
        view = pane.tree
        where = {}
        for name, key in (("vm", ("vm", vm.key)), ("pool", ("pool", pool))):
            rect = view.visualRect(pane.index_of(key))
            centre = view.viewport().mapToGlobal(rect.center())
            where[name] = [centre.x(), centre.y()]
        say(**where)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for w in app.topLevelWidgets():
                if isinstance(w, MigrateWizard) and w.isVisible():
                    say(wizard=w.windowTitle(), destination=w.preferred,
                        vms=sorted(w.names.values()))
                    return
            await asyncio.sleep(0.1)
        say(error="no wizard opened", status=window.statusBar().currentMessage())

    try:
        with loop:
            loop.run_until_complete(run())
            window._really_close = True
            window.close()
            loop.run_until_complete(engine.close())
    except Exception as exc:  # said, so the test shows it
        say(error=repr(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
