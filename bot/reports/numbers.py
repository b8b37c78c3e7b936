"""Numbers and dates as Vietnamese documents write them: 1.120 người, 45,3%, 14/06/2026."""

from __future__ import annotations

import datetime as dt


def number(value: float | None, decimals: int = 0) -> str:
    """Thousands with dots, decimals with a comma; "-" for None."""
    if value is None:
        return "-"
    text = f"{value:,.{decimals}f}"
    return text.replace(",", " ").replace(".", ",").replace(" ", ".")


def percent(value: float | None) -> str:
    """A percent with one decimal at most: 45,3 or 100 (no sign); "-" for None."""
    if value is None:
        return "-"
    rounded = round(value, 1)
    return number(rounded, 0 if rounded == int(rounded) else 1)


def day(value: dt.date) -> str:
    return value.strftime("%d/%m/%Y")
