"""Geometry of the small SVG line chart on the overview; the template draws it (no JavaScript)."""

from __future__ import annotations

from dataclasses import dataclass

WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 12, 28
LABEL_GAP = 6  # between a line's end and its value


@dataclass(frozen=True)
class Line:
    key: str  # which series, for the template's legend and CSS class
    points: str  # "x,y x,y ..." for <polyline>
    last: tuple[float, float]  # where the last value's label goes
    last_value: float


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    lines: list[Line]
    y_ticks: list[tuple[float, float]]  # (y, value)
    x_ticks: list[tuple[float, int]]  # (x, index of the moment)
    target_y: float | None
    plot: tuple[float, float, float, float]  # left, top, right, bottom


def line_chart(series: dict[str, list[float]], target: float | None, top_value: float | None = None) -> Chart:
    """Lines over the same moments (one value each); ``top_value`` fixes the y axis (100 for percents)."""
    count = max((len(values) for values in series.values()), default=0)
    highest = max([*(v for values in series.values() for v in values), target or 0, 1])
    top = top_value if top_value is not None else _round_up(highest)
    right, bottom = WIDTH - RIGHT, HEIGHT - BOTTOM

    def x(index: int) -> float:
        return LEFT + (right - LEFT) * (index / (count - 1) if count > 1 else 0.5)

    def y(value: float) -> float:
        return bottom - (bottom - TOP) * min(value, top) / top

    lines = [
        Line(
            key,
            " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values)),
            (x(len(values) - 1), max(y(values[-1]) - LABEL_GAP, TOP + LABEL_GAP * 2)),  # inside the plot
            values[-1],
        )
        for key, values in series.items()
        if values
    ]
    y_ticks = [(y(top * i / 4), top * i / 4) for i in range(5)]
    x_ticks = [(x(i), i) for i in range(count)]
    return Chart(
        WIDTH, HEIGHT, lines, y_ticks, x_ticks, None if target is None else y(target), (LEFT, TOP, right, bottom)
    )


def _round_up(value: float) -> float:
    """A round axis maximum at or above ``value``: 1, 2, 5 times a power of ten."""
    step = 1.0
    while True:
        for factor in (1, 2, 5):
            if value <= step * factor:
                return step * factor
        step *= 10
