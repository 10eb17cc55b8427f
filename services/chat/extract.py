"""POST /v1/extract: free text -> BookingRequest with `response_format` json_schema, generated
from the Pydantic model by the openai SDK (strict)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import openai
from openai import AsyncOpenAI, omit
from pydantic import BaseModel, Field, ValidationError

from shared.extraction import BookingRequest
from shared.settings import Settings

log = logging.getLogger(__name__)

INSTRUCTIONS = (
    "Extract the booking request from the text. Today is {today}. Resolve relative dates "
    "('next Monday') to calendar dates. Use null or empty lists for anything not stated."
)


class ExtractRequest(BaseModel):
    text: str = Field(min_length=1, max_length=20_000, description="An e-mail, a form, a message.")


class ExtractResponse(BaseModel):
    request: BookingRequest | None = Field(description="The extracted request, or null when none was read.")
    problem: str | None = Field(default=None, description="Why nothing was extracted.")


async def extract(client: AsyncOpenAI, settings: Settings, text: str) -> ExtractResponse:
    today = datetime.now(UTC).date().isoformat()
    try:
        completion = await client.chat.completions.parse(
            model=settings.openai_model,
            messages=[
                {"role": "system", "content": INSTRUCTIONS.format(today=today)},
                {"role": "user", "content": text},
            ],
            response_format=BookingRequest,
            temperature=omit if settings.openai_temperature is None else settings.openai_temperature,
        )
    except (ValidationError, openai.LengthFinishReasonError, openai.ContentFilterFinishReasonError) as exc:
        log.warning("extraction answer unusable: %s", exc)
        return ExtractResponse(request=None, problem="The model's answer did not fit the booking request form.")
    except openai.APIError as exc:
        log.error("extraction model call failed: %s", exc)
        return ExtractResponse(request=None, problem="The language model is unavailable; try again shortly.")
    message = completion.choices[0].message if completion.choices else None
    if message is None or message.parsed is None:
        return ExtractResponse(request=None, problem="No booking request could be read from that text.")
    return ExtractResponse(request=message.parsed)
