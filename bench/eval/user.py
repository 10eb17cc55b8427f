"""A simulated user: a model that plays the customer, given a goal, until it says DONE."""

from __future__ import annotations

from typing import Any, cast

from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam

from bench.eval.scenario import Context, SimulatedUser

DONE = "DONE"

INSTRUCTIONS = """{persona}
You are chatting with a booking assistant. Your goal: {goal}
Today is {today:%A %d %B %Y}. Your name is {name}.
Write only your next message to the assistant, in one or two short sentences, as a person would type it.
Say yes to a time only if it fits your goal. Never invent times the assistant did not mention.
When your goal is reached, or the assistant clearly cannot help, reply with exactly: DONE"""


class UserModel:
    """Writes the user's next message from the conversation so far (roles seen from the user)."""

    def __init__(self, client: AsyncOpenAI, model: str, spec: SimulatedUser, ctx: Context) -> None:
        self.client = client
        self.model = model
        self.spec = spec
        self.ctx = ctx
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.round_trips = 0
        self.transcript: list[dict[str, str]] = []
        """From the user's side: its own messages are `assistant`, the booking assistant's are `user`."""

    def heard(self, reply: str) -> None:
        self.transcript.append({"role": "user", "content": reply})

    async def next_message(self) -> str | None:
        """The next message, or None when the user is done."""
        if not self.transcript and self.spec.opening:
            text = self.ctx.render(self.spec.opening)
        else:
            system = INSTRUCTIONS.format(
                persona=self.ctx.render(self.spec.persona),
                goal=self.ctx.render(self.spec.goal),
                today=self.ctx.today,
                name=self.ctx.values.get("user_name", "Alice"),
            )
            messages: list[dict[str, Any]] = [{"role": "system", "content": system}]
            if not self.transcript:
                messages.append({"role": "user", "content": "(The chat has opened. Write your first message.)"})
            messages += self.transcript
            completion = await self.client.chat.completions.create(
                model=self.model, messages=cast(list[ChatCompletionMessageParam], messages), temperature=0.2
            )
            self.round_trips += 1
            if completion.usage is not None:
                self.prompt_tokens += completion.usage.prompt_tokens
                self.completion_tokens += completion.usage.completion_tokens
            text = (completion.choices[0].message.content or "").strip() if completion.choices else ""
        if not text or text.strip().strip(".!").upper() == DONE or text.upper().startswith(DONE):
            return None
        text = text.replace(DONE, "").strip()
        self.transcript.append({"role": "assistant", "content": text})
        return text
