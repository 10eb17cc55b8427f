"""The published AsyncAPI document is generated from the code and kept up to date."""

from __future__ import annotations

import json
from pathlib import Path

from shared.asyncapi import document

PUBLISHED = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.json"


def test_published_asyncapi_matches_the_code() -> None:
    assert json.loads(PUBLISHED.read_text()) == document(), "regenerate: python -m shared.asyncapi > docs/asyncapi.json"


def test_asyncapi_documents_every_stream_with_the_envelope_schema() -> None:
    doc = document()
    assert {"calendar.requests", "booking.commands", "booking.events", "dead.letters"} <= set(doc["channels"])  # type: ignore[call-overload]
    schemas = doc["components"]["schemas"]  # type: ignore[index]
    assert "idempotency_key" in json.dumps(schemas)
