"""Who a broadcast reaches: an audience as filters, resolved to one channel account per person.

Never included: people who have not consented, who said "dừng nhận tin" (``opted_out_at``), and
accounts that blocked the bot (``unreachable_since``). A person with several reachable accounts is
reached once, on the account they added last.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from flows.community import CommunitySpec
from flows.types import EventKind
from storage.areas import descendants
from storage.metrics import counting, household_statuses
from storage.models import ChannelIdentity, Conversation, ParticipationEvent, Person, RoleGrant


class Who(StrEnum):
    """Audience by role: residents are people without an active role."""

    RESIDENT = "resident"
    VOLUNTEER = "volunteer"
    OFFICER = "officer"


class HouseholdFilter(StrEnum):
    GIA_DINH_SO = "gia_dinh_so"  # in a household that is "Gia đình số"
    NOT_GIA_DINH_SO = "not_gia_dinh_so"  # in a household that is not (yet)
    NONE = "none"  # in no household


@dataclass(frozen=True)
class Audience:
    """Filters, all of which must hold; an empty tuple or None means "any"."""

    areas: tuple[str, ...]  # area codes: people whose village is one of them or under one
    channels: tuple[str, ...] = ()
    roles: tuple[Who, ...] = ()
    completed: str | None = None  # module id the person completed
    not_completed: str | None = None  # module id the person has not completed
    household: HouseholdFilter | None = None
    joined_since: dt.datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["joined_since"] = self.joined_since.isoformat() if self.joined_since else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Audience:
        joined = data.get("joined_since")
        household = data.get("household")
        return cls(
            areas=tuple(data["areas"]),
            channels=tuple(data.get("channels") or ()),
            roles=tuple(Who(r) for r in data.get("roles") or ()),
            completed=data.get("completed"),
            not_completed=data.get("not_completed"),
            household=HouseholdFilter(household) if household else None,
            joined_since=dt.datetime.fromisoformat(joined) if joined else None,
        )


@dataclass(frozen=True)
class Recipient:
    person_id: int
    channel: str
    external_id: str
    name: str | None
    area_code: str | None
    state: dict[str, Any] = field(default_factory=dict, compare=False)  # the conversation state (module in progress)
    last_inbound_at: dt.datetime | None = field(default=None, compare=False)  # when this account last wrote


async def recipients(session: AsyncSession, community: CommunitySpec, audience: Audience) -> list[Recipient]:
    """The people the audience reaches now, by person id, one account each."""
    areas = await descendants(session, audience.areas)
    if not areas:
        return []
    p, i = Person, ChannelIdentity
    query = (
        select(
            p.id,
            i.channel,
            i.external_id,
            p.display_name,
            p.area_code,
            p.household_id,
            Conversation.state,
            i.last_inbound_at,
        )
        .join(i, i.person_id == p.id)
        .outerjoin(Conversation, Conversation.person_id == p.id)
        .where(
            p.consented_at.is_not(None),
            p.opted_out_at.is_(None),
            i.unreachable_since.is_(None),
            p.area_code.in_(areas),
        )
        .order_by(p.id, i.id)
    )
    if audience.channels:
        query = query.where(i.channel.in_(audience.channels))
    if audience.joined_since is not None:
        query = query.where(p.created_at >= audience.joined_since)
    if audience.roles:
        query = query.where(*_role_filter(audience.roles))
    for module, wanted in ((audience.completed, True), (audience.not_completed, False)):
        if module is not None:
            done = _completed(module)
            query = query.where(done if wanted else ~done)
    rows = (await session.execute(query)).all()
    if audience.household is not None:
        rows = await _by_household(session, community, areas, rows, audience.household)
    latest: dict[int, Recipient] = {}  # ordered by identity id: the last one added wins
    for person_id, channel, external_id, name, area_code, _, state, last_inbound_at in rows:
        latest[person_id] = Recipient(
            person_id, channel, external_id, name, area_code, dict(state or {}), last_inbound_at
        )
    return list(latest.values())


def by_channel(found: Iterable[Recipient]) -> dict[str, int]:
    """How many recipients on each channel, largest first."""
    return dict(Counter(r.channel for r in found).most_common())


def _completed(module: str) -> Any:
    e = ParticipationEvent
    return exists().where(
        e.person_id == Person.id, e.module == module, e.kind == EventKind.COMPLETED.value, *counting(e, None)
    )


def _role_filter(roles: Collection[Who]) -> list[Any]:
    def holds(role: Who) -> Any:
        return exists().where(
            RoleGrant.person_id == Person.id, RoleGrant.revoked_at.is_(None), RoleGrant.role == role.value
        )

    wanted = [holds(role) for role in roles if role is not Who.RESIDENT]
    if Who.RESIDENT in roles:
        wanted.append(~exists().where(RoleGrant.person_id == Person.id, RoleGrant.revoked_at.is_(None)))
    return [or_(*wanted)]


async def _by_household(
    session: AsyncSession, community: CommunitySpec, areas: set[str], rows: list[Any], wanted: HouseholdFilter
) -> list[Any]:
    if wanted is HouseholdFilter.NONE:
        return [row for row in rows if row.household_id is None]
    statuses = await household_statuses(session, community, areas)
    keep = wanted is HouseholdFilter.GIA_DINH_SO
    return [row for row in rows if row.household_id is not None and statuses.get(row.household_id, False) is keep]
