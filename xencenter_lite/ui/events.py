"""The Events view: one row per migration or disk move, with live progress, Cancel and details.

Jobs change many times a second during a copy, so the model is updated in place (rows
inserted for new jobs, dataChanged for progress, at most every 100 ms per burst) rather than
reset: the operator's expanded rows and selection survive. A row expands into the job's
messages and the raw error, for a bug report.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, overload

import shiboken6
from PySide6.QtCore import (
    QAbstractItemModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    QTimer,
)
from PySide6.QtGui import QGuiApplication, QIcon, QPainter
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QHBoxLayout,
    QHeaderView,
    QPushButton,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionProgressBar,
    QStyleOptionViewItem,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from xencenter_lite.core.jobs import Job, JobKind, JobState
from xencenter_lite.core.units import format_duration
from xencenter_lite.ui.bridge import bridge
from xencenter_lite.ui.common import format_rate, format_size, show_non_modal, spawn, whole_percent

Index = QModelIndex | QPersistentModelIndex
ROOT = QModelIndex()
COLUMNS = ("Event", "Progress", "Transferred", "Status", "Time", "")
TITLE, PROGRESS, TRANSFERRED, STATUS, TIME, ACTION = range(len(COLUMNS))
PercentRole = Qt.ItemDataRole.UserRole + 20
JobIdRole = Qt.ItemDataRole.UserRole + 21
# A job's Cancel turns into Dismiss in the same place when it ends: for this long the button
# takes no click, so a Cancel clicked just as the job ended does not remove its row.
DISMISS_GUARD_MS = 1000
TOP = 0  # internalId of a job row; a detail line's internalId is its job's id (ids start at 1)

_STATE_ICONS = {
    JobState.QUEUED: QStyle.StandardPixmap.SP_MediaPause,
    JobState.DONE: QStyle.StandardPixmap.SP_DialogApplyButton,
    JobState.FAILED: QStyle.StandardPixmap.SP_MessageBoxCritical,
    JobState.CANCELLED: QStyle.StandardPixmap.SP_DialogCancelButton,
}


def weak_listener(method: Callable[..., None]) -> Callable[..., None]:
    """A listener that does nothing once its Qt object is gone: the engine cannot unsubscribe."""
    ref = weakref.WeakMethod(method)

    def listener(*args: Any) -> None:
        bound = ref()
        if bound is not None and shiboken6.isValid(getattr(bound, "__self__", None)):
            bound(*args)

    return listener


def detail_lines(job: Job) -> list[str]:
    lines = ([f"Migration settings: {job.policy}"] if job.policy else []) + list(job.messages)
    if job.error_details:
        lines += ["Error details:", *("    " + line for line in job.error_details.splitlines())]
    return lines


def details_text(job: Job) -> str:
    """What "Copy" puts on the clipboard: enough for a bug report."""
    head = [job.title, f"Status: {job.status}"]
    if job.error:
        head.append(f"Error: {job.error}")
    return "\n".join([*head, *detail_lines(job)])


def time_text(job: Job) -> str:
    if job.kind is JobKind.SERVER:
        return time.strftime("at %H:%M:%S", time.localtime(job.at))
    if job.state is JobState.QUEUED:
        return "waiting"
    if job.state.finished:
        return f"took {format_duration(job.elapsed)}"
    eta = job.eta
    left = f", about {format_duration(eta)} left" if eta is not None else ""
    return f"{format_duration(job.elapsed)} elapsed{left}"


def has_bar(job: Job) -> bool:
    """A job that ended before copying anything has no progress worth a bar."""
    if job.kind is JobKind.SERVER:
        return False
    return job.state is JobState.DONE or not job.state.finished or job.bytes_done > 0


def transferred_text(job: Job) -> str:
    if job.bytes_total <= 0:
        return ""
    rate = f" at {format_rate(job.rate)}" if job.rate else ""
    return f"{format_size(job.bytes_done)} of {format_size(job.bytes_total)}{rate}"


@dataclass
class _Row:
    job: Job
    lines: list[str]


class JobsModel(QAbstractItemModel):
    """Jobs as top-level rows (newest first), their detail lines as children."""

    def __init__(self, engine: Any, parent: QObject | None = None,
                 interval_ms: int = 100) -> None:
        super().__init__(parent)
        self._rows: list[_Row] = []
        self._dirty: set[int] = set()
        self._dismissed: set[int] = set()
        self._flush_timer = QTimer(self)
        self._flush_timer.setSingleShot(True)
        self._flush_timer.setInterval(interval_ms)
        self._flush_timer.timeout.connect(self.flush)
        self._clock = QTimer(self)  # elapsed time moves on between job events
        self._clock.setInterval(1000)
        self._clock.timeout.connect(self._tick)
        self._clock.start()
        listener = weak_listener(self._job_changed)
        # The engine only tells listeners about jobs made after them; server events (lost,
        # back) come finished, in order, from a channel of their own.
        events = list(getattr(engine, "server_events", ()))
        for job in sorted([*engine.jobs, *events], key=lambda j: j.created):
            job.subscribe(listener)
            self._job_changed(job)
        news = bridge(engine)
        news.jobChanged.connect(self._job_changed)
        news.serverEvent.connect(self._job_changed)

    # ---- keeping up with the engine ----------------------------------------------------
    def _job_changed(self, job: Job) -> None:
        if job.id in self._dismissed:
            return
        if self.row_of(job.id) is None:
            self.beginInsertRows(QModelIndex(), 0, 0)
            self._rows.insert(0, _Row(job, detail_lines(job)))
            self.endInsertRows()
        else:
            self._dirty.add(job.id)
            if not self._flush_timer.isActive():
                self._flush_timer.start()

    def flush(self) -> None:
        """Show what changed since the last flush: one dataChanged per changed job."""
        dirty, self._dirty = self._dirty, set()
        for job_id in dirty:
            row = self.row_of(job_id)
            if row is None:
                continue
            self.dataChanged.emit(self.index(row, 0), self.index(row, len(COLUMNS) - 1))
            self._update_lines(row)

    def _update_lines(self, row: int) -> None:
        entry = self._rows[row]
        old, new = entry.lines, detail_lines(entry.job)
        same = 0
        while same < min(len(old), len(new)) and old[same] == new[same]:
            same += 1
        parent = self.index(row, 0)
        if same < len(old):
            self.beginRemoveRows(parent, same, len(old) - 1)
            entry.lines = old[:same]
            self.endRemoveRows()
        if same < len(new):
            self.beginInsertRows(parent, same, len(new) - 1)
            entry.lines = new
            self.endInsertRows()

    def _tick(self) -> None:
        for row, entry in enumerate(self._rows):
            if not entry.job.state.finished:
                cell = self.index(row, TIME)
                self.dataChanged.emit(cell, cell, [Qt.ItemDataRole.DisplayRole])

    def dismiss(self, job_id: int) -> None:
        """Remove a row from the view only; the job itself is the engine's."""
        row = self.row_of(job_id)
        self._dismissed.add(job_id)
        self._dirty.discard(job_id)
        if row is not None:
            self.beginRemoveRows(QModelIndex(), row, row)
            del self._rows[row]
            self.endRemoveRows()

    def row_of(self, job_id: int) -> int | None:
        return next((i for i, r in enumerate(self._rows) if r.job.id == job_id), None)

    def job(self, job_id: int) -> Job | None:
        row = self.row_of(job_id)
        return self._rows[row].job if row is not None else None

    def job_at(self, index: Index) -> Job | None:
        """The job of a job row or of one of its detail lines."""
        if not index.isValid():
            return None
        if index.internalId() == TOP:
            return self._rows[index.row()].job
        return self.job(index.internalId())

    def jobs(self) -> list[Job]:
        return [r.job for r in self._rows]

    # ---- QAbstractItemModel ------------------------------------------------------------
    def index(self, row: int, column: int, parent: Index = ROOT) -> QModelIndex:
        if not self.hasIndex(row, column, parent):
            return QModelIndex()
        if not parent.isValid():
            return self.createIndex(row, column, TOP)
        return self.createIndex(row, column, self._rows[parent.row()].job.id)

    @overload
    def parent(self) -> QObject: ...
    @overload
    def parent(self, child: Index) -> QModelIndex: ...

    def parent(self, child: Index | None = None) -> Any:
        if child is None:
            return QObject.parent(self)
        if not child.isValid() or child.internalId() == TOP:
            return QModelIndex()
        row = self.row_of(child.internalId())
        return QModelIndex() if row is None else self.createIndex(row, 0, TOP)

    def rowCount(self, parent: Index = ROOT) -> int:
        if not parent.isValid():
            return len(self._rows)
        if parent.internalId() == TOP and parent.column() == 0:
            return len(self._rows[parent.row()].lines)
        return 0

    def columnCount(self, parent: Index = ROOT) -> int:
        return len(COLUMNS)

    def flags(self, index: Index) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if (orientation is Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole
                and 0 <= section < len(COLUMNS)):
            return COLUMNS[section]
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        if index.internalId() != TOP:
            entry = self._rows[self.row_of(index.internalId()) or 0]
            if index.column() == 0 and role in (Qt.ItemDataRole.DisplayRole,
                                                Qt.ItemDataRole.ToolTipRole):
                return entry.lines[index.row()]
            return None
        job = self._rows[index.row()].job
        column = index.column()
        if role == JobIdRole:
            return job.id
        if column == PROGRESS and not has_bar(job):
            return None
        if role == PercentRole and column == PROGRESS:
            return job.percent
        if role == Qt.ItemDataRole.DecorationRole and column == TITLE:
            return state_icon(job.state)
        if role == Qt.ItemDataRole.ToolTipRole and column == TITLE:
            return job.error or job.title
        if role == Qt.ItemDataRole.ToolTipRole and column == STATUS:
            return job.status
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        return {TITLE: job.title, PROGRESS: f"{whole_percent(job.percent)} %",
                TRANSFERRED: transferred_text(job), STATUS: job.status,
                TIME: time_text(job)}.get(column)


def state_icon(state: JobState) -> QIcon:
    pixmap = _STATE_ICONS.get(state, QStyle.StandardPixmap.SP_BrowserReload)
    return QApplication.style().standardIcon(pixmap)


class ProgressDelegate(QStyledItemDelegate):
    """Draws a job row's progress as the platform's progress bar."""

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: Index) -> None:
        percent = index.data(PercentRole)
        if percent is None:
            super().paint(painter, option, index)
            return
        widget = option.widget
        style = widget.style() if widget is not None else QApplication.style()
        style.drawPrimitive(QStyle.PrimitiveElement.PE_PanelItemViewItem, option, painter,
                            widget)
        bar = QStyleOptionProgressBar()
        bar.rect = option.rect.adjusted(3, 3, -3, -3)
        bar.palette = option.palette
        bar.fontMetrics = option.fontMetrics
        bar.state = (option.state
                     | QStyle.StateFlag.State_Horizontal | QStyle.StateFlag.State_Enabled)
        bar.minimum, bar.maximum = 0, 100
        bar.progress = whole_percent(percent)
        bar.text = f"{whole_percent(percent)} %"
        bar.textVisible = True
        style.drawControl(QStyle.ControlElement.CE_ProgressBar, bar, painter, widget)


class EventsView(QWidget):
    """The jobs, with a Cancel (while running) or Dismiss (once ended) button on each row."""

    def __init__(self, engine: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("eventsView")
        self.engine = engine
        self.model = JobsModel(engine, self)
        self.tree = QTreeView()
        self.tree.setObjectName("eventsTree")
        self.tree.setModel(self.model)
        self.tree.setItemDelegateForColumn(PROGRESS, ProgressDelegate(self.tree))
        self.tree.setAlternatingRowColors(True)
        for column, width in ((TITLE, 320), (PROGRESS, 120), (TRANSFERRED, 220),
                              (STATUS, 110), (TIME, 190), (ACTION, 90)):
            self.tree.setColumnWidth(column, width)
        # The Event column takes what is left, so Cancel/Dismiss stays in view however
        # narrow the window (1024 pixels and less); the texts elide instead.
        header = self.tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(TITLE, QHeaderView.ResizeMode.Stretch)
        header.setMinimumSectionSize(60)
        self.tree.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.buttons: dict[int, QPushButton] = {}

        self.copy_button = QPushButton("&Copy")
        self.copy_button.setObjectName("copyDetailsButton")
        self.copy_button.setToolTip("Copy the selected event and its details")
        self.copy_button.clicked.connect(self.copy_details)
        self.graph_button = QPushButton("&Graph…")
        self.graph_button.setObjectName("transferGraphButton")
        self.graph_button.setToolTip("The selected job's transfer rate and remaining data over "
                                     "time")
        self.graph_button.setEnabled(False)
        self.graph_button.clicked.connect(self.open_graph)
        self.dismiss_all = QPushButton("Dismiss &All")
        self.dismiss_all.setObjectName("dismissAllButton")
        self.dismiss_all.setToolTip("Remove every event that has ended from this list")
        self.dismiss_all.clicked.connect(self.dismiss_finished)
        bar = QHBoxLayout()
        bar.addStretch(1)
        bar.addWidget(self.graph_button)
        bar.addWidget(self.copy_button)
        bar.addWidget(self.dismiss_all)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(self.tree)

        self.model.rowsInserted.connect(self._rows_inserted)
        self.model.dataChanged.connect(self._data_changed)
        self.tree.selectionModel().currentChanged.connect(self._update_graph_button)
        self._rows_inserted(QModelIndex(), 0, self.model.rowCount() - 1)

    def _rows_inserted(self, parent: Index, first: int, last: int) -> None:
        for row in range(first, last + 1):
            if parent.isValid():  # a detail line reads across the whole row
                self.tree.setFirstColumnSpanned(row, self.model.index(parent.row(), 0), True)
                continue
            job = self.model.jobs()[row]
            button = QPushButton()
            button.setObjectName(f"jobAction:{job.id}")
            button.clicked.connect(lambda _=False, i=job.id: self._act(i))
            self.buttons[job.id] = button
            self.tree.setIndexWidget(self.model.index(row, ACTION), button)
            self._update_button(job)

    def _data_changed(self, top_left: QModelIndex, bottom_right: QModelIndex) -> None:
        if top_left.parent().isValid():
            return
        for row in range(top_left.row(), bottom_right.row() + 1):
            self._update_button(self.model.jobs()[row])
        self._update_graph_button()

    def _update_button(self, job: Job) -> None:
        button = self.buttons.get(job.id)
        if button is None or not shiboken6.isValid(button):
            return
        if job.state.finished:
            if button.text() != "Dismiss":  # it has just ended (or just appeared)
                button.setText("Dismiss")
                button.setToolTip("Remove this event from the list")
                button.setEnabled(False)
                QTimer.singleShot(DISMISS_GUARD_MS, button, lambda: button.setEnabled(True))
        elif (refusal := job.cancel_refusal) is not None:
            button.setText("Cancel")
            button.setToolTip(refusal)
            button.setEnabled(False)
        else:
            button.setText("Cancelling…" if job.cancel_requested else "Cancel")
            button.setToolTip("Stop this job; the VM stays where it was, as it was")
            button.setEnabled(not job.cancel_requested)

    def _act(self, job_id: int) -> None:
        job = self.model.job(job_id)
        if job is None:
            return
        if job.state.finished:
            self.model.dismiss(job_id)
            self.buttons.pop(job_id, None)
            return
        spawn(self.engine.cancel(job))
        self._update_button(job)

    def dismiss_finished(self) -> None:
        for job in self.model.jobs():
            if job.state.finished:
                self.model.dismiss(job.id)
                self.buttons.pop(job.id, None)

    def selected_job(self) -> Job | None:
        return self.model.job_at(self.tree.currentIndex())

    def _update_graph_button(self, *_args: Any) -> None:
        job = self.selected_job()
        self.graph_button.setEnabled(job is not None and bool(job.transfer))

    def open_graph(self) -> QDialog | None:
        job = self.selected_job()
        if job is None or not job.transfer:
            return None
        from xencenter_lite.ui.transfer_graph import TransferGraph

        dialog = TransferGraph(job, self.window())
        show_non_modal(dialog)
        return dialog

    def copy_details(self) -> None:
        job = self.selected_job()
        if job is not None:
            QGuiApplication.clipboard().setText(details_text(job))
