"""One turn of a conversation: the server decides from state, the model fills in.

- A turn starts from the state: the tenant's calendars, this conversation's live offers, the
  user's upcoming bookings and any pending action (a write waiting for the user's yes).
- With a pending action, the user's message is first read as yes / no / something else (an
  exact short answer by rule, else a structured-output call with an enum). Yes runs the stored
  command as it is, no declines it; both answer from facts without another model call.
- Otherwise each model call must call a tool (`tool_choice` required, or one named tool when
  the state leaves no choice), offered only the tools that can succeed now, their enums taken
  from the state. The model answers in words through the `answer` tool.
- Every tool result ends the turn with a reply built from facts (the offered times, the
  confirmation question, the outcome, the bookings): no time the user reads comes from the
  model. A tool error goes back to the model, which may try again (bounded rounds).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, cast
from zoneinfo import ZoneInfo

import openai
from openai import AsyncOpenAI, omit
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam, ChatCompletionMessageToolCall
from pydantic import BaseModel, Field, StringConstraints, ValidationError

from services.chat import facts, guards
from services.chat import tools as chat_tools
from services.chat.approvals import Approvals, Command, PendingAction, StoredAction, expires_at, new_action_id
from services.chat.conversations import ConversationStore, Message
from services.chat.holds import SlotHolds
from services.chat.prompt import state_note, system_prompt
from services.chat.state import BookingChoice, ConversationState, SlotChoice, slot_label, when
from services.chat.toolbus import ToolBus
from services.chat.tools import (
    Answer,
    BookMeetingCall,
    CancelBookingCall,
    ChatTool,
    FetchFreeSlotsCall,
    RescheduleBookingCall,
)
from services.chat.views import ERROR_VIEW_PREFIX, error_view, model_view
from shared import metrics
from shared.domain import Booking, BookingList, BookingOutcome, CalendarDirectory, CalendarSummary, FreeSlots
from shared.logs import log_context
from shared.messages import Envelope, ErrorCode, MessageType, Reply, ToolError
from shared.tools import BookMeeting, CancelBooking, ListMyBookings, RescheduleBooking

log = logging.getLogger(__name__)

ActivityCallback = Callable[[str], Awaitable[None]]
UNAVAILABLE = "Sorry, I can't reach the booking assistant right now. Please try again in a minute."
OFF_TOPIC = (
    "I can only help with appointments here: finding a free time, booking, moving or cancelling one. "
    "What would you like to do?"
)
GAVE_UP = "Sorry, I couldn't finish that just now. Which calendar and day would you like me to check?"
ASK_DAY = "Which day would you like me to check for a free time?"
HOW_I_HELP = "I can find a free time, book, move or cancel an appointment for you. What would you like to do?"
DIRECTORY_TTL_S = 30.0
MAX_ID_CHARS = 64
_UNCHECKED = (
    "Free times and bookings may only come from fetch_free_slots and list_my_bookings results: "
    "call fetch_free_slots for the day the user asked about."
)
CLASSIFY = (
    "Read the user's last message as an answer to the assistant's question {question!r}: which clock "
    "time, e-mail addresses and name does it give, and does the user say yes, say no, or ask for "
    "something else?"
)
_OBVIOUS = {
    "yes": {
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
    },
    "no": {"no", "no thanks", "no thank you", "nope", "nein", "nein danke", "non", "non merci"},
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

    def decision(self, action: PendingAction, said: str) -> Literal["yes", "no", "other"]:
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


@dataclass
class Turn:
    """Who is speaking, in which conversation, and what they said."""

    tenant_id: str
    user_id: str
    conversation_id: str
    text: str
    turn_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    request_id: str | None = None
    user_name: str | None = None
    """The user's display name from the gateway, used when the user gives none."""


@dataclass
class TurnResult:
    reply: str
    bookings: list[Booking] = field(default_factory=list)
    suggested_slots: list[datetime] = field(default_factory=list)
    effects: list[str] = field(default_factory=list)
    pending_action: PendingAction | None = None


@dataclass
class _Progress:
    """What happened in this turn so far."""

    state: ConversationState
    on_activity: ActivityCallback | None = None
    outcomes: list[BookingOutcome] = field(default_factory=list)
    slots: list[datetime] = field(default_factory=list)
    pending: PendingAction | None = None
    force: str | None = None
    """A tool the next model call must call (the state left no choice)."""
    within: frozenset[str] | None = None
    """The tools this turn may use at all (a change to a pending action keeps its kind)."""
    forced_fetch: bool = False
    forced_book: bool = False
    asked_for_answer: bool = False
    words: str = ""
    """Everything the user wrote in this conversation (what a length or a name may come from)."""
    failed: set[tuple[str, str]] = field(default_factory=set)
    """Calls (name, arguments) that got an error in this turn: the same call again ends the turn."""

    async def activity(self, label: str) -> None:
        if self.on_activity is not None:
            await self.on_activity(label)

    def result(self, reply: str) -> TurnResult:
        seen: dict[str, Booking] = {}
        for o in self.outcomes:  # one booking once, as it stands last
            seen[o.booking.booking_id] = _in_calendar_zone(o.booking, self.state)
        return TurnResult(
            reply=reply,
            bookings=list(seen.values()),
            suggested_slots=list(dict.fromkeys(self.slots)),
            effects=[o.status for o in self.outcomes],
            pending_action=self.pending,
        )


class Assistant:
    def __init__(self, settings: Any, client: AsyncOpenAI, bus: ToolBus, conversations: ConversationStore) -> None:
        self.settings = settings
        self.client = client
        self.bus = bus
        self.conversations = conversations
        self.holds = SlotHolds(bus.redis)
        self.approvals = Approvals(bus.redis, settings.pending_action_ttl_s)
        self._directories: dict[str, tuple[float, CalendarDirectory]] = {}

    # ------------------------------------------------------------------ state

    async def directory(self, turn: Turn) -> CalendarDirectory:
        cached = self._directories.get(turn.tenant_id)
        if cached and time.monotonic() - cached[0] < DIRECTORY_TTL_S:
            return cached[1]
        reply = await self._request(turn, "describe_calendars", {}, f"dir-{uuid.uuid4().hex}")
        directory = CalendarDirectory.model_validate(reply.result or {"calendars": []})
        if reply.error is None:
            self._directories[turn.tenant_id] = (time.monotonic(), directory)
        return directory

    async def state(self, turn: Turn) -> ConversationState:
        """The calendars, this conversation's live offers and the user's upcoming bookings."""
        state = ConversationState(await self.directory(turn))
        await self._refresh_offers(turn, state)
        listing = await self._request(
            turn, "list_my_bookings", ListMyBookings(include_past=False).model_dump(), f"st-{uuid.uuid4().hex}"
        )
        if listing.error is None and listing.result is not None:
            state.bookings = state.booking_choices(BookingList.model_validate(listing.result).bookings)
        return state

    async def _refresh_offers(self, turn: Turn, state: ConversationState) -> None:
        state.slots = state.slot_choices(await self.holds.offers(turn.tenant_id, turn.conversation_id))

    def _envelope(self, turn: Turn, kind: MessageType, payload: dict[str, Any], call_id: str, key: str) -> Envelope:
        return Envelope(
            idempotency_key=key,
            correlation_id=call_id,
            tenant_id=turn.tenant_id,
            conversation_id=turn.conversation_id,
            user_id=turn.user_id,
            request_id=turn.request_id,
            type=kind,
            payload=payload,
            reply_to=self.bus.reply_to,
        )

    async def _request(
        self, turn: Turn, kind: MessageType, payload: dict[str, Any], call_id: str, key: str | None = None
    ) -> Reply:
        call_id = _short_id(call_id)
        envelope = self._envelope(
            turn, kind, payload, call_id, key or f"{turn.conversation_id}:{turn.turn_id}:{call_id}"
        )
        return await self.bus.request(envelope, self.settings.tool_timeout_s)

    async def warm_up(self, tenant_id: str, attempts: int = 60) -> bool:
        """One request with the system prompt, the tools and the opening state note, so that a
        local model server caches that long prefix before the first user arrives."""
        turn = Turn(tenant_id=tenant_id, user_id="warmup", conversation_id="warmup", text="Hello")
        for _ in range(attempts):  # the calendar worker may still be starting
            self._directories.pop(tenant_id, None)
            directory = await self.directory(turn)
            if directory.calendars:
                break
            await asyncio.sleep(1)
        state = ConversationState(directory)
        offered = chat_tools.offer(state, all_listed=self.settings.model_allowed_tools)
        note: Message = {"role": "system", "content": state_note(state, None)}
        started = time.perf_counter()
        completion = await self._complete(
            [self._system(state), note, {"role": "user", "content": "Hello"}], offered, None
        )
        log.info("model prompt warmed in %.1f s", time.perf_counter() - started)
        return completion is not None

    # ------------------------------------------------------------------ a turn

    async def run(self, turn: Turn, on_activity: ActivityCallback | None = None) -> TurnResult:
        """Run one turn; `on_activity` hears which kind of tool work is under way (no data)."""
        history = await self.conversations.history(turn.tenant_id, turn.conversation_id)
        progress = _Progress(await self.state(turn), on_activity)
        progress.state.moving = _moving(history, progress.state)
        earlier = [m["content"] for m in history if m.get("role") == "user" and isinstance(m.get("content"), str)]
        progress.words = " ".join([*earlier, turn.text])
        new: list[Message] = [{"role": "user", "content": turn.text}]
        reply: str | None = None
        pending = await self.approvals.pending(turn.tenant_id, turn.conversation_id)
        if pending is not None:
            decision = await self._decide(turn, progress.state, history, pending)
            if decision == "yes":
                reply = await self._approve(turn, progress, pending)
            elif decision == "no":
                reply = await self._decline(turn, pending)
            else:
                await self.approvals.transition(
                    turn.tenant_id, turn.user_id, turn.conversation_id, pending.action.action_id, "superseded"
                )
                # the user changes something of the pending action: a changed move is still a move
                progress.within = _CHANGES[pending.action.kind]
        if reply is None:
            reply = await self._rounds(turn, progress, history, new)
        new.append({"role": "assistant", "content": reply})
        await self.conversations.append_turn(turn.tenant_id, turn.conversation_id, new)
        return progress.result(reply)

    async def answer_action(self, turn: Turn, action_id: str, approve: bool) -> TurnResult | str:
        """Approve or decline a pending action by its id (a button, another chat replica).
        Returns the turn's result, or why the action cannot be answered ("missing", "expired",
        or the status it already has)."""
        owner = await self.approvals.owner(turn.tenant_id, action_id)
        stored = await self.approvals.load(turn.tenant_id, action_id)
        if owner != (turn.user_id, turn.conversation_id) or stored is None:
            return "missing"
        progress = _Progress(await self.state(turn))
        if approve:
            moved = await self.approvals.transition(
                turn.tenant_id, turn.user_id, turn.conversation_id, action_id, "executing"
            )
            if moved != "ok":
                return moved
            reply = await self._execute(turn, progress, stored)
        else:
            moved = await self.approvals.transition(
                turn.tenant_id, turn.user_id, turn.conversation_id, action_id, "declined"
            )
            if moved != "ok":
                return moved
            reply = facts.declined(stored.action)
        said = "(The user pressed Confirm.)" if approve else "(The user pressed Change.)"
        await self.conversations.append_turn(
            turn.tenant_id,
            turn.conversation_id,
            [{"role": "user", "content": said}, {"role": "assistant", "content": reply}],
        )
        return progress.result(reply)

    # ------------------------------------------------------------------ approvals

    async def _decide(
        self, turn: Turn, state: ConversationState, history: list[Message], pending: StoredAction
    ) -> Literal["yes", "no", "other"]:
        """The user's message read as an answer to the pending action's question."""
        plain = " ".join("".join(ch for ch in turn.text.lower() if ch.isalnum() or ch in " '").split())
        if plain in _OBVIOUS["yes"]:
            return "yes"
        if plain in _OBVIOUS["no"]:
            return "no"
        offered = chat_tools.offer(state, all_listed=True)
        messages: list[Message] = [
            self._system(state),
            *history,
            {"role": "user", "content": turn.text},
            {"role": "system", "content": CLASSIFY.format(question=pending.action.question)},
        ]
        try:
            completion = await self.client.chat.completions.parse(
                model=self.settings.openai_model,
                messages=cast(list[ChatCompletionMessageParam], messages),
                response_format=ApprovalAnswer,
                tools=offered.definitions if self.settings.model_allowed_tools else omit,
                tool_choice="none" if self.settings.model_allowed_tools else omit,
                temperature=self._temperature,
                max_tokens=80,
            )
        except (openai.APIError, ValidationError, openai.LengthFinishReasonError) as exc:
            log.warning("could not read the answer to a pending action: %s", exc)
            return "other"
        self._count(completion)
        parsed = completion.choices[0].message.parsed if completion.choices else None
        if parsed is None:
            return "other"
        decision = parsed.decision(pending.action, turn.text)
        log.info("answer to the pending action read as %s (%s)", decision, parsed.model_dump_json())
        return decision

    async def _approve(self, turn: Turn, progress: _Progress, pending: StoredAction) -> str:
        moved = await self.approvals.transition(
            turn.tenant_id, turn.user_id, turn.conversation_id, pending.action.action_id, "executing"
        )
        if moved != "ok":
            return facts.not_pending(moved)
        return await self._execute(turn, progress, pending)

    async def _decline(self, turn: Turn, pending: StoredAction) -> str:
        moved = await self.approvals.transition(
            turn.tenant_id, turn.user_id, turn.conversation_id, pending.action.action_id, "declined"
        )
        return facts.declined(pending.action) if moved == "ok" else facts.not_pending(moved)

    async def _execute(self, turn: Turn, progress: _Progress, stored: StoredAction) -> str:
        """Run the stored command as it is; the action's id is its idempotency key."""
        action, command = stored.action, stored.command
        await progress.activity({"book": "booking", "cancel": "cancelling", "reschedule": "rescheduling"}[action.kind])
        reply = await self._request(
            turn, command.tool, command.payload, f"act-{action.action_id}", key=f"action:{action.action_id}"
        )
        metrics.TOOL_CALLS.labels(command.tool, "ok" if reply.error is None else reply.error.code.value).inc()
        if reply.error is not None or reply.result is None:
            await self.approvals.finish(turn.tenant_id, action.action_id, "failed")
            return await self._failed_write(turn, progress, action, command, reply.error)
        await self.approvals.finish(turn.tenant_id, action.action_id, "done")
        outcome = BookingOutcome.model_validate(reply.result)
        progress.outcomes.append(outcome)
        return facts.outcome(outcome, progress.state)

    async def _failed_write(
        self, turn: Turn, progress: _Progress, action: PendingAction, command: Command, error: ToolError | None
    ) -> str:
        what = {"book": "book it", "cancel": "cancel it", "reschedule": "move it"}[action.kind]
        if error is not None and error.code in (ErrorCode.slot_taken, ErrorCode.offer_expired, ErrorCode.daily_limit):
            day = (action.new_start or action.start).date()
            calendar = progress.state.calendar(command.calendar_id)
            lead = f"Sorry, {when(action.new_start or action.start)} is no longer free."
            if calendar is None:
                return lead
            fetch = FetchFreeSlotsCall(
                calendar_ids=[calendar.calendar_id],
                date_from=day,
                date_to=day,
                duration_minutes=None,
                timezone=None,
                preferred_time=None,
                move_booking=None,
            )
            listing = await self._fetch_reply(turn, progress, fetch, f"alt-{uuid.uuid4().hex[:12]}")
            return f"{lead} {listing[1] or ''}".strip()
        if error is not None and error.code in (ErrorCode.timeout, ErrorCode.expired):
            # final: the command carries its deadline, and a worker that gets it later changes
            # nothing (checked in the write script by the Redis server's clock)
            late = "Sorry, the booking system did not answer in time, so nothing was changed."
            return f"{late} Shall I try to {what} again?"
        return f"Sorry, I couldn't {what}: {_plain(error)}"

    async def _propose(
        self, turn: Turn, progress: _Progress, action: PendingAction, command: Command, calendar: CalendarSummary
    ) -> None:
        if command.hold is not None and calendar.hold_seconds:
            await self.holds.hold(turn.tenant_id, turn.conversation_id, [calendar], *command.hold)
        await self.approvals.propose(turn.tenant_id, turn.user_id, turn.conversation_id, action, command)
        progress.pending = action

    # ------------------------------------------------------------------ model rounds

    def _system(self, state: ConversationState) -> Message:
        return {"role": "system", "content": system_prompt(state.directory, datetime.now(UTC))}

    @property
    def _temperature(self) -> float | Any:
        return omit if self.settings.openai_temperature is None else self.settings.openai_temperature

    def _count(self, completion: ChatCompletion) -> None:
        if completion.usage is not None:
            metrics.MODEL_TOKENS.labels("prompt").inc(completion.usage.prompt_tokens)
            metrics.MODEL_TOKENS.labels("completion").inc(completion.usage.completion_tokens)

    async def _complete(
        self, messages: list[Message], offered: chat_tools.Offer, forced: str | None
    ) -> ChatCompletion | None:
        names = list(offered.allowed)
        choice: Any
        if forced is not None or len(names) == 1:
            choice = {"type": "function", "function": {"name": forced or names[0]}}
        elif self.settings.model_allowed_tools:
            listed = [{"type": "function", "function": {"name": n}} for n in names]
            choice = {"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": listed}}
        else:
            choice = "required"
        started = time.perf_counter()
        try:
            completion = await self.client.chat.completions.create(
                model=self.settings.openai_model,
                messages=cast(list[ChatCompletionMessageParam], messages),
                tools=offered.definitions,
                tool_choice=choice,
                parallel_tool_calls=False,
                temperature=self._temperature,
                max_tokens=self.settings.reply_max_tokens,
            )
        except openai.APIError as exc:
            log.error("model call failed: %s", exc)
            return None
        finally:
            metrics.MODEL_LATENCY.observe(time.perf_counter() - started)
        self._count(completion)
        if not completion.choices:
            log.error("model returned no choices")
            return None
        return completion

    async def _rounds(self, turn: Turn, progress: _Progress, history: list[Message], new: list[Message]) -> str:
        state = progress.state
        context = [self._system(state), *history]
        for _ in range(self.settings.max_model_rounds):
            offered = chat_tools.offer(
                state, all_listed=self.settings.model_allowed_tools, only=progress.force or progress.within
            )
            if not offered.allowed:
                return GAVE_UP
            note: Message = {"role": "system", "content": state_note(state, turn.user_name)}
            # the note goes before the user's message: read last, it drew a small model to it
            completion = await self._complete([*context, note, *new], offered, progress.force)
            progress.force = None
            if completion is None:
                return UNAVAILABLE
            message = completion.choices[0].message
            calls = [c for c in (message.tool_calls or []) if isinstance(c, ChatCompletionMessageToolCall)]
            if not calls:
                # a server that ignored tool_choice: its text says nothing of its topic, so it
                # is asked once for the answer call; text again gets a plain offer of help
                if progress.asked_for_answer or "answer" not in offered.allowed:
                    return HOW_I_HELP
                progress.asked_for_answer = True
                progress.force = "answer"
                continue
            call = calls[0]
            said = (call.function.name, call.function.arguments or "")
            if said in progress.failed:  # a small model repeats a refused call word for word
                return GAVE_UP
            parsed = chat_tools.parse(offered, call.function.name, call.function.arguments)
            if isinstance(parsed, Answer):
                final = await self._answer(progress, parsed)
                metrics.TOOL_CALLS.labels("answer", "ok" if final is not None else "unchecked").inc()
                if final is not None:
                    return final
            new.append(_assistant_calls(calls))
            with log_context(correlation_id=_short_id(call.id)):
                result, final = await self._call(turn, progress, call, parsed)
            new.append({"role": "tool", "tool_call_id": call.id, "content": result})
            if result.startswith(ERROR_VIEW_PREFIX):
                progress.failed.add(said)
            for extra in calls[1:]:
                new.append({"role": "tool", "tool_call_id": extra.id, "content": error_view(_ONE_AT_A_TIME)})
            if final is not None:
                return final
        if progress.outcomes:
            return " ".join(facts.outcome(o, state) for o in progress.outcomes)
        return GAVE_UP

    async def _answer(self, progress: _Progress, answer: Answer) -> str | None:
        """The model's words, checked: off-topic gets the policy answer, a claim of an effect
        the reply from facts, and a time no tool offered sends the model to fetch_free_slots
        once (None), then a plain question."""
        if answer.topic == "other":
            return OFF_TOPIC
        text = guards.strip_leaks(answer.message)
        if not text or guards.find_false_claim(text, [o.status for o in progress.outcomes]):
            return GAVE_UP
        offered = {s.start.hour * 60 + s.start.minute for s in progress.state.slots}
        if guards.times_named(text) - offered:
            if progress.forced_fetch or not progress.state.calendar_ids:
                return ASK_DAY
            progress.forced_fetch = True
            progress.force = "fetch_free_slots"
            return None
        return text

    async def _call(
        self, turn: Turn, progress: _Progress, call: ChatCompletionMessageToolCall, parsed: object
    ) -> tuple[str, str | None]:
        """Run one validated call: the tool result for the model, and the reply if it ends the turn."""
        name = call.function.name
        if isinstance(parsed, ToolError):
            metrics.TOOL_CALLS.labels(name if name in chat_tools.BY_NAME else "unknown", parsed.code.value).inc()
            return error_view(parsed), None
        if isinstance(parsed, Answer):  # its text named a time nobody offered
            return error_view(ToolError(code=ErrorCode.invalid_arguments, message=_UNCHECKED)), None
        tool = chat_tools.BY_NAME[name]
        await progress.activity(tool.activity)
        match parsed:
            case FetchFreeSlotsCall():
                parsed = _grounded(parsed, progress.words, progress.state)
                if _already_offered(progress.state, parsed) and not progress.forced_book:
                    # the user answers a list of free times ("the earliest"): the state leaves one call
                    progress.forced_book = True
                    progress.force = "book_meeting"
                    return error_view(_LISTED), None
                return await self._fetch_reply(turn, progress, parsed, call.id)
            case ListMyBookings():
                reply = await self._request(turn, "list_my_bookings", parsed.model_dump(), call.id)
                metrics.TOOL_CALLS.labels(name, _outcome(reply)).inc()
                if reply.error is not None or reply.result is None:
                    return model_view(reply, progress.state.zones), _timed_out(reply, "your bookings")
                listing = BookingList.model_validate(reply.result)
                choices = progress.state.booking_choices(listing.bookings)
                return model_view(reply, progress.state.zones), facts.bookings(choices)
            case BookMeetingCall() | CancelBookingCall() | RescheduleBookingCall():
                return await self._write(turn, progress, tool, parsed, call.id)
        return error_view(ToolError(code=ErrorCode.unknown_tool, message=f"{name} is not available.")), None

    async def _fetch_reply(
        self, turn: Turn, progress: _Progress, call: FetchFreeSlotsCall, call_id: str
    ) -> tuple[str, str | None]:
        state = progress.state
        reply = await self._request(turn, "fetch_free_slots", call.command().model_dump(mode="json"), call_id)
        metrics.TOOL_CALLS.labels("fetch_free_slots", _outcome(reply)).inc()
        if reply.error is not None or reply.result is None:
            return model_view(reply, state.zones), _timed_out(reply, "the calendar")
        result = FreeSlots.model_validate(reply.result)
        state.moving = state.booking(call.move_booking) if call.move_booking else None
        calendars = tuple(c for c in (state.calendar(i) for i in call.calendar_ids) if c is not None)
        await self._refresh_offers(turn, state)
        progress.slots.extend(s.start for s in result.slots)
        view = _free_view(result, calendars)
        names = " and ".join(c.name for c in calendars) or "The calendar"
        zone = ZoneInfo(calendars[0].timezone) if calendars else ZoneInfo("UTC")
        listing = facts.free_times(names, result, zone)
        if call.preferred_time is None or not calendars or not _hour_written(turn.text, call.preferred_time):
            return view, listing  # a time the user did not write (the model made "afternoon" 14:00) is no wish
        wanted = next((s for s in result.slots if f"{s.start:%H:%M}" == call.preferred_time), None)
        if wanted is None:
            return view, facts.preferred_taken(names, call.preferred_time, listing)
        choice = state.slot(slot_label(calendars, wanted.start))
        moving = state.booking(call.move_booking) if call.move_booking else None
        same_calendar = (
            moving is not None and choice is not None and choice.offer.calendar_ids[0] == moving.booking.calendar_id
        )
        if moving is not None and moving.calendar is not None and choice is not None and same_calendar:
            action, command = self._move_action(moving, choice)
            await self._propose(turn, progress, action, command, moving.calendar)
            return view, facts.preferred_free(names, wanted.start, zone, action.question)
        name = turn.user_name
        if choice is None or not calendars[0].require_confirmation or not name:
            ask = "Shall I book it for you?" if name else "Shall I book it? Please tell me the name for the booking."
            return view, facts.preferred_free(names, wanted.start, zone, ask)
        action, command = self._book_action(choice, name, [])
        await self._propose(turn, progress, action, command, calendars[0])
        return view, facts.preferred_free(names, wanted.start, zone, action.question)

    def _book_action(self, choice: SlotChoice, name: str, participants: list[str]) -> tuple[PendingAction, Command]:
        calendar = choice.calendars[0]
        payload = BookMeeting(
            calendar_id=calendar.calendar_id,
            slot_ref=choice.offer.ref,
            start=None,
            duration_minutes=choice.offer.duration_s // 60,
            attendee_name=name,
            participants=participants,
        )
        action = PendingAction(
            action_id=new_action_id(),
            kind="book",
            calendar_name=choice.calendar_names,
            start=choice.start,
            attendee_name=name,
            participants=participants,
            question=facts.question(
                "book", choice.calendar_names, choice.start, attendee=name, participants=participants
            ),
            expires_at=expires_at(datetime.now(UTC), self.settings.pending_action_ttl_s),
        )
        command = Command(
            tool="book_meeting",
            payload=json.loads(payload.model_dump_json()),
            calendar_id=calendar.calendar_id,
            hold=(choice.offer.start, choice.offer.duration_s),
        )
        return action, command

    def _move_action(self, booking: BookingChoice, choice: SlotChoice) -> tuple[PendingAction, Command]:
        calendar_name = booking.calendar_name
        action = PendingAction(
            action_id=new_action_id(),
            kind="reschedule",
            calendar_name=calendar_name,
            start=booking.start,
            new_start=choice.start,
            attendee_name=booking.booking.attendee_name,
            question=facts.question("reschedule", calendar_name, booking.start, new_start=choice.start),
            expires_at=expires_at(datetime.now(UTC), self.settings.pending_action_ttl_s),
        )
        payload = RescheduleBooking(
            calendar_id=booking.booking.calendar_id,
            start=booking.booking.start,
            new_slot_ref=choice.offer.ref,
            new_start=None,
        )
        command = Command(
            tool="reschedule_booking",
            payload=json.loads(payload.model_dump_json()),
            calendar_id=booking.booking.calendar_id,
            hold=(choice.offer.start, choice.offer.duration_s),
        )
        return action, command

    async def _write(
        self, turn: Turn, progress: _Progress, tool: ChatTool, call: object, call_id: str
    ) -> tuple[str, str | None]:
        """A write the model asked for: stored as a pending action when it needs the user's
        approval (the reply is the question), else run now (the reply is the outcome)."""
        state = progress.state
        match call:
            case BookMeetingCall():
                choice = state.slot(call.slot)
                name = call.attendee_name or turn.user_name
                if choice is None:
                    return error_view(_NOT_OFFERED), None
                if (mine := state.own_booking_at(choice)) is not None:
                    return json.dumps({"status": "already booked"}), facts.already_booked(mine)
                if (moving := state.moving_to(choice)) is not None and moving.calendar is not None:
                    # the times were checked to move this booking: the pick moves it, no second booking
                    tool = chat_tools.BY_NAME["reschedule_booking"]
                    action, command = self._move_action(moving, choice)
                    calendar = moving.calendar
                elif not name:
                    return error_view(_NO_NAME), None
                else:
                    action, command = self._book_action(choice, name, [str(p) for p in call.participants])
                    calendar = choice.calendars[0]
            case CancelBookingCall():
                booking = state.booking(call.booking)
                if booking is None or booking.calendar is None:
                    return error_view(_NOT_YOURS), None
                calendar = booking.calendar
                action = PendingAction(
                    action_id=new_action_id(),
                    kind="cancel",
                    calendar_name=calendar.name,
                    start=booking.start,
                    attendee_name=booking.booking.attendee_name,
                    question=facts.question("cancel", calendar.name, booking.start),
                    expires_at=expires_at(datetime.now(UTC), self.settings.pending_action_ttl_s),
                )
                payload: BaseModel = CancelBooking(calendar_id=calendar.calendar_id, start=booking.booking.start)
                command = Command(
                    tool="cancel_booking",
                    payload=json.loads(payload.model_dump_json()),
                    calendar_id=calendar.calendar_id,
                )
            case RescheduleBookingCall():
                booking, choice = state.booking(call.booking), state.slot(call.new_slot)
                if booking is None or booking.calendar is None:
                    return error_view(_NOT_YOURS), None
                if choice is None or choice.calendars[0].calendar_id != booking.booking.calendar_id:
                    return error_view(_OTHER_CALENDAR), None
                calendar = booking.calendar
                action, command = self._move_action(booking, choice)
            case _:
                return error_view(ToolError(code=ErrorCode.unknown_tool, message="Not a write.")), None
        if tool.approval == "always" or (tool.approval == "calendar" and calendar.require_confirmation):
            await self._propose(turn, progress, action, command, calendar)
            metrics.TOOL_CALLS.labels(tool.name, "awaiting_approval").inc()
            return json.dumps({"status": "waiting for the user's confirmation"}), action.question
        reply = await self._request(turn, command.tool, command.payload, call_id)
        metrics.TOOL_CALLS.labels(tool.name, _outcome(reply)).inc()
        if reply.error is not None or reply.result is None:
            return model_view(reply, state.zones), None
        outcome = BookingOutcome.model_validate(reply.result)
        progress.outcomes.append(outcome)
        return model_view(reply, state.zones), facts.outcome(outcome, state)


_CHANGES: dict[str, frozenset[str]] = {
    "book": frozenset({"book_meeting", "fetch_free_slots", "answer"}),
    "reschedule": frozenset({"reschedule_booking", "fetch_free_slots", "answer"}),
    # a cancellation the user corrects may be a move: anything but a new booking
    "cancel": frozenset({"cancel_booking", "reschedule_booking", "fetch_free_slots", "list_my_bookings", "answer"}),
}
_LISTED = ToolError(
    code=ErrorCode.invalid_arguments,
    message="Those free times are listed above already: book the one the user chose with book_meeting.",
)
_ONE_AT_A_TIME = ToolError(
    code=ErrorCode.invalid_arguments, message="Only one tool call at a time; this one was not run."
)
_NOT_OFFERED = ToolError(code=ErrorCode.slot_not_offered, message="That slot was not offered; call fetch_free_slots.")
_NO_NAME = ToolError(
    code=ErrorCode.invalid_arguments,
    message="attendee_name is missing: ask the user for the name the booking should be under (answer).",
)
_NOT_YOURS = ToolError(code=ErrorCode.not_found, message="That is not one of the user's bookings.")
_OTHER_CALENDAR = ToolError(
    code=ErrorCode.slot_not_offered, message="Move a booking only to a slot offered for its own calendar."
)


def _assistant_calls(calls: list[ChatCompletionMessageToolCall]) -> Message:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.function.name, "arguments": c.function.arguments}}
            for c in calls
        ],
    }


def _free_view(result: FreeSlots, calendars: tuple[CalendarSummary, ...]) -> str:
    """The fetch result as the model sees it, compact: per day the free times; book_meeting
    takes "<day label> <time>", e.g. "Dr. Lee, Tue 01 Dec 10:00"."""
    if not calendars:
        return json.dumps({"free": {}})
    days: dict[str, list[str]] = {}
    for slot in result.slots:
        day, _, clock = slot_label(calendars, slot.start).rpartition(" ")
        days.setdefault(day, []).append(clock)
    view: dict[str, Any] = {"free": {day: " ".join(times) for day, times in days.items()}}
    if result.more_available:
        view["more_available"] = True
    if result.reason is not None:
        view["reason"] = result.reason.value
    if result.next_available is not None:
        view["next_available"] = slot_label(calendars, result.next_available.start)
    return json.dumps(view)


def _hour_written(text: str, hhmm: str) -> bool:
    """Whether the user's message holds the hour of the time the model read from it (as 10, 10:30,
    3 pm for 15:00, "10h", "10 Uhr"): the model's reading is checked against the words, it is not
    taken on trust."""
    hour = int(hhmm[:2])
    numbers = {int(n) for n in re.findall(r"(?<!\d)(\d{1,2})(?!\d)", text)}
    return hour in numbers or (hour % 12 or 12) in numbers


def _written_number(text: str, number: int) -> bool:
    return number in {int(n) for n in re.findall(r"(?<!\d)(\d{1,3})(?!\d)", text)}


def _grounded(call: FetchFreeSlotsCall, said: str, state: ConversationState) -> FetchFreeSlotsCall:
    """The model's fetch, held to what the state and the user's words support: a move searches
    the booking's own calendar for its own length; a length counts only if the user wrote it (in
    minutes, or hours for whole hours), else the calendar's default (a small model fills in 45 or
    60 unasked, and the calendar then refuses or offers the wrong length)."""
    moving = state.booking(call.move_booking) if call.move_booking else None
    if moving is not None:
        length = int((moving.booking.end - moving.booking.start).total_seconds() // 60)
        return call.model_copy(update={"calendar_ids": [moving.booking.calendar_id], "duration_minutes": length})
    minutes = call.duration_minutes
    if minutes is not None and not (
        _written_number(said, minutes) or (minutes % 60 == 0 and _written_number(said, minutes // 60))
    ):
        minutes = None
    return call.model_copy(update={"move_booking": None, "duration_minutes": minutes})


def _moving(history: list[Message], state: ConversationState) -> BookingChoice | None:
    """The booking the latest free-times check of this conversation was made to move, while it
    stands as it was then and those offers live (the call's own arguments, read back from the
    stored conversation; a later check without a move ends it)."""
    if not state.slots:
        return None
    for message in reversed(history):
        for call in reversed(message.get("tool_calls") or []):
            function = call.get("function") or {}
            if function.get("name") != "fetch_free_slots":
                continue
            try:
                label = json.loads(function.get("arguments") or "{}").get("move_booking")
            except (json.JSONDecodeError, AttributeError):
                return None
            return state.booking(label) if isinstance(label, str) else None
    return None


def _already_offered(state: ConversationState, call: FetchFreeSlotsCall) -> bool:
    """A fetch without a wanted time or a booking to move, whose every day already holds live
    offers of exactly these calendars in this conversation (asking again lists the same)."""
    if call.preferred_time is not None or call.move_booking is not None or not state.slots:
        return False  # without live offers book_meeting is not offered: nothing to send the model to
    wanted = tuple(call.calendar_ids)
    days = {s.start.date() for s in state.slots if s.offer.calendar_ids == wanted}
    span = (call.date_to - call.date_from).days + 1
    return 0 < span <= 7 and all(call.date_from + timedelta(days=i) in days for i in range(span))


def _timed_out(reply: Reply, what: str) -> str | None:
    """A read that timed out ends the turn with a plain sentence (the model cannot fix a slow
    service); other errors go back to the model, which may correct its call."""
    if reply.error is not None and reply.error.code is ErrorCode.timeout:
        return f"Sorry, I couldn't check {what} just now. Please try again in a moment."
    return None


def _outcome(reply: Reply) -> str:
    return "ok" if reply.error is None else reply.error.code.value


def _plain(error: ToolError | None) -> str:
    """A worker's error as a sentence for the user (its message is written for the model)."""
    if error is None:
        return "the booking system gave no answer; nothing was changed."
    return {
        ErrorCode.not_found: "I could not find that booking.",
        ErrorCode.invalid_time: "that time can no longer be changed.",
        ErrorCode.outside_hours: "that time is not bookable.",
    }.get(error.code, "nothing was changed. Please try again.")


def _short_id(call_id: str) -> str:
    """A tool-call id as it may travel in an envelope: long ones are replaced by a digest."""
    if len(call_id) <= MAX_ID_CHARS:
        return call_id
    return "h-" + hashlib.sha256(call_id.encode()).hexdigest()[:40]


def _in_calendar_zone(booking: Booking, state: ConversationState) -> Booking:
    """The same instants, written with the calendar's UTC offset (stored in UTC, spoken locally)."""
    zone = ZoneInfo(state.zones.get(booking.calendar_id, "UTC"))
    return booking.model_copy(update={"start": booking.start.astimezone(zone), "end": booking.end.astimezone(zone)})
