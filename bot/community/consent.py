"""Consent first: an account the bot does not know gets three lines and a question, and nothing is kept
about it (beyond the dedupe key and the reply itself) until the person agrees."""

from __future__ import annotations

from bot.community.turn import Turn
from bot.community.villages import open_villages
from flows.text import clean, exact_match, parse_number
from flows.types import Button, InboundKind, Reply
from storage.repo import create_person

AGREE, DECLINE = "consent:yes", "consent:no"
AGREE_PHRASES = ("đồng ý", "tôi đồng ý", "có", "có đồng ý", "đồng ý ạ", "ok", "oke", "được", "yes")
DECLINE_PHRASES = ("không đồng ý", "không", "tôi không đồng ý", "không ạ", "no")


async def gate(turn: Turn) -> None:
    """Answer an unknown account: ask, or create the person when they agree (``turn.person`` is set)."""
    answer = _answer(turn)
    if answer == AGREE:
        turn.person = await create_person(turn.session, turn.now, (turn.channel, turn.sender_id))
        await open_villages(turn, then="welcome", preface=turn.say("consent_thanks"))
        return
    buttons = (Button(AGREE, turn.label("consent.yes")), Button(DECLINE, turn.label("consent.no")))
    if answer == DECLINE:
        turn.replies.append(Reply(text=turn.say("consent_declined"), buttons=buttons[:1]))
    else:
        turn.replies.append(Reply(text=turn.say("consent_prompt"), buttons=buttons))


def _answer(turn: Turn) -> str | None:
    inbound = turn.inbound
    if inbound.kind is InboundKind.BUTTON:
        return inbound.button_id if inbound.button_id in (AGREE, DECLINE) else None
    if inbound.kind is not InboundKind.TEXT:
        return None
    text = clean(inbound.text)
    number = parse_number(text)
    if number is not None:
        return {1: AGREE, 2: DECLINE}.get(number)
    return exact_match(text, {AGREE: AGREE_PHRASES, DECLINE: DECLINE_PHRASES})
