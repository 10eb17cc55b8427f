"""Checks on the model's own words (its `answer` tool), of one shape, applied in order.

Each check gets the answer, the text as the checks before it left it, and the turn's progress,
and returns a verdict: go on with this text, end the turn with a reply built from facts, or
first make the model call a tool (once per turn; the second time the check's fallback reply
ends the turn). None of them decides a write: writes wait as pending actions for the user's yes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from services.chat import facts, guards
from services.chat.tools import Answer
from services.chat.turn import Progress


@dataclass(frozen=True, slots=True)
class Verdict:
    text: str
    """The words to go on with (cleaned)."""
    reply: str | None = None
    """End the turn with this instead."""
    force: str | None = None
    """First the model must call this tool (the reply is the fallback if it was forced already)."""


AnswerCheck = Callable[[Answer, str, Progress], Verdict]


def on_topic(answer: Answer, text: str, progress: Progress) -> Verdict:
    """A request that is not about appointments gets the policy answer, not the model's."""
    return Verdict(text, reply=facts.OFF_TOPIC) if answer.topic == "other" else Verdict(text)


def without_leaks(answer: Answer, text: str, progress: Progress) -> Verdict:
    """No JSON, ids, tool or stream names, markers: removed; nothing left is no answer."""
    clean = guards.strip_leaks(text)
    return Verdict(clean) if clean else Verdict(clean, reply=facts.GAVE_UP)


def no_false_claim(answer: Answer, text: str, progress: Progress) -> Verdict:
    """A booking made, cancelled or moved may be said only when it was, in this turn."""
    if guards.find_false_claim(text, [o.status for o in progress.outcomes]):
        return Verdict(text, reply=facts.GAVE_UP)
    return Verdict(text)


def only_offered_times(answer: Answer, text: str, progress: Progress) -> Verdict:
    """A clock time that no free-times result offered sends the model to fetch_free_slots."""
    offered = {s.start.hour * 60 + s.start.minute for s in progress.state.slots}
    if not guards.times_named(text) - offered:
        return Verdict(text)
    if not progress.state.calendar_ids:
        return Verdict(text, reply=facts.ASK_DAY)
    return Verdict(text, reply=facts.ASK_DAY, force="fetch_free_slots")


ANSWER_CHECKS: Final[tuple[AnswerCheck, ...]] = (on_topic, without_leaks, no_false_claim, only_offered_times)


def check_answer(answer: Answer, progress: Progress) -> Verdict:
    """The answer through every check, in order; the first that does not pass decides."""
    verdict = Verdict(answer.message)
    for check in ANSWER_CHECKS:
        verdict = check(answer, verdict.text, progress)
        if verdict.reply is not None or verdict.force is not None:
            return verdict
    return verdict
