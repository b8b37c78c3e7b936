"""Loading content files into a validated, read-only catalog."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import yaml
from jinja2 import StrictUndefined, Template, TemplateError
from jinja2.sandbox import SandboxedEnvironment
from pydantic import ValidationError

from flows.model import MessagesSpec, ModuleSpec, StepSpec
from flows.yaml_lines import LineMap, load_with_lines

MESSAGES_FILE = "messages.yaml"
MODULES_DIR = "modules"
IMAGES_DIR = "images"

# Buttons the engine adds by itself; content must define their labels.
ACTION_KEYS = ("menu", "back", "stuck", "retry", "human", "continue")
# Sentences the engine says by itself; content must define them.
TEXT_KEYS = (
    "welcome",
    "welcome_back",
    "menu",
    "empty_input",
    "too_long",
    "not_understood",
    "number_out_of_range",
    "stale_button",
    "check_choose_option",
    "human_requested",
    "content_updated",
    "unsupported_message",
    "reply_with_number",
)

# Column headers of the participation-log export, in order.
EXPORT_COLUMNS = ("at", "person", "channel", "module", "module_version", "kind", "step", "assisted_by")
LABEL_KEYS = tuple(f"export.{column}" for column in EXPORT_COLUMNS)


@dataclass(frozen=True)
class ContentError:
    """One problem in a content file, at a line."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class ContentInvalid(Exception):
    """Raised when content has errors; carries all of them."""

    def __init__(self, errors: list[ContentError]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


_Spec = TypeVar("_Spec", ModuleSpec, MessagesSpec)
_sandbox = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


@dataclass(frozen=True)
class Catalog:
    """Every module and message, validated; the engine's only input besides state."""

    modules: Mapping[str, ModuleSpec]
    messages: MessagesSpec
    _steps: Mapping[tuple[str, str], StepSpec] = field(repr=False)
    _templates: Mapping[str, Template] = field(repr=False)

    def step(self, module_id: str, step_id: str) -> StepSpec | None:
        return self._steps.get((module_id, step_id))

    def say(self, key: str, **values: Any) -> str:
        """Render one of the engine's sentences."""
        return self._templates[key].render(**values).strip()

    def action_label(self, key: str, **values: Any) -> str:
        return self._templates[f"action:{key}"].render(**values).strip()


def build_catalog(modules: list[ModuleSpec], messages: MessagesSpec) -> Catalog:
    """Index validated specs; templates are compiled once here."""
    ordered = sorted(modules, key=lambda m: (m.order, m.id))
    templates = {key: _sandbox.from_string(text) for key, text in messages.texts.items()}
    templates |= {f"action:{key}": _sandbox.from_string(a.label) for key, a in messages.actions.items()}
    return Catalog(
        modules={m.id: m for m in ordered},
        messages=messages,
        _steps={(m.id, s.id): s for m in ordered for s in m.steps},
        _templates=templates,
    )


@dataclass(frozen=True)
class ContentFiles:
    """A content folder as bytes, read by the caller: flows itself does no I/O.

    ``files`` maps paths relative to the folder ("messages.yaml",
    "modules/vneid.yaml") to their bytes; ``images`` lists the file names in
    ``images/``; ``name`` prefixes paths in error messages.
    """

    name: str
    files: Mapping[str, bytes]
    images: frozenset[str] = frozenset()


def load_catalog(content: ContentFiles) -> Catalog:
    """Validate content and build the catalog, or raise :class:`ContentInvalid`."""
    catalog, errors = _load(content)
    if errors or catalog is None:
        raise ContentInvalid(errors)
    return catalog


def check_content(content: ContentFiles) -> list[ContentError]:
    """Return every problem in the content (empty when it is fine)."""
    return _load(content)[1]


def _load(content: ContentFiles) -> tuple[Catalog | None, list[ContentError]]:
    from flows.validate import validate_messages, validate_module

    errors: list[ContentError] = []
    messages = _parse(content, MESSAGES_FILE, MessagesSpec, errors)
    if messages is not None:
        errors += validate_messages(messages[0], messages[1], _shown(content, MESSAGES_FILE))
    modules: list[ModuleSpec] = []
    seen: dict[str, str] = {}
    module_files = sorted(p for p in content.files if p.startswith(f"{MODULES_DIR}/") and p.endswith(".yaml"))
    if not module_files:
        errors.append(ContentError(_shown(content, MODULES_DIR), 0, "no module files (*.yaml) found"))
    for path in module_files:
        parsed = _parse(content, path, ModuleSpec, errors)
        if parsed is None:
            continue
        module, lines = parsed
        shown = _shown(content, path)
        if module.id in seen:
            errors.append(
                ContentError(
                    shown, lines.line(("id",)), f"duplicate module id '{module.id}' (also in {seen[module.id]})"
                )
            )
            continue
        seen[module.id] = shown
        errors += validate_module(module, lines, shown, content.images)
        modules.append(module)
    if errors or messages is None:
        return None, errors
    return build_catalog(modules, messages[0]), []


def _shown(content: ContentFiles, path: str) -> str:
    return f"{content.name}/{path}" if content.name else path


def _parse(
    content: ContentFiles, path: str, model: type[_Spec], errors: list[ContentError]
) -> tuple[_Spec, LineMap] | None:
    shown = _shown(content, path)
    if path not in content.files:
        errors.append(ContentError(shown, 0, "file is missing"))
        return None
    try:
        data, lines = load_with_lines(content.files[path].decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", -1) + 1
        errors.append(ContentError(shown, line, f"not valid YAML or not UTF-8: {getattr(exc, 'problem', exc)}"))
        return None
    errors += [ContentError(shown, line, msg) for line, msg in lines.problems]
    try:
        return model.model_validate(data), lines
    except ValidationError as exc:
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            errors.append(ContentError(shown, lines.line(err["loc"]), f"{where}: {err['msg']}"))
        return None


def compile_check(text: str) -> str | None:
    """Return an error message if ``text`` is not a valid template."""
    try:
        _sandbox.from_string(text)
    except TemplateError as exc:
        return str(exc)
    return None
