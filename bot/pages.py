"""Server-rendered pages: Jinja2 templates in content/pages (their wording is content, like the bot's), autoescaped."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from bot.reports.numbers import day, number, percent

_pages = Environment(
    loader=PackageLoader("content", "pages"),
    autoescape=select_autoescape(default=True),
    undefined=StrictUndefined,
)
_pages.filters.update(number=number, percent=percent, day=day)


def render(template: str, **values: Any) -> str:
    return _pages.get_template(template).render(**values)
