"""Broadcast texts: Jinja2 templates that volunteers and officers write, checked before anything is sent.

A template may use only the documented variables (:data:`VARIABLES`), ``{% if %}`` / ``{% else %}``,
comparisons, ``and`` / ``or`` / ``not``, string constants and a few filters. Everything else
(attribute or item access, calls, loops, macros, include, import, extends, blocks) is refused when
the template is checked, with the reason; rendering then happens in Jinja2's immutable sandbox, so
even a template that slipped past the check could not reach Python internals. Without loops or
calls, rendering takes time in proportion to the template's length.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from jinja2 import Template, TemplateSyntaxError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

# The variables a broadcast may use (content/messages.yaml "broadcast_ask_text" explains them to authors):
# the recipient's chosen name ("bạn" without one), village, commune, and the module they left unfinished.
VARIABLES = ("ten", "thon", "xa", "bai_dang_hoc")
FILTERS = frozenset({"upper", "lower", "capitalize", "title", "trim", "default"})
MAX_TEMPLATE_CHARS = 2000

_ALLOWED = (
    nodes.Template,
    nodes.Output,
    nodes.TemplateData,
    nodes.Name,
    nodes.Const,
    nodes.If,
    nodes.Compare,
    nodes.Operand,
    nodes.And,
    nodes.Or,
    nodes.Not,
    nodes.CondExpr,
    nodes.Filter,
)
_ENVIRONMENT = ImmutableSandboxedEnvironment(autoescape=False, keep_trailing_newline=False)


@dataclass(frozen=True)
class TemplateProblem:
    """Why a template is refused: a message key and its values, for content/messages.yaml."""

    key: str
    detail: str = ""


def check_template(text: str) -> TemplateProblem | None:
    """None if the template may be used; else the first problem."""
    if not text.strip():
        return TemplateProblem("broadcast_template_empty")
    if len(text) > MAX_TEMPLATE_CHARS:
        return TemplateProblem("broadcast_template_long", str(MAX_TEMPLATE_CHARS))
    try:
        tree = _ENVIRONMENT.parse(text)
    except TemplateSyntaxError as exc:
        return TemplateProblem("broadcast_template_syntax", f"{exc.lineno}")
    for node in _walk(tree):
        if not isinstance(node, _ALLOWED):
            return TemplateProblem("broadcast_template_forbidden", _describe(node))
        if isinstance(node, nodes.Name) and node.ctx == "load" and node.name not in VARIABLES:
            return TemplateProblem("broadcast_template_unknown", node.name)
        if isinstance(node, nodes.Name) and node.ctx != "load":
            return TemplateProblem("broadcast_template_forbidden", node.name)
        if isinstance(node, nodes.Filter) and node.name not in FILTERS:
            return TemplateProblem("broadcast_template_forbidden", f"|{node.name}")
    return None


class TemplateRefused(ValueError):
    def __init__(self, problem: TemplateProblem) -> None:
        super().__init__(f"{problem.key} {problem.detail}".strip())
        self.problem = problem


@dataclass(frozen=True)
class CompiledTemplate:
    """A checked template, compiled once, rendered per recipient."""

    source: str
    _template: Template

    def render(self, values: Mapping[str, str]) -> str:
        return self._template.render({name: values.get(name, "") for name in VARIABLES}).strip()


def compile_template(text: str) -> CompiledTemplate:
    """Check and compile; :class:`TemplateRefused` says why a template cannot be used."""
    problem = check_template(text)
    if problem is not None:
        raise TemplateRefused(problem)
    return CompiledTemplate(text, _ENVIRONMENT.from_string(text))


def _walk(node: nodes.Node) -> list[nodes.Node]:
    found = [node]
    for child in node.iter_child_nodes():
        found += _walk(child)
    return found


def _describe(node: nodes.Node) -> str:
    """A short name for what was refused, as the author wrote it."""
    words = {
        nodes.For: "for",
        nodes.Include: "include",
        nodes.Import: "import",
        nodes.FromImport: "import",
        nodes.Extends: "extends",
        nodes.Macro: "macro",
        nodes.Block: "block",
        nodes.Call: "( )",
        nodes.Getattr: ".",
        nodes.Getitem: "[ ]",
        nodes.Assign: "set",
    }
    for kind, word in words.items():
        if isinstance(node, kind):
            return word
    return type(node).__name__.lower()
