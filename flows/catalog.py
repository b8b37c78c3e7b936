"""Loading content files into a validated, read-only catalog."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import yaml
from jinja2 import StrictUndefined, Template, TemplateError, meta
from jinja2.sandbox import SandboxedEnvironment
from pydantic import ValidationError

from flows.community import AreasFile, AreaSpec, CommunitySpec, parse_area_rows
from flows.model import MessagesSpec, ModuleSpec, RoutingSpec, ScamSpec, StepSpec
from flows.normalize import Normalizer
from flows.router import OUT_OF_SCOPE, Router
from flows.scam_check import ScamSignals
from flows.surveys import SurveysFile, SurveySpec
from flows.types import EventKind
from flows.yaml_lines import LineMap, load_with_lines

MESSAGES_FILE = "messages.yaml"
ROUTING_FILE = "routing.yaml"
SCAM_FILE = "scam_check.yaml"
AREAS_FILE = "areas.yaml"
COMMUNITY_FILE = "community.yaml"
SURVEYS_FILE = "surveys.yaml"  # optional: no file, no surveys
MODULE_BUTTON_PREFIX = "mod:"
MODULES_DIR = "modules"
IMAGES_DIR = "images"

# Actions the host carries out (households, villages, codes, deletion, volunteers' tools): the engine
# hands them over (Outcome.handoff) instead of handling them.
HOST_ACTION_KEYS = (
    "household",
    "village",
    "enter_code",
    "delete_data",
    "visit",
    "mine",
    "invite",
    "login",
    "broadcast",
    "broadcast_status",
    "stuck_list",
    "classes",
    "class_host",
    "survey",
    "survey_send",
    "link_accounts",
)
# Buttons the engine adds by itself; content must define their labels.
ACTION_KEYS = (
    "menu",
    "back",
    "stuck",
    "retry",
    "human",
    "continue",
    "help",
    "stop",
    "subscribe",
    "scam_check",
    *HOST_ACTION_KEYS,
)
# Actions that free text can reach from anywhere (the others only make sense on a screen that offers them).
COMMAND_KEYS = ("menu", "back", "help", "human", "stop", "subscribe", "scam_check", *HOST_ACTION_KEYS)
# Commands that people say in a few words: a long message is rarely one of them.
BRIEF_COMMAND_KEYS = ("menu", "back", "help", "stop", "subscribe")
# Sentences of the host's own conversations (consent, households, codes, volunteers' tools).
COMMUNITY_TEXT_KEYS = (
    "consent_prompt",
    "consent_declined",
    "consent_thanks",
    "village_ask_commune",
    "village_ask",
    "village_saved",
    "village_none",
    "choose_listed",
    "household_none",
    "household_info",
    "household_ask_label",
    "household_label_bad",
    "household_created",
    "household_ask_code",
    "household_joined",
    "household_already",
    "household_move_confirm",
    "household_leave_confirm",
    "household_left",
    "household_need_village",
    "code_ask",
    "code_unknown",
    "code_role_granted",
    "mentor_linked",
    "mentor_own_code",
    "link_code",
    "link_done",
    "link_own_code",
    "delete_confirm",
    "delete_done",
    "delete_kept",
    "role_required",
    "officer_required",
    "role_tools",
    "invite_ask_role",
    "invite_ask_area",
    "invite_created",
    "mine_summary",
    "person_unnamed",
    "visit_ask_village",
    "visit_ask_household",
    "visit_found",
    "visit_not_found",
    "visit_ask_label",
    "visit_ask_member",
    "visit_ask_name",
    "visit_ask_items",
    "visit_nothing",
    "visit_confirm",
    "visit_saved",
    "visit_undone",
    "visit_cancelled",
    "broadcast_ask_area",
    "broadcast_ask_who",
    "broadcast_ask_module",
    "broadcast_ask_text",
    "broadcast_template_empty",
    "broadcast_template_long",
    "broadcast_template_syntax",
    "broadcast_template_forbidden",
    "broadcast_template_unknown",
    "broadcast_too_long",
    "broadcast_ask_when",
    "broadcast_ask_at",
    "broadcast_ask_yearly",
    "broadcast_at_bad",
    "broadcast_at_past",
    "broadcast_quiet_moved",
    "broadcast_quiet_yearly",
    "broadcast_nobody",
    "broadcast_preview",
    "broadcast_out_of_window",
    "broadcast_when_now",
    "broadcast_when_sending",
    "broadcast_when_at",
    "broadcast_when_yearly",
    "broadcast_confirmed",
    "broadcast_already",
    "broadcast_dropped",
    "broadcast_status",
    "broadcast_status_none",
    "stuck_list",
    "stuck_none",
    "reminder_nudge",
    "login_link",
    "login_officer_only",
    "classes_none",
    "classes_list",
    "classes_need_village",
    "classes_village_skipped",
    "class_joined",
    "class_waiting",
    "class_cancelled_by_you",
    "class_gone",
    "class_promoted",
    "class_reminder",
    "class_day_today",
    "class_day_tomorrow",
    "class_called_off",
    "class_host_list",
    "class_ask_area",
    "class_ask_topic",
    "class_ask_group",
    "class_ask_module",
    "class_ask_place",
    "class_ask_at",
    "class_ask_capacity",
    "class_capacity_bad",
    "class_text_bad",
    "class_confirm",
    "class_created",
    "class_dropped",
    "class_host_gone",
    "class_attend",
    "class_attend_name",
    "class_attend_nobody",
    "class_attend_saved",
    "class_call_off_confirm",
    "class_called_off_done",
    "survey_none",
    "survey_pick",
    "survey_question",
    "survey_need_village",
    "survey_village_skipped",
    "survey_thanks",
    "survey_officer_only",
    "survey_send_pick",
    "survey_send_area",
)
# Sentences of the quarterly report's DOCX and XLSX.
REPORT_TEXT_KEYS = (
    "report_period",
    "report_authority",
    "report_place_date",
    "report_title",
    "report_basis",
    "report_source",
    "report_source_short",
    "report_people",
    "report_adults",
    "report_households",
    "report_volunteers",
    "report_self_reported",
    "report_self_reported_item",
    "report_hint_below_target",
    "report_hint_help",
    "report_hint_stuck",
    "report_recipients",
)
REPORT_LABELS = (
    "sheet_summary",
    "sheet_areas",
    "sheet_modules",
    "summary_area",
    "summary_period",
    "summary_from",
    "summary_until",
    "summary_source",
    "total",
    "col_village",
    "col_commune",
    "col_people_quarter",
    "col_people_year",
    "col_people_total",
    "col_adults_quarter",
    "col_adults_year",
    "col_adults_total",
    "col_adults_official",
    "col_adults_percent",
    "col_adults_target",
    "col_households_gds",
    "col_households_official",
    "col_households_percent",
    "col_households_target",
    "col_households_registered",
    "col_module",
    "col_started_quarter",
    "col_completed_quarter",
    "col_started_year",
    "col_completed_year",
    "col_started_total",
    "col_completed_total",
    "col_stuck",
    "nation",
    "motto",
    "unit",
    "number",
    "kind",
    "section_results",
    "parts_village",
    "parts_commune",
    "modules_heading",
    "section_difficulties",
    "difficulties",
    "causes",
    "section_proposals",
    "hints",
    "fill_in",
    "recipients_title",
    "signer",
    "signature_hint",
)
COMMUNITY_LABELS = (
    "consent.yes",
    "consent.no",
    "dialog.skip",
    "dialog.menu",
    "dialog.yes",
    "dialog.no",
    "household.create",
    "household.join",
    "household.leave",
    "household.move",
    "household.stay",
    "delete.yes",
    "delete.no",
    "role.volunteer",
    "role.officer",
    "invite.volunteer",
    "invite.officer",
    "visit.new_household",
    "visit.new_member",
    "visit.done",
    "visit.confirm",
    "visit.cancel",
    "visit.undo",
    "visit.again",
    "broadcast.you",
    "broadcast.who_all",
    "broadcast.who_not_completed",
    "broadcast.who_completed",
    "broadcast.who_not_gds",
    "broadcast.who_new",
    "broadcast.when_now",
    "broadcast.when_morning",
    "broadcast.when_at",
    "broadcast.when_yearly",
    "broadcast.send",
    "broadcast.rewrite",
    "broadcast.cancel",
    "broadcast.pause",
    "broadcast.resume",
    "broadcast.refresh",
    "broadcast.state_scheduled",
    "broadcast.state_done",
    "broadcast.state_yearly",
    "broadcast.state_paused",
    "broadcast.state_cancelled",
    "class.join",
    "class.leave",
    "class.new",
    "class.attend",
    "class.call_off",
    "class.call_off_yes",
    "class.call_off_no",
    "class.create",
    "class.cancel",
    "class.add_person",
    "class.save",
    "class.no_module",
    "class.seated",
    "class.waiting",
    "class.walk_in",
    "survey.start",
    "survey.self_reported",
    "survey.respondents",
    *(
        f"outbox.{status}"
        for status in (
            "pending",
            "claimed",
            "sending",
            "sent",
            "failed",
            "unknown",
            "unreachable",
            "held",
            "out_window",
        )
    ),
    *(f"channel.{channel}" for channel in ("telegram", "web", "console", "zalo_oa", "zalo_bot")),
)
# Sentences the engine says by itself; content must define them.
TEXT_KEYS = (
    "welcome",
    "welcome_back",
    "menu",
    "empty_input",
    "too_long",
    "too_fast",
    "not_understood",
    "number_out_of_range",
    "stale_button",
    "check_choose_option",
    "human_requested",
    "content_updated",
    "unsupported_message",
    "reply_with_number",
    "help",
    "stop_confirmed",
    "subscribe_confirmed",
    "suggest",
    "choose_offer",
    "out_of_scope",
    "secret_warning",
    "scam_check_prompt",
    "scam_found",
    "scam_none",
    "scam_footer",
    *COMMUNITY_TEXT_KEYS,
    *REPORT_TEXT_KEYS,
)

# Column headers of the participation-log export, in order; the names people gave only when asked for.
EXPORT_COLUMNS = ("at", "person", "channel", "module", "module_version", "kind", "step", "assisted_by", "area")
EXPORT_NAME_COLUMNS = ("name", "assisted_by_name")
EXPORT_LABELS = ("sheet", "legend_sheet", "legend_meaning")
WEB_LABELS = ("title", "subtitle", "placeholder", "send", "offline")
LABEL_KEYS = (
    *(f"export.{key}" for key in (*EXPORT_COLUMNS, *EXPORT_NAME_COLUMNS, *EXPORT_LABELS)),
    *(f"kind.{kind.value}" for kind in EventKind),
    *(f"report.{key}" for key in REPORT_LABELS),
    *(f"web.{key}" for key in WEB_LABELS),
    *COMMUNITY_LABELS,
)


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


T = TypeVar("T")
_Spec = TypeVar("_Spec", ModuleSpec, MessagesSpec, RoutingSpec, ScamSpec, CommunitySpec, AreasFile, SurveysFile)
_sandbox = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


@dataclass(frozen=True)
class Catalog:
    """Every module and message, validated; the engine's only input besides state."""

    modules: Mapping[str, ModuleSpec]
    messages: MessagesSpec
    routing: RoutingSpec
    scam: ScamSpec
    router: Router = field(repr=False)
    scam_signals: ScamSignals = field(repr=False)
    community: CommunitySpec = field(repr=False)
    areas: tuple[AreaSpec, ...] = field(repr=False)
    surveys: Mapping[str, SurveySpec] = field(repr=False)
    _steps: Mapping[tuple[str, str], StepSpec] = field(repr=False)
    _templates: Mapping[str, Template] = field(repr=False)
    _static: Mapping[str, str] = field(repr=False, default_factory=dict)  # templates without variables, rendered
    _derived: dict[Hashable, Any] = field(repr=False, compare=False, default_factory=dict)  # see derived()

    def step(self, module_id: str, step_id: str) -> StepSpec | None:
        return self._steps.get((module_id, step_id))

    def derived(self, key: Hashable, make: Callable[[], T]) -> T:
        """A value that depends on the content alone, made once per catalog (e.g. a step's choices)."""
        try:
            return self._derived[key]
        except KeyError:
            value = self._derived[key] = make()
            return value

    def say(self, key: str, **values: Any) -> str:
        """Render one of the engine's sentences."""
        static = self._static.get(key)
        return static if static is not None else self._templates[key].render(**values).strip()

    def label(self, key: str) -> str:
        """A short label from ``messages.yaml`` (buttons of the host's conversations, column headers)."""
        return self.messages.labels[key]

    def action_label(self, key: str, **values: Any) -> str:
        return self.say(f"action:{key}", **values)


def build_catalog(
    modules: list[ModuleSpec],
    messages: MessagesSpec,
    routing: RoutingSpec,
    scam: ScamSpec,
    community: CommunitySpec,
    areas: tuple[AreaSpec, ...] = (),
    surveys: tuple[SurveySpec, ...] = (),
) -> Catalog:
    """Index validated specs; templates, the router and the scam signals are built once here."""
    ordered = sorted(modules, key=lambda m: (m.order, m.id))
    templates = {key: _sandbox.from_string(text) for key, text in messages.texts.items()}
    templates |= {f"action:{key}": _sandbox.from_string(a.label) for key, a in messages.actions.items()}
    sources = {**messages.texts, **{f"action:{key}": a.label for key, a in messages.actions.items()}}
    static = {
        key: templates[key].render().strip()
        for key, text in sources.items()
        if not meta.find_undeclared_variables(_sandbox.parse(text))
    }
    destinations = route_phrases(ordered, messages, routing)
    normalizer = Normalizer.build(
        {**routing.abbreviations, **routing.english},
        known_texts(ordered, messages, scam),
        [p for phrases in destinations.values() for p in phrases],
    )
    return Catalog(
        modules={m.id: m for m in ordered},
        messages=messages,
        routing=routing,
        scam=scam,
        router=Router.build(
            destinations, normalizer, routing.fillers, COMMAND_KEYS, module_texts(ordered), BRIEF_COMMAND_KEYS
        ),
        scam_signals=ScamSignals.build(scam, normalizer),
        community=community,
        areas=areas,
        surveys={s.id: s for s in surveys},
        _steps={(m.id, s.id): s for m in ordered for s in m.steps},
        _templates=templates,
        _static=static,
    )


def route_phrases(modules: list[ModuleSpec], messages: MessagesSpec, routing: RoutingSpec) -> dict[str, list[str]]:
    """Every routing destination with its phrases: modules, commands, out of scope."""
    found = {f"{MODULE_BUTTON_PREFIX}{m.id}": [m.title, *m.keywords] for m in modules}
    for key in COMMAND_KEYS:
        action = messages.actions[key]
        found[key] = [action.label, *action.keywords]
    found[OUT_OF_SCOPE] = list(routing.out_of_scope)
    return found


def module_texts(modules: list[ModuleSpec]) -> dict[str, list[str]]:
    """What each module says, as background evidence for routing."""
    found = {}
    for module in modules:
        texts = [module.summary]
        for step in module.steps:
            texts += [step.text, step.stuck, *(b.label for b in step.buttons)]
            texts += [p for answer in step.answers for p in answer.phrases]
        found[f"{MODULE_BUTTON_PREFIX}{module.id}"] = texts
    return found


def known_texts(modules: list[ModuleSpec], messages: MessagesSpec, scam: ScamSpec) -> list[str]:
    """All the correct Vietnamese in the content: its words are never taken for typos."""
    texts = [*messages.texts.values(), *(a.label for a in messages.actions.values())]
    for flag in scam.flags.values():
        texts += [flag.explain, *flag.phrases]
    for module in modules:
        texts += [module.title, module.summary, *module.keywords]
        for step in module.steps:
            texts += [step.text, step.stuck, *(b.label for b in step.buttons)]
            texts += [p for answer in step.answers for p in answer.phrases]
            if step.check:
                texts += [step.check.right, step.check.wrong, *(o.label for o in step.check.options)]
    return texts


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
    from flows.validate import validate_messages, validate_module, validate_routing, validate_scam

    errors: list[ContentError] = []
    messages = _parse(content, MESSAGES_FILE, MessagesSpec, errors)
    if messages is not None:
        errors += validate_messages(messages[0], messages[1], _shown(content, MESSAGES_FILE))
    routing = _parse(content, ROUTING_FILE, RoutingSpec, errors)
    if routing is not None:
        errors += validate_routing(routing[0], routing[1], _shown(content, ROUTING_FILE))
    scam = _parse(content, SCAM_FILE, ScamSpec, errors)
    if scam is not None:
        errors += validate_scam(scam[0], scam[1], _shown(content, SCAM_FILE))
    modules: list[ModuleSpec] = []
    seen: dict[str, str] = {}
    unreadable_modules = False
    module_files = sorted(p for p in content.files if p.startswith(f"{MODULES_DIR}/") and p.endswith(".yaml"))
    if not module_files:
        errors.append(ContentError(_shown(content, MODULES_DIR), 0, "no module files (*.yaml) found"))
    for path in module_files:
        parsed = _parse(content, path, ModuleSpec, errors)
        if parsed is None:
            unreadable_modules = True
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
    community = _parse(content, COMMUNITY_FILE, CommunitySpec, errors)
    areas = _parse(content, AREAS_FILE, AreasFile, errors)
    area_list: list[AreaSpec] = []
    if areas is not None:
        area_list, problems = parse_area_rows(
            (areas[1].line(("areas", i)), a.model_dump()) for i, a in enumerate(areas[0].areas)
        )
        errors += [ContentError(_shown(content, AREAS_FILE), p.row, p.message) for p in problems]
    surveys: tuple[SurveySpec, ...] = ()
    if SURVEYS_FILE in content.files:
        from flows.validate import validate_surveys

        parsed_surveys = _parse(content, SURVEYS_FILE, SurveysFile, errors)
        if parsed_surveys is not None:
            surveys = tuple(parsed_surveys[0].surveys)
            errors += validate_surveys(parsed_surveys[0], parsed_surveys[1], _shown(content, SURVEYS_FILE))
    if community is not None and not unreadable_modules:  # else every reference would look unknown
        from flows.validate import validate_community

        errors += validate_community(
            community[0],
            community[1],
            _shown(content, COMMUNITY_FILE),
            {m.id for m in modules},
            area_list,
            {s.id: s for s in surveys},
        )
    if errors or messages is None or routing is None or scam is None or community is None:
        return None, errors
    return build_catalog(modules, messages[0], routing[0], scam[0], community[0], tuple(area_list), surveys), []


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
