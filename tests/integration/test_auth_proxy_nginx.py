"""The API-key proxy as it runs: Debian's nginx with the rendered configuration, before the simulator.

Checking the generated text cannot tell whether nginx accepts it, which directives it allows where,
or what a client really receives; only running nginx can. The proxy is rendered for a service
exactly as ``tgi-autoscaler render -f`` prints it, its ``load-keys.sh`` writes the key map from a
keys file, and nginx serves the rendered ``nginx.conf`` on loopback in front of a simulated replica.

Only what cannot work outside a pod is rewritten, each rewrite asserted so that a change to the
rendered text fails here instead of silently escaping the test: the listen port (8080 may be taken;
the test binds 127.0.0.1), the upstream (cluster DNS, here the replica's port), and the pid, temp and
key-map paths (``/tmp`` and ``/etc/nginx`` are shared or not writable, here a private directory).
Logging stays as rendered: the access log goes to stdout and errors to stderr, which the test sends
to files so that it can read what a pod's log would hold. nginx runs in the foreground, as in the
container, in a session of its own that the test ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from aiohttp.typedefs import Handler
from multidict import CIMultiDict

from tgi_autoscaler.render import RenderOptions
from tgi_autoscaler.render.cli import render_file
from tgi_autoscaler_dev.sim import ReplicaConfig, ReplicaServer

pytestmark = pytest.mark.integration

SERVICE = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: llm
  namespace: serving
data:
  service.yaml: |
    model: {id: m}
    auth: {enabled: true, apiKeysSecret: {name: api-keys, key: keys}}
"""
KEYS = ("sk-live.AbC_123~x+y/z=", "0123456789abcdef")
# A token every 50 ms: slow enough that buffering a stream to its end is plainly visible.
TOKEN_RATE = 20.0
UNAUTHORIZED_BODY = {"error": "missing or invalid API key"}
REALM = 'Bearer realm="llm"'
# What the rendered log_format produces; any other line would mean something else is logged.
ACCESS_LINE = re.compile(r'^127\.0\.0\.1 "[A-Z]+ /[^ "]*" \d{3} \d+ \d+\.\d{3}$')


def _nginx() -> str:
    # Debian installs nginx in /usr/sbin, which a normal user's PATH often lacks.
    path = shutil.which("nginx", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
    if path is None:
        pytest.fail("nginx not found: install Debian's nginx package (scripts/setup.sh does)")
    return path


def _rendered_proxy() -> dict[str, str]:
    text = render_file(SERVICE, origin="test", options=RenderOptions())
    for obj in yaml.safe_load_all(text):
        if obj["kind"] == "ConfigMap" and obj["metadata"]["name"] == "llm-auth-proxy":
            data: dict[str, str] = obj["data"]
            return data
    raise AssertionError("no llm-auth-proxy ConfigMap rendered")


def _replace(text: str, old: str, new: str, count: int = 1) -> str:
    assert text.count(old) == count, f"expected {count} x {old!r} in the rendered nginx.conf"
    return text.replace(old, new)


def _localize(conf: str, work: Path, *, port: int, upstream_port: int) -> str:
    conf = _replace(conf, "pid /tmp/nginx.pid;", f"pid {work}/nginx.pid;")
    conf = _replace(conf, "_temp_path /tmp/", f"_temp_path {work}/", count=5)
    conf = _replace(conf, "include /etc/nginx/auth/keys.map;", f"include {work}/keys.map;", count=2)
    conf = _replace(conf, "listen 8080;", f"listen 127.0.0.1:{port};")
    return _replace(conf, "server llm.serving.svc:80;", f"server 127.0.0.1:{upstream_port};")


def _load_keys(script: str, work: Path, keys: str) -> subprocess.CompletedProcess[str]:
    (work / "load-keys.sh").write_text(script)
    (work / "keys").write_text(keys)
    env = {
        "PATH": "/usr/bin:/bin",
        "API_KEYS_FILE": str(work / "keys"),
        "KEYS_MAP_FILE": str(work / "keys.map"),
    }
    return subprocess.run(
        ["sh", str(work / "load-keys.sh")], env=env, capture_output=True, text=True, timeout=30, check=False
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _nginx_args(work: Path, conf: Path) -> list[str]:
    # -e: errors before the configuration is read go to stderr, not to /var/log/nginx (root only).
    args = [_nginx(), "-p", str(work), "-c", str(conf), "-e", "stderr"]
    if os.geteuid() == 0:
        # As root, nginx would run its workers as "nobody", who cannot enter the private directory;
        # keep them as the invoking user, as a non-root run (and the pod, uid 101) does anyway.
        args += ["-g", f"user {pwd.getpwuid(os.geteuid()).pw_name};"]
    return args


class RecordingReplica(ReplicaServer):
    """The simulator, keeping the headers of every request that reaches it.

    It also drops the simulator's ``X-Accel-Buffering: no``, which not every server sends and which
    would switch nginx's buffering off by itself: the streaming check must depend on the proxy's own
    configuration.
    """

    def __init__(self) -> None:
        super().__init__(ReplicaConfig(token_rate=TOKEN_RATE, prefill_time_s=0.0), name="behind-auth-proxy")
        self.seen: list[CIMultiDict[str]] = []

    def build_app(self) -> web.Application:
        app = super().build_app()
        seen = self.seen

        @web.middleware
        async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
            seen.append(CIMultiDict(request.headers))
            return await handler(request)

        async def no_buffering_hint(request: web.Request, response: web.StreamResponse) -> None:
            response.headers.popall("X-Accel-Buffering", None)

        app.middlewares.append(record)
        app.on_response_prepare.append(no_buffering_hint)
        return app


@dataclass
class Proxy:
    url: str
    replica: RecordingReplica
    access_log: Path
    error_log: Path


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()  # nginx's fast shutdown; the master stops its workers
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    # The master ran in a session of its own: anything left in its group is a worker it left behind.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture
async def replica() -> AsyncIterator[RecordingReplica]:
    server = RecordingReplica()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def conf(tmp_path: Path, replica: RecordingReplica) -> tuple[Path, int]:
    """The rendered nginx.conf, localized, with the key map that load-keys.sh wrote; and its port."""
    rendered = _rendered_proxy()
    loaded = _load_keys(rendered["load-keys.sh"], tmp_path, f"# two keys\n{KEYS[0]}\n{KEYS[1]}\n")
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "loaded 2 api keys"
    port = _free_port()
    path = tmp_path / "nginx.conf"
    path.write_text(_localize(rendered["nginx.conf"], tmp_path, port=port, upstream_port=replica.port))
    return path, port


@pytest.fixture
async def proxy(tmp_path: Path, conf: tuple[Path, int], replica: RecordingReplica) -> AsyncIterator[Proxy]:
    path, port = conf
    access_log, error_log = tmp_path / "access.log", tmp_path / "error.log"
    process = _start_nginx(tmp_path, path, access_log, error_log)
    try:
        url = f"http://127.0.0.1:{port}"
        await _wait_healthy(url, process, error_log)
        yield Proxy(url=url, replica=replica, access_log=access_log, error_log=error_log)
    finally:
        _stop(process)


def _start_nginx(work: Path, conf: Path, access_log: Path, error_log: Path) -> subprocess.Popen[bytes]:
    # In the foreground, as in the pod, so that stopping this process stops nginx.
    with access_log.open("wb") as stdout, error_log.open("wb") as stderr:
        return subprocess.Popen(
            [*_nginx_args(work, conf), "-g", "daemon off;"],
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )


def _read(path: Path) -> str:
    return path.read_text()


async def _wait_healthy(url: str, process: subprocess.Popen[bytes], error_log: Path) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(100):
            if process.poll() is not None:
                pytest.fail(f"nginx exited with {process.returncode}: {_read(error_log)}")
            try:
                async with session.get(f"{url}/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)
    pytest.fail(f"nginx did not answer /healthz within 10 s: {_read(error_log)}")


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def _generate(max_new_tokens: int = 2) -> dict[str, Any]:
    return {"inputs": "Hello", "parameters": {"max_new_tokens": max_new_tokens}}


def test_nginx_accepts_the_rendered_configuration(tmp_path: Path, conf: tuple[Path, int]) -> None:
    path, _ = conf
    result = subprocess.run(
        [*_nginx_args(tmp_path, path), "-t"], capture_output=True, text=True, timeout=30, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"the configuration file {path} syntax is ok" in output
    assert f"configuration file {path} test is successful" in output


BAD_CREDENTIALS = {
    "no key": {},
    "wrong bearer key": {"Authorization": "Bearer not-a-valid-key-0000"},
    "bearer key with a suffix": {"Authorization": f"Bearer {KEYS[0]}x"},
    "bearer key with a second word": {"Authorization": f"Bearer {KEYS[0]} {KEYS[1]}"},
    "truncated bearer key": {"Authorization": f"Bearer {KEYS[0][:-1]}"},
    "bearer key in another case": {"Authorization": f"Bearer {KEYS[0].swapcase()}"},
    "bearer regex": {"Authorization": "Bearer .*"},
    "key without the bearer scheme": {"Authorization": KEYS[0]},
    "wrong x-api-key": {"X-API-Key": "not-a-valid-key-0000"},
    "x-api-key with a suffix": {"X-API-Key": f"{KEYS[1]}0"},
    "truncated x-api-key": {"X-API-Key": KEYS[1][1:]},
    "x-api-key regex": {"X-API-Key": ".*"},
}


@pytest.mark.parametrize("headers", BAD_CREDENTIALS.values(), ids=BAD_CREDENTIALS.keys())
async def test_a_request_without_a_valid_key_gets_a_json_401_and_never_reaches_the_server(
    proxy: Proxy, client: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    before = len(proxy.replica.seen)
    async with client.post(f"{proxy.url}/generate", json=_generate(), headers=headers) as resp:
        assert resp.status == 401
        assert resp.headers["Content-Type"] == "application/json"
        assert resp.headers.getall("WWW-Authenticate") == [REALM]
        assert json.loads(await resp.read()) == UNAUTHORIZED_BODY
    assert len(proxy.replica.seen) == before


async def test_a_key_in_the_query_string_is_not_accepted(proxy: Proxy, client: aiohttp.ClientSession) -> None:
    async with client.get(f"{proxy.url}/info", params={"api_key": KEYS[0]}) as resp:
        assert resp.status == 401
        assert resp.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize("key", KEYS, ids=["first-key", "second-key"])
@pytest.mark.parametrize("header", ["Authorization", "X-API-Key"])
async def test_a_valid_key_reaches_the_server_without_the_key_headers(
    proxy: Proxy, client: aiohttp.ClientSession, key: str, header: str
) -> None:
    value = f"Bearer {key}" if header == "Authorization" else key
    before = len(proxy.replica.seen)
    request_headers = {header: value, "X-Request-Id": f"valid-{header}-{key[:4]}"}
    async with client.post(f"{proxy.url}/generate", json=_generate(), headers=request_headers) as resp:
        assert resp.status == 200, await resp.text()
        reply = await resp.json()
    assert isinstance(reply["generated_text"], str)
    assert reply["generated_text"]
    assert len(proxy.replica.seen) == before + 1
    seen = proxy.replica.seen[-1]
    assert seen["X-Request-Id"] == request_headers["X-Request-Id"], "other headers pass through"
    assert "Authorization" not in seen
    assert "X-API-Key" not in seen
    assert key not in json.dumps(list(seen.items()))


async def test_generate_stream_events_arrive_token_by_token(
    proxy: Proxy, client: aiohttp.ClientSession
) -> None:
    tokens = 10
    arrivals: list[float] = []
    events: list[dict[str, Any]] = []
    headers = {"Authorization": f"Bearer {KEYS[0]}"}
    async with client.post(f"{proxy.url}/generate_stream", json=_generate(tokens), headers=headers) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        async for line in resp.content:
            if line.startswith(b"data:"):
                arrivals.append(time.monotonic())
                events.append(json.loads(line[len(b"data:") :]))
    assert [e["index"] for e in events] == list(range(1, tokens + 1))
    assert events[-1]["generated_text"] == "".join(e["token"]["text"] for e in events)
    # The replica spends (tokens - 1) / TOKEN_RATE = 0.45 s between the first and the last token;
    # a buffering proxy would hand them over together, in one moment.
    span = arrivals[-1] - arrivals[0]
    assert span >= 0.5 * (tokens - 1) / TOKEN_RATE, f"events arrived within {span:.3f} s"
    apart = sum(1 for a, b in itertools.pairwise(arrivals) if b - a >= 0.01)
    assert apart >= tokens // 2, f"only {apart} of {tokens - 1} events arrived apart: {arrivals}"


async def test_the_logs_hold_no_key(proxy: Proxy, client: aiohttp.ClientSession) -> None:
    attempts: list[tuple[str, dict[str, str], dict[str, str]]] = [
        ("/generate", {"Authorization": f"Bearer {KEYS[0]}"}, {}),
        ("/generate", {"X-API-Key": KEYS[1]}, {}),
        ("/generate", {"Authorization": f"Bearer {KEYS[1]}-wrong"}, {}),
        ("/generate", {"X-API-Key": f"{KEYS[0]}-wrong"}, {}),
        ("/generate", {"Authorization": f"Bearer {KEYS[0]}"}, {"api_key": KEYS[1]}),
    ]
    statuses = []
    for path, headers, params in attempts:
        async with client.post(f"{proxy.url}{path}", json=_generate(), headers=headers, params=params) as r:
            await r.read()
            statuses.append(r.status)
    assert statuses == [200, 200, 401, 401, 200]
    access = _read(proxy.access_log)
    lines = access.splitlines()
    assert len(lines) >= len(attempts)
    for line in lines:
        assert ACCESS_LINE.match(line), f"unexpected access log line: {line!r}"
    assert any('"POST /generate" 200 ' in line for line in lines)
    assert any('"POST /generate" 401 ' in line for line in lines)
    logs = access + _read(proxy.error_log)
    for key in KEYS:
        assert key not in logs
        assert key[:8] not in logs
    assert "Bearer" not in logs


def test_load_keys_rejects_an_invalid_line(tmp_path: Path) -> None:
    result = _load_keys(_rendered_proxy()["load-keys.sh"], tmp_path, f"{KEYS[0]}\nnot a key; deny all\n")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "api key on line 2 rejected: use 8-256 characters from A-Z a-z 0-9 . _ ~ + / = -"
    )
    assert "deny" not in result.stderr + result.stdout
    assert not (tmp_path / "keys.map").exists()


def test_load_keys_rejects_a_file_without_keys(tmp_path: Path) -> None:
    result = _load_keys(_rendered_proxy()["load-keys.sh"], tmp_path, "# no keys yet\n\n   \n")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "no api keys found in the secret; refusing to start a proxy that admits nobody"
    )
    assert not (tmp_path / "keys.map").exists()
