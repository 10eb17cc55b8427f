"""OpenAI-compatible HTTP surface: /v1/chat/completions, /v1/models, /healthz."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from services.model.handler import ChatHandler, ModelOutputError
from services.model.llamacpp import LlamaUnavailable
from services.model.request import BadRequest
from services.model.runtime import ModelUnavailable, Runtime
from services.model.schemas import (
    ChatCompletionRequest,
    ErrorBody,
    ErrorResponse,
    ModelCard,
    ModelList,
)
from services.model.settings import MODEL_ID, ModelSettings

log = logging.getLogger("services.model.server")


def error(status: int, message: str, kind: str, *, param: str | None = None, code: str | None = None) -> JSONResponse:
    body = ErrorResponse(error=ErrorBody(message=message, type=kind, param=param, code=code))
    return JSONResponse(body.model_dump(), status_code=status)


def _describe(exc: RequestValidationError) -> tuple[str, str | None]:
    if any(item.get("type") == "json_invalid" for item in exc.errors()):
        return "invalid request: the body is not valid JSON", None
    problems = []
    for item in exc.errors()[:5]:
        where = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
        problems.append(f"{where}: {item.get('msg')}" if where else str(item.get("msg")))
    first = exc.errors()[0].get("loc", ()) if exc.errors() else ()
    param = ".".join(str(p) for p in first if p != "body") or None
    return "invalid request: " + "; ".join(problems), param


def create_app(runtime: Runtime | None = None, *, load: bool = True) -> FastAPI:
    """The app; `load=False` with a ready runtime serves a scripted engine in tests."""
    rt = runtime or Runtime(ModelSettings())
    handler = ChatHandler(rt)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Load in the background so /healthz answers (with "loading") at once.
        loader = asyncio.create_task(rt.load()) if load else None
        yield
        if loader is not None and not loader.done():
            loader.cancel()

    app = FastAPI(title="Local model (OpenAI-compatible)", lifespan=lifespan)
    app.state.runtime = rt

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _describe(exc)
        return error(400, message, "invalid_request_error", param=param)

    @app.exception_handler(BadRequest)
    async def _bad(_: Request, exc: BadRequest) -> JSONResponse:
        return error(400, str(exc), "invalid_request_error", param=exc.param, code=exc.code)

    @app.exception_handler(ModelUnavailable)
    async def _unavailable(_: Request, exc: ModelUnavailable) -> JSONResponse:
        return error(503, f"model unavailable: {exc}", "model_unavailable")

    @app.exception_handler(LlamaUnavailable)
    async def _no_runtime(_: Request, exc: LlamaUnavailable) -> JSONResponse:
        """llama-cpp-python not installed or not loadable: the model is unavailable, not broken."""
        log.error("model unavailable: %s", exc)
        return error(503, f"model unavailable: {exc}", "model_unavailable")

    @app.exception_handler(ModelOutputError)
    async def _bad_output(_: Request, exc: ModelOutputError) -> JSONResponse:
        log.error("model output rejected: %s", exc)
        return error(502, f"the model produced an invalid reply: {exc}", "server_error")

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail), "invalid_request_error")

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error(500, f"internal error: {type(exc).__name__}", "server_error")

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest) -> Response:
        if body.stream:
            return StreamingResponse(
                handler.stream(body),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache"},
            )
        completion = await handler.complete(body)
        return JSONResponse(completion.model_dump(mode="json"))

    @app.get("/v1/models")
    async def models() -> ModelList:
        return ModelList(data=[ModelCard(id=MODEL_ID)])

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        body = {
            "status": rt.state,
            "detail": rt.detail,
            "model": MODEL_ID,
            "path": str(rt.settings.path),
        }
        return JSONResponse(body, status_code=200 if rt.state == "ready" else 503)

    return app
