"""The memory dialog on the real lab: the Dynamic Memory Control range stored in the VM's
metadata, the memory to give a running VM now, the engine's refusals, and where it opens from.

Nothing here depends on a guest really giving memory back (engine tests squeeze guests).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
import shiboken6
from PySide6.QtWidgets import QDialog, QSpinBox

from tests.conftest import until
from tests.labtools import vm_named
from xencenter_lite.engine import metadata_of
from xencenter_lite.ui.main_window import MainWindow
from xencenter_lite.ui.memory_dialog import TYPED_MAX_MIB, MemoryDialog
from xencenter_lite.ui.properties import PropertiesView

pytestmark = pytest.mark.lab
MIB = 1024 * 1024


@pytest.fixture(autouse=True)
def keep_the_loop(qapp: Any, request: pytest.FixtureRequest) -> None:
    """As run_gui does: closing the last window (a dialog, here) must not stop the loop."""
    qapp.setQuitOnLastWindowClosed(False)
    request.addfinalizer(lambda: qapp.setQuitOnLastWindowClosed(True))


def unset_range(engine: Any, run: Any, name: str) -> None:
    """Back to no range (the engine has no call for that), then the full static maximum."""
    vm = vm_named(engine, name)
    if vm.dynamic_min is not None or vm.dynamic_max is not None:
        engine.link(vm.server).set_metadata(
            vm.uuid, replace(metadata_of(vm), dynamic_min=None, dynamic_max=None))
        vm = run(engine.refresh(vm.server)).vm(vm.key)
    if vm.is_running and vm.current_memory and vm.current_memory != vm.memory:
        run(engine.set_memory(vm.key, vm.memory))


@pytest.fixture
def web(engine: Any, run: Any) -> Any:
    unset_range(engine, run, "web-1")
    yield vm_named(engine, "web-1")
    unset_range(engine, run, "web-1")


@pytest.fixture
def calls(engine: Any, monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """What the dialog asked the engine for, in order (the real calls still happen)."""
    seen: list[tuple[Any, ...]] = []
    set_range, set_memory = engine.set_dynamic_memory, engine.set_memory

    async def dynamic(key: Any, low: int, high: int) -> None:
        seen.append(("range", low // MIB, high // MIB))
        await set_range(key, low, high)

    async def memory(key: Any, size: int) -> None:
        seen.append(("now", size // MIB))
        await set_memory(key, size)

    monkeypatch.setattr(engine, "set_dynamic_memory", dynamic)
    monkeypatch.setattr(engine, "set_memory", memory)
    return seen


@pytest.fixture
def dialogs(engine: Any) -> Iterator[Callable[[Any], MemoryDialog]]:
    """Opens the dialog as the console does; it deletes itself once closed (so not for
    qtbot.addWidget), and whatever a test left open is closed afterwards."""
    opened: list[MemoryDialog] = []

    def open_dialog(key: Any) -> MemoryDialog:
        dialog = MemoryDialog(engine, key)
        dialog.open()
        opened.append(dialog)
        return dialog

    yield open_dialog
    for dialog in opened:
        if shiboken6.isValid(dialog):
            dialog.reject()


def closed(dialog: QDialog) -> bool:
    return not shiboken6.isValid(dialog) or not dialog.isVisible()


def test_set_a_range_and_the_general_tab_shows_it(qtbot, run, engine, web, calls,
                                                  dialogs):
    assert web.is_running and web.memory == 128 * MIB and web.dynamic_min is None
    view = PropertiesView(engine)
    qtbot.addWidget(view)
    view.show_object(("vm", web.key))
    assert view.general.value("Static maximum") == "128.0 MiB"
    assert view.general.value("Dynamic minimum / maximum") == "Not set"

    dialog = dialogs(web.key)
    assert dialog.objectName() == "memoryDialog"
    assert dialog.accessibleName() == "Memory settings"
    assert dialog.isVisible() and not dialog.isModal()
    for spin in (dialog.min_spin, dialog.max_spin):  # takes what is typed; says what is wrong
        assert (spin.minimum(), spin.maximum(), spin.value()) == (0, TYPED_MAX_MIB, 128)
    assert dialog.now_spin is not None
    dialog.min_spin.setValue(64)
    dialog.ok_button.click()
    run(until(lambda: closed(dialog)))
    assert calls == [("range", 64, 128)]  # memory now untouched: no balloon call

    vm = run(engine.refresh()).vm(web.key)
    assert vm is not None and (vm.dynamic_min, vm.dynamic_max) == (64 * MIB, 128 * MIB)
    run(until(lambda: view.general.value("Dynamic minimum / maximum") == "64.0 MiB / 128.0 MiB"))
    again = MemoryDialog(engine, web.key)
    qtbot.addWidget(again)
    assert (again.min_spin.value(), again.max_spin.value()) == (64, 128)


def test_memory_now_stays_in_the_range_and_is_set_after_it(run, engine, web, calls, dialogs):
    dialog = dialogs(web.key)
    now = dialog.now_spin
    assert now is not None
    dialog.min_spin.setValue(64)
    dialog.max_spin.setValue(112)
    assert (now.minimum(), now.maximum()) == (64, 112) and 64 <= now.value() <= 112
    now.setValue(96)
    dialog.ok_button.click()
    run(until(lambda: closed(dialog)))
    assert calls == [("range", 64, 112), ("now", 96)]
    vm = run(engine.refresh()).vm(web.key)
    assert vm is not None and (vm.dynamic_min, vm.dynamic_max) == (64 * MIB, 112 * MIB)


def test_a_bad_range_shows_the_engines_message_and_changes_nothing(
    run, engine, web, calls, dialogs
):
    refusals = []
    for low, high in ((100, 64), (20, 64)):  # min above max; min under a quarter of 128 MiB
        with pytest.raises(ValueError) as refused:
            run(engine.set_dynamic_memory(web.key, low * MIB, high * MIB))
        refusals.append(str(refused.value))
    assert "must satisfy 0 < minimum <= maximum" in refusals[0]
    assert "below a quarter of its static maximum (32.0 MiB of 128.0 MiB)" in refusals[1]
    calls.clear()
    dialog = dialogs(web.key)
    dialog.min_spin.setValue(100)
    dialog.max_spin.setValue(64)
    # Said as soon as it is typed, in the engine's words; OK waits for it to be put right.
    assert dialog.problem.isVisible() and dialog.problem.text() == refusals[0]
    assert not dialog.ok_button.isEnabled()
    dialog.min_spin.setValue(20)
    assert dialog.problem.text() == refusals[1] and not dialog.ok_button.isEnabled()
    assert (dialog.min_spin.value(), dialog.max_spin.value()) == (20, 64)  # as typed
    dialog.ok_button.click()
    assert calls == []
    vm = run(engine.refresh()).vm(web.key)
    assert vm is not None and (vm.dynamic_min, vm.dynamic_max) == (None, None)

    dialog.min_spin.setValue(32)  # put right, it goes through and closes
    assert not dialog.problem.isVisible() and dialog.ok_button.isEnabled()
    dialog.ok_button.click()
    run(until(lambda: closed(dialog)))
    # Memory now was held inside the new range (128 -> 64 MiB), as shown: it is set too.
    assert calls == [("range", 32, 64), ("now", 64)]


def test_a_halted_vm_gets_a_range_but_no_memory_now(run, engine, dialogs):
    build = vm_named(engine, "build-1")
    assert not build.is_running
    try:
        dialog = dialogs(build.key)
        assert dialog.now_spin is None and dialog.findChild(QSpinBox, "memoryNowSpin") is None
        assert dialog.current.text() == "(not running)"
        dialog.min_spin.setValue(32)
        dialog.max_spin.setValue(96)
        dialog.ok_button.click()
        run(until(lambda: closed(dialog)))
        vm = run(engine.refresh()).vm(build.key)
        assert vm is not None and (vm.dynamic_min, vm.dynamic_max) == (32 * MIB, 96 * MIB)
    finally:
        unset_range(engine, run, "build-1")


def test_opens_from_the_vm_menu_the_context_menu_and_the_general_tab(qtbot, run, engine, web):
    win = MainWindow(engine)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    pane = win.resources

    def dialogs() -> list[MemoryDialog]:
        return [d for d in win.findChildren(QDialog, "memoryDialog") if d.isVisible()]

    pane.select(("server", web.server))
    assert not win.memory_action.isEnabled()
    assert not win.properties.general.memory_button.isVisible()
    pane.select(("vm", web.key))
    assert win.memory_action.isEnabled()
    vm_menu = next(a.menu() for a in win.menuBar().actions() if a.text() == "V&M")
    assert win.memory_action in vm_menu.actions()
    assert win.memory_action in pane.context_menu(("vm", web.key)).actions()

    win.memory_action.trigger()
    (dialog,) = dialogs()
    assert dialog.vm_key == web.key and not dialog.isModal()
    dialog.reject()
    run(until(lambda: not dialogs()))
    button = win.properties.general.memory_button
    assert button.isVisible() and button.isEnabled()
    button.click()
    (dialog,) = dialogs()
    assert dialog.vm_key == web.key
    dialog.reject()

    pane.select(("vm", vm_named(engine, "db-1").key), add=True)  # two VMs: not for both
    assert not win.memory_action.isEnabled()
