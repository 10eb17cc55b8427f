"""Prometheus metrics, one definition each. The chat service serves them at /metrics; a worker
serves its own on METRICS_PORT when set."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

TOOL_CALLS = Counter(
    "booking_tool_calls_total", "Tool calls by tool and outcome (ok or error code)", ["tool", "outcome"]
)
MODEL_LATENCY = Histogram(
    "booking_model_latency_seconds", "Model call latency", buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64)
)
MODEL_TOKENS = Counter("booking_model_tokens_total", "Model tokens by kind", ["kind"])
BOOKINGS = Counter("booking_effects_total", "Bookings created, cancelled or rescheduled", ["status"])
INVITATIONS = Counter("booking_invitations_total", "Booking invitations (.ics) rendered and stored, once per version")
MESSAGES = Counter("booking_stream_messages_total", "Stream messages handled by workers", ["stream", "outcome"])
STREAM_PENDING = Gauge("booking_stream_pending", "Entries delivered but not acked, per group", ["stream", "group"])
STREAM_LAG = Gauge("booking_stream_lag", "Entries not yet delivered to the group", ["stream", "group"])
