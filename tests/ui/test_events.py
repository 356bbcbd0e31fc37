"""The Events view: a row per job with live progress, Cancel, Dismiss and expandable details."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from PySide6.QtCore import QModelIndex
from PySide6.QtGui import QGuiApplication

from tests.conftest import until
from tests.ui.vm_placement import place
from xencenter_lite.core.jobs import Job, JobKind, JobState
from xencenter_lite.core.plan import MigrationRequest
from xencenter_lite.ui.events import (
    DISMISS_GUARD_MS,
    PROGRESS,
    STATUS,
    TIME,
    TITLE,
    TRANSFERRED,
    EventsView,
    JobsModel,
    PercentRole,
)

# The model tester reports through Qt warnings: make them fail the test.
pytestmark = [pytest.mark.qt_log_level_fail("WARNING"),
              pytest.mark.qt_log_ignore("does not support propagateSizeHints")]


class FakeEngine:
    """Just the part of the engine the Events view uses, to drive jobs by hand."""

    def __init__(self) -> None:
        self.jobs: list[Job] = []
        self._listeners: list[Any] = []
        self.cancelled: list[Job] = []
        self.server_events: list[Job] = []
        self._server_listeners: list[Any] = []

    def subscribe_jobs(self, listener: Any) -> None:
        self._listeners.append(listener)

    def add(self, title: str) -> Job:
        job = Job(JobKind.MIGRATE, title, ("lab-a1", title), title, "lab-a1", "lab-b1")
        self.jobs.append(job)
        for listener in self._listeners:
            job.subscribe(listener)
        job._changed()
        return job

    async def cancel(self, job: Job) -> None:
        self.cancelled.append(job)
        job.cancelled()

    # Servers lost and back, as the engine gives them (finished, on a channel of their own).
    def subscribe_server_events(self, listener: Any) -> None:
        self._server_listeners.append(listener)

    def server_event(self, title: str, lost: bool) -> Job:
        event = Job(JobKind.SERVER, title, ("", ""), "", "lab-a2", "lab-a2")
        if lost:
            event.fail("'lab-a2': connection lost. The console connects again …")
        else:
            event.done("'lab-a2' answers again.")
        self.server_events.append(event)
        for listener in self._server_listeners:
            listener(event)
        return event


def cell(model: JobsModel, job: Job, column: int, parent: QModelIndex | None = None) -> str:
    row = model.row_of(job.id)
    assert row is not None
    return model.index(row, column).data()


def lines(model: JobsModel, job: Job) -> list[str]:
    parent = model.index(model.row_of(job.id) or 0, 0)
    return [model.index(i, 0, parent).data() for i in range(model.rowCount(parent))]


def test_model_updates_in_place_and_coalesces_bursts(qtbot, qtmodeltester, run):
    engine = FakeEngine()
    old = engine.add("Migrating 'old' to 'lab-b1'")
    view = EventsView(engine)
    qtbot.addWidget(view)
    model = view.model
    qtmodeltester.check(model)
    qtmodeltester.check(model, force_py=True)
    resets, changes = [], []
    model.modelReset.connect(lambda: resets.append(1))
    model.dataChanged.connect(lambda a, b, roles=(): changes.append((a.row(), b.column())))

    job = engine.add("Migrating 'web-1' to 'lab-b1'")
    assert model.rowCount() == 2 and cell(model, job, TITLE) == job.title  # newest on top
    job.set_state(JobState.COPYING_DISKS, "Copying")
    for done in range(0, 1000):
        job.progress(done * 1_000_000, 1_000_000_000)
    assert changes == []  # nothing yet: the burst is folded into one update
    run(asyncio.sleep(0.2))
    assert len(changes) == 1 and resets == []
    assert cell(model, job, PROGRESS) == "99 %"  # 999 of 1000 bytes: not 100 until done
    assert cell(model, job, STATUS) == "copying disks"
    assert cell(model, job, TRANSFERRED).startswith("952.7 MiB of 953.7 MiB")

    job.fail("The destination went away.", "libvirt: error code 38: Cannot recv data")
    run(asyncio.sleep(0.2))
    assert lines(model, job)[-2:] == ["Error details:",
                                      "    libvirt: error code 38: Cannot recv data"]
    assert lines(model, job)[0] == "Copying"
    view.tree.setCurrentIndex(model.index(model.row_of(job.id), 0))
    view.copy_details()
    copied = QGuiApplication.clipboard().text()
    assert "Status: failed" in copied and "Cannot recv data" in copied

    button = view.buttons[old.id]
    assert button.text() == "Cancel"
    button.click()
    run(until(lambda: old.state is JobState.CANCELLED))
    run(asyncio.sleep(0.2))
    assert engine.cancelled == [old] and button.text() == "Dismiss"
    # A second click on the spot where Cancel was, just after the job ended, is not a Dismiss.
    assert not button.isEnabled()
    button.click()
    assert model.row_of(old.id) is not None
    run(until(button.isEnabled, timeout=DISMISS_GUARD_MS / 1000 + 1))
    button.click()
    assert model.row_of(old.id) is None and model.rowCount() == 1
    old._changed()  # a dismissed job stays out of the view
    run(asyncio.sleep(0.2))
    assert model.rowCount() == 1 and resets == []


def test_post_copy_shows_its_detail_and_policy_and_cannot_be_cancelled(qtbot, run):
    engine = FakeEngine()
    view = EventsView(engine)
    qtbot.addWidget(view)
    model = view.model
    job = engine.add("Migrating 'busy-1' to 'lab-b1'")
    job.policy = "policy post-copy, max downtime 300 ms"
    job.set_state(JobState.COPYING_MEMORY, "Sending memory")
    job.set_detail("memory pass 3, 24.0 MiB left, dirtied 9.6 MiB/s vs sent 10.0 MiB/s")
    run(asyncio.sleep(0.2))
    assert cell(model, job, STATUS) == ("copying memory: memory pass 3, 24.0 MiB left, "
                                        "dirtied 9.6 MiB/s vs sent 10.0 MiB/s")
    button = view.buttons[job.id]
    assert button.isEnabled()
    job.note("Not converging: switched to post-copy")
    job.set_state(JobState.POST_COPY)
    run(asyncio.sleep(0.2))
    assert lines(model, job) == ["Migration settings: policy post-copy, max downtime 300 ms",
                                 "Sending memory", "Not converging: switched to post-copy"]
    assert not button.isEnabled() and "cannot be undone" in button.toolTip()
    job.done("moved")
    run(asyncio.sleep(0.2))
    assert button.text() == "Dismiss"
    run(until(button.isEnabled, timeout=DISMISS_GUARD_MS / 1000 + 1))


def test_cancel_a_real_migration_from_its_row(qtbot, qtmodeltester, run, engine):
    app = place(engine, run, "app-1", "lab-b1", sr="Local storage")
    view = EventsView(engine)
    qtbot.addWidget(view)
    view.show()
    model = view.model
    qtmodeltester.check(model)
    (job,) = engine.migrate([MigrationRequest(app.key, "lab-a1", sr="Local storage",
                                              bandwidth_mib_s=1)])
    assert model.row_of(job.id) == 0 and cell(model, job, TITLE) == \
        "Migrating 'app-1' to 'lab-a1'"
    seen: set[str] = set()

    def progress_moves() -> bool:
        text = cell(model, job, TRANSFERRED)
        seen.add(text)
        return job.state.finished or (len(seen - {""}) >= 2 and "/s" in text
                                      and cell(model, job, PROGRESS) != "0 %")

    run(until(progress_moves, timeout=40))
    assert not job.state.finished, (job.state, job.error)
    view.tree.expand(model.index(model.row_of(job.id), 0))
    assert any("storage" in line for line in lines(model, job))

    view.buttons[job.id].click()
    run(engine.wait([job]))
    assert job.state is JobState.CANCELLED, (job.state, job.error, job.error_details)
    run(until(lambda: view.buttons[job.id].text() == "Dismiss"))
    assert cell(model, job, STATUS) == "cancelled"
    still = engine.snapshot().vm(app.key)
    assert still is not None and still.server == "lab-b1" and still.is_running
    run(until(view.buttons[job.id].isEnabled, timeout=DISMISS_GUARD_MS / 1000 + 1))
    view.buttons[job.id].click()
    assert model.row_of(job.id) is None


def test_a_failed_job_expands_into_its_raw_error(qtbot, run, engine):
    view = EventsView(engine)
    qtbot.addWidget(view)
    vm = engine.snapshot().vms_named("web-1")[0]
    (job,) = engine.migrate([MigrationRequest(vm.key, vm.server)])  # refused: same server
    run(engine.wait([job]))
    assert cell(view.model, job, STATUS) == "failed"
    run(until(lambda: "Error details:" in lines(view.model, job)))
    view.tree.expand(view.model.index(view.model.row_of(job.id), 0))
    details = lines(view.model, job)
    assert any(line.strip().startswith("SAME_SERVER: ") for line in details), details


def test_the_status_bar_and_events_show_the_same_percentage(qtbot, run):
    from xencenter_lite.ui.common import whole_percent

    # 99.6 % is not yet done: 99 everywhere, never 100 in one place and 99 in another.
    assert [whole_percent(p) for p in (0.0, 0.4, 0.5001, 49.5, 99.4, 99.6, 100.0)] == [
        0, 0, 1, 50, 99, 99, 100]
    engine = FakeEngine()
    view = EventsView(engine)
    qtbot.addWidget(view)
    job = engine.add("Migrating 'web-1' to 'lab-a2'")
    job.set_state(JobState.COPYING_MEMORY)
    job.progress(996, 1000)
    run(asyncio.sleep(0.2))
    assert cell(view.model, job, PROGRESS) == "99 %"


def test_a_server_lost_and_back_are_rows_of_their_own(qtbot, run):
    engine = FakeEngine()
    before = engine.server_event("Lost the connection to 'lab-a2'", lost=True)
    view = EventsView(engine)  # an event from before the view was made is shown too
    qtbot.addWidget(view)
    model = view.model
    assert cell(model, before, TITLE) == "Lost the connection to 'lab-a2'"
    assert cell(model, before, STATUS) == "not connected"
    assert cell(model, before, TIME).startswith("at ")  # when, not how long
    assert model.index(0, PROGRESS).data(PercentRole) is None  # no progress bar
    assert lines(model, before)[0].startswith("'lab-a2': connection lost")
    back = engine.server_event("Connected to 'lab-a2' again", lost=False)
    assert model.rowCount() == 2 and cell(model, back, STATUS) == "connected"
    button = view.buttons[back.id]
    assert button.text() == "Dismiss"
    qtbot.waitUntil(button.isEnabled, timeout=3000)
    button.click()
    assert model.row_of(back.id) is None and model.rowCount() == 1


def test_the_graph_follows_a_jobs_transfer(qtbot: Any, run: Any) -> None:
    engine = FakeEngine()
    view = EventsView(engine)
    qtbot.addWidget(view)
    job = engine.add("Migrating 'web-1' to 'lab-b1'")
    job.set_state(JobState.COPYING_DISKS, "Copying")
    view.tree.setCurrentIndex(view.model.index(view.model.row_of(job.id) or 0, 0))
    assert not view.graph_button.isEnabled()  # nothing sent yet: nothing to draw
    mib = 1024**2
    t0 = job.started or 0.0
    for i in range(1, 6):
        job.progress(i * 10 * mib, 100 * mib, now=t0 + i)
    run(asyncio.sleep(0.2))
    assert view.graph_button.isEnabled()
    dialog = view.open_graph()
    assert dialog is not None
    qtbot.addWidget(dialog)
    assert dialog.remaining.latest("Remaining") == 50 * mib
    assert dialog.rate.latest("Rate") == pytest.approx(10 * mib)  # 10 MiB each second
    assert "Rate: 10.0 MiB/s" in dialog.rate.accessibleDescription()
    job.progress(80 * mib, 100 * mib, now=t0 + 6)  # it follows the job while it runs
    assert dialog.remaining.latest("Remaining") == 20 * mib
    assert [round(t) for t, _r, _left in job.transfer] == [1, 2, 3, 4, 5, 6]
