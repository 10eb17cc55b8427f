"""The model loop: one turn of a conversation as a bounded state machine.

Every model answer leads to exactly one next step: run its tool calls and ask again, or check
its text (leaks, false claims) and finish. Tool errors become tool results the model sees.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast
from zoneinfo import ZoneInfo

import openai
from openai import AsyncOpenAI, omit
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionMessageToolCall

from services.chat import guards
from services.chat.calls import parse_call
from services.chat.conversations import ConversationStore, Message
from services.chat.holds import SlotHolds
from services.chat.prompt import system_prompt
from services.chat.toolbus import ToolBus
from services.chat.views import error_view, model_view
from shared import metrics
from shared.domain import Booking, BookingOutcome, CalendarDirectory, CalendarSummary, FreeSlots
from shared.logs import log_context
from shared.messages import DomainError, Envelope, ErrorCode, MessageType, ToolError
from shared.offers import resolve_ref
from shared.settings import Settings
from shared.tools import TOOLS, BookMeeting, RescheduleBooking, ToolArgs, openai_tools

log = logging.getLogger(__name__)

ActivityCallback = Callable[[str], Awaitable[None]]
ACTIVITIES = {
    "fetch_free_slots": "checking_availability",
    "book_meeting": "booking",
    "cancel_booking": "cancelling",
    "reschedule_booking": "rescheduling",
    "list_my_bookings": "listing_bookings",
}

REWRITE_REQUEST = (
    "Rewrite your last reply for the user in plain sentences: no JSON, ids, codes or tool names, "
    "and do not say anything was booked, cancelled or moved unless a tool result in this conversation said so."
)
UNAVAILABLE = "Sorry, I can't reach the booking assistant right now. Please try again in a minute."
OFF_TOPIC = (
    "I can only help with appointments here: finding a free time, booking, moving or cancelling one. "
    "What would you like to do?"
)
GAVE_UP = "Sorry, I couldn't finish that just now. Could you say again what you'd like to book?"
DIRECTORY_TTL_S = 30.0


@dataclass
class Turn:
    """Who is speaking, in which conversation, and what they said."""

    tenant_id: str
    user_id: str
    conversation_id: str
    text: str
    turn_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    request_id: str | None = None


@dataclass
class TurnResult:
    reply: str
    bookings: list[Booking] = field(default_factory=list)
    suggested_slots: list[datetime] = field(default_factory=list)
    effects: list[str] = field(default_factory=list)


@dataclass
class _State:
    """What happened in this turn so far."""

    directory: CalendarDirectory
    proposal: str
    outcomes: list[BookingOutcome] = field(default_factory=list)
    slots: list[datetime] = field(default_factory=list)
    on_activity: ActivityCallback | None = None
    called: bool = False
    """Whether the model called any tool in this turn."""

    @property
    def names(self) -> list[str]:
        """The calendars' names and ids, as the user may write them."""
        return [n for c in self.directory.calendars for n in (c.name, c.calendar_id)]

    def calendar(self, calendar_id: str) -> CalendarSummary | None:
        return next((c for c in self.directory.calendars if c.calendar_id == calendar_id), None)

    @property
    def zones(self) -> dict[str, str]:
        return {c.calendar_id: c.timezone for c in self.directory.calendars}


class Assistant:
    def __init__(self, settings: Settings, client: AsyncOpenAI, bus: ToolBus, conversations: ConversationStore) -> None:
        self.settings = settings
        self.client = client
        self.bus = bus
        self.conversations = conversations
        self.tools = openai_tools()
        self.holds = SlotHolds(bus.redis)
        self._directories: dict[str, tuple[float, CalendarDirectory]] = {}

    async def directory(self, turn: Turn) -> CalendarDirectory:
        cached = self._directories.get(turn.tenant_id)
        if cached and time.monotonic() - cached[0] < DIRECTORY_TTL_S:
            return cached[1]
        reply = await self.bus.request(
            self._envelope(turn, "describe_calendars", {}, f"dir-{uuid.uuid4().hex}"), self.settings.tool_timeout_s
        )
        directory = CalendarDirectory.model_validate(reply.result or {"calendars": []})
        if reply.error is None:
            self._directories[turn.tenant_id] = (time.monotonic(), directory)
        return directory

    def _envelope(self, turn: Turn, kind: MessageType, payload: dict[str, Any], call_id: str) -> Envelope:
        return Envelope(
            idempotency_key=f"{turn.conversation_id}:{turn.turn_id}:{call_id}",
            correlation_id=call_id,
            tenant_id=turn.tenant_id,
            conversation_id=turn.conversation_id,
            user_id=turn.user_id,
            request_id=turn.request_id,
            type=kind,
            payload=payload,
            reply_to=self.bus.reply_to,
        )

    async def run(self, turn: Turn, on_activity: ActivityCallback | None = None) -> TurnResult:
        """Run one turn; `on_activity` hears which kind of tool work is under way (no data)."""
        history = await self.conversations.history(turn.tenant_id, turn.conversation_id)
        state = _State(
            directory=await self.directory(turn), proposal=_last_assistant_text(history), on_activity=on_activity
        )
        new: list[Message] = [{"role": "user", "content": turn.text}]
        system: Message = {"role": "system", "content": system_prompt(state.directory, datetime.now(UTC))}
        reply = await self._rounds(turn, state, [system, *history], new)
        new.append({"role": "assistant", "content": reply})
        await self.conversations.append_turn(turn.tenant_id, turn.conversation_id, new)
        return TurnResult(
            reply=reply,
            bookings=[_in_calendar_zone(o.booking, state) for o in state.outcomes],
            suggested_slots=state.slots,
            effects=[o.status for o in state.outcomes],
        )

    async def _rounds(self, turn: Turn, state: _State, context: list[Message], new: list[Message]) -> str:
        asked_to_rewrite = False
        extra: list[Message] = []
        for _ in range(self.settings.max_model_rounds):
            try:
                started = time.perf_counter()
                completion = await self.client.chat.completions.create(
                    model=self.settings.openai_model,
                    messages=cast(list[ChatCompletionMessageParam], [*context, *new, *extra]),
                    tools=self.tools,
                    tool_choice="auto",
                    temperature=omit if self.settings.openai_temperature is None else self.settings.openai_temperature,
                )
            except openai.APIError as exc:
                log.error("model call failed: %s", exc)
                return UNAVAILABLE
            finally:
                metrics.MODEL_LATENCY.observe(time.perf_counter() - started)
            if completion.usage is not None:
                metrics.MODEL_TOKENS.labels("prompt").inc(completion.usage.prompt_tokens)
                metrics.MODEL_TOKENS.labels("completion").inc(completion.usage.completion_tokens)
            if not completion.choices:
                log.error("model returned no choices")
                return UNAVAILABLE
            message = completion.choices[0].message
            calls = [c for c in (message.tool_calls or []) if isinstance(c, ChatCompletionMessageToolCall)]
            if calls:
                new.append(
                    {
                        "role": "assistant",
                        "content": message.content or None,
                        "tool_calls": [
                            {
                                "id": c.id,
                                "type": "function",
                                "function": {"name": c.function.name, "arguments": c.function.arguments},
                            }
                            for c in calls
                        ],
                    }
                )
                done_before = len(state.outcomes)
                results = await asyncio.gather(*(self._call_tool(turn, state, c) for c in calls))
                new.extend(
                    {"role": "tool", "tool_call_id": c.id, "content": r} for c, r in zip(calls, results, strict=True)
                )
                if not self.settings.write_reply_from_model and len(state.outcomes) - done_before == len(calls):
                    # every call was a write and each committed: say so from the facts, no model round trip
                    return " ".join(_describe(o, state) for o in state.outcomes[done_before:])
                continue
            text = (message.content or "").strip()
            committed = [o.status for o in state.outcomes]
            problem = guards.find_leaks(text) or guards.find_false_claim(text, committed) or not text
            if not problem:
                if not state.called and guards.off_topic(turn.text, text, state.names):
                    log.warning("off-topic reply replaced by the policy answer")
                    return OFF_TOPIC
                if not state.outcomes:
                    await self._hold_proposal(turn, state, text)
                return text
            if not asked_to_rewrite:
                asked_to_rewrite = True
                log.warning("reply failed the guards (%s); asking the model to rewrite", problem)
                extra = [{"role": "assistant", "content": text}, {"role": "user", "content": REWRITE_REQUEST}]
                continue
            return self._safe_reply(text, state)
        return self._safe_reply("", state)

    def _safe_reply(self, text: str, state: _State) -> str:
        """Last resort: the text without leaks, or a plain statement built from what happened."""
        cleaned = guards.strip_leaks(text)
        committed = [o.status for o in state.outcomes]
        if cleaned and not guards.find_false_claim(cleaned, committed) and len(cleaned) >= 12:
            return cleaned
        if state.outcomes:
            return " ".join(_describe(o, state) for o in state.outcomes)
        return GAVE_UP

    async def _call_tool(self, turn: Turn, state: _State, call: ChatCompletionMessageToolCall) -> str:
        state.called = True
        with log_context(correlation_id=call.id):
            result, outcome = await self._run_tool(turn, state, call)
        metrics.TOOL_CALLS.labels(call.function.name if call.function.name in TOOLS else "unknown", outcome).inc()
        return result

    async def _run_tool(self, turn: Turn, state: _State, call: ChatCompletionMessageToolCall) -> tuple[str, str]:
        """The tool result for the model, and the outcome for metrics ("ok" or an error code)."""
        parsed = parse_call(call.function.name, call.function.arguments)
        if isinstance(parsed, ToolError):
            return _error(parsed)
        spec, args = parsed.spec, parsed.args
        try:
            args = await self._resolve_slot_ref(turn, args)
        except DomainError as exc:
            return _error(exc.error)
        refusal = await self._confirmation_gate(turn, state, call.function.name, args.model_dump())
        if refusal is not None:
            return _error(refusal)
        if state.on_activity is not None:
            await state.on_activity(ACTIVITIES.get(spec.name, "working"))
        envelope = self._envelope(turn, spec.name, args.model_dump(mode="json"), call.id)
        reply = await self.bus.request(envelope, self.settings.tool_timeout_s)
        if reply.error is None and reply.result is not None:
            if spec.name == "fetch_free_slots":
                state.slots.extend(s.start for s in FreeSlots.model_validate(reply.result).slots)
            elif spec.writes:
                outcome = BookingOutcome.model_validate(reply.result)
                state.outcomes.append(outcome)
        return model_view(reply, state.zones), "ok" if reply.error is None else reply.error.code.value

    async def _resolve_slot_ref(self, turn: Turn, args: ToolArgs) -> ToolArgs:
        """A write naming its slot by reference, with the reference's start filled in, so the
        confirmation gate checks the very slot (the worker checks the pair again)."""
        match args:
            case BookMeeting(slot_ref=str(ref)):
                start = await resolve_ref(
                    self.bus.redis, turn.tenant_id, turn.conversation_id, args.calendar_id, ref, args.start
                )
                return args.model_copy(update={"start": start})
            case RescheduleBooking(new_slot_ref=str(ref)):
                start = await resolve_ref(
                    self.bus.redis, turn.tenant_id, turn.conversation_id, args.calendar_id, ref, args.new_start
                )
                return args.model_copy(update={"new_start": start})
        return args

    async def _hold_proposal(self, turn: Turn, state: _State, text: str) -> None:
        """When the reply proposes exactly one slot offered in this conversation, hold it for
        this conversation while the user decides (only on calendars that hold slots)."""
        holding = {c.calendar_id: c for c in state.directory.calendars if c.hold_seconds}
        if not holding or len(guards.times_named(text)) != 1:
            return
        now = datetime.now(UTC)
        proposed = []
        for offer in await self.holds.offers(turn.tenant_id, turn.conversation_id):
            calendars = [holding[c] for c in offer.calendar_ids if c in holding]
            if calendars:
                zone = ZoneInfo(calendars[0].timezone)
                if guards.proposes(text, datetime.fromtimestamp(offer.start, zone), now.astimezone(zone).date()):
                    proposed.append((offer, calendars))
        if len(proposed) == 1:
            offer, calendars = proposed[0]
            await self.holds.hold(turn.tenant_id, turn.conversation_id, calendars, offer.start, offer.duration_s)

    async def _confirmation_gate(self, turn: Turn, state: _State, name: str, args: dict[str, Any]) -> ToolError | None:
        """Server-side rule: with require_confirmation, a write runs only when the user's latest
        message confirms this very slot and these invitees. The slot it waits for is held (if the
        calendar holds slots)."""
        if name not in ("book_meeting", "reschedule_booking"):
            return None
        calendar = state.calendar(str(args["calendar_id"]))
        if calendar is None or not calendar.require_confirmation:
            return None  # unknown calendars are refused by the worker with a typed error
        start: datetime = args["new_start"] if name == "reschedule_booking" else args["start"]
        local = start.astimezone(ZoneInfo(calendar.timezone))
        invitees = [str(p) for p in args.get("participants", ())]
        if guards.confirms(
            turn.text, state.proposal, local, today=datetime.now(local.tzinfo).date()
        ) and guards.invitees_confirmed(turn.text, state.proposal, invitees):
            return None
        minutes = args.get("duration_minutes") or calendar.slot_minutes
        await self.holds.hold(turn.tenant_id, turn.conversation_id, [calendar], int(start.timestamp()), minutes * 60)
        what, inviting = (" and these invitees", f" and invite {', '.join(invitees)}") if invitees else ("", "")
        return ToolError(
            code=ErrorCode.needs_confirmation,
            message=f"Nothing was booked: the user has not confirmed this slot{what} yet. Ask them: "
            f'"Shall I book {calendar.name} on {local:%a %d %b at %H:%M}{inviting}?"',
        )


def _describe(outcome: BookingOutcome, state: _State) -> str:
    b = outcome.booking
    calendar = state.calendar(b.calendar_id)
    name = calendar.name if calendar else "your calendar"
    local = b.start.astimezone(ZoneInfo(calendar.timezone)) if calendar else b.start
    when = f"{local:%a %d %b at %H:%M}"
    return {
        "confirmed": f"Your appointment with {name} on {when} is booked.",
        "cancelled": f"Your appointment with {name} on {when} is cancelled.",
        "rescheduled": f"Your appointment with {name} is moved to {when}.",
    }[outcome.status]


def _error(error: ToolError) -> tuple[str, str]:
    return error_view(error), error.code.value


def _in_calendar_zone(booking: Booking, state: _State) -> Booking:
    """The same instants, written with the calendar's UTC offset (stored in UTC, spoken locally)."""
    zone = ZoneInfo(state.zones.get(booking.calendar_id, "UTC"))
    return booking.model_copy(update={"start": booking.start.astimezone(zone), "end": booking.end.astimezone(zone)})


def _last_assistant_text(history: list[Message]) -> str:
    for message in reversed(history):
        if message.get("role") == "assistant" and isinstance(message.get("content"), str):
            return str(message["content"])
    return ""
