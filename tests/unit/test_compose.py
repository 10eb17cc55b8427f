"""docker-compose.yml and the Dockerfile agree with the code: service commands are real modules,
environment variables are real settings, persistence and health are configured, workers scale.

No Docker engine runs here: the YAML is parsed and checked; `docker compose config` runs too
when the compose plugin answers. The workers' healthcheck command runs for real against Redis.
"""

from __future__ import annotations

import asyncio
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.model.settings import ModelSettings
from shared.settings import Settings
from testkit.redis_cluster import is_cluster_url
from testkit.system import make_settings, running_workers

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
APP_SERVICES = ("chat", "calendar", "booking")
WORKERS = ("calendar", "booking")


def env_read_by_code() -> set[str]:
    """Variables that the code reads straight from os.environ (outside the Settings classes)."""
    found: set[str] = set()
    for folder in ("services", "shared", "runtime"):  # what the image holds (devtools/ is not in it)
        for path in ROOT.glob(f"{folder}/**/*.py"):
            found |= set(re.findall(r"os\.environ(?:\.get\(|\[)\"([A-Z_]+)\"", path.read_text()))
    return found


def settings_env(settings: type[Settings] | type[ModelSettings]) -> set[str]:
    prefix = settings.model_config.get("env_prefix") or ""
    return {(prefix + name).upper() for name in settings.model_fields}


def module_of(command: list[str]) -> str:
    assert command[:2] == ["python", "-m"], command
    return command[2]


def test_the_file_holds_redis_the_three_services_and_the_local_model() -> None:
    assert set(SERVICES) == {"redis", "chat", "calendar", "booking", "model"}


@pytest.mark.parametrize("name", [*APP_SERVICES, "model"])
def test_each_service_runs_an_existing_module_with_a_main(name: str) -> None:
    module = module_of(SERVICES[name]["command"])
    assert module == f"services.{name}"
    assert importlib.util.find_spec(f"{module}.__main__") is not None


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_set_only_variables_the_code_reads(name: str) -> None:
    known = settings_env(Settings) | env_read_by_code()
    unknown = set(SERVICES[name]["environment"]) - known
    assert not unknown, f"{name} sets variables nothing reads: {sorted(unknown)}"
    env = SERVICES[name]["environment"]
    assert env["REDIS_URL"] == "${REDIS_URL:-redis://redis:6379/0}"  # the compose Redis unless pointed elsewhere
    assert env["REDIS_CLUSTER"] == "${REDIS_CLUSTER:-false}"
    assert env["STREAM_PARTITIONS"] == "${STREAM_PARTITIONS:-1}"


def test_the_model_service_sets_only_model_settings_and_runs_under_the_local_profile() -> None:
    model = SERVICES["model"]
    assert model["profiles"] == ["local"]
    assert set(model["environment"]) <= settings_env(ModelSettings)
    assert model["build"]["target"] == "model"
    assert "ports" not in model  # the chat reaches it on the compose network


def test_the_chat_can_be_pointed_at_any_model_endpoint() -> None:
    env = SERVICES["chat"]["environment"]
    assert {"OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_MODEL"} <= set(env)
    assert env["OPENAI_API_KEY"] is None  # passed through, never written into the file
    depends = SERVICES["chat"]["depends_on"]
    assert depends["model"] == {"condition": "service_healthy", "required": False}


def test_redis_persists_with_an_append_only_file_synced_every_second() -> None:
    redis = SERVICES["redis"]
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command
    assert "--appendfsync everysec" in command
    assert "--maxmemory-policy noeviction" in command
    assert any(v.endswith(":/data") for v in redis["volumes"])
    assert "redis-data" in COMPOSE["volumes"]


@pytest.mark.parametrize("name", SERVICES)
def test_every_service_has_a_healthcheck(name: str) -> None:
    check = SERVICES[name]["healthcheck"]
    assert check["test"][0] == "CMD"


@pytest.mark.parametrize("name", [*APP_SERVICES])
def test_services_start_only_after_their_dependencies_are_healthy(name: str) -> None:
    depends = SERVICES[name]["depends_on"]
    assert "redis" in depends
    assert all(d["condition"] == "service_healthy" for d in depends.values())


@pytest.mark.parametrize("name", WORKERS)
def test_workers_can_be_scaled(name: str) -> None:
    service = SERVICES[name]
    assert "container_name" not in service
    assert "ports" not in service
    assert "INSTANCE_ID" not in service["environment"]  # default: hostname + random, unique per replica


@pytest.mark.parametrize("name", WORKERS)
def test_workers_serve_metrics_on_a_fixed_port_exposed_to_the_compose_network_only(name: str) -> None:
    service = SERVICES[name]
    env = service["environment"]
    assert env["METRICS_HOST"] == "0.0.0.0"  # reachable from the network, not only in the container
    assert [str(p) for p in service["expose"]] == [env["METRICS_PORT"]]
    assert "ports" not in service  # published ports would clash between replicas
    assert Settings.model_validate({"metrics_port": env["METRICS_PORT"]}).metrics_port == int(env["METRICS_PORT"])


def test_the_chat_serves_metrics_on_its_own_port_and_sets_no_metrics_port() -> None:
    assert "METRICS_PORT" not in SERVICES["chat"]["environment"]


def test_the_dockerfile_is_multi_stage_with_non_root_targets_for_the_compose_file() -> None:
    stages = re.findall(r"^FROM \S+ AS (\S+)$", DOCKERFILE, re.MULTILINE)
    targets = {s["build"]["target"] for s in SERVICES.values() if "build" in s}
    assert targets <= set(stages)
    assert stages[-1] == "app"  # `docker build .` gives the slim image
    for target in targets:
        body = DOCKERFILE.split(f" AS {target}\n", 1)[1].split("\nFROM ", 1)[0]
        assert re.search(r"^USER app$", body, re.MULTILINE), f"stage {target} runs as root"
    assert "-slim" in DOCKERFILE
    assert "MODEL_PATH=/models/" in DOCKERFILE


def _worker_check(name: str) -> list[str]:
    test: list[str] = SERVICES[name]["healthcheck"]["test"]
    assert test[1:4] == ["python", "-m", "runtime.health"]
    return [sys.executable, *test[2:]]


async def exit_code(argv: list[str], env: dict[str, str]) -> int:
    process = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    return await process.wait()


async def test_the_worker_healthcheck_passes_once_the_worker_has_created_its_group(redis_url: str) -> None:
    env = {"REDIS_URL": redis_url, "REDIS_CLUSTER": str(is_cluster_url(redis_url)).lower(), "PATH": "/usr/bin:/bin"}
    check = _worker_check("booking")
    assert await exit_code(check, env) != 0
    async with running_workers(make_settings(redis_url, "http://127.0.0.1:9/v1"), ["booking"]):
        assert await exit_code(check, env) == 0


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker CLI on this machine")
def test_docker_compose_accepts_the_file() -> None:
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("the docker compose plugin is not installed")
    for profile in ([], ["--profile", "local"]):
        done = subprocess.run(
            ["docker", "compose", *profile, "config", "--quiet"], cwd=ROOT, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr


def compose_default(value: str) -> str:
    """The value a `${VAR:-default}` entry takes when VAR is unset."""
    found = re.fullmatch(r"\$\{[A-Z_]+:-(.*)\}", value)
    return found.group(1) if found else value


def test_the_chat_requires_api_keys_unless_the_deployment_says_otherwise() -> None:
    """Its port is published: without keys anyone reaching it would act for the default tenant."""
    value = SERVICES["chat"]["environment"]["REQUIRE_API_KEY"]
    assert Settings.model_validate({"require_api_key": compose_default(value)}).require_api_key is True
    assert value.startswith("${REQUIRE_API_KEY:-"), "still switchable for a local demo"
