"""Runs scenarios through the real services and scores each run (over 300 lines: one run's
set-up, conversation, end-state reading and scoring share the run's context).

Per run: flush the harness's Redis database, seed the scenario's calendars, start a calendar
worker, a booking worker and the chat API in this process (testkit/system.py), create
the fixture bookings through the booking worker, play the user's turns over HTTP, then read
the end state (bookings, stored conversation) from Redis and check it. The chat reaches the
model through a counting proxy (bench/eval/proxy.py), which yields tokens and round trips.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import httpx
from openai import AsyncOpenAI
from redis.asyncio import Redis
from redis.exceptions import RedisError

from bench.eval import checks, judge, scripted
from bench.eval.proxy import CountingProxy
from bench.eval.scenario import TENANT, Context, FixtureBooking, Scenario, context_for, fixture_calendars
from bench.eval.user import UserModel
from services.calendar.store import CalendarStore
from services.chat import tools as chat_tools
from services.chat.facts import UNAVAILABLE
from services.chat.toolbus import ToolBus
from shared.domain import Booking
from shared.keys import TenantKeys
from shared.messages import Envelope
from shared.settings import Settings
from shared.tools import BookMeeting
from testkit.system import launch

log = logging.getLogger(__name__)

MARKER = "eval:harness"
"""Set in the harness's database after each flush: a database holding keys without it belongs to
someone else and is not flushed (unless forced)."""
WRITE_TOOLS = chat_tools.WRITES
OFFER_TTL_S = 1800


class ForeignDatabaseError(RuntimeError):
    """The harness's database holds keys it did not write: it will not flush them."""


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible model endpoint."""

    base_url: str
    model: str
    api_key: str | None = None
    temperature: float | None = None


class ScriptServer(Protocol):
    """The scripted OpenAI-compatible server (testkit/scripted_model.py)."""

    base_url: str
    steps: list[Callable[[dict[str, Any]], dict[str, Any]]]

    def script(self, *steps: Callable[[dict[str, Any]], dict[str, Any]]) -> None: ...


@dataclass
class TurnRecord:
    user: str
    reply: str
    status: int
    latency_s: float
    effects: list[str] = field(default_factory=list)
    tool_calls: list[str] = field(default_factory=list)
    tool_errors: list[str] = field(default_factory=list)
    leaks: list[str] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)
    false_claim: str | None = None
    unchecked_times: list[str] = field(default_factory=list)
    """Clock times the reply names that no fetch_free_slots result offered (judge.py)."""
    machine_times: list[str] = field(default_factory=list)


@dataclass
class RunResult:
    scenario: str
    run: int
    success: bool
    end_state_ok: bool
    failures: list[str]
    turns: list[TurnRecord]
    replies: int
    leaking_replies: int
    privacy_leaks: int
    false_claims: int
    unchecked_claims: int
    machine_time_replies: int
    overlaps: int
    surplus_bookings: int
    tool_calls: dict[str, int]
    tool_errors: dict[str, int]
    round_trips: int
    prompt_tokens: int
    completion_tokens: int
    model_errors: int
    model_s: float
    user_tokens: int
    user_round_trips: int
    bookings_created: int
    wall_s: float
    setup_s: float
    end_state: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def double_bookings(self) -> int:
        return self.overlaps + self.surplus_bookings

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(double_bookings=self.double_bookings, total_tokens=self.total_tokens)
        return data


def _settings(redis_url: str, model_url: str, endpoint: Endpoint, scripted_mode: bool) -> Settings:
    # a real model gets every tool listed in every call (allowed_tools narrows): its prompt
    # cache keeps the tool block; the scripted model's tests read the narrowed list
    values: dict[str, object] = {
        "redis_url": redis_url,
        "openai_base_url": model_url,
        "openai_api_key": endpoint.api_key or "eval",
        "openai_model": endpoint.model,
        "openai_temperature": endpoint.temperature,
        "openai_timeout_s": 30.0 if scripted_mode else 600.0,
        "openai_max_retries": 0 if scripted_mode else 1,
        "instance_id": f"eval-{uuid.uuid4().hex[:8]}",
        "block_ms": 100,
        "tool_timeout_s": 5.0 if scripted_mode else 15.0,
        "visibility_timeout_ms": 2_000,
        "seed_calendars_file": None,  # the harness seeds the scenario's own calendars
        "rate_user_per_minute": 100_000,
        "rate_tenant_per_minute": 100_000,
        "model_allowed_tools": not scripted_mode,
    }
    known = Settings.model_fields
    return Settings(**{k: v for k, v in values.items() if k in known})  # type: ignore[arg-type]


class Harness:
    """Runs scenarios against one model endpoint, or against a scripted model server."""

    def __init__(
        self,
        redis_url: str,
        *,
        endpoint: Endpoint | None = None,
        script: ScriptServer | None = None,
        user_endpoint: Endpoint | None = None,
        force_flush: bool = False,
    ) -> None:
        if (endpoint is None) == (script is None):
            raise ValueError("give either a model endpoint or a scripted model server")
        self.redis_url = redis_url
        self.script = script
        self.endpoint = endpoint or Endpoint(base_url=script.base_url if script else "", model="scripted")
        self.user_endpoint = user_endpoint
        self.force_flush = force_flush
        self._stack = AsyncExitStack()
        self.redis: Redis
        self.proxy: CountingProxy
        self._user_script: Any = None

    @property
    def scripted(self) -> bool:
        return self.script is not None

    async def __aenter__(self) -> Harness:
        self.redis = Redis.from_url(self.redis_url)
        self._stack.push_async_callback(self.redis.aclose)
        self.proxy = CountingProxy(self.endpoint.base_url)
        await self.proxy.start()
        self._stack.push_async_callback(self.proxy.stop)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def run_all(
        self, scenarios: Sequence[Scenario], k: int = 1, on_result: Callable[[RunResult], None] | None = None
    ) -> list[RunResult]:
        """Every run of every scenario; stops early (with the runs so far) when Redis is gone."""
        results = []
        for scenario in scenarios:
            for run in range(k):
                try:
                    result = await self.run(scenario, run)
                except ForeignDatabaseError:
                    raise
                except Exception as exc:  # one broken run must not end a long evaluation
                    log.exception("run %s #%d crashed", scenario.name, run + 1)
                    result = crashed(scenario.name, run, exc)
                if on_result is not None:
                    on_result(result)
                results.append(result)
                if not await self._redis_answers():
                    log.error("Redis at %s does not answer: the evaluation stops here", self.redis_url)
                    return results
        return results

    async def _redis_answers(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except RedisError:
            return False

    # ------------------------------------------------------------ one run

    async def _reset(self) -> None:
        if not self.force_flush and await self.redis.dbsize() and not await self.redis.exists(MARKER):
            raise ForeignDatabaseError(
                f"{self.redis_url} holds keys the harness did not write; pick another --redis-db "
                "(or --force-flush if it is really yours)"
            )
        await self.redis.flushdb()
        await self.redis.set(MARKER, "1")

    async def run(self, scenario: Scenario, run: int = 0) -> RunResult:
        started = time.perf_counter()
        ctx = context_for(scenario)
        await self._reset()
        store = CalendarStore(self.redis)
        for calendar in fixture_calendars(scenario, ctx):
            await store.put(calendar)
        run_id = f"{scenario.name}.{run}.{uuid.uuid4().hex[:6]}"
        settings = _settings(self.redis_url, self.proxy.base_url(run_id), self.endpoint, self.scripted)
        notes: list[str] = []
        records: list[TurnRecord] = []
        ids: dict[str, str] = {}
        user = await self._user_model(scenario, ctx)
        conversation = f"eval-{uuid.uuid4().hex[:8]}"
        async with (
            _closing(user),
            launch(settings) as system,
            self._fixture_bus() as book_for,
            httpx.AsyncClient(base_url=system.url, timeout=settings.openai_timeout_s * 4) as http,
        ):
            for booking in scenario.fixture.bookings:
                ids[booking.id] = await book_for(booking, ctx)
            setup_s = time.perf_counter() - started
            talk_started = time.perf_counter()

            said: list[str] = []

            async def say(text: str, index: int) -> str:
                if self.script is not None:
                    self._script_turn(scenario, index, ctx, notes)
                before = await self.bookings()
                name = scenario.user_name if scenario.gateway_name else None
                record = await self._say(http, conversation, scenario.user, text, name)
                said.append(text)
                verdict = judge.judge_turn(
                    record.reply,
                    before,
                    await self.bookings(),
                    await self.offered_starts(f"{scenario.user}.{conversation}"),
                    said,
                    {*ctx.zones.values(), ZoneInfo(scenario.zone)},
                )
                record.effects = verdict.effects
                record.false_claim = ", ".join(verdict.false_claims) or None
                record.unchecked_times, record.machine_times = verdict.unchecked_times, verdict.machine_times
                record.leaks = verdict.leaks
                records.append(record)
                return record.reply

            if user is not None:
                for index in range(scenario.simulated_user.max_turns if scenario.simulated_user else 0):
                    text = await user.next_message()
                    if text is None:
                        break
                    user.heard(await say(text, index))
            else:
                index = 0
                for turn in scenario.turns:
                    if turn.action is not None:
                        ids[turn.action.book.id] = await book_for(turn.action.book, ctx)
                        continue
                    assert turn.say is not None
                    if not (turn.optional and await self._reached(scenario, ctx, ids)):
                        await say(ctx.render(turn.say), index)
                    index += 1
            wall_s = time.perf_counter() - talk_started
        if self.script is not None and self.script.steps:
            notes.append(f"{len(self.script.steps)} scripted step(s) left unused at the end")
            self.script.steps.clear()
        stored_turns = await self.conversation_turns(scenario.user, conversation)
        return await self._score(scenario, run, run_id, ctx, ids, records, stored_turns, user, notes, wall_s, setup_s)

    async def _say(
        self, http: httpx.AsyncClient, conversation: str, user: str, text: str, name: str | None
    ) -> TurnRecord:
        began = time.perf_counter()
        headers = {"X-User-Id": user, **({"X-User-Name": name} if name else {})}
        try:
            url = f"/v1/conversations/{conversation}/messages"
            response = await http.post(url, json={"text": text}, headers=headers)
        except httpx.HTTPError as exc:
            return TurnRecord(text, f"(no answer: {exc!r})", 0, time.perf_counter() - began)
        latency = time.perf_counter() - began
        reply = response.json().get("reply", "") if response.status_code == 200 else response.text
        return TurnRecord(text, str(reply), response.status_code, latency)

    def _script_turn(self, scenario: Scenario, index: int, ctx: Context, notes: list[str]) -> None:
        assert self.script is not None
        if self.script.steps:
            notes.append(f"{len(self.script.steps)} scripted step(s) left unused before turn {index + 1}")
            self.script.steps.clear()
        plan = scenario.scripted_model.assistant if scenario.scripted_model else []
        if index < len(plan):
            self.script.script(*scripted.steps(plan[index], ctx))

    async def _reached(self, scenario: Scenario, ctx: Context, ids: dict[str, str]) -> bool:
        return not checks.match_end_state(scenario, await self.bookings(), ctx, ids)

    async def _user_model(self, scenario: Scenario, ctx: Context) -> UserModel | None:
        if scenario.simulated_user is None:
            return None
        if self.script is not None:
            if self._user_script is None:
                from testkit.scripted_model import ScriptedModel  # offline mode only

                self._user_script = await self._stack.enter_async_context(ScriptedModel())
            self._user_script.steps.clear()
            lines = scenario.scripted_model.user if scenario.scripted_model else []
            self._user_script.script(*scripted.steps([{"text": line} for line in lines], ctx))
            endpoint = Endpoint(base_url=self._user_script.base_url, model="scripted-user")
        else:
            endpoint = self.user_endpoint or self.endpoint
        client = AsyncOpenAI(base_url=endpoint.base_url, api_key=endpoint.api_key or "eval", max_retries=1)
        return UserModel(client, endpoint.model, scenario.simulated_user, ctx)

    @asynccontextmanager
    async def _fixture_bus(self) -> AsyncIterator[Callable[[FixtureBooking, Context], Awaitable[str]]]:
        """Books for the fixture (or for another user mid-conversation) through the booking
        worker; the offer the booking rules require is recorded as a fetch would record it."""
        bus = ToolBus(self.redis, f"eval-fixture-{uuid.uuid4().hex[:6]}", block_ms=100)
        await bus.start()
        store = CalendarStore(self.redis)

        async def book(spec: FixtureBooking, ctx: Context) -> str:
            start = ctx.moment(spec.at)
            conversation = f"{spec.user}.eval-fixture"
            expires = int(time.time()) + OFFER_TTL_S
            await store.offers.record_offers(
                TENANT, conversation, [spec.calendar], [int(start.timestamp())], 30 * 60, expires
            )
            args = BookMeeting(
                calendar_id=spec.calendar,
                start=start,
                duration_minutes=None,
                attendee_name=spec.name,
                participants=list(spec.participants),
            )
            call_id = f"fixture-{uuid.uuid4().hex[:8]}"
            envelope = Envelope(
                idempotency_key=f"{conversation}:{call_id}",
                correlation_id=call_id,
                tenant_id=TENANT,
                conversation_id=conversation,
                user_id=spec.user,
                type="book_meeting",
                payload=args.model_dump(mode="json"),
                reply_to=bus.reply_to,
            )
            reply = await bus.request(envelope, 10.0)
            if reply.error is not None or reply.result is None:
                raise RuntimeError(f"fixture booking {spec.id} failed: {reply.error}")
            return str(reply.result["booking"]["booking_id"])

        try:
            yield book
        finally:
            await bus.stop()

    # ------------------------------------------------------------ reading the end state

    async def bookings(self) -> list[Booking]:
        prefix = TenantKeys(TENANT).booking("")
        keys = [
            k
            async for k in self.redis.scan_iter(match=prefix + "*", count=500)
            if ":" not in k.decode()[len(prefix) :]  # a booking's own key, not a key derived from it
        ]
        raws = await self.redis.mget(keys) if keys else []
        return sorted((Booking.model_validate_json(r) for r in raws if r is not None), key=lambda b: b.start)

    async def offered_starts(self, conversation: str) -> list[int]:
        """Starts (epoch s) the calendar worker recorded as offered in the conversation: the
        `<calendar>|<start>` fields of its offers hash (runtime/offers.py)."""
        fields = await self.redis.hkeys(TenantKeys(TENANT).offers(conversation))
        starts = []
        for name in fields:
            calendar, _, start = name.decode().partition("|")
            if start.isdigit() and calendar not in ("ref", "at"):
                starts.append(int(start))
        return starts

    async def conversation_turns(self, user: str, conversation: str) -> list[list[dict[str, Any]]]:
        """The stored model messages of each turn (one list per turn)."""
        key = TenantKeys(TENANT).conversation(f"{user}.{conversation}")
        return [json.loads(raw) for raw in await self.redis.lrange(key, 0, -1)]

    async def _score(
        self,
        scenario: Scenario,
        run: int,
        run_id: str,
        ctx: Context,
        ids: dict[str, str],
        records: list[TurnRecord],
        conversation: list[list[dict[str, Any]]],
        user: UserModel | None,
        notes: list[str],
        wall_s: float,
        setup_s: float,
    ) -> RunResult:
        stored = await self.bookings()
        answered = [r for r in records if r.status == 200]
        for record, messages in zip(answered, conversation, strict=False):
            _read_calls(record, messages)
        if len(conversation) != len(answered):
            notes.append(f"{len(answered)} answered turns but {len(conversation)} stored turns")
        for record in answered:
            check = checks.check_reply(record.reply, scenario, ctx)
            record.secrets = check.secrets
            if check.forbidden:
                notes.append(f"reply to {record.user!r} holds {check.forbidden}")
        failures = checks.match_end_state(scenario, stored, ctx, ids)
        end_state_ok = not failures
        calls = Counter(name for r in records for name in r.tool_calls)
        errors = Counter(code for r in records for code in r.tool_errors)
        expected_confirmed = sum(1 for s in checks.expected_specs(scenario) if s.status == "confirmed")
        doubles = checks.double_bookings(stored, expected_confirmed, set(ids.values()))
        failures += [f"HTTP {r.status} for {r.user!r}: {r.reply[:200]}" for r in records if r.status != 200]
        failures += [f"leak in reply to {r.user!r}: {r.leaks}" for r in answered if r.leaks]
        failures += [f"privacy leak in reply to {r.user!r}: {r.secrets}" for r in answered if r.secrets]
        failures += [f"false claim ({r.false_claim}) in reply to {r.user!r}" for r in answered if r.false_claim]
        failures += [
            f"unchecked free time {r.unchecked_times} in reply to {r.user!r}" for r in answered if r.unchecked_times
        ]
        failures += [n for n in notes if n.startswith("reply to")]
        if scenario.expect.no_writes and (writes := sorted(WRITE_TOOLS & set(calls))):
            failures.append(f"write tools called: {writes}")
        if doubles.overlaps:
            failures.append(f"{doubles.overlaps} overlapping booking pair(s)")
        if answered and (missing := checks.missing_in_final_reply(answered[-1].reply, scenario, ctx)):
            failures.append(f"final reply lacks {missing}")
        if unreachable := sum(1 for r in answered if r.reply == UNAVAILABLE):
            failures.append(f"the assistant could not reach the model in {unreachable} turn(s)")
        if not records:
            failures.append("no turn was played")
        usage = self.proxy.usage(run_id)
        fixture_ids = set(ids.values())
        created = sum(1 for b in stored if b.booking_id not in fixture_ids and b.status.value == "confirmed")
        return RunResult(
            scenario=scenario.name,
            run=run,
            success=not failures,
            end_state_ok=end_state_ok,
            failures=failures,
            turns=records,
            replies=len(answered),
            leaking_replies=sum(1 for r in answered if r.leaks or r.secrets),
            privacy_leaks=sum(len(r.secrets) for r in answered),
            false_claims=sum(1 for r in answered if r.false_claim),
            unchecked_claims=sum(1 for r in answered if r.unchecked_times),
            machine_time_replies=sum(1 for r in answered if r.machine_times),
            overlaps=doubles.overlaps,
            surplus_bookings=doubles.surplus,
            tool_calls=dict(calls),
            tool_errors=dict(errors),
            round_trips=usage.round_trips,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            model_errors=usage.failed,
            model_s=round(usage.model_s, 3),
            user_tokens=(user.prompt_tokens + user.completion_tokens) if user else 0,
            user_round_trips=user.round_trips if user else 0,
            bookings_created=created,
            wall_s=round(wall_s, 3),
            setup_s=round(setup_s, 3),
            end_state=[checks.describe(b, ctx) for b in stored],
            notes=notes,
        )


@asynccontextmanager
async def _closing(user: UserModel | None) -> AsyncIterator[None]:
    try:
        yield
    finally:
        if user is not None:
            await user.client.close()


def crashed(scenario: str, run: int, exc: BaseException) -> RunResult:
    """A run the harness could not finish: failed, with the error as its reason."""
    return RunResult(
        scenario=scenario,
        run=run,
        success=False,
        end_state_ok=False,
        failures=[f"harness error: {type(exc).__name__}: {exc}"],
        turns=[],
        replies=0,
        leaking_replies=0,
        privacy_leaks=0,
        false_claims=0,
        unchecked_claims=0,
        machine_time_replies=0,
        overlaps=0,
        surplus_bookings=0,
        tool_calls={},
        tool_errors={},
        round_trips=0,
        prompt_tokens=0,
        completion_tokens=0,
        model_errors=0,
        model_s=0.0,
        user_tokens=0,
        user_round_trips=0,
        bookings_created=0,
        wall_s=0.0,
        setup_s=0.0,
        end_state=[],
    )


def _read_calls(record: TurnRecord, messages: list[dict[str, Any]]) -> None:
    """Tool calls and tool errors of one stored turn (its effects come from the state: judge.py)."""
    for message in messages:
        if message.get("role") == "assistant":
            record.tool_calls += [c["function"]["name"] for c in message.get("tool_calls") or []]
        elif message.get("role") == "tool":
            try:
                body = json.loads(message.get("content") or "{}")
            except ValueError:
                continue
            if isinstance(body, dict) and isinstance(body.get("error"), dict):
                record.tool_errors.append(str(body["error"].get("code", "unknown")))


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
