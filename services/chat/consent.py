"""The user's answer to a pending action's question, read as yes, no or something else.

Readers of one shape, asked in order until one decides: an exact short answer by rule (no model
call), then the model's structured-output reading, which the server checks against the action
(a yes that names another time, invitee or name is no yes to this action). No pattern over the
user's words decides a write: the rule only matches whole, exact short answers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Literal, Protocol

from pydantic import BaseModel, Field, StringConstraints

from services.chat.approvals import PendingAction

Decision = Literal["yes", "no", "other"]
QUESTION = (
    "Read the user's last message as an answer to the assistant's question {question!r}: which clock "
    "time, e-mail addresses and name does it give, and does the user say yes, say no, or ask for "
    "something else?"
)
OBVIOUS: dict[Decision, frozenset[str]] = {
    "yes": frozenset(
        {
            "yes",
            "yes please",
            "ok",
            "okay",
            "sure",
            "yep",
            "yeah",
            "confirm",
            "confirmed",
            "go ahead",
            "please do",
            "ja",
            "ja bitte",
            "ja gerne",
            "gerne",
            "sí",
            "si",
            "sí por favor",
            "oui",
            "oui merci",
            "d'accord",
        }
    ),
    "no": frozenset({"no", "no thanks", "no thank you", "nope", "nein", "nein danke", "non", "non merci"}),
}


class ApprovalAnswer(BaseModel):
    """The user's answer to a confirmation question, read by the model; the server decides from
    it (a yes that names another time or another invitee is no yes to this action)."""

    time_named: str | None = Field(
        pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
        description="A clock time the user's last message names, HH:MM in 24 h; null if none.",
    )
    emails_named: list[Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")]] = Field(
        description="E-mail addresses (name@domain) the user's last message names; usually empty."
    )
    name_given: str | None = Field(description="A person's name the user's last message gives; null if none.")
    answer: Literal["yes", "no", "something_else"] = Field(
        description="yes: the user says yes to the question; no: the user says no; something_else: the user asks "
        "for another time, day, person, name or invitee, or asks a question."
    )

    def decision(self, action: PendingAction, said: str) -> Decision:
        """yes only when the user says yes and names nothing the action does not hold. An address
        or a name counts only if the user wrote it (a small model invents an address from the
        user's name, and a name from anywhere)."""
        when_local = action.new_start or action.start
        other_time = self.time_named is not None and self.time_named != f"{when_local:%H:%M}"
        invited = {p.lower() for p in action.participants}
        written = [e.lower() for e in self.emails_named if e.lower() in said.lower()]
        other_invitee = any(e not in invited for e in written)
        name = (self.name_given or "").strip()
        other_name = (
            action.kind == "book"
            and len(name) > 1
            and name.lower() in said.lower()
            and name.lower() != (action.attendee_name or "").lower()
        )
        if self.answer == "something_else" or other_time or other_invitee or other_name:
            return "other"
        return "yes" if self.answer == "yes" else "no"


class Reader(Protocol):
    async def __call__(self, said: str, action: PendingAction) -> Decision | None:
        """The decision, or None when this reader cannot tell."""
        ...


async def by_rule(said: str, action: PendingAction) -> Decision | None:
    """An exact short yes or no ("Yes!", "ja bitte"): no model call needed."""
    plain = " ".join("".join(ch for ch in said.lower() if ch.isalnum() or ch in " '").split())
    return next((decision for decision, words in OBVIOUS.items() if plain in words), None)


class ByModel:
    """The model's structured-output reading (an enum of answers), checked by the server."""

    def __init__(self, read: Callable[[str], Awaitable[ApprovalAnswer | None]]) -> None:
        self.read = read
        """Asks the model the question about the user's last message; None if it could not say."""

    async def __call__(self, said: str, action: PendingAction) -> Decision | None:
        parsed = await self.read(QUESTION.format(question=action.question))
        return None if parsed is None else parsed.decision(action, said)


async def decide(readers: Sequence[Reader], said: str, action: PendingAction) -> Decision:
    """The first reader's decision; something else when none can tell."""
    for reader in readers:
        if (decision := await reader(said, action)) is not None:
            return decision
    return "other"
