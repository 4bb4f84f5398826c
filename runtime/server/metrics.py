"""Prometheus metrics of one server (its own registry, so several servers can live in one
process), and the ASGI middleware that counts answers by endpoint and status."""
from __future__ import annotations

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge,
                               Histogram, Info, generate_latest)

# request latencies span a tiny model's milliseconds to a long CPU generation's minutes
_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_TOKENS_PER_SECOND = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)

# label values for the endpoint of a request: known routes, everything else is "other"
# (a label per unknown path would let any client grow the metrics without bound)
ENDPOINTS = ("/v1/completions", "/v1/chat/completions", "/v1/models", "/health", "/metrics")


class Metrics:
    def __init__(self, model_id: str, backend: str, device: str):
        r = self.registry = CollectorRegistry()
        Info("babel_edge_model", "the served model", registry=r).info(
            {"model": model_id, "backend": backend, "device": device})
        self.requests = Counter("babel_edge_requests", "HTTP requests answered, by endpoint and "
                                "status code (499: the client left first)", ["endpoint", "status"],
                                registry=r)
        self.queue_length = Gauge("babel_edge_queue_length", "requests waiting for the engine",
                                  registry=r)
        self.running = Gauge("babel_edge_requests_running", "requests the engine is generating "
                             "for (0 or 1)", registry=r)
        self.queue_wait = Histogram("babel_edge_queue_wait_seconds", "from arrival to the start "
                                    "of generation", buckets=_SECONDS, registry=r)
        self.ttft = Histogram("babel_edge_time_to_first_token_seconds", "from arrival to the "
                              "first generated token, queue wait included", buckets=_SECONDS,
                              registry=r)
        self.latency = Histogram("babel_edge_request_latency_seconds", "from arrival to the end "
                                 "of generation", buckets=_SECONDS, registry=r)
        self.tokens_per_second = Histogram(
            "babel_edge_decode_tokens_per_second", "per request: completion tokens after the "
            "first, over the time they took", buckets=_TOKENS_PER_SECOND, registry=r)
        self.prompt_tokens = Counter("babel_edge_prompt_tokens", "prompt tokens processed",
                                     registry=r)
        self.completion_tokens = Counter("babel_edge_completion_tokens", "completion tokens "
                                         "generated", registry=r)
        self.cancelled = Counter("babel_edge_cancelled_requests", "generations stopped early, by "
                                 "reason (client_disconnected, shutdown)", ["reason"], registry=r)
        self.tokens_after_cancel = Histogram(
            "babel_edge_tokens_after_cancel", "tokens the engine generated for a request after "
            "it was cancelled", buckets=(0, 1, 2, 4, 8, 16, 64), registry=r)

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class StatusCounter:
    """ASGI middleware: count every HTTP answer by endpoint and status code."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = None

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            path = scope.get("path", "")
            endpoint = path if path in ENDPOINTS else "other"
            self.metrics.requests.labels(endpoint, str(status or 500)).inc()
