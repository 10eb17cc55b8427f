"""The conversation: a user's message in, the assistant's reply out (JSON or Server-Sent
Events), retried safely with an Idempotency-Key; and extraction of a booking request from text."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from runtime.logs import bind_log_context
from services.chat.access import Caller
from services.chat.deps import ConversationId, IdempotencyKey, Services, caller, scope_conversation
from services.chat.extract import ExtractRequest, ExtractResponse, extract
from services.chat.replay import KeyReusedError, Lease, StillRunningError, fingerprint
from services.chat.schemas import ChatRequest, ChatResponse
from services.chat.sse import respond, stream_turn
from services.chat.turn import Turn

router = APIRouter(prefix="/v1", tags=["chat"])

UserName = Annotated[
    str | None, Header(max_length=100, description="The user's display name, from the gateway (used for bookings).")
]


@router.post(
    "/conversations/{conversation_id}/messages",
    response_model=ChatResponse,
    responses={200: {"content": {"text/event-stream": {}}}, 400: {}, 401: {}, 409: {}, 422: {}, 429: {}},
)
async def post_message(
    conversation_id: ConversationId,
    body: ChatRequest,
    request: Request,
    deps: Services,
    who: Annotated[Caller, Depends(caller)],
    stream: Annotated[bool, Query(description="Answer as Server-Sent Events.")] = False,
    idempotency_key: IdempotencyKey = None,
    x_user_name: UserName = None,
) -> Response:
    """Send the user's message; the assistant answers after any tool work it needs."""
    tenant, user = who.tenant_id, who.user_id
    turn = Turn(
        tenant_id=tenant,
        user_id=user,
        # conversations are scoped to their user: another user's id names another conversation
        conversation_id=scope_conversation(user, conversation_id),
        text=body.text,
        request_id=request.state.request_id,
        user_name=(x_user_name or "").strip() or None,
    )
    bind_log_context(conversation_id=turn.conversation_id, tenant_id=tenant)
    assistant, replays = deps.assistant, deps.replays
    if await assistant.conversations.turns(tenant, turn.conversation_id) >= deps.settings.max_conversation_turns:
        raise HTTPException(422, "This conversation is too long; please start a new one.")
    body_fp = fingerprint(turn.conversation_id, body.text)
    lease: Lease | None = None
    if idempotency_key is not None:
        turn.turn_id = fingerprint(turn.conversation_id, idempotency_key)[:32]
        try:
            claimed = await replays.begin(tenant, turn.conversation_id, idempotency_key, body_fp)
        except KeyReusedError:
            raise HTTPException(422, "This Idempotency-Key was used with a different request.") from None
        except StillRunningError:
            raise HTTPException(409, "A request with this Idempotency-Key is still running.") from None
        if isinstance(claimed, str):
            return respond(ChatResponse.model_validate_json(claimed), stream)
        lease = claimed

    async def run(on_activity: Callable[[str], Awaitable[None]] | None = None) -> ChatResponse:
        if lease is None:
            return ChatResponse.of(await assistant.run(turn, on_activity))
        try:
            async with lease.kept():  # renewed while the turn runs; a retry takes over if we die
                response = ChatResponse.of(await assistant.run(turn, on_activity))
        except BaseException:
            await lease.abandon()
            raise
        await lease.finish(response.model_dump_json())
        return response

    if not stream:
        return JSONResponse(content=(await run()).model_dump(mode="json"))
    return StreamingResponse(stream_turn(run, request.state.request_id), media_type="text/event-stream")


@router.post("/extract", response_model=ExtractResponse)
async def post_extract(
    body: ExtractRequest, deps: Services, who: Annotated[Caller, Depends(caller)]
) -> ExtractResponse:
    """Read a booking request out of free text (structured outputs; no booking is made)."""
    return await extract(deps.client, deps.settings, body.text)
