"""One turn of a conversation: the server decides from state, the model fills in.

- A turn starts from the state: the tenant's calendars, this conversation's live offers, the
  user's upcoming bookings, the booking the user is moving, and any pending action (a write
  waiting for the user's yes).
- With a pending action, the user's message is first read as yes / no / something else
  (consent.py: an exact short answer by rule, else a structured-output reading). Yes runs the
  stored command as it is, no declines it; both answer from facts without another model call.
- Otherwise each model call must call a tool (`tool_choice` required, or one named tool when
  the state leaves no choice), offered only the tools that can succeed now, their enums taken
  from the state (tools.py). The model answers in words through the `answer` tool, whose text
  passes the checks in checks.py.
- Every tool result ends the turn with a reply built from facts (handlers.py, facts.py): no
  time the user reads comes from the model. A tool error goes back to the model, which may try
  again (bounded rounds; the same refused call twice ends the turn).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageToolCall

from runtime import metrics
from runtime.logs import log_context
from services.chat import checks, consent
from services.chat import tools as chat_tools
from services.chat.approvals import Status, StoredAction
from services.chat.conversations import ConversationStore, Message
from services.chat.facts import GAVE_UP, HOW_I_HELP, UNAVAILABLE, declined, not_pending, outcome
from services.chat.handlers import Handlers, short_id
from services.chat.modelcalls import ModelCalls
from services.chat.prompt import state_note
from services.chat.state import ConversationState
from services.chat.toolbus import ToolBus
from services.chat.tools import Answer
from services.chat.turn import ActivityCallback, Progress, Turn, TurnResult
from services.chat.views import ERROR_VIEW_PREFIX, error_view
from shared.messages import ErrorCode, ToolError

__all__ = ["Assistant"]

log = logging.getLogger(__name__)

_CHANGES: dict[str, frozenset[str]] = {
    "book": frozenset({"book_meeting", "fetch_free_slots", "answer"}),
    "reschedule": frozenset({"reschedule_booking", "fetch_free_slots", "answer"}),
    # a cancellation the user corrects may be a move: anything but a new booking
    "cancel": frozenset({"cancel_booking", "reschedule_booking", "fetch_free_slots", "list_my_bookings", "answer"}),
}
"""The tools a turn may use when the user changes a pending action of this kind."""
_ONE_AT_A_TIME = ToolError(
    code=ErrorCode.invalid_arguments, message="Only one tool call at a time; this one was not run."
)
_UNCHECKED = ToolError(
    code=ErrorCode.invalid_arguments,
    message="Free times and bookings may only come from fetch_free_slots and list_my_bookings results: "
    "call fetch_free_slots for the day the user asked about.",
)


class Assistant:
    def __init__(self, settings: Any, client: AsyncOpenAI, bus: ToolBus, conversations: ConversationStore) -> None:
        self.settings = settings
        self.bus = bus
        self.conversations = conversations
        self.model = ModelCalls(settings, client)
        self.handlers = Handlers(settings, bus)
        self.approvals = self.handlers.approvals

    async def run(self, turn: Turn, on_activity: ActivityCallback | None = None) -> TurnResult:
        """Run one turn; `on_activity` hears which kind of tool work is under way (no data)."""
        history = await self.conversations.history(turn.tenant_id, turn.conversation_id)
        progress = Progress(await self.handlers.state(turn, history), on_activity)
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
        progress = Progress(await self.handlers.state(turn))  # runs the stored command: no move to read
        status: Status = "executing" if approve else "declined"
        moved = await self.approvals.transition(turn.tenant_id, turn.user_id, turn.conversation_id, action_id, status)
        if moved != "ok":
            return moved
        reply = await self.handlers.execute(turn, progress, stored) if approve else declined(stored.action)
        said = "(The user pressed Confirm.)" if approve else "(The user pressed Change.)"
        await self.conversations.append_turn(
            turn.tenant_id,
            turn.conversation_id,
            [{"role": "user", "content": said}, {"role": "assistant", "content": reply}],
        )
        return progress.result(reply)

    async def warm_up(self, tenant_id: str, attempts: int = 60) -> bool:
        """One request with the system prompt, the tools and the opening state note, so that a
        local model server caches that long prefix before the first user arrives."""
        turn = Turn(tenant_id=tenant_id, user_id="warmup", conversation_id="warmup", text="Hello")
        for _ in range(attempts):  # the calendar worker may still be starting
            directory = await self.handlers.directory(turn, fresh=True)
            if directory.calendars:
                break
            await asyncio.sleep(1)
        state = ConversationState(directory)
        offered = chat_tools.offer(state, all_listed=self.settings.model_allowed_tools)
        note: Message = {"role": "system", "content": state_note(state, None)}
        started = time.perf_counter()
        messages = [self.model.system(state), note, {"role": "user", "content": "Hello"}]
        completion = await self.model.complete(messages, offered, None)
        log.info("model prompt warmed in %.1f s", time.perf_counter() - started)
        return completion is not None

    # ------------------------------------------------------------------ a pending action

    async def _decide(
        self, turn: Turn, state: ConversationState, history: list[Message], pending: StoredAction
    ) -> consent.Decision:
        """The user's message read as an answer to the pending action's question."""
        offered = chat_tools.offer(state, all_listed=True)
        context = [self.model.system(state), *history, {"role": "user", "content": turn.text}]

        async def read(question: str) -> consent.ApprovalAnswer | None:
            return await self.model.read([*context, {"role": "system", "content": question}], offered)

        decision = await consent.decide((consent.by_rule, consent.ByModel(read)), turn.text, pending.action)
        log.info("answer to the pending action: %s", decision)
        return decision

    async def _approve(self, turn: Turn, progress: Progress, pending: StoredAction) -> str:
        moved = await self.approvals.transition(
            turn.tenant_id, turn.user_id, turn.conversation_id, pending.action.action_id, "executing"
        )
        if moved != "ok":
            return not_pending(moved)
        return await self.handlers.execute(turn, progress, pending)

    async def _decline(self, turn: Turn, pending: StoredAction) -> str:
        moved = await self.approvals.transition(
            turn.tenant_id, turn.user_id, turn.conversation_id, pending.action.action_id, "declined"
        )
        return declined(pending.action) if moved == "ok" else not_pending(moved)

    # ------------------------------------------------------------------ model rounds

    async def _rounds(self, turn: Turn, progress: Progress, history: list[Message], new: list[Message]) -> str:
        state = progress.state
        context = [self.model.system(state), *history]
        for _ in range(self.settings.max_model_rounds):
            offered = chat_tools.offer(
                state, all_listed=self.settings.model_allowed_tools, only=progress.force or progress.within
            )
            if not offered.allowed:
                return GAVE_UP
            note: Message = {"role": "system", "content": state_note(state, turn.user_name)}
            # the note goes before the user's message: read last, it drew a small model to it
            completion = await self.model.complete([*context, note, *new], offered, progress.force)
            progress.force = None
            if completion is None:
                return UNAVAILABLE
            message = completion.choices[0].message
            calls = [c for c in (message.tool_calls or []) if isinstance(c, ChatCompletionMessageToolCall)]
            if not calls:
                # a server that ignored tool_choice: its text says nothing of its topic, so it
                # is asked once for the answer call; text again gets a plain offer of help
                if "answer" in progress.forced_once or "answer" not in offered.allowed:
                    return HOW_I_HELP
                progress.forced_once.add("answer")
                progress.force = "answer"
                continue
            call = calls[0]
            said = (call.function.name, call.function.arguments or "")
            if said in progress.failed:  # a small model repeats a refused call word for word
                return GAVE_UP
            parsed = chat_tools.parse(offered, call.function.name, call.function.arguments)
            if isinstance(parsed, Answer):
                verdict = checks.check_answer(parsed, progress)
                metrics.TOOL_CALLS.labels("answer", "ok" if verdict.force is None else "unchecked").inc()
                if verdict.force is not None and verdict.force not in progress.forced_once:
                    progress.forced_once.add(verdict.force)
                    progress.force = verdict.force
                elif verdict.reply is not None:
                    return verdict.reply
                else:
                    return verdict.text
            new.append(_assistant_calls(calls))
            with log_context(correlation_id=short_id(call.id)):
                result, final = await self._call(turn, progress, call, parsed)
            new.append({"role": "tool", "tool_call_id": call.id, "content": result})
            if result.startswith(ERROR_VIEW_PREFIX):
                progress.failed.add(said)
            for extra in calls[1:]:
                new.append({"role": "tool", "tool_call_id": extra.id, "content": error_view(_ONE_AT_A_TIME)})
            if final is not None:
                return final
        if progress.outcomes:
            return " ".join(outcome(o, state) for o in progress.outcomes)
        return GAVE_UP

    async def _call(
        self, turn: Turn, progress: Progress, call: ChatCompletionMessageToolCall, parsed: object
    ) -> tuple[str, str | None]:
        """Run one validated call: the tool result for the model, and the reply if it ends the turn."""
        name = call.function.name
        if isinstance(parsed, ToolError):
            metrics.TOOL_CALLS.labels(name if name in chat_tools.BY_NAME else "unknown", parsed.code.value).inc()
            return error_view(parsed), None
        if isinstance(parsed, Answer):  # its text named a time nobody offered
            return error_view(_UNCHECKED), None
        return await self.handlers.run(turn, progress, chat_tools.BY_NAME[name], parsed, call.id)


def _assistant_calls(calls: list[ChatCompletionMessageToolCall]) -> Message:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.function.name, "arguments": c.function.arguments}}
            for c in calls
        ],
    }
