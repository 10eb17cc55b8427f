"""Approve or decline a pending action by its id: the web page's Confirm / Change buttons, or any
client. Runs the stored command as it is (no model call); works from any chat replica and after
a chat restart, since the action lives in Redis; approving twice writes once."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Request

from services.chat.access import Caller
from services.chat.deps import ConversationId, Services, caller, scope_conversation
from services.chat.schemas import ChatResponse
from services.chat.turn import Turn

router = APIRouter(prefix="/v1/conversations", tags=["chat"])

ActionId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="The pending action's id.")]

ERRORS: dict[int | str, dict[str, object]] = {404: {}, 409: {}}
REASONS = {
    "missing": (404, "No such pending action in this conversation."),
    "expired": (409, "This action has expired; nothing was changed."),
    "executing": (409, "This action is being carried out already."),
    "done": (409, "This action was already carried out."),
    "failed": (409, "This action was tried and failed; nothing was changed."),
    "declined": (409, "This action was declined; nothing was changed."),
    "superseded": (409, "This action was replaced by a newer request; nothing was changed."),
}


async def _answer(
    request: Request, deps: Services, who: Caller, conversation_id: str, action_id: str, approve: bool
) -> ChatResponse:
    turn = Turn(
        tenant_id=who.tenant_id,
        user_id=who.user_id,
        conversation_id=scope_conversation(who.user_id, conversation_id),
        text="",
        request_id=getattr(request.state, "request_id", None),
    )
    result = await deps.assistant.answer_action(turn, action_id, approve)
    if isinstance(result, str):
        status, reason = REASONS.get(result, (409, f"This action is {result}; nothing was changed."))
        raise HTTPException(status, reason)
    return ChatResponse.of(result)


@router.post("/{conversation_id}/actions/{action_id}/approve", response_model=ChatResponse, responses=ERRORS)
async def approve(
    conversation_id: ConversationId,
    action_id: ActionId,
    request: Request,
    deps: Services,
    who: Annotated[Caller, Depends(caller)],
) -> ChatResponse:
    """Carry out the pending action (book, cancel or move) exactly as it was proposed."""
    return await _answer(request, deps, who, conversation_id, action_id, approve=True)


@router.post("/{conversation_id}/actions/{action_id}/decline", response_model=ChatResponse, responses=ERRORS)
async def decline(
    conversation_id: ConversationId,
    action_id: ActionId,
    request: Request,
    deps: Services,
    who: Annotated[Caller, Depends(caller)],
) -> ChatResponse:
    """Drop the pending action; nothing is written."""
    return await _answer(request, deps, who, conversation_id, action_id, approve=False)
