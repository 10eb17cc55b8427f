"""The work behind each tool call: requests on the streams, the state they read, and writes
that become pending actions. Every result ends the turn with a reply built from facts, or goes
back to the model (an error it may correct)."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

from runtime import metrics
from runtime.offers import SlotHolds
from services.chat import facts, grounding, proposals
from services.chat import tools as chat_tools
from services.chat.approvals import Approvals, Command, PendingAction, StoredAction
from services.chat.conversations import Message
from services.chat.state import ConversationState, slot_label, when
from services.chat.toolbus import ToolBus
from services.chat.tools import BookMeetingCall, CancelBookingCall, ChatTool, FetchFreeSlotsCall, RescheduleBookingCall
from services.chat.turn import Progress, Turn
from services.chat.views import error_view, model_view
from shared.domain import BookingList, BookingOutcome, CalendarDirectory, CalendarSummary, FreeSlots
from shared.messages import Envelope, ErrorCode, MessageType, Reply, ToolError
from shared.tools import ListMyBookings

DIRECTORY_TTL_S = 30.0
MAX_ID_CHARS = 64
_LISTED = ToolError(
    code=ErrorCode.invalid_arguments,
    message="Those free times are listed above already: book the one the user chose with book_meeting.",
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
Outcome = tuple[str, str | None]
"""The tool result for the model, and the reply when it ends the turn."""


class Handlers:
    def __init__(self, settings: Any, bus: ToolBus) -> None:
        self.settings = settings
        self.bus = bus
        self.holds = SlotHolds(bus.redis)
        self.approvals = Approvals(bus.redis, settings.pending_action_ttl_s)
        self._directories: dict[str, tuple[float, CalendarDirectory]] = {}

    # ------------------------------------------------------------------ requests and state

    async def request(
        self, turn: Turn, kind: MessageType, payload: dict[str, Any], call_id: str, key: str | None = None
    ) -> Reply:
        call_id = short_id(call_id)
        envelope = Envelope(
            idempotency_key=key or f"{turn.conversation_id}:{turn.turn_id}:{call_id}",
            correlation_id=call_id,
            tenant_id=turn.tenant_id,
            conversation_id=turn.conversation_id,
            user_id=turn.user_id,
            request_id=turn.request_id,
            type=kind,
            payload=payload,
            reply_to=self.bus.reply_to,
        )
        return await self.bus.request(envelope, self.settings.tool_timeout_s)

    async def directory(self, turn: Turn, fresh: bool = False) -> CalendarDirectory:
        cached = self._directories.get(turn.tenant_id)
        if cached and not fresh and time.monotonic() - cached[0] < DIRECTORY_TTL_S:
            return cached[1]
        reply = await self.request(turn, "describe_calendars", {}, f"dir-{uuid.uuid4().hex}")
        directory = CalendarDirectory.model_validate(reply.result or {"calendars": []})
        if reply.error is None:
            self._directories[turn.tenant_id] = (time.monotonic(), directory)
        return directory

    async def state(self, turn: Turn, history: Sequence[Message] = ()) -> ConversationState:
        """The calendars, this conversation's live offers, the user's upcoming bookings, and the
        booking the user is moving (read from the conversation's `history`)."""
        state = ConversationState(await self.directory(turn))
        await self.refresh_offers(turn, state)
        listing = await self.request(
            turn, "list_my_bookings", ListMyBookings(include_past=False).model_dump(), f"st-{uuid.uuid4().hex}"
        )
        if listing.error is None and listing.result is not None:
            state.bookings = state.booking_choices(BookingList.model_validate(listing.result).bookings)
        state.moving = grounding.moving(history, state)
        return state

    async def refresh_offers(self, turn: Turn, state: ConversationState) -> None:
        state.slots = state.slot_choices(await self.holds.offers(turn.tenant_id, turn.conversation_id))

    # ------------------------------------------------------------------ one tool call

    async def run(self, turn: Turn, progress: Progress, tool: ChatTool, parsed: object, call_id: str) -> Outcome:
        """Run one validated call."""
        await progress.activity(tool.activity)
        match parsed:
            case FetchFreeSlotsCall():
                parsed = grounding.grounded(parsed, progress.words, progress.state)
                if grounding.already_offered(progress.state, parsed) and "book_meeting" not in progress.forced_once:
                    # the user answers a list of free times ("the earliest"): the state leaves one call
                    progress.forced_once.add("book_meeting")
                    progress.force = "book_meeting"
                    return error_view(_LISTED), None
                return await self.fetch(turn, progress, parsed, call_id)
            case ListMyBookings():
                reply = await self.request(turn, "list_my_bookings", parsed.model_dump(), call_id)
                metrics.TOOL_CALLS.labels(tool.name, _outcome(reply)).inc()
                if reply.error is not None or reply.result is None:
                    return model_view(reply, progress.state.zones), _timed_out(reply, "your bookings")
                listing = BookingList.model_validate(reply.result)
                choices = progress.state.booking_choices(listing.bookings)
                return model_view(reply, progress.state.zones), facts.bookings(choices)
            case BookMeetingCall() | CancelBookingCall() | RescheduleBookingCall():
                return await self.write(turn, progress, tool, parsed, call_id)
        return error_view(ToolError(code=ErrorCode.unknown_tool, message=f"{tool.name} is not available.")), None

    async def fetch(self, turn: Turn, progress: Progress, call: FetchFreeSlotsCall, call_id: str) -> Outcome:
        state = progress.state
        reply = await self.request(turn, "fetch_free_slots", call.command().model_dump(mode="json"), call_id)
        metrics.TOOL_CALLS.labels("fetch_free_slots", _outcome(reply)).inc()
        if reply.error is not None or reply.result is None:
            return model_view(reply, state.zones), _timed_out(reply, "the calendar")
        result = FreeSlots.model_validate(reply.result)
        state.moving = state.booking(call.move_booking) if call.move_booking else None
        calendars = tuple(c for c in (state.calendar(i) for i in call.calendar_ids) if c is not None)
        await self.refresh_offers(turn, state)
        progress.slots.extend(s.start for s in result.slots)
        view = _free_view(result, calendars)
        names = " and ".join(c.name for c in calendars) or "The calendar"
        zone = ZoneInfo(calendars[0].timezone) if calendars else ZoneInfo("UTC")
        listing = facts.free_times(names, result, zone)
        if call.preferred_time is None or not calendars or not grounding.hour_written(turn.text, call.preferred_time):
            return view, listing  # a time the user did not write (the model made "afternoon" 14:00) is no wish
        wanted = next((s for s in result.slots if f"{s.start:%H:%M}" == call.preferred_time), None)
        if wanted is None:
            return view, facts.preferred_taken(names, call.preferred_time, listing)
        choice = state.slot(slot_label(calendars, wanted.start))
        moving = state.moving_to(choice) if choice is not None else None
        if moving is not None and moving.calendar is not None and choice is not None:
            action, command = proposals.move(moving, choice, moving.calendar, self.settings.pending_action_ttl_s)
            await self.propose(turn, progress, action, command, moving.calendar)
            return view, facts.preferred_free(names, wanted.start, zone, action.question)
        name = turn.user_name
        if choice is None or not calendars[0].require_confirmation or not name:
            ask = "Shall I book it for you?" if name else "Shall I book it? Please tell me the name for the booking."
            return view, facts.preferred_free(names, wanted.start, zone, ask)
        action, command = proposals.book(choice, name, [], self.settings.pending_action_ttl_s)
        await self.propose(turn, progress, action, command, calendars[0])
        return view, facts.preferred_free(names, wanted.start, zone, action.question)

    async def write(self, turn: Turn, progress: Progress, tool: ChatTool, call: object, call_id: str) -> Outcome:
        """A write the model asked for: stored as a pending action when it needs the user's
        approval (the reply is the question), else run now (the reply is the outcome)."""
        state = progress.state
        ttl_s = self.settings.pending_action_ttl_s
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
                    calendar = moving.calendar
                    action, command = proposals.move(moving, choice, calendar, ttl_s)
                elif not name:
                    return error_view(_NO_NAME), None
                else:
                    calendar = choice.calendars[0]
                    action, command = proposals.book(choice, name, [str(p) for p in call.participants], ttl_s)
            case CancelBookingCall():
                booking = state.booking(call.booking)
                if booking is None or booking.calendar is None:
                    return error_view(_NOT_YOURS), None
                calendar = booking.calendar
                action, command = proposals.cancel(booking, calendar, ttl_s)
            case RescheduleBookingCall():
                booking, choice = state.booking(call.booking), state.slot(call.new_slot)
                if booking is None or booking.calendar is None:
                    return error_view(_NOT_YOURS), None
                if choice is None or choice.calendars[0].calendar_id != booking.booking.calendar_id:
                    return error_view(_OTHER_CALENDAR), None
                calendar = booking.calendar
                action, command = proposals.move(booking, choice, calendar, ttl_s)
            case _:
                return error_view(ToolError(code=ErrorCode.unknown_tool, message="Not a write.")), None
        if tool.approval == "always" or (tool.approval == "calendar" and calendar.require_confirmation):
            await self.propose(turn, progress, action, command, calendar)
            metrics.TOOL_CALLS.labels(tool.name, "awaiting_approval").inc()
            return json.dumps({"status": "waiting for the user's confirmation"}), action.question
        reply = await self.request(turn, command.tool, command.payload, call_id)
        metrics.TOOL_CALLS.labels(tool.name, _outcome(reply)).inc()
        if reply.error is not None or reply.result is None:
            return model_view(reply, state.zones), None
        outcome = BookingOutcome.model_validate(reply.result)
        progress.outcomes.append(outcome)
        return model_view(reply, state.zones), facts.outcome(outcome, state)

    # ------------------------------------------------------------------ pending actions

    async def propose(
        self, turn: Turn, progress: Progress, action: PendingAction, command: Command, calendar: CalendarSummary
    ) -> None:
        if command.hold is not None and calendar.hold_seconds:
            await self.holds.hold(turn.tenant_id, turn.conversation_id, [calendar], *command.hold)
        await self.approvals.propose(turn.tenant_id, turn.user_id, turn.conversation_id, action, command)
        progress.pending = action

    async def execute(self, turn: Turn, progress: Progress, stored: StoredAction) -> str:
        """Run the stored command as it is; the action's id is its idempotency key."""
        action, command = stored.action, stored.command
        await progress.activity({"book": "booking", "cancel": "cancelling", "reschedule": "rescheduling"}[action.kind])
        reply = await self.request(
            turn, command.tool, command.payload, f"act-{action.action_id}", key=f"action:{action.action_id}"
        )
        metrics.TOOL_CALLS.labels(command.tool, "ok" if reply.error is None else reply.error.code.value).inc()
        if reply.error is not None or reply.result is None:
            await self.approvals.finish(turn.tenant_id, action.action_id, "failed")
            return await self._failed(turn, progress, action, command, reply.error)
        await self.approvals.finish(turn.tenant_id, action.action_id, "done")
        outcome = BookingOutcome.model_validate(reply.result)
        progress.outcomes.append(outcome)
        return facts.outcome(outcome, progress.state)

    async def _failed(
        self, turn: Turn, progress: Progress, action: PendingAction, command: Command, error: ToolError | None
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
            listing = await self.fetch(turn, progress, fetch, f"alt-{uuid.uuid4().hex[:12]}")
            return f"{lead} {listing[1] or ''}".strip()
        if error is not None and error.code in (ErrorCode.timeout, ErrorCode.expired):
            # final: the command carries its deadline, and a worker that gets it later changes
            # nothing (checked in the write script by the Redis server's clock)
            late = "Sorry, the booking system did not answer in time, so nothing was changed."
            return f"{late} Shall I try to {what} again?"
        return f"Sorry, I couldn't {what}: {_plain(error)}"


def short_id(call_id: str) -> str:
    """A tool-call id as it may travel in an envelope: long ones are replaced by a digest."""
    if len(call_id) <= MAX_ID_CHARS:
        return call_id
    return "h-" + hashlib.sha256(call_id.encode()).hexdigest()[:40]


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
