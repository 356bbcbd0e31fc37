"""A job's transfer over time: the rate measured on the way and the data still to send, in
two charts that follow the job while it runs (Events ▸ Graph…)."""

from __future__ import annotations

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QHBoxLayout, QVBoxLayout, QWidget

from xencenter_lite.core.jobs import Job
from xencenter_lite.ui.charts import LineChart
from xencenter_lite.ui.common import format_rate, format_size
from xencenter_lite.ui.events import weak_listener


class TransferGraph(QDialog):
    def __init__(self, job: Job, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("transferGraph")
        self.setWindowTitle(f"Transfer: {job.title}")
        self.job = job
        self.rate = LineChart("Rate", format_rate, binary=True, parent=self)
        self.remaining = LineChart("Remaining", format_size, binary=True, parent=self)
        charts = QHBoxLayout()
        charts.addWidget(self.rate)
        charts.addWidget(self.remaining)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, parent=self)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(charts, 1)
        layout.addWidget(buttons)
        self.resize(760, 300)
        job.subscribe(weak_listener(self._changed))
        self._changed(job)

    def _changed(self, job: Job) -> None:
        if not self.isVisible() and self.rate.series:
            return  # closed: the job may go on, nothing to draw
        self.rate.set_series([("Rate", [(t, r) for t, r, _left in job.transfer])])
        self.remaining.set_series([("Remaining", [(t, float(left))
                                                  for t, _r, left in job.transfer])])
