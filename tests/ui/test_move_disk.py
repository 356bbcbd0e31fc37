"""Move Virtual Disk on the real lab: the SR list says why an SR cannot take the disk."""

from __future__ import annotations

import os

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QListWidget

from tests.conftest import until
from tests.labtools import vm_named
from tests.ui.vm_placement import place
from xencenter_lite.core.jobs import JobState
from xencenter_lite.ui.events import EventsView
from xencenter_lite.ui.move_disk import MoveDiskDialog, sr_reason


def items(srs: QListWidget) -> dict[str, tuple[str, bool]]:
    """SR name -> (text, enabled)."""
    out = {}
    for i in range(srs.count()):
        item = srs.item(i)
        out[item.data(Qt.ItemDataRole.UserRole)] = (
            item.text(), bool(item.flags() & Qt.ItemFlag.ItemIsEnabled))
    return out


def select(dialog: MoveDiskDialog, name: str) -> None:
    for i in range(dialog.srs.count()):
        if dialog.srs.item(i).data(Qt.ItemDataRole.UserRole) == name:
            dialog.srs.setCurrentRow(i)


def test_every_sr_is_listed_and_the_unusable_ones_say_why(qtbot, run, engine):
    app = place(engine, run, "app-1", "lab-b1", sr="Local storage")
    disk = app.disk("vda")
    assert disk is not None and disk.sr is not None
    dialog = MoveDiskDialog(engine, app.key)
    qtbot.addWidget(dialog)
    assert dialog.objectName() == "moveDiskDialog" and dialog.disk_combo.isEnabled()
    assert dialog.disk_combo.currentData() == "vda"
    shown = items(dialog.srs)
    assert set(shown) == {"Local storage", "Fast storage", "Small storage"}
    assert shown[disk.sr] == (f"{disk.sr} — Current location", False)
    small_text, small_enabled = shown["Small storage"]
    assert small_text.startswith("Small storage — Not enough space: 128.0 MiB required, ")
    assert small_text.endswith(" available") and not small_enabled
    other = next(n for n in ("Local storage", "Fast storage") if n != disk.sr)
    assert " free of " in shown[other][0] and shown[other][1]
    assert not dialog.move_button.isEnabled()
    select(dialog, other)
    assert dialog.move_button.isEnabled()

    snap = engine.snapshot()
    assert sr_reason(snap, "lab-b1", "Shared storage", 1) == "Not visible from lab-b1"


def test_a_halted_vm_moves_its_disk_as_a_verified_copy(qtbot, run, engine):
    build = vm_named(engine, "build-1")
    disk = build.disk("vda")
    assert disk is not None and disk.sr is not None and disk.path is not None
    dialog = MoveDiskDialog(engine, build.key, "vda")
    qtbot.addWidget(dialog)
    assert not dialog.disk_combo.isEnabled()
    assert "stays halted" in dialog.findChild(QLabel).text()
    target = "Shared storage" if disk.sr != "Shared storage" else "Local storage"
    select(dialog, target)
    assert dialog.move_button.isEnabled() and not dialog.problem.isVisible()
    dialog.move_button.click()
    job = dialog.job
    assert job is not None
    run(engine.wait([job]), 120)
    assert job.state is JobState.DONE, (job.error, job.messages)
    assert any("verified" in m for m in job.messages)
    moved = vm_named(engine, "build-1")
    assert moved.state.value == "halted" and moved.disk("vda").sr == target
    assert not os.path.exists(disk.path)
    back = engine.move_disk(moved.key, "vda", disk.sr)  # where the lab keeps it
    run(engine.wait([back]), 120)
    assert back.state is JobState.DONE, back.error


def test_move_a_running_vms_disk_live(qtbot, run, engine):
    app = place(engine, run, "app-1", "lab-b1", sr="Local storage")
    disk = app.disk("vda")
    assert disk is not None
    target = "Fast storage" if disk.sr != "Fast storage" else "Local storage"
    events = EventsView(engine)
    qtbot.addWidget(events)
    dialog = MoveDiskDialog(engine, app.key, "vda")
    qtbot.addWidget(dialog)
    dialog.open()
    select(dialog, target)
    dialog.move_button.click()
    assert not dialog.isVisible() and dialog.job is not None
    job = dialog.job
    assert events.model.row_of(job.id) == 0
    assert events.model.index(0, 0).data() == f"Moving disk vda of 'app-1' to SR '{target}'"
    run(engine.wait([job]))
    assert job.state is JobState.DONE, (job.error, job.error_details)
    run(until(lambda: events.buttons[job.id].text() == "Dismiss"))
    moved = vm_named(engine, "app-1")
    new = moved.disk("vda")
    assert moved.server == "lab-b1" and new is not None and new.sr == target
