"""Prometheus metrics, named as text-embeddings-inference names them (``te_…``), in a registry per app."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_TOKENS = (16, 64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536)
#: the embedding routes, as the ``method`` label of the request counters
ROUTES = ("embed", "openai")


class Metrics:
    """Request counts by outcome, queue size, and the durations and sizes TEI reports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("te_request_count", "Requests received", ["method"], registry=r)
        self.successes = Counter("te_request_success", "Requests answered", ["method"], registry=r)
        self.failures = Counter("te_request_failure", "Requests that failed, by error type", ["err"], registry=r)
        # the per-route children, looked up once: ``labels()`` per request was ~4% of a busy event loop
        self.received = {route: self.requests.labels(method=route) for route in ROUTES}
        self.answered = {route: self.successes.labels(method=route) for route in ROUTES}
        self.queue_size = Gauge("te_queue_size", "Inputs waiting for a batch", registry=r)
        self.in_flight = Gauge("te_inputs_in_flight", "Inputs admitted and not yet answered", registry=r)
        self.duration = Histogram("te_request_duration", "Request duration (s)", buckets=_SECONDS, registry=r)
        self.tokenization = Histogram("te_request_tokenization_duration", "Tokenization duration (s)",
                                      buckets=_SECONDS, registry=r)
        self.queue = Histogram("te_request_queue_duration", "Time waiting for a batch (s)", buckets=_SECONDS,
                               registry=r)
        self.inference = Histogram("te_request_inference_duration", "Forward passes of a request (s)",
                                   buckets=_SECONDS, registry=r)
        self.batch_size = Histogram("te_batch_next_size", "Inputs per batch", buckets=_SIZES, registry=r)
        self.batch_tokens = Histogram("te_batch_next_tokens", "Tokens per batch", buckets=_TOKENS, registry=r)
        self.batch_duration = Histogram("te_batch_inference_duration", "Forward passes of a batch (s)",
                                        buckets=_SECONDS, registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
