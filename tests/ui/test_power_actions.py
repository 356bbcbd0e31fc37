"""VM ▸ Start, Shut Down, Force Shut Down, Reboot, Suspend and Resume on the lab: enabled
as the VM's state allows, with XenCenter's shortcuts, confirmed where a VM's service stops,
each a job that leaves the VM in its new state."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QApplication, QMessageBox

from tests.conftest import until
from tests.labtools import remove_vm, virsh, virt_install, vm_named
from xencenter_lite.core.inventory import load_inventory
from xencenter_lite.core.model import VmState
from xencenter_lite.core.power import PowerAction
from xencenter_lite.ui.main_window import MainWindow

pytestmark = pytest.mark.lab


@pytest.fixture
def vm_uri(lab_inventory: Path) -> Iterator[str]:
    uri = next(s.uri for s in load_inventory(lab_inventory).servers if s.name == "lab-b1")
    remove_vm(uri, "pw-ui")
    virsh(uri, "vol-create-as", "Local storage", "pw-ui.qcow2", "16M", "--format", "qcow2")
    virt_install(uri, "pw-ui", "vol=Local storage/pw-ui.qcow2", memory_mib=32)
    yield uri
    remove_vm(uri, "pw-ui")


def press(window: MainWindow, keys: str) -> None:
    """What a key press does: trigger the one enabled action that has the shortcut. (The
    offscreen platform has no active window, so Qt routes no shortcut there.)"""
    (action,) = [a for a in window.power_actions.values()
                 if a.isEnabled() and a.shortcut() == QKeySequence(keys)]
    action.trigger()


def enabled(window: MainWindow) -> set[str]:
    return {a.value for a, qa in window.power_actions.items() if qa.isEnabled()}


def test_power_actions_follow_the_vm_and_run_as_jobs(qtbot: Any, run: Any, engine: Any,
                                                     vm_uri: str) -> None:
    run(engine.refresh("lab-b1"))
    window = MainWindow(engine)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    vm = vm_named(engine, "pw-ui")
    window.resources.select(("vm", vm.key))

    def state() -> VmState:
        return vm_named(engine, "pw-ui").state

    assert enabled(window) == {"shutdown", "force-shutdown", "reboot", "suspend"}
    suspend = window.power_actions[PowerAction.SUSPEND]
    resume = window.power_actions[PowerAction.RESUME]
    assert suspend.shortcut().toString() == "Ctrl+Y" and resume.shortcut().isEmpty()

    press(window, "Ctrl+Y")
    run(until(lambda: state() is VmState.PAUSED, timeout=30))
    run(until(lambda: "resume" in enabled(window), timeout=10))
    assert enabled(window) == {"force-shutdown", "resume"}
    assert resume.shortcut().toString() == "Ctrl+Y" and suspend.shortcut().isEmpty()
    press(window, "Ctrl+Y")
    run(until(lambda: state() is VmState.RUNNING, timeout=30))

    # Force Shut Down asks first, and "No" is the default.
    run(until(lambda: "force-shutdown" in enabled(window) and "suspend" in enabled(window)))
    box = window.power(PowerAction.FORCE_SHUTDOWN)
    assert isinstance(box, QMessageBox) and box.defaultButton() is box.button(
        QMessageBox.StandardButton.No)
    assert "'pw-ui'" in box.text() and "unsaved data is lost" in box.text()
    box.button(QMessageBox.StandardButton.Yes).click()
    run(until(lambda: state() is VmState.HALTED, timeout=30))
    run(until(lambda: enabled(window) == {"start"}, timeout=10))
    job = next(j for j in reversed(engine.jobs) if j.vm_name == "pw-ui")
    assert job.title == "Forcing off 'pw-ui'" and job.state.value == "done"

    press(window, "Ctrl+B")
    run(until(lambda: state() is VmState.RUNNING, timeout=30))
    assert not [w for w in QApplication.topLevelWidgets()
                if isinstance(w, QMessageBox) and w.isVisible()]  # Start asks nothing
