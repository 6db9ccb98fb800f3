"""One simulated replica as an aiohttp server speaking TGI's HTTP API on loopback.

Routes (as in TGI's router): ``POST /generate``, ``POST /generate_stream`` (server-sent events),
``POST /`` (compat: ``stream`` flag, list body), ``GET /health`` and ``GET /`` and ``GET /ping``,
``GET /info``, ``GET /metrics``. Status codes and error bodies follow the router: 422 validation,
429 "Model is overloaded", both as ``{"error": ..., "error_type": ...}``. As in TGI, a streaming
request that fails after the 200 was sent reports the error as an SSE event.

A replica can *drain*: it then answers 503 to new work and to ``/health`` while it finishes what it
already accepted, which is what a terminating pod behind a Service looks like to clients.

A replica can also *load* first (``start_delay_s``): it listens at once but answers 503 to
``/health``, ``/metrics`` and new work until the delay has passed, like a TGI pod whose router only
comes up once the model is loaded. Prometheus can discover such a pod while it loads (a cluster's
service discovery lists a pod from its creation), yet has no series of it until it serves. A replica
that follows a real pod loads until :meth:`ReplicaServer.mark_loaded` (the pod turned Ready) instead.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web

from tgi_autoscaler_dev.sim.engine import Clock, ReplicaEngine
from tgi_autoscaler_dev.sim.metrics import (
    CONTENT_TYPE,
    Engine,
    ReplicaCollector,
    build_registry,
    render_text,
)
from tgi_autoscaler_dev.sim.model import (
    Accepted,
    Completion,
    GenerationRequest,
    InvalidRequest,
    Rejected,
    ReplicaConfig,
    ReplicaModel,
    Snapshot,
    TokenEvent,
)
from tgi_autoscaler_dev.sim.protocol import (
    DeserializeError,
    ParsedRequest,
    error_body,
    generate_response,
    parse_request,
    stream_event,
    timing_headers,
    validate,
)

__all__ = ["MODEL_HEADER", "ReplicaServer", "ServedModel"]

log = structlog.get_logger(__name__)

_STATUS = {"overloaded": 429, "validation": 422}


# The response header naming the model that answered (TGI sends none; the simulator adds it).
MODEL_HEADER = "x-model-id"


@dataclass(frozen=True, slots=True)
class ServedModel:
    """What ``GET /info`` reports about the (pretend) model and router build."""

    model_id: str = "tgi-autoscaler/simulated-llm"
    model_sha: str | None = None
    model_pipeline_tag: str | None = "text-generation"
    version: str = "3.0.0"
    sha: str | None = None
    docker_label: str | None = "tgi-autoscaler-simulator"


def _dumps(body: Any) -> str:
    return json.dumps(body, separators=(",", ":"))


def _sse(body: Any) -> bytes:
    return f"data:{_dumps(body)}\n\n".encode()


class ReplicaServer:
    """A TGI-compatible HTTP server backed by a :class:`ReplicaModel`, bound to 127.0.0.1."""

    def __init__(
        self,
        config: ReplicaConfig | None = None,
        *,
        engine: Engine = "tgi",
        served: ServedModel | None = None,
        name: str = "replica",
        port: int = 0,
        clock: Clock = time.monotonic,
        start_delay_s: float = 0.0,
        load_until_marked: bool = False,
    ) -> None:
        if not (start_delay_s >= 0 and start_delay_s < float("inf")):
            raise ValueError(f"start_delay_s: must be a finite number of seconds >= 0, got {start_delay_s!r}")
        self.config = config or ReplicaConfig()
        self.served = served or ServedModel()
        self.name = name
        self._requested_port = port
        self._clock = clock
        # Only the impersonated engine's families are recorded: the others would cost CPU unread.
        record_for = () if engine == "tgi" else (engine,)
        self.model = ReplicaModel(self.config, now=clock(), record_for=record_for)
        self.engine = ReplicaEngine(self.model, clock=clock)
        self._collector = ReplicaCollector(self.model, engine=engine, model_name=self.served.model_id)
        self.registry = build_registry(self._collector)
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._draining = False
        self._start_delay_s = start_delay_s
        self._serves_at = float("inf") if load_until_marked else clock() + start_delay_s
        self._log = log.bind(replica=name)

    # -- lifecycle --------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"replica {self.name} is not started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def loading(self) -> bool:
        """True until ``start_delay_s`` after the replica was created (the model is loading)."""
        return self._clock() < self._serves_at

    def mark_loaded(self) -> None:
        """The model has loaded: serve from now on (the pod this replica plays turned Ready)."""
        self._serves_at = min(self._serves_at, self._clock())

    @property
    def ready(self) -> bool:
        return self._runner is not None and self.engine.running and not self._draining and not self.loading

    @property
    def draining(self) -> bool:
        return self._draining

    def snapshot(self) -> Snapshot:
        return self.engine.snapshot()

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/generate", self._generate)
        app.router.add_post("/generate_stream", self._generate_stream)
        app.router.add_post("/", self._compat)
        app.router.add_get("/", self._health)
        app.router.add_get("/health", self._health)
        app.router.add_get("/ping", self._health)
        app.router.add_get("/info", self._info)
        app.router.add_get("/metrics", self._metrics)
        # Every answer names the model that produced it, so a test of a model switch can tell which
        # Deployment answered each request (streams too: the header goes out before the first token).
        app.on_response_prepare.append(self._name_model)
        return app

    async def _name_model(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers[MODEL_HEADER] = self.served.model_id

    async def start(self) -> None:
        if self._runner is not None:
            return
        self.engine.start()
        runner = web.AppRunner(
            self.build_app(),
            access_log=None,
            handle_signals=False,
            # A client that goes away cancels its handler, which drops the request from the batch
            # (TGI's err="dropped"); stopping cuts in-flight requests instead of waiting a minute.
            handler_cancellation=True,
            shutdown_timeout=1.0,
        )
        try:
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", self._requested_port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            await self.engine.stop()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        self._log.info("replica_started", url=self.url)

    async def drain(self, timeout: float | None = None) -> None:
        """Refuse new work, then wait (up to ``timeout``) until accepted requests are answered."""
        self._draining = True
        started = self._clock()
        self._log.info("replica_draining", in_flight=self.model.in_flight)
        if timeout is None:
            await self.engine.wait_idle()
        else:
            try:
                async with asyncio.timeout(timeout):
                    await self.engine.wait_idle()
            except TimeoutError:
                self._log.warning("replica_drain_timeout", in_flight=self.model.in_flight)
        self._log.info("replica_drained", seconds=round(self._clock() - started, 3))

    async def stop(self) -> None:
        self._draining = True
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.engine.stop()
        self._log.info("replica_stopped")

    # -- handlers ---------------------------------------------------------------------------------

    async def _parse(self, request: web.Request, *, compat: bool) -> ParsedRequest | web.Response:
        if request.content_type != "application/json":
            return web.json_response(
                error_body("Expected request with `Content-Type: application/json`", "validation"),
                status=415,
            )
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError as exc:
            return web.json_response(
                error_body(f"Failed to parse the request body as JSON: {exc}", "validation"),
                status=400,
            )
        try:
            return parse_request(body, allow_stream_flag=compat)
        except DeserializeError as exc:
            return web.json_response(error_body(str(exc), "validation"), status=exc.status)

    def _unavailable(self) -> web.Response:
        if self.loading:
            return web.json_response(error_body("Model is loading", "unavailable"), status=503)
        return web.json_response(error_body("Server is shutting down", "unavailable"), status=503)

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        parsed = await self._parse(request, compat=False)
        if isinstance(parsed, web.Response):
            return parsed
        return await self._generate_parsed(parsed, wrap_in_list=False)

    async def _compat(self, request: web.Request) -> web.StreamResponse:
        parsed = await self._parse(request, compat=True)
        if isinstance(parsed, web.Response):
            return parsed
        if parsed.stream:
            return await self._stream_parsed(request, parsed)
        return await self._generate_parsed(parsed, wrap_in_list=True)

    async def _generate_stream(self, request: web.Request) -> web.StreamResponse:
        parsed = await self._parse(request, compat=False)
        if isinstance(parsed, web.Response):
            return parsed
        return await self._stream_parsed(request, parsed)

    async def _collect(self, request_id: int, stream: asyncio.Queue[TokenEvent]) -> Completion:
        try:
            while True:
                event = await stream.get()
                if event.completion is not None:
                    return event.completion
        except asyncio.CancelledError:
            self.engine.cancel(request_id)
            raise

    async def _generate_parsed(self, parsed: ParsedRequest, *, wrap_in_list: bool) -> web.Response:
        if self._draining or self.loading:
            return self._unavailable()
        valid = validate(parsed, self.config, stream=False)
        submission, stream = self.engine.submit(valid, every_token=False)
        if isinstance(submission, Rejected):
            self._log_request("generate", parsed, submission.error)
            return web.json_response(
                error_body(submission.message, submission.error), status=_STATUS[submission.error]
            )
        assert stream is not None
        assert isinstance(valid, GenerationRequest)
        done = await self._collect(submission.request_id, stream)
        seed = parsed.parameters.seed if parsed.parameters.seed is not None else submission.request_id
        body = generate_response(parsed, valid, done, seed)
        self._log_request("generate", parsed, "ok", done)
        return web.json_response(
            [body] if wrap_in_list else body,
            headers=timing_headers(done, characters=len(parsed.inputs)),
            dumps=_dumps,
        )

    async def _stream_parsed(self, request: web.Request, parsed: ParsedRequest) -> web.StreamResponse:
        if self._draining or self.loading:
            return self._unavailable()
        valid = validate(parsed, self.config, stream=True)
        submission, stream = self.engine.submit(valid)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
                "x-compute-type": "gpu+optimized",
                "x-compute-characters": str(len(parsed.inputs)),
            }
        )
        await response.prepare(request)
        if not isinstance(submission, Accepted):
            self._log_request("generate_stream", parsed, submission.error)
            await response.write(_sse(error_body(submission.message, submission.error)))
            await response.write_eof()
            return response
        assert stream is not None
        assert not isinstance(valid, InvalidRequest)
        seed = parsed.parameters.seed if parsed.parameters.seed is not None else submission.request_id
        try:
            while True:
                event = await stream.get()
                await response.write(_sse(stream_event(parsed, event.index, seed, event.completion)))
                if event.completion is not None:
                    self._log_request("generate_stream", parsed, "ok", event.completion)
                    break
        except asyncio.CancelledError:
            self.engine.cancel(submission.request_id)
            self._log_request("generate_stream", parsed, "dropped")
            raise
        except ConnectionError:
            # The client went away mid-stream: stop generating for it, as TGI does.
            self.engine.cancel(submission.request_id)
            self._log_request("generate_stream", parsed, "dropped")
            return response
        await response.write_eof()
        return response

    async def _health(self, request: web.Request) -> web.Response:
        if self.ready:
            return web.Response(status=200)
        return web.json_response(error_body("unhealthy", "healthcheck"), status=503)

    async def _info(self, request: web.Request) -> web.Response:
        c, s = self.config, self.served
        return web.json_response(
            {
                "model_id": s.model_id,
                "model_sha": s.model_sha,
                "model_pipeline_tag": s.model_pipeline_tag,
                "max_concurrent_requests": c.max_concurrent_requests,
                "max_best_of": c.max_best_of,
                "max_stop_sequences": c.max_stop_sequences,
                "max_input_tokens": c.max_input_tokens,
                "max_total_tokens": c.max_total_tokens,
                "validation_workers": 2,
                "max_client_batch_size": 4,
                "router": "text-generation-router",
                "version": s.version,
                "sha": s.sha,
                "docker_label": s.docker_label,
            }
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        if self.loading:
            return web.Response(status=503, text="model loading\n")
        return web.Response(body=render_text(self.registry), headers={"Content-Type": CONTENT_TYPE})

    def _log_request(
        self, route: str, parsed: ParsedRequest, outcome: str, done: Completion | None = None
    ) -> None:
        # Debug level: a loaded fleet answers hundreds of requests per second.
        if done is None:
            self._log.debug("request", route=route, outcome=outcome)
            return
        self._log.debug(
            "request",
            route=route,
            outcome=outcome,
            total_s=round(done.total_duration, 4),
            queue_s=round(done.queue_duration, 4),
            inference_s=round(done.inference_duration, 4),
            generated_tokens=done.generated_tokens,
            stream=route == "generate_stream" or parsed.stream,
        )
