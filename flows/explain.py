"""A readable account of how a message is routed, for ``hocvuso match`` and content editors."""

from __future__ import annotations

from flows.catalog import MODULE_BUTTON_PREFIX, Catalog
from flows.router import OUT_OF_SCOPE, SUGGESTIONS, RouteKind

_DECISIONS = {
    RouteKind.GO: "goes straight to",
    RouteKind.SUGGEST: "unsure: offers buttons for",
    RouteKind.OUT_OF_SCOPE: "out of scope: says politely what it helps with",
    RouteKind.UNKNOWN: "below the floor: says it did not understand, offers the menu and a human",
}


def destination_label(catalog: Catalog, destination: str) -> str:
    """What the person would see for a destination: a module title or an action label."""
    if destination.startswith(MODULE_BUTTON_PREFIX):
        return catalog.modules[destination.removeprefix(MODULE_BUTTON_PREFIX)].title
    if destination == OUT_OF_SCOPE:
        return "(out of scope)"
    return catalog.action_label(destination)


def describe(catalog: Catalog, text: str, explain: bool = False) -> str:
    """The words as read, the top destinations with scores (0-100) and the decision."""
    router = catalog.router
    route = router.route(text)
    lines = [f"read as: {' '.join(router.normalizer.words(text))}"]
    ranked = route.ranked or router.rank(text)
    if not ranked:
        lines.append("  (no destination shares a word with this message)")
    for n, scored in enumerate(ranked[:SUGGESTIONS], start=1):
        label = destination_label(catalog, scored.destination)
        lines.append(f"  {n}. {scored.destination:<24} {scored.score:>5.1f}  {label}")
    targets = {RouteKind.GO: route.destination, RouteKind.SUGGEST: ", ".join(route.suggestions())}
    target = targets.get(route.kind, "")
    lines.append(f"decision: {_DECISIONS[route.kind]} {target}".rstrip())
    if explain:
        matched = router.explain(text)
        for scored in ranked[:SUGGESTIONS]:
            words = ", ".join(f"{feature} ({weight})" for feature, weight in matched.get(scored.destination, []))
            lines.append(f"  {scored.destination}: {words or '(background words only)'}")
    return "\n".join(lines)
