"""Prometheus metrics of one API process (its own registry, so tests can build many).

The counters every hub process shares (messages by entry point and type, refusals
by code, dead letters, process and Python collectors) come from ``HubMetrics``;
``hub serve`` hands the same object to the relay and inbox it runs in-process."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from services.metrics import HubMetrics


class ApiMetrics(HubMetrics):
    def __init__(self) -> None:
        super().__init__()
        self.requests = Counter(
            "hub_http_requests_total", "HTTP requests", ["route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "hub_http_request_seconds", "HTTP request latency", ["route"], registry=self.registry
        )
        self.lag = Gauge(
            "hub_projection_lag_events",
            "Events recorded but not yet in a view",
            ["view"],
            registry=self.registry,
        )
