"""Settings of the local model server, read from MODEL_* environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

MODEL_FILENAME = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
MODEL_ID = "qwen2.5-coder-1.5b-instruct-q4_k_m"


def default_model_path() -> Path:
    """Where the assembled GGUF file lives unless MODEL_PATH says otherwise."""
    return Path.home() / ".cache" / "booking-model" / MODEL_FILENAME


class ModelSettings(BaseSettings):
    """Runtime configuration; each field maps to MODEL_<FIELD> (MODEL_HOST, MODEL_PORT, ...)."""

    model_config = SettingsConfigDict(env_prefix="MODEL_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8090, ge=1, le=65535)
    path: Path = Field(default_factory=default_model_path)
    ctx: int = Field(default=4096, ge=512, le=32768)
    threads: int = Field(default=2, ge=1, le=64)
    batch: int = Field(default=512, ge=32, le=4096)
    # A reply longer than this is cut (finish_reason "length") unless the request asks for less.
    max_tokens: int = Field(default=1024, ge=1)
    # Checked at every load: the file is 1.1 GB and hashing it takes ~2 s, a third of a load.
    verify_hash: bool = True
    # Second passes for two quirks of the small model (quirks.second_pass): answer in text
    # when it repeats a call whose result it was just given; make the call when it only
    # names the tool in a text reply.
    repeat_guard: bool = True
    narration_guard: bool = True
