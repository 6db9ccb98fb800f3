"""A real Prometheus (Debian's package) on loopback, configured for fast feedback.

The tests and the demo need the real query engine, not a fake: the adapter's PromQL, the alert rules
and the dashboard queries are all evaluated by it. Targets come from file_sd files in one directory,
so every simulated fleet writes its own file and Prometheus picks it up through inotify within a
second. The port stays the same across ``stop()``/``start()`` so an outage test can bring the same
server back.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tgi_autoscaler_dev.localstack.process import ManagedProcess, free_port, http_ok

__all__ = ["PrometheusServer", "ScrapeJob", "find_prometheus"]


def find_prometheus() -> str:
    path = shutil.which("prometheus")
    if path is None:
        raise FileNotFoundError(
            "prometheus not found on PATH; install Debian's package: apt-get install prometheus"
        )
    return path


@dataclass(frozen=True)
class ScrapeJob:
    """An extra static scrape job (e.g. kube-state-metrics, the adapter's own /metrics)."""

    name: str
    targets: Sequence[str]
    scheme: str = "http"
    metrics_path: str = "/metrics"
    labels: Mapping[str, str] | None = None
    honor_labels: bool = False
    # Prometheus' default: samples carrying their own timestamp keep it (exporters of old data).
    honor_timestamps: bool = True

    def to_config(self, interval: str) -> dict[str, Any]:
        job: dict[str, Any] = {
            "job_name": self.name,
            "scrape_interval": interval,
            "scheme": self.scheme,
            "metrics_path": self.metrics_path,
            "honor_labels": self.honor_labels,
            "honor_timestamps": self.honor_timestamps,
            "static_configs": [{"targets": list(self.targets), "labels": dict(self.labels or {})}],
        }
        if self.scheme == "https":
            job["tls_config"] = {"insecure_skip_verify": True}
        return job


class PrometheusServer:
    """Prometheus scraping every ``*.json`` file_sd file in ``file_sd_dir`` plus extra jobs."""

    def __init__(
        self,
        workdir: Path,
        *,
        scrape_interval_s: float = 1.0,
        evaluation_interval_s: float = 1.0,
        rule_files: Sequence[Path] = (),
        port: int | None = None,
    ) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.scrape_interval_s = scrape_interval_s
        self.evaluation_interval_s = evaluation_interval_s
        self.rule_files = list(rule_files)
        self.file_sd_dir = workdir / "file_sd"
        self.config_path = workdir / "prometheus.yml"
        self._jobs: dict[str, ScrapeJob] = {}
        self._proc = ManagedProcess(
            name="prometheus",
            argv=[
                find_prometheus(),
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
                "--storage.tsdb.retention.time=1d",
                "--query.lookback-delta=30s",
                "--log.level=warn",
            ],
            log_path=workdir / "prometheus.log",
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def process(self) -> ManagedProcess:
        return self._proc

    @property
    def running(self) -> bool:
        return self._proc.running

    def _interval(self) -> str:
        return f"{int(self.scrape_interval_s * 1000)}ms"

    def render_config(self) -> dict[str, Any]:
        interval = self._interval()
        scrape_configs: list[dict[str, Any]] = [
            {
                "job_name": "tgi",
                "scrape_interval": interval,
                "scrape_timeout": interval,
                "file_sd_configs": [{"files": [str(self.file_sd_dir / "*.json")], "refresh_interval": "1s"}],
            },
            *(job.to_config(interval) for job in self._jobs.values()),
        ]
        return {
            "global": {
                "scrape_interval": interval,
                "evaluation_interval": f"{int(self.evaluation_interval_s * 1000)}ms",
            },
            "rule_files": [str(p) for p in self.rule_files],
            "scrape_configs": scrape_configs,
        }

    def _write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.file_sd_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(self.render_config(), sort_keys=False))
        tmp.replace(self.config_path)

    async def start(self, *, timeout: float = 60.0) -> None:
        self._write_config()
        await self._proc.start()
        await self._proc.wait_ready(lambda: http_ok(f"{self.url}/-/ready"), timeout=timeout)

    async def stop(self) -> None:
        await self._proc.stop()

    async def reload(self) -> None:
        """Rewrite the configuration and ask the running server to load it."""
        self._write_config()
        if not self.running:
            return
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{self.url}/-/reload", timeout=aiohttp.ClientTimeout(total=10)) as resp,
        ):
            if resp.status != 200:
                raise RuntimeError(f"prometheus reload failed: {resp.status} {await resp.text()}")

    async def add_scrape_job(self, job: ScrapeJob) -> None:
        self._jobs[job.name] = job
        await self.reload()

    async def set_rule_files(self, rule_files: Sequence[Path]) -> None:
        self.rule_files = list(rule_files)
        await self.reload()

    async def query(self, promql: str) -> list[dict[str, Any]]:
        """Instant query; returns the ``result`` vector (for tests and the demo, not the adapter)."""
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"{self.url}/api/v1/query",
                params={"query": promql},
                timeout=aiohttp.ClientTimeout(total=10),
            ) as resp,
        ):
            body = await resp.json()
        if body.get("status") != "success":
            raise RuntimeError(f"query {promql!r} failed: {body.get('error')}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result
