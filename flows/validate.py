"""Checks that go beyond the shape of a file: references, reachability, templates."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from flows.broadcast_template import TemplateRefused, compile_template
from flows.catalog import (
    ACTION_KEYS,
    IMAGES_DIR,
    LABEL_KEYS,
    MODULE_BUTTON_PREFIX,
    TEXT_KEYS,
    ContentError,
    compile_check,
)
from flows.community import AreaKind, AreaSpec, CommunitySpec
from flows.model import BUTTON_ID_MAX_BYTES, MessagesSpec, ModuleSpec, RoutingSpec, ScamSpec, StepSpec
from flows.scam_check import DOMAIN_FLAGS
from flows.surveys import SurveysFile, SurveySpec
from flows.text import fold
from flows.yaml_lines import LineMap

__all__ = [
    "MODULE_BUTTON_PREFIX",
    "validate_community",
    "validate_messages",
    "validate_module",
    "validate_routing",
    "validate_scam",
    "validate_surveys",
]

_Report = Callable[[tuple[object, ...], str], None]


def validate_module(module: ModuleSpec, lines: LineMap, file: str, images: frozenset[str]) -> list[ContentError]:
    """Return every reference or structure problem of one module."""
    errors: list[ContentError] = []

    def err(path: tuple[object, ...], message: str) -> None:
        errors.append(ContentError(file, lines.line(path), message))

    if len((MODULE_BUTTON_PREFIX + module.id).encode()) > BUTTON_ID_MAX_BYTES:
        err(("id",), f"module id '{module.id}' is too long for a menu button (max {BUTTON_ID_MAX_BYTES - 4} bytes)")

    index: dict[str, int] = {}
    for i, step in enumerate(module.steps):
        if step.id in index:
            err(
                ("steps", i, "id"),
                f"duplicate step id '{step.id}' (first at line {lines.line(('steps', index[step.id]))})",
            )
        else:
            index[step.id] = i

    if module.start not in index:
        err(("start",), f"start step '{module.start}' does not exist")

    for i, step in enumerate(module.steps):
        for path, target in _targets(step, i):
            if target not in index:
                err(path, f"step '{step.id}' leads to unknown step '{target}'")
        _check_step_shape(step, i, err, images)

    if not any(step.complete for step in module.steps):
        err(("steps",), "no step has 'complete: true': the module can never be finished")

    reachable = _reachable(module, index)
    for step_id, i in index.items():
        if step_id not in reachable:
            err(("steps", i, "id"), f"step '{step_id}' cannot be reached from '{module.start}'")
    return errors


def validate_messages(messages: MessagesSpec, lines: LineMap, file: str) -> list[ContentError]:
    """Return missing keys and broken templates in the messages file."""
    errors: list[ContentError] = []
    for key in ACTION_KEYS:
        if key not in messages.actions:
            errors.append(ContentError(file, lines.line(("actions",)), f"actions: '{key}' is missing"))
    for key in TEXT_KEYS:
        if key not in messages.texts:
            errors.append(ContentError(file, lines.line(("texts",)), f"texts: '{key}' is missing"))
    for key in LABEL_KEYS:
        if key not in messages.labels:
            errors.append(ContentError(file, lines.line(("labels",)), f"labels: '{key}' is missing"))
    templates = [(("texts", k), v) for k, v in messages.texts.items()]
    templates += [(("actions", k, "label"), a.label) for k, a in messages.actions.items()]
    for path, text in templates:
        problem = compile_check(text)
        if problem:
            errors.append(ContentError(file, lines.line(path), f"{'.'.join(map(str, path))}: {problem}"))
        elif not text.strip():
            errors.append(ContentError(file, lines.line(path), f"{'.'.join(map(str, path))}: text is empty"))
    return errors


def validate_community(
    community: CommunitySpec,
    lines: LineMap,
    file: str,
    modules: set[str],
    areas: list[AreaSpec],
    surveys: Mapping[str, SurveySpec] | None = None,
) -> list[ContentError]:
    """Modules named by the rule and the field-visit items exist; ids are unique; overrides name communes;
    survey targets name a survey question whose every option has a value."""
    errors: list[ContentError] = []

    def err(path: tuple[object, ...], message: str) -> None:
        errors.append(ContentError(file, lines.line(path), message))

    def check_rule(path: tuple[object, ...], required: list[str]) -> None:
        for i, module in enumerate(required):
            if module not in modules:
                err((*path, "required_modules", i), f"unknown module '{module}'")

    check_rule(("gia_dinh_so",), community.gia_dinh_so.required_modules)
    seen: set[str] = set()
    for i, item in enumerate(community.field_visit):
        if item.id in seen:
            err(("field_visit", i, "id"), f"duplicate field-visit item '{item.id}'")
        seen.add(item.id)
        if item.module is not None and item.module not in modules:
            err(("field_visit", i, "module"), f"unknown module '{item.module}'")
        if item.module is None and item.id in modules:
            err(("field_visit", i, "id"), f"'{item.id}' is a module id: set `module: {item.id}` or rename the item")
    ids = [t.id for t in community.targets]
    for i, target in enumerate(community.targets):
        if ids.count(target.id) > 1:
            err(("targets", i, "id"), f"duplicate target '{target.id}'")
        if target.survey is not None:
            survey = (surveys or {}).get(target.survey)
            question = survey.question(target.question or "") if survey else None
            if question is None:
                err(("targets", i, "survey"), f"no question '{target.question}' in survey '{target.survey}'")
            elif any(o.value is None for o in question.options):
                err(("targets", i, "question"), f"every option of '{target.question}' needs a `value` to add up")
    group_ids = [g.id for g in community.classes.groups]
    if len(set(group_ids)) != len(group_ids):
        err(("classes", "groups"), "class group ids must be unique")
    communes = {a.code for a in areas if a.kind is AreaKind.COMMUNE}
    for code, rules in community.communes.items():
        if areas and code not in communes:
            err(("communes", code), f"'{code}' is not a commune in areas.yaml")
        if rules.gia_dinh_so is not None:
            check_rule(("communes", code, "gia_dinh_so"), rules.gia_dinh_so.required_modules)
    return errors


def validate_surveys(surveys: SurveysFile, lines: LineMap, file: str) -> list[ContentError]:
    """Each invitation is a valid broadcast template."""
    errors: list[ContentError] = []
    for i, survey in enumerate(surveys.surveys):
        try:
            compile_template(survey.intro)
        except TemplateRefused as refused:
            detail = f": {refused.problem.detail}" if str(refused.problem.detail).strip(" .") else ""
            message = f"intro: not a valid broadcast text ({refused.problem.key}{detail})"
            errors.append(ContentError(file, lines.line(("surveys", i, "intro")), message))
    return errors


def validate_routing(routing: RoutingSpec, lines: LineMap, file: str) -> list[ContentError]:
    """Every word mapping and phrase must have something left after folding."""
    errors: list[ContentError] = []
    for section in ("abbreviations", "english"):
        for key, value in getattr(routing, section).items():
            if not fold(key) or not fold(value):
                errors.append(ContentError(file, lines.line((section, key)), f"{section}: '{key}' is empty"))
    for section in ("fillers", "out_of_scope"):
        for i, phrase in enumerate(getattr(routing, section)):
            if not fold(phrase):
                errors.append(ContentError(file, lines.line((section, i)), f"{section}: phrase {i + 1} is empty"))
    return errors


def validate_scam(scam: ScamSpec, lines: LineMap, file: str) -> list[ContentError]:
    """The address signs need an explanation; every other sign needs phrases."""
    errors: list[ContentError] = []
    for key in DOMAIN_FLAGS:
        if key not in scam.flags:
            errors.append(ContentError(file, lines.line(("flags",)), f"flags: '{key}' is missing"))
    for key, flag in scam.flags.items():
        if key not in DOMAIN_FLAGS and not any(fold(p) for p in flag.phrases):
            errors.append(ContentError(file, lines.line(("flags", key)), f"flags: '{key}' has no phrases"))
    return errors


def _targets(step: StepSpec, i: int) -> list[tuple[tuple[object, ...], str]]:
    found: list[tuple[tuple[object, ...], str]] = []
    found += [(("steps", i, "buttons", j, "goto"), b.goto) for j, b in enumerate(step.buttons)]
    found += [(("steps", i, "answers", j, "goto"), a.goto) for j, a in enumerate(step.answers)]
    if step.check:
        found.append((("steps", i, "check", "next"), step.check.next))
    return found


def _check_step_shape(step: StepSpec, i: int, err: _Report, images: frozenset[str]) -> None:
    ids = [b.id for b in step.buttons] + ([o.id for o in step.check.options] if step.check else [])
    seen: set[str] = set()
    for button_id in ids:
        if button_id in seen:
            err(("steps", i), f"step '{step.id}': button id '{button_id}' is used twice")
        if button_id in ACTION_KEYS or button_id.startswith(MODULE_BUTTON_PREFIX):
            err(("steps", i), f"step '{step.id}': button id '{button_id}' is reserved for the engine")
        seen.add(button_id)
    if step.check:
        if not any(o.correct for o in step.check.options):
            err(("steps", i, "check", "options"), f"step '{step.id}': the check has no correct answer")
        if step.buttons:
            err(("steps", i, "buttons"), f"step '{step.id}': a check step cannot also have buttons")
        if step.complete:
            err(("steps", i, "complete"), f"step '{step.id}': a check step cannot be the completion step")
    elif not step.complete and not step.buttons and not step.answers:
        err(("steps", i), f"step '{step.id}' is a dead end: add buttons, a check, or 'complete: true'")
    if step.image and not step.image.startswith("https://") and step.image not in images:
        err(("steps", i, "image"), f"step '{step.id}': image '{step.image}' not found in {IMAGES_DIR}/")


def _reachable(module: ModuleSpec, index: dict[str, int]) -> set[str]:
    seen: set[str] = set()
    todo = [module.start] if module.start in index else []
    while todo:
        step_id = todo.pop()
        if step_id in seen or step_id not in index:
            continue
        seen.add(step_id)
        todo += [target for _, target in _targets(module.steps[index[step_id]], index[step_id])]
    return seen
