"""Reporting periods, due dates, numbers as Vietnamese documents write them, and the chart's geometry."""

from __future__ import annotations

import datetime as dt

import pytest

from bot.dashboard.chart import line_chart
from bot.reports.numbers import number, percent
from bot.reports.periods import Quarter, end_moment, next_reports, start_moment

D = dt.date


@pytest.mark.parametrize(
    ("quarter", "start", "end", "due"),
    [
        (Quarter(2026, 1), D(2025, 12, 15), D(2026, 3, 14), D(2026, 3, 15)),
        (Quarter(2026, 2), D(2026, 3, 15), D(2026, 6, 14), D(2026, 6, 15)),
        (Quarter(2026, 3), D(2026, 6, 15), D(2026, 9, 14), D(2026, 9, 15)),
        (Quarter(2026, 4), D(2026, 9, 15), D(2026, 12, 14), D(2026, 12, 15)),
    ],
)
def test_a_quarter_runs_from_the_15th_before_it_to_the_14th_of_its_last_month(
    quarter: Quarter, start: dt.date, end: dt.date, due: dt.date
) -> None:
    assert (quarter.start, quarter.end, quarter.due) == (start, end, due)
    assert quarter.year_start == D(quarter.year - 1, 12, 15)
    assert Quarter.of(start) == Quarter.of(end) == quarter
    assert quarter.next().start == end + dt.timedelta(days=1)  # no day falls between two quarters


def test_quarters_are_parsed_as_officers_type_them() -> None:
    assert Quarter.parse("2026Q2") == Quarter.parse(" 2026-q2 ") == Quarter(2026, 2)
    assert str(Quarter(2026, 2)) == "2026Q2"
    assert Quarter(2026, 2).roman == "II"
    assert Quarter(2026, 1).previous() == Quarter(2025, 4)
    for wrong in ("2026Q5", "Q2", "2026", "quý 2"):
        with pytest.raises(ValueError, match="2026Q2"):
            Quarter.parse(wrong)


@pytest.mark.parametrize(
    ("today", "quarter", "days_left", "year"),
    [
        (D(2026, 6, 14), Quarter(2026, 2), 1, 2026),  # due tomorrow, before the 15th
        (D(2026, 6, 15), Quarter(2026, 3), 92, 2026),  # the 15th already counts for quý III
        (D(2026, 10, 20), Quarter(2026, 4), 56, 2027),  # the yearly report was due before today
        (D(2026, 12, 20), Quarter(2027, 1), 85, 2027),
    ],
)
def test_the_next_reports_and_their_due_dates(today: dt.date, quarter: Quarter, days_left: int, year: int) -> None:
    found = {due.kind: due for due in next_reports(today)}
    assert found["quarter"].quarter == quarter
    assert found["quarter"].days_left == days_left
    assert found["year"].day == D(year, 10, 20)
    assert [due.day for due in next_reports(today)] == sorted(due.day for due in next_reports(today))


def test_local_days_become_utc_moments() -> None:
    assert start_moment(D(2026, 6, 15)) == dt.datetime(2026, 6, 14, 17, 0, tzinfo=dt.UTC)
    assert end_moment(D(2026, 6, 14)) == dt.datetime(2026, 6, 14, 16, 59, 59, 999999, tzinfo=dt.UTC)


def test_numbers_use_vietnamese_separators() -> None:
    assert number(1120) == "1.120"
    assert number(1234567) == "1.234.567"
    assert number(None) == "-"
    assert percent(45.34) == "45,3"
    assert percent(100) == "100"
    assert percent(0.04) == "0"
    assert percent(None) == "-"


def test_the_chart_scales_values_and_the_target_into_the_plot() -> None:
    chart = line_chart({"a": [0, 50, 100], "b": [10]}, target=80, top_value=100)
    left, top, right, bottom = chart.plot
    a = [tuple(map(float, point.split(","))) for point in chart.lines[0].points.split()]
    assert a[0] == (left, bottom)
    assert a[-1] == (right, top)
    assert a[1][1] == pytest.approx((top + bottom) / 2)
    assert chart.target_y == pytest.approx(bottom - 0.8 * (bottom - top))
    assert [value for _, value in chart.y_ticks] == [0, 25, 50, 75, 100]
    counts = line_chart({"a": [3, 7]}, target=None)
    assert counts.y_ticks[-1][1] == 10  # a round top above the largest value
    assert counts.target_y is None
