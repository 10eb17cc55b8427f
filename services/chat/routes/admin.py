"""Calendar admin over HTTP, carried to the calendar worker as stream messages like every
other command. Needs a tenant API key (the tenant comes from the key, never the body)."""

from __future__ import annotations

import hashlib
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Request
from pydantic import BaseModel

from services.chat.access import Caller
from services.chat.deps import operator, services
from shared.domain import BusyImported, CalendarDirectory, CalendarSaved
from shared.messages import Envelope, ErrorCode, MessageType, Reply
from shared.tools import DescribeCalendars, ImportIcs, UpsertCalendar

router = APIRouter(prefix="/v1/calendars", tags=["calendar admin"])

STATUS = {
    ErrorCode.unknown_calendar: 404,
    ErrorCode.not_found: 404,
    ErrorCode.idempotency_conflict: 409,
    ErrorCode.timeout: 503,
}


async def admin(request: Request, who: Annotated[Caller, Depends(operator)]) -> Caller:
    """Admin routes need a tenant API key, even where chat is open to anonymous users."""
    if not request.headers.get("authorization"):
        raise HTTPException(
            401, "Calendar admin needs Authorization: Bearer <tenant key>.", headers={"WWW-Authenticate": "Bearer"}
        )
    return who


def _admin_key(key: str | None) -> str:
    """The envelope's idempotency key: `admin:<the client's key>`, or its digest when that
    would not fit the envelope's 200 characters (the header allows 200 of its own)."""
    if key is None:
        return f"admin:{uuid.uuid4().hex}"
    scoped = f"admin:{key}"
    return scoped if len(scoped) <= 200 else f"admin:~{hashlib.sha256(key.encode()).hexdigest()}"


async def _send(request: Request, who: Caller, kind: MessageType, body: BaseModel, key: str | None) -> Reply:
    deps = services(request)
    bus = deps.assistant.bus
    envelope = Envelope(
        idempotency_key=_admin_key(key),
        correlation_id=request.state.request_id,
        tenant_id=who.tenant_id,
        conversation_id="admin",
        user_id=who.user_id,
        request_id=request.state.request_id,
        type=kind,
        payload=body.model_dump(mode="json", exclude_none=True),
        reply_to=bus.reply_to,
    )
    reply = await bus.request(envelope, deps.settings.tool_timeout_s)
    if reply.error is not None:
        raise HTTPException(STATUS.get(reply.error.code, 422), reply.error.message)
    return reply


IdempotencyKey = Annotated[str | None, Header(min_length=1, max_length=200)]


@router.get("", response_model=CalendarDirectory)
async def list_calendars(request: Request, who: Annotated[Caller, Depends(admin)]) -> CalendarDirectory:
    """The tenant's calendars and their hours."""
    reply = await _send(request, who, "describe_calendars", DescribeCalendars(), None)
    return CalendarDirectory.model_validate(reply.result)


@router.put("", response_model=CalendarSaved, responses={401: {}, 409: {}, 422: {}, 503: {}})
async def upsert_calendar(
    body: UpsertCalendar,
    request: Request,
    who: Annotated[Caller, Depends(admin)],
    idempotency_key: IdempotencyKey = None,
) -> CalendarSaved:
    """Create or replace one calendar (hours, overrides, slot rules)."""
    reply = await _send(request, who, "upsert_calendar", body, idempotency_key)
    return CalendarSaved.model_validate(reply.result)


@router.post("/busy", response_model=BusyImported, responses={401: {}, 404: {}, 409: {}, 422: {}, 503: {}})
async def import_busy(
    body: ImportIcs, request: Request, who: Annotated[Caller, Depends(admin)], idempotency_key: IdempotencyKey = None
) -> BusyImported:
    """Attach an iCalendar feed's events as busy time (only the intervals are kept)."""
    reply = await _send(request, who, "import_ics", body, idempotency_key)
    return BusyImported.model_validate(reply.result)
