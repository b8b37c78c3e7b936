"""Database tables (SQLAlchemy 2). Times are stored in UTC."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, orm_insert_sentinel
from sqlalchemy.types import TypeDecorator

# BIGINT on PostgreSQL, INTEGER on SQLite (where only INTEGER PRIMARY KEY autoincrements).
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware UTC time")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    pass


class Area(Base):
    """A province, commune or village (thôn, tổ dân phố), with its official counts."""

    __tablename__ = "areas"

    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    parent_code: Mapped[str | None] = mapped_column(ForeignKey("areas.code"), index=True)
    kind: Mapped[str] = mapped_column(String(12))  # flows.community.AreaKind
    name: Mapped[str] = mapped_column(String(120))
    households: Mapped[int | None] = mapped_column(Integer)  # official number of households
    adults: Mapped[int | None] = mapped_column(Integer)  # official number of adults
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class Person(Base):
    """A resident, volunteer or officer. Personal data stays minimal.

    ``subject`` is a random key copied onto the person's participation events:
    after the person deletes their data it links to nothing, yet the events
    still count as one anonymous learner. ``consented_at`` is set when they
    agreed (in chat, or through a volunteer who met them in person).
    """

    __tablename__ = "persons"
    __table_args__ = (Index("ix_persons_mentor_code", "mentor_code", unique=True),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    display_name: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    subject: Mapped[int | None] = mapped_column(BigInteger)  # set on creation; nullable only for old rows
    consented_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    area_code: Mapped[str | None] = mapped_column(ForeignKey("areas.code"), index=True)
    household_id: Mapped[int | None] = mapped_column(ForeignKey("households.id", ondelete="SET NULL"), index=True)
    mentor_id: Mapped[int | None] = mapped_column(ForeignKey("persons.id", ondelete="SET NULL"), index=True)
    mentor_code: Mapped[str | None] = mapped_column(String(12))  # volunteers share it with their mentees
    opted_out_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)  # "dừng nhận tin": no broadcasts, no nudges


class Household(Base):
    """A household as residents registered it: a village, a label they chose, a code to share."""

    __tablename__ = "households"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code: Mapped[str] = mapped_column(String(12), unique=True)
    area_code: Mapped[str] = mapped_column(ForeignKey("areas.code"), index=True)
    label: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class Role(StrEnum):
    OFFICER = "officer"
    VOLUNTEER = "volunteer"


class RoleGrant(Base):
    """A role over an area (and everything under it); revoked grants stay as history."""

    __tablename__ = "role_grants"
    __table_args__ = (Index("ix_role_grants_person", "person_id", "revoked_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(12))
    area_code: Mapped[str] = mapped_column(ForeignKey("areas.code"))
    granted_by: Mapped[int | None] = mapped_column(ForeignKey("persons.id", ondelete="SET NULL"))
    granted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class Invite(Base):
    """A single-use, expiring code that grants a role over an area; only its hash is stored."""

    __tablename__ = "invites"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(12))
    area_code: Mapped[str] = mapped_column(ForeignKey("areas.code"))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("persons.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    used_by: Mapped[int | None] = mapped_column(ForeignKey("persons.id", ondelete="SET NULL"))


class AuditEntry(Base):
    """Who did what with a role: grants, revocations, field visits, exports. Append-only."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("persons.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(String(40))
    area_code: Mapped[str | None] = mapped_column(String(40))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)


class ChannelIdentity(Base):
    """A person's account on one channel (Telegram chat id, Zalo user id, console user)."""

    __tablename__ = "channel_identities"
    __table_args__ = (UniqueConstraint("channel", "external_id", name="uq_identity_channel_external"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(20))
    external_id: Mapped[str] = mapped_column(String(100))
    unreachable_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_inbound_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)  # Zalo OA's sending window


class Conversation(Base):
    """The engine's state for one person, with an optimistic-lock version."""

    __tablename__ = "conversations"

    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id", ondelete="CASCADE"), primary_key=True)
    state: Mapped[dict[str, Any]] = mapped_column(JSON)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012


class ProcessedInbound(Base):
    """One row per inbound event ever handled: the dedupe key."""

    __tablename__ = "processed_inbound"
    __table_args__ = (UniqueConstraint("channel", "event_id", name="uq_processed_channel_event"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    channel: Mapped[str] = mapped_column(String(20))
    event_id: Mapped[str] = mapped_column(String(100))
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class ParticipationEvent(Base):
    """The append-only participation log: never updated, only inserted."""

    __tablename__ = "participation_events"
    __table_args__ = (Index("ix_participation_person_module", "person_id", "module"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    person_id: Mapped[int | None] = mapped_column(ForeignKey("persons.id", ondelete="SET NULL"))
    module: Mapped[str] = mapped_column(String(40))
    module_version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(20))
    step: Mapped[str] = mapped_column(String(40), default="")
    channel: Mapped[str] = mapped_column(String(20))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    assisted_by: Mapped[int | None] = mapped_column(ForeignKey("persons.id", ondelete="SET NULL"))
    subject: Mapped[int | None] = mapped_column(BigInteger, index=True)  # Person.subject at the time
    area_code: Mapped[str | None] = mapped_column(String(40), index=True)  # the person's village at the time
    corrects_id: Mapped[int | None] = mapped_column(ForeignKey("participation_events.id"))  # kind "retracted"


class OutboxStatus(StrEnum):
    PENDING = "pending"
    CLAIMED = "claimed"  # taken by the sender, waiting for its slot: never sent yet, pending again after a crash
    SENDING = "sending"  # the platform call may have started
    SENT = "sent"
    FAILED = "failed"  # gave up; last_error says why
    UNKNOWN = "unknown"  # bulk send interrupted in flight: may or may not have arrived
    UNREACHABLE = "unreachable"  # the person blocked the bot
    OUT_OF_WINDOW = "out_window"  # the platform's window since their last message had closed: not sent
    HELD = "held"  # a bulk message of a paused broadcast: pending again on resume


class Priority:
    """Lower is sooner: replies to a resident go before bulk messages."""

    REPLY = 0
    BULK = 10


class OutboxMessage(Base):
    """A message waiting to be sent, or the record that it was."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_due", "status", "priority", "next_attempt_at", "id"),
        Index("ix_outbox_recipient", "channel", "recipient", "status", "id"),  # order per recipient
        # One message per person per broadcast run, whatever happens (a crash, a second "send").
        Index("ix_outbox_run_person", "run_id", "person_id", unique=True),
        # Ids are never reused (readers follow the outbox by id, and rows are deleted with a person).
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    channel: Mapped[str] = mapped_column(String(20))
    recipient: Mapped[str] = mapped_column(String(100))
    person_id: Mapped[int | None] = mapped_column(ForeignKey("persons.id", ondelete="SET NULL"))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    priority: Mapped[int] = mapped_column(Integer, default=Priority.REPLY)
    status: Mapped[str] = mapped_column(String(12), default=OutboxStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("broadcast_runs.id"))  # a broadcast's message
    # Lets one INSERT ... RETURNING give many rows their ids in order on SQLite (migration 0008).
    insert_sentinel: Mapped[int | None] = orm_insert_sentinel("insert_sentinel")


class BroadcastStatus(StrEnum):
    DRAFT = "draft"  # composed, previewed, not confirmed
    SCHEDULED = "scheduled"  # confirmed: runs at send_at, or every year on every_year
    DONE = "done"  # its (only) run is queued
    CANCELLED = "cancelled"


class Broadcast(Base):
    """A message to an audience, composed by a volunteer or an officer for an area they cover.

    ``audience`` is a :class:`storage.audience.Audience` as JSON; ``template`` a sandboxed Jinja2
    template; ``every_year`` "MM-DD HH:MM" (local time) for a yearly campaign such as 10/10.
    """

    __tablename__ = "broadcasts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("persons.id", ondelete="SET NULL"))
    area_code: Mapped[str] = mapped_column(ForeignKey("areas.code"))
    audience: Mapped[dict[str, Any]] = mapped_column(JSON)
    template: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(12), index=True)
    send_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    every_year: Mapped[str | None] = mapped_column(String(11))
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    survey: Mapped[str | None] = mapped_column(String(40))  # an invitation to this survey (content/surveys.yaml)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    confirmed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class BroadcastRun(Base):
    """One sending of a broadcast (a yearly campaign has one a year); its messages are outbox rows.

    ``queued_at`` is set once every recipient's message is in the outbox: a run without it was
    interrupted and is resumed, and the unique (run, person) index keeps it to one message each.
    """

    __tablename__ = "broadcast_runs"
    __table_args__ = (UniqueConstraint("broadcast_id", "due_at", name="uq_broadcast_run_due"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    broadcast_id: Mapped[int] = mapped_column(ForeignKey("broadcasts.id", ondelete="CASCADE"))
    due_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    queued_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    recipients: Mapped[int] = mapped_column(Integer, default=0)


class ReminderSent(Base):
    """A nudge to finish a module: at most one per (person, module, number)."""

    __tablename__ = "reminders"
    __table_args__ = (UniqueConstraint("person_id", "module", "number", name="uq_reminder_person_module_number"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id", ondelete="CASCADE"))
    module: Mapped[str] = mapped_column(String(40))
    number: Mapped[int] = mapped_column(Integer)
    sent_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class CommunityClass(Base):
    """A community lesson a volunteer or an officer holds in a village (or for a whole commune)."""

    __tablename__ = "classes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    area_code: Mapped[str] = mapped_column(ForeignKey("areas.code"), index=True)
    topic: Mapped[str] = mapped_column(String(120))
    for_group: Mapped[str] = mapped_column(String(30))  # flows.community.ClassGroup id
    module: Mapped[str | None] = mapped_column(String(40))  # the module it teaches, if any
    place: Mapped[str] = mapped_column(String(160))
    starts_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    capacity: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("persons.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class SignupStatus(StrEnum):
    SEATED = "seated"  # has one of the seats (``seat`` 1..capacity)
    WAITING = "waiting"  # on the waiting list, in order of ``created_at``, id
    CANCELLED = "cancelled"
    WALK_IN = "walk_in"  # came without a seat; added by the volunteer at attendance


class ClassSignup(Base):
    """A person's place at a class. Seats are numbered: the unique (class, seat) index is what keeps a
    class from taking more people than its capacity, whatever runs at the same time."""

    __tablename__ = "class_signups"
    __table_args__ = (
        UniqueConstraint("class_id", "person_id", name="uq_class_signup_person"),
        Index("ix_class_signups_seat", "class_id", "seat", unique=True),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    class_id: Mapped[int] = mapped_column(ForeignKey("classes.id", ondelete="CASCADE"))
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(12))
    seat: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)  # when they (last) asked for a place
    seated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    attended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    reminders_sent: Mapped[int] = mapped_column(Integer, default=0)  # how many of the reminders went out


class SurveyAnswer(Base):
    """The latest answer of one respondent (a household, or a person) to one survey question.

    ``respondent`` is "h<household id>" or "p<person id>": a later answer for the same respondent
    replaces the row, so counts never add up repeated answers. Self-reported, and deleted with the
    person who gave it.
    """

    __tablename__ = "survey_answers"
    __table_args__ = (UniqueConstraint("survey", "question", "respondent", name="uq_survey_answer_respondent"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    survey: Mapped[str] = mapped_column(String(40))
    question: Mapped[str] = mapped_column(String(40))
    respondent: Mapped[str] = mapped_column(String(40))
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id", ondelete="CASCADE"), index=True)
    household_id: Mapped[int | None] = mapped_column(ForeignKey("households.id", ondelete="CASCADE"))
    area_code: Mapped[str | None] = mapped_column(String(40), index=True)  # the village it was answered for
    option: Mapped[str] = mapped_column(String(20))
    value: Mapped[int | None] = mapped_column(Integer)
    answered_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class DashboardLogin(Base):
    """A used login link and the dashboard session it opened: the link's nonce is the session's id.

    Links are signed, not stored: a row here is what makes a link work once. A session ends at
    ``expires_at``, or earlier when the officer logs out (``ended_at``).
    """

    __tablename__ = "dashboard_logins"

    nonce: Mapped[str] = mapped_column(String(32), primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id", ondelete="CASCADE"), index=True)
    used_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class AppSecret(Base):
    """Secrets generated on first use and kept stable (e.g. the pseudonym key)."""

    __tablename__ = "app_secrets"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))


class OAuthToken(Base):
    """A platform's access and refresh tokens (Zalo OA). One current row per provider.

    A refresh token works once: the new pair is a new row, inserted in the transaction that
    retires the old one (whose secrets are then wiped).
    """

    __tablename__ = "oauth_tokens"
    __table_args__ = (
        Index("ix_oauth_tokens_provider_retired", "provider", "retired_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider: Mapped[str] = mapped_column(String(20))
    access_token: Mapped[str] = mapped_column(Text)
    refresh_token: Mapped[str] = mapped_column(Text)
    access_expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    issued_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    retired_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class LinkCode(Base):
    """A one-time code that joins a person's account on another channel to them (only its hash)."""

    __tablename__ = "link_codes"
    __table_args__ = (UniqueConstraint("code_hash", name="uq_link_codes_code_hash"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
