"""The HTTP surface through the real `openai` SDK, with a scripted engine instead of the model."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import openai
import pytest
from openai import AsyncOpenAI

from services.model.runtime import Runtime
from services.model.server import create_app
from services.model.settings import MODEL_ID, ModelSettings
from tests.model.conftest import (
    ScriptedEngine,
    ServerThread,
    complete,
    needs_llama_cpp,
    only_call,
    serve_scripted,
    stream,
)

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "fetch_free_slots",
            "description": "Free slots of a calendar on a day.",
            "parameters": {
                "type": "object",
                "properties": {"calendar": {"type": "string"}, "day": {"type": "string", "format": "date"}},
                "required": ["calendar", "day"],
                "additionalProperties": False,
            },
            "strict": True,
        },
    }
]
USER = [{"role": "user", "content": "What is free tomorrow with Dr. Lee?"}]
CALL = '{"name": "fetch_free_slots", "arguments": {"calendar": "dr-lee", "day": "2026-11-25"}}'


@needs_llama_cpp
async def test_a_call_comes_back_as_standard_tool_calls(scripted: ScriptedEngine, scripted_client: AsyncOpenAI) -> None:
    scripted.outputs = [CALL]
    reply = await complete(
        scripted_client, model="anything", messages=USER, tools=TOOLS, temperature=0, seed=1, max_tokens=200
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    call = only_call(reply)
    assert call.type == "function"
    assert call.id.startswith("call_")
    assert call.function.name == "fetch_free_slots"
    assert json.loads(call.function.arguments) == {"calendar": "dr-lee", "day": "2026-11-25"}
    assert reply.model == MODEL_ID
    assert reply.usage is not None
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    prompt, grammar, sampling = scripted.asked[0]
    assert "<tools>" in prompt
    assert grammar is not None and "fetch_free_slots" in grammar
    assert (sampling.temperature, sampling.seed, sampling.max_tokens) == (0.0, 1, 200)


async def test_a_text_reply_ends_with_stop(scripted: ScriptedEngine, scripted_client: AsyncOpenAI) -> None:
    scripted.outputs = ["Hello! How can I help?"]
    reply = await complete(scripted_client, model="m", messages=USER)
    assert reply.choices[0].finish_reason == "stop"
    assert reply.choices[0].message.content == "Hello! How can I help?"
    assert reply.choices[0].message.tool_calls is None
    assert scripted.asked[0][1] is None  # no tools, no response_format: unconstrained


@needs_llama_cpp
async def test_a_repeated_answered_call_is_replaced_by_a_text_reply(
    scripted: ScriptedEngine, scripted_client: AsyncOpenAI
) -> None:
    scripted.outputs = [CALL, "Dr. Lee is free at 9:00."]
    history = [
        *USER,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "fetch_free_slots", "arguments": '{"calendar":"dr-lee","day":"2026-11-25"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": '{"slots": ["09:00"]}'},
    ]
    reply = await complete(scripted_client, model="m", messages=history, tools=TOOLS)
    assert reply.choices[0].finish_reason == "stop"
    assert reply.choices[0].message.content == "Dr. Lee is free at 9:00."
    second_grammar = scripted.asked[1][1] or ""
    assert "tool-call" not in second_grammar


@needs_llama_cpp
async def test_a_reply_that_names_a_tool_is_replaced_by_the_call(
    scripted: ScriptedEngine, scripted_client: AsyncOpenAI
) -> None:
    scripted.outputs = ["You can use the `fetch_free_slots` function for that.", CALL]
    reply = await complete(scripted_client, model="m", messages=USER, tools=TOOLS)
    assert reply.choices[0].finish_reason == "tool_calls"
    assert "root ::= tool-call" in (scripted.asked[1][1] or "")


@needs_llama_cpp
async def test_a_reply_that_names_a_tool_is_cut_short_at_the_name(
    scripted: ScriptedEngine, scripted_client: AsyncOpenAI
) -> None:
    narration = (
        "To find the free times I will call fetch_free_slots with calendar dr-lee for tomorrow and then tell you."
    )
    scripted.outputs = [narration, CALL]
    reply = await complete(scripted_client, model="m", messages=USER, tools=TOOLS)
    assert reply.choices[0].finish_reason == "tool_calls"
    assert only_call(reply).function.name == "fetch_free_slots"
    assert scripted.produced[0].rstrip().endswith("fetch_free_slots")  # the rest was never generated
    assert scripted.produced[1] == CALL


@needs_llama_cpp
async def test_streaming_a_call_sends_one_tool_call_delta(
    scripted: ScriptedEngine, scripted_client: AsyncOpenAI
) -> None:
    scripted.outputs = [CALL]
    chunks = [
        chunk
        async for chunk in await stream(
            scripted_client, model="m", messages=USER, tools=TOOLS, stream_options={"include_usage": True}
        )
    ]
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    calls = [d.tool_calls for d in deltas if d.tool_calls]
    assert len(calls) == 1
    assert calls[0][0].function is not None
    assert calls[0][0].function.name == "fetch_free_slots"
    assert not any(d.content for d in deltas)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].usage is not None


async def test_streaming_text_arrives_in_pieces_and_ends_with_done(scripted: ScriptedEngine, scripted_url: str) -> None:
    scripted.outputs = ["Dr. Lee is free at nine."]
    body = {"model": "m", "messages": USER, "stream": True}
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{scripted_url}/v1/chat/completions", json=body)
    lines = [line for line in response.text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == "Dr. Lee is free at nine."
    assert len([c for c in chunks if c["choices"][0]["delta"].get("content")]) > 1
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_a_cut_off_reply_ends_with_length() -> None:
    engine = ScriptedEngine(outputs=["Dr. Lee is"], finish="length")
    with serve_scripted(engine) as url:
        async with AsyncOpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0) as client:
            reply = await complete(client, model="m", messages=USER, max_tokens=3)
    assert reply.choices[0].finish_reason == "length"
    assert reply.choices[0].message.content == "Dr. Lee is"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "messages: Field required"),
        ({"messages": []}, "at least 1 item"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "role"),
        ({"messages": USER, "n": 2}, "n:"),
        ({"messages": USER, "tool_choice": "required"}, "tool_choice requires tools"),
        ({"messages": USER, "max_tokens": 10_000}, "context window"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "not supported"),
        ({"messages": USER, "response_format": {"type": "json_schema"}}, "json_schema"),
    ],
)
async def test_bad_requests_are_400_with_an_openai_error_body(
    scripted_url: str, body: dict[str, object], message: str
) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{scripted_url}/v1/chat/completions", json={"model": "m", **body})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert message in error["message"]


async def test_the_sdk_sees_a_bad_request_error(scripted_client: AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await complete(scripted_client, model="m", messages=USER, tool_choice="required")
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["message"] == "tool_choice requires tools"


async def test_a_body_that_is_not_json_is_400(scripted_url: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{scripted_url}/v1/chat/completions", content=b"{oops", headers={"content-type": "application/json"}
        )
    assert response.status_code == 400
    assert response.json()["error"] == {
        "message": "invalid request: the body is not valid JSON",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }


@needs_llama_cpp
async def test_a_schema_the_converter_cannot_handle_is_400(scripted_client: AsyncOpenAI) -> None:
    bad = [{"type": "function", "function": {"name": "f", "parameters": {"properties": {"a": {"$ref": "#/x"}}}}}]
    with pytest.raises(openai.BadRequestError, match="unsupported JSON schema"):
        await complete(scripted_client, model="m", messages=USER, tools=bad)


async def test_models_and_health(scripted_url: str) -> None:
    async with AsyncOpenAI(base_url=f"{scripted_url}/v1", api_key="k") as client:
        models = await client.models.list()
    assert [m.id for m in models.data] == [MODEL_ID]
    async with httpx.AsyncClient() as http:
        health = await http.get(f"{scripted_url}/healthz")
    assert health.status_code == 200
    assert health.json()["status"] == "ready"


async def test_a_missing_model_file_gives_503_and_health_says_why(tmp_path: Path) -> None:
    missing = tmp_path / "none.gguf"
    with ServerThread(create_app(Runtime(ModelSettings(path=missing)))) as url:
        async with httpx.AsyncClient() as http:
            for _ in range(200):
                health = await http.get(f"{url}/healthz")
                if health.json()["status"] != "loading":
                    break
                await asyncio.sleep(0.01)
        assert health.status_code == 503
        assert health.json()["status"] == "unavailable"
        assert str(missing) in health.json()["detail"]
        async with AsyncOpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0) as client:
            with pytest.raises(openai.InternalServerError) as caught:
                await complete(client, model="m", messages=USER)
    assert caught.value.status_code == 503
    assert "missing" in str(caught.value)
