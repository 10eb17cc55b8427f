"""The chat's calls to the model, over the OpenAI chat-completions protocol: a tool call that
must name one of the tools the state allows, and the structured-output reading of an answer."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any, cast

import openai
from openai import AsyncOpenAI, omit
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam
from pydantic import ValidationError

from runtime import metrics
from services.chat import tools as chat_tools
from services.chat.consent import ApprovalAnswer
from services.chat.conversations import Message
from services.chat.prompt import system_prompt
from services.chat.state import ConversationState

log = logging.getLogger(__name__)
READING_MAX_TOKENS = 80


class ModelCalls:
    def __init__(self, settings: Any, client: AsyncOpenAI) -> None:
        self.settings = settings
        self.client = client

    def system(self, state: ConversationState) -> Message:
        return {"role": "system", "content": system_prompt(state.directory, datetime.now(UTC))}

    @property
    def _temperature(self) -> float | Any:
        return omit if self.settings.openai_temperature is None else self.settings.openai_temperature

    def _count(self, completion: ChatCompletion) -> None:
        if completion.usage is not None:
            metrics.MODEL_TOKENS.labels("prompt").inc(completion.usage.prompt_tokens)
            metrics.MODEL_TOKENS.labels("completion").inc(completion.usage.completion_tokens)

    async def complete(
        self, messages: list[Message], offered: chat_tools.Offer, forced: str | None
    ) -> ChatCompletion | None:
        """One tool call: the named tool when the state leaves one (or only one is offered), else
        any offered one (`allowed_tools` over the full list, so a local server's prompt prefix
        stays the same, or `required`). None when the model cannot be reached."""
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

    async def read(self, messages: list[Message], offered: chat_tools.Offer) -> ApprovalAnswer | None:
        """The model's reading of the user's answer (structured output, `response_format` with
        a JSON schema). The tool list goes along, unused, where it keeps the cached prefix."""
        listed = self.settings.model_allowed_tools
        try:
            completion = await self.client.chat.completions.parse(
                model=self.settings.openai_model,
                messages=cast(list[ChatCompletionMessageParam], messages),
                response_format=ApprovalAnswer,
                tools=offered.definitions if listed else omit,
                tool_choice="none" if listed else omit,
                temperature=self._temperature,
                max_tokens=READING_MAX_TOKENS,
            )
        except (openai.APIError, ValidationError, openai.LengthFinishReasonError) as exc:
            log.warning("could not read the answer to a pending action: %s", exc)
            return None
        self._count(completion)
        parsed = completion.choices[0].message.parsed if completion.choices else None
        if parsed is not None:
            log.info("answer to the pending action read as %s", parsed.model_dump_json())
        return parsed
