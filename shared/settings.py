"""One settings object for every process, read from the environment or a `.env` file."""

from __future__ import annotations

import socket
import uuid
from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_instance() -> str:
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"


class Settings(BaseSettings):
    """Runtime configuration. Every field maps to an upper-case environment variable."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_cluster: bool = False
    """True: REDIS_URL names one node of a Redis Cluster (any node; the client finds the others)
    and every client is a cluster client. A cluster has no logical databases: no /N in the URL."""
    stream_partitions: int = Field(default=1, ge=1, le=256)
    """How many streams calendar.requests and booking.commands are each split into (P). 1: one
    stream each, named as ever. P > 1: `booking.commands:{bc..}` and so on, one hash tag each,
    spread over the cluster's slots; a tenant's commands always go to the same partition (so
    they stay in order) and every worker reads all partitions of its group. Every process of a
    deployment must use the same P (shared/streams.py)."""
    openai_base_url: str | None = None
    openai_api_key: str | None = None
    openai_model: str = "gpt-4o-mini"
    openai_timeout_s: float = 60.0
    openai_max_retries: int = 2
    openai_temperature: float | None = None

    require_api_key: bool = False
    """True behind the gateway: every request needs `Authorization: Bearer <tenant key>`. False
    (local demo) serves the default tenant to anyone who can reach the port."""
    rate_user_per_minute: int = 30
    rate_tenant_per_minute: int = 600
    max_conversation_turns: int = 100

    cors_origins: list[str] = Field(default_factory=list)
    """Browser origins allowed to call the API directly (the gateway usually makes this unnecessary)."""

    instance_id: str = Field(default_factory=_default_instance)
    default_tenant: str = "demo"
    tool_timeout_s: float = 10.0
    max_model_rounds: int = 6
    model_warmup: bool = False
    """True: when the chat starts it sends the model one request with the system prompt and the
    tools, so that a local model server holds that long prefix in its cache before the first
    user arrives (/readyz waits for it). The runner sets it for the local model."""
    model_allowed_tools: bool = False
    """True: every model call lists all tools with the same schemas and restricts what may be
    called now with tool_choice `allowed_tools` (OpenAI and the local model server support it),
    so the prompt's tool block never changes and a prompt cache keeps it. False (any
    OpenAI-compatible server): each call lists only the tools that can succeed now."""
    reply_max_tokens: int = 400
    """Cap on each model answer (a tool call or a short reply)."""
    pending_action_ttl_s: int = 900
    """How long a write waits for the user's approval before it expires."""
    conversation_ttl_s: int = 7 * 24 * 3600
    max_history_turns: int = 20

    idempotency_ttl_s: int = 48 * 3600
    idempotency_lease_s: float = Field(default=10.0, gt=0)
    """A running HTTP request's claim on its Idempotency-Key lasts this long unless renewed
    (every third of it, while the turn runs): a retry after the chat died waits at most this
    long, then runs the turn again."""
    visibility_timeout_ms: int = 30_000
    """An entry a live consumer has held this long is handed to another one (a stuck handler)."""
    consumer_dead_ms: int = 3_000
    """A consumer whose heartbeat is older than this is dead: its pending entries are claimed at
    once, well inside the caller's deadline (TOOL_TIMEOUT_S), so a crash costs a retry."""
    consumer_forget_ms: int = 3_600_000
    """A dead consumer with nothing pending, idle this long, is removed from its group."""
    reclaim_interval_ms: int = 500
    """How often a worker looks for dead consumers' and stuck entries."""
    max_delivery_attempts: int = 5
    batch_size: int = 100
    block_ms: int = 1_000
    readers: int = Field(default=2, ge=1, le=16)
    """Batches a worker handles at once per stream (partition), as one consumer: while one
    batch waits for Redis, the next is read and handled, so neither the worker's core nor
    Redis waits on the other (docs/performance.md)."""

    metrics_port: int | None = None
    """A worker serves its Prometheus metrics on http://METRICS_HOST:METRICS_PORT/metrics when
    set (0: any free port); unset, it serves none. The chat serves /metrics on its own port."""
    metrics_host: str = "127.0.0.1"
    """Where a worker's metrics server binds: loopback for local runs, 0.0.0.0 in a container."""

    booking_invitations: bool = True
    """A booking worker process also consumes booking.events in group "invitations" and renders the
    .ics invitations (after the replies, off their path). False: run them elsewhere
    (python -m services.booking.invitations)."""
    ics_organizer: str = "bookings@booking-assistant.invalid"
    """The ORGANIZER address of the .ics invitations on booking.events (the address replies go to)."""

    seed_calendars_file: str | None = "services/calendar/demo_calendars.json"
    """Calendars created at worker start when missing (the demo set by default; empty to skip)."""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
