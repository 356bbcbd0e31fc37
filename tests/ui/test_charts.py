"""The line chart the Performance tab draws (ui.charts)."""

from __future__ import annotations

from typing import Any

from PySide6.QtGui import QColor

from xencenter_lite.ui.charts import COLOURS, LineChart, nice_bytes_ceiling, nice_ceiling


def test_the_axis_top_is_a_round_number_at_or_above_the_highest_value() -> None:
    assert [nice_ceiling(v) for v in (0, 0.7, 1, 1.2, 2.2, 3, 7, 80, 130)] == \
        [1, 1, 1, 2, 2.5, 5, 10, 100, 200]


def test_a_bytes_axis_tops_at_a_round_binary_size() -> None:
    kib, mib = 1024, 1024**2
    assert nice_bytes_ceiling(0) == kib  # nothing moving: still an axis of 1 KiB
    assert nice_bytes_ceiling(190.7 * mib) == 200 * mib
    assert nice_bytes_ceiling(3 * kib) == 5 * kib
    assert nice_bytes_ceiling(1000 * mib) == 1000 * mib
    assert nice_bytes_ceiling(1030 * mib) == 2 * 1024 * mib


def test_the_chart_draws_its_series_and_says_the_latest_values(qtbot: Any) -> None:
    chart = LineChart("CPU", lambda v: f"{v:.0f} %", fixed_max=100, span=60)
    qtbot.addWidget(chart)
    chart.resize(400, 200)
    assert chart.accessibleDescription() == ""
    chart.set_series([("CPU", [(0.0, 10.0), (20.0, 40.0), (30.0, None), (60.0, 90.0)]),
                      ("Other", [])])
    assert chart.accessibleName() == "CPU"
    assert chart.accessibleDescription() == "CPU: 90 %; Other: not reported"
    assert chart.latest("CPU") == 90.0
    image = chart.grab().toImage()
    colour = QColor(COLOURS[0])
    # The line is drawn: some pixels have the first series' colour (the legend's square
    # has it too; the line adds many more in the plot area, above the legend).
    def near(c: QColor) -> bool:
        return abs(c.red() - colour.red()) + abs(c.green() - colour.green()) \
            + abs(c.blue() - colour.blue()) < 60

    plot_pixels = sum(1 for x in range(400) for y in range(20, 140)
                      if near(image.pixelColor(x, y)))
    assert plot_pixels > 100, plot_pixels
    chart.set_series([("CPU", [])])
    assert chart.accessibleDescription() == "No figures yet"
