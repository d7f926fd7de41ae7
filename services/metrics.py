"""Prometheus metrics every hub process exposes: ``hub serve`` at ``/metrics`` of its
API, ``hub relay``, ``hub inbox`` and ``hub worker`` on a port of their own
(``HUB_METRICS_PORT``, ``serve_metrics``).

Each ``HubMetrics`` has its own registry (tests build many; one process holds one).
Labels take only bounded values: entry points, message types, error codes, view
names. Nothing personal, no ids.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import structlog
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = structlog.get_logger("hub.metrics")

HTTP = "http"
KAFKA = "kafka"


class MetricsUnavailable(Exception):
    code = "metrics_port_unavailable"


class HubMetrics:
    """What every entry point counts; the process and Python collectors beside them."""

    def __init__(self, *, process: bool = True) -> None:
        self.registry = CollectorRegistry()
        if process:
            ProcessCollector(registry=self.registry)  # CPU, RSS, open files, start time
            PlatformCollector(registry=self.registry)  # the Python version
            GCCollector(registry=self.registry)  # collections per generation
        self.messages = Counter(
            "hub_messages_recorded_total",
            "Messages recorded (duplicates not counted), by entry point (http, kafka) and type",
            ["entrypoint", "type"],
            registry=self.registry,
        )
        self.duplicates = Counter(
            "hub_messages_duplicate_total",
            "Messages answered as a duplicate of one already recorded, by entry point",
            ["entrypoint"],
            registry=self.registry,
        )
        self.refusals = Counter(
            "hub_refusals_total",
            "Requests and messages refused, by entry point and error code",
            ["entrypoint", "code"],
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "hub_dlq_records_total",
            "Inbox records written to the dead-letter topic, by error code",
            ["code"],
            registry=self.registry,
        )

    def recorded(self, entrypoint: str, message_type: str, *, duplicate: bool) -> None:
        if duplicate:
            self.duplicates.labels(entrypoint).inc()
        else:
            self.messages.labels(entrypoint, message_type).inc()

    def watch(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """A gauge read at each scrape (NaN when ``read`` fails: a scrape never fails)."""
        Gauge(name, documentation, registry=self.registry).set_function(_safely(name, read))

    def watch_views(self, lags: Callable[[], dict[str, int]]) -> None:
        """``hub_projection_lag_events{view}``, read at each scrape."""
        self.registry.register(_ViewLag(lags))


class _ViewLag(Collector):
    def __init__(self, lags: Callable[[], dict[str, int]]) -> None:
        self._lags = lags

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "hub_projection_lag_events", "Events recorded but not yet in a view", labels=["view"]
        )
        try:
            lags = self._lags()
        except Exception as error:  # the store may be away; the scrape still answers
            log.warning("metrics_read_failed", metric="view_lag", error=_name(error))
            lags = {}
        for view, lag in sorted(lags.items()):
            family.add_metric([view], lag)
        yield family


def _safely(name: str, read: Callable[[], float]) -> Callable[[], float]:
    def guarded() -> float:
        try:
            return float(read())
        except Exception as error:
            log.warning("metrics_read_failed", metric=name, error=_name(error))
            return math.nan

    return guarded


def _name(error: BaseException) -> str:
    return type(error).__name__  # never its message: it may quote a value


@dataclass
class MetricsServer:
    """``/metrics`` of one process on its own port (a thread of the process)."""

    server: Any
    host: str
    port: int

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve_metrics(metrics: HubMetrics, host: str, port: int) -> MetricsServer | None:
    """Serve ``metrics`` at http://host:port/metrics; None when ``port`` is 0 (off)."""
    if port == 0:
        return None
    try:
        server, _thread = start_http_server(port, addr=host, registry=metrics.registry)
    except OSError as error:
        raise MetricsUnavailable(
            f"cannot serve metrics on {host}:{port} ({error.strerror or _name(error)}); "
            "set HUB_METRICS_PORT to a free port, or 0 for none"
        ) from None
    bound = server.server_address[1]
    log.info("metrics_serving", host=host, port=bound)
    return MetricsServer(server, host, bound)
