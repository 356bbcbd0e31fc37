"""The maintenance marks: shared by every command and console of an inventory, by host UUID,
and left alone by the undo log that shares their directory."""

from __future__ import annotations

from pathlib import Path

from xencenter_lite.engine.maintenance import MaintenanceMarks
from xencenter_lite.engine.undo import PendingStore


def test_a_mark_is_seen_by_another_reader_and_survives_the_undo_logs_adoption(
        tmp_path: Path) -> None:
    one, other = MaintenanceMarks(tmp_path), MaintenanceMarks(tmp_path)
    assert not other.marked("host-1") and not other.changed()
    one.mark("host-1", "lab-a1")
    assert other.changed()
    assert other.marked("host-1") and not other.marked("host-2") and not other.marked("")
    assert other.all()["host-1"]["server"] == "lab-a1"
    store = PendingStore(tmp_path)  # adopts the data files of engines that have ended
    store.open()
    store.close()
    assert MaintenanceMarks(tmp_path).marked("host-1")
    other.unmark("host-1")
    assert one.changed() and not one.marked("host-1")


def test_an_unreadable_file_marks_nothing(tmp_path: Path) -> None:
    marks = MaintenanceMarks(tmp_path)
    marks.path.write_text("{not json", encoding="utf-8")
    assert not marks.marked("host-1")
