"""Reporting periods and due dates.

Units report each quarter before the 15th of the quarter's last month, and each year before 20/10
(the commune letters in shared/seeds). A report due on the 15th cannot cover the whole quarter, so
figures follow the usual cut-off of Vietnamese administrative reports (Nghị định 09/2019/NĐ-CP, Điều 12):
a quarter runs from the 15th of the month before it to the 14th of its last month (quý II: 15/03-14/06),
and a year from 15/12 of the year before.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from storage.clock import LOCAL_TZ

CUTOFF_DAY = 14  # the last day counted in a period; the report is due before the day after
YEARLY_DUE = (10, 20)  # month, day: the yearly report is due before 20/10
ROMAN = ("I", "II", "III", "IV")
_QUARTER = re.compile(r"^\s*(\d{4})\s*-?\s*[Qq]\s*([1-4])\s*$")


@dataclass(frozen=True, order=True)
class Quarter:
    year: int
    number: int  # 1-4

    @classmethod
    def parse(cls, text: str) -> Quarter:
        """ "2026Q2" (or "2026-q2") -> Quarter(2026, 2); ValueError otherwise."""
        found = _QUARTER.match(text)
        if not found:
            raise ValueError(f"'{text}' is not a quarter: write it like 2026Q2")
        return cls(int(found.group(1)), int(found.group(2)))

    @classmethod
    def of(cls, day: dt.date) -> Quarter:
        """The quarter whose period contains ``day`` (15/06 already belongs to quý III)."""
        quarter = cls(day.year, (day.month - 1) // 3 + 1)
        if day > quarter.end:
            quarter = quarter.next()
        return quarter

    def next(self) -> Quarter:
        return Quarter(self.year + 1, 1) if self.number == 4 else Quarter(self.year, self.number + 1)

    def previous(self) -> Quarter:
        return Quarter(self.year - 1, 4) if self.number == 1 else Quarter(self.year, self.number - 1)

    @property
    def last_month(self) -> int:
        return self.number * 3

    @property
    def start(self) -> dt.date:
        """The first day counted: the 15th of the month before the quarter."""
        first_month = self.last_month - 2
        if first_month == 1:
            return dt.date(self.year - 1, 12, CUTOFF_DAY + 1)
        return dt.date(self.year, first_month - 1, CUTOFF_DAY + 1)

    @property
    def end(self) -> dt.date:
        """The last day counted: the 14th of the quarter's last month."""
        return dt.date(self.year, self.last_month, CUTOFF_DAY)

    @property
    def due(self) -> dt.date:
        """The report is due before this day."""
        return self.end + dt.timedelta(days=1)

    @property
    def year_start(self) -> dt.date:
        """The first day of the reporting year this quarter belongs to (15/12 of the year before)."""
        return Quarter(self.year, 1).start

    @property
    def roman(self) -> str:
        return ROMAN[self.number - 1]

    def __str__(self) -> str:
        return f"{self.year}Q{self.number}"


def yearly_due(year: int) -> dt.date:
    return dt.date(year, *YEARLY_DUE)


@dataclass(frozen=True)
class Due:
    """The next report of one kind: due before ``day``."""

    kind: str  # "quarter" or "year"
    day: dt.date
    days_left: int
    quarter: Quarter | None = None
    year: int | None = None


def next_reports(today: dt.date) -> list[Due]:
    """The next quarterly and yearly reports not yet past their due day, the sooner first."""
    quarter = Quarter.of(today)  # its period contains today, so its report is due later
    year = today.year if today < yearly_due(today.year) else today.year + 1
    found = [
        Due("quarter", quarter.due, (quarter.due - today).days, quarter=quarter),
        Due("year", yearly_due(year), (yearly_due(year) - today).days, year=year),
    ]
    return sorted(found, key=lambda due: due.day)


def start_moment(day: dt.date) -> dt.datetime:
    """The UTC moment a local day begins."""
    return dt.datetime.combine(day, dt.time(), LOCAL_TZ).astimezone(dt.UTC)


def end_moment(day: dt.date) -> dt.datetime:
    """The last UTC moment of a local day (metrics count events at or before ``until``)."""
    return start_moment(day + dt.timedelta(days=1)) - dt.timedelta(microseconds=1)
