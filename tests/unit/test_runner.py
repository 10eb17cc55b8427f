"""The process runner's decisions (pure): which model to serve, which processes, which variables."""

from __future__ import annotations

import socket
import sys

import pytest

from devtools.runner import NOISE, Ports, choose_model, describe, free_ports, local_model_env, plan
from services.model.settings import MODEL_ID
from shared.settings import Settings


def settings(**values: object) -> Settings:
    """Settings from `values` and defaults only (no environment, no .env)."""
    return Settings.model_construct(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("choice", "values", "expected"),
    [
        ("auto", {}, "local"),
        ("auto", {"openai_api_key": "sk-test"}, "configured"),
        ("auto", {"openai_base_url": "http://ollama:11434/v1"}, "configured"),
        ("local", {"openai_api_key": "sk-test"}, "local"),
        ("none", {}, "none"),
    ],
)
def test_auto_serves_the_local_model_only_when_no_model_endpoint_is_configured(
    choice: str, values: dict[str, object], expected: str
) -> None:
    assert choose_model(choice, settings(**values)) == expected  # type: ignore[arg-type]


def test_with_the_local_model_it_starts_first_and_the_chat_is_pointed_at_it() -> None:
    ports = Ports(chat_port=8100, model_port=8190)
    procs = plan(1, 2, model="local", ports=ports)
    assert [p.name for p in procs] == ["model", "calendar.0", "booking.0", "booking.1", "chat"]
    assert all(p.argv[0] == sys.executable and p.argv[1] == "-m" for p in procs)
    modules = ["services.model", "services.calendar", "services.booking", "services.booking", "services.chat"]
    assert [p.argv[2] for p in procs] == modules
    model, chat = procs[0], procs[-1]
    assert model.env == {"MODEL_HOST": "127.0.0.1", "MODEL_PORT": "8190"}
    assert chat.env["OPENAI_BASE_URL"] == "http://127.0.0.1:8190/v1"
    assert chat.env["OPENAI_MODEL"] == MODEL_ID
    assert chat.env["CHAT_PORT"] == "8100"
    assert "OPENAI_API_KEY" not in chat.env
    assert all(not p.env for p in procs[1:-1])  # workers need no model


def test_without_the_local_model_nothing_about_the_model_is_set() -> None:
    procs = plan(1, 1, model="configured")
    assert [p.name for p in procs] == ["calendar.0", "booking.0", "chat"]
    assert set(procs[-1].env) == {"CHAT_HOST", "CHAT_PORT"}


def test_explicit_tuning_variables_win_but_the_endpoint_is_always_the_local_server() -> None:
    env = local_model_env(Ports(), {"OPENAI_TEMPERATURE": "0.3", "OPENAI_BASE_URL": "http://elsewhere/v1"})
    assert "OPENAI_TEMPERATURE" not in env  # the user's 0.3 stays
    assert env["OPENAI_BASE_URL"] == "http://127.0.0.1:8090/v1"
    assert env["OPENAI_MAX_RETRIES"] == "0"


def test_the_start_banner_names_where_each_part_listens() -> None:
    lines = describe("local", Ports(), settings(redis_url="redis://127.0.0.1:6379/0"), 1, 3)
    text = "\n".join(lines)
    assert "http://127.0.0.1:8090/v1" in text
    assert "calendar x1, booking x3 on redis://127.0.0.1:6379/0" in text
    assert "http://127.0.0.1:8000" in text


def test_each_worker_gets_its_own_metrics_port_and_the_banner_lists_them() -> None:
    procs = plan(1, 2, ports=Ports(metrics_host="0.0.0.0"), metrics_ports=[9100, 9101, 9102])
    workers = {p.name: p.env for p in procs if p.name != "chat"}
    assert workers == {
        "calendar.0": {"METRICS_HOST": "0.0.0.0", "METRICS_PORT": "9100"},
        "booking.0": {"METRICS_HOST": "0.0.0.0", "METRICS_PORT": "9101"},
        "booking.1": {"METRICS_HOST": "0.0.0.0", "METRICS_PORT": "9102"},
    }
    assert "METRICS_PORT" not in procs[-1].env  # the chat serves /metrics on its own port
    lines = describe("none", Ports(), settings(redis_url="redis://127.0.0.1:6379/0"), 1, 2, procs)
    assert "metrics   : booking.1 http://0.0.0.0:9102/metrics" in lines
    assert sum(line.startswith("metrics   :") for line in lines) == 3
    with pytest.raises(ValueError):
        plan(1, 2, metrics_ports=[9100])


def test_metrics_ports_are_free_and_distinct_and_a_taken_one_is_skipped() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        first = int(taken.getsockname()[1])
        found = free_ports("127.0.0.1", first, 2)
        assert first not in found and len(set(found)) == 2 and min(found) > first
    anywhere = free_ports("127.0.0.1", 0, 3)
    assert len(set(anywhere)) == 3 and 0 not in anywhere


def test_quiet_children_log_warnings_only_but_the_model_keeps_its_timing_lines() -> None:
    procs = plan(1, 1, model="local", log_level="WARNING")
    assert [p.env.get("LOG_LEVEL") for p in procs] == [None, "WARNING", "WARNING", "WARNING"]


@pytest.mark.parametrize(
    ("line", "hidden"),
    [
        ("2026-11-26 10:09:21,974 INFO - calendar.requests | f1c45e5b-8 - Received", True),
        ("2026-11-26 10:09:21,981 INFO - calendar.requests | f1c45e5b-8 - Processed", True),
        ('INFO:     127.0.0.1:48304 - "GET /healthz HTTP/1.1" 200 OK', True),
        ("2026-11-26 10:10:44,972 INFO services.model.handler: stop: prompt 1368 tok (0 cached)", False),
        ("2026-11-26 10:11:00,000 ERROR services.chat.loop model call failed: Connection error.", False),
    ],
)
def test_routine_lines_are_hidden_from_the_terminal_and_everything_else_is_shown(line: str, hidden: bool) -> None:
    assert any(p.search(line) for p in NOISE) is hidden
