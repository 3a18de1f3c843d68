"""Traces: spans for route, attempt and gate, with OpenTelemetry's GenAI attribute names.

Optional (`pip install -e '.[otel]'`). Without the OpenTelemetry API every helper here is a
no-op that costs one attribute lookup; with the API but no SDK configured, OpenTelemetry's
own no-op tracer answers. Configure a tracer provider (an exporter) in your process, as
OpenTelemetry documents, and the spans appear:

- `stage5.route` (one routing decision): `stage5.decision_id`, `stage5.start_tier`,
  `stage5.source`, `stage5.router_version`, `stage5.lam`;
- `chat <model>` (one HTTP call to a provider, the GenAI client span):
  `gen_ai.operation.name`, `gen_ai.provider.name`, `gen_ai.request.model`,
  `gen_ai.request.max_tokens`, `gen_ai.request.temperature`, `gen_ai.request.seed`,
  `gen_ai.response.model`, `gen_ai.response.finish_reasons`, `gen_ai.usage.input_tokens`,
  `gen_ai.usage.output_tokens`, `server.address`, `error.type`, and `stage5.tier`;
- `stage5.gate` (one verdict): `gen_ai.evaluation.name`, `gen_ai.evaluation.score.value`,
  `gen_ai.evaluation.score.label`, `stage5.schema_valid`, `stage5.verdict`.

This module imports no project code (the ground floor) and no SDK.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

try:  # the API only; the SDK (exporters, providers) is the application's choice
    from opentelemetry import trace as _trace
except ImportError:  # pragma: no cover - the otel extra is not installed
    _trace = None

TRACER_NAME = "stage5_router"


def tracer() -> Any:
    return _trace.get_tracer(TRACER_NAME) if _trace is not None else None


class Span:
    """A span, or nothing: the same calls either way."""

    def __init__(self, span: Any = None) -> None:
        self.span = span

    def set(self, **attributes: Any) -> None:
        if self.span is None or not self.span.is_recording():
            return
        for key, value in attributes.items():
            if value is not None:
                self.span.set_attribute(key.replace("__", "."), value)

    def failed(self, error_type: str) -> None:
        self.set(**{"error.type": error_type or "error"})
        if self.span is not None and _trace is not None:
            self.span.set_status(_trace.Status(_trace.StatusCode.ERROR, error_type))

    def answered(self, result: Any) -> None:
        """A provider's answer (the LLM client's `CallResult`)."""
        self.set(**{"gen_ai.response.model": result.response_model,
                    "gen_ai.response.finish_reasons": [result.finish_reason or "unknown"],
                    "gen_ai.usage.input_tokens": int(result.prompt_tokens),
                    "gen_ai.usage.output_tokens": int(result.completion_tokens),
                    "stage5.usage_estimated": bool(result.usage_estimated)})


@contextlib.contextmanager
def span(name: str, kind: str = "INTERNAL", **attributes: Any) -> Iterator[Span]:
    t = tracer()
    if t is None:
        yield Span()
        return
    with t.start_as_current_span(name, kind=getattr(_trace.SpanKind, kind)) as raw:
        wrapped = Span(raw)
        wrapped.set(**attributes)
        yield wrapped


@contextlib.contextmanager
def attempt_span(tier: str, deployment: str, base_url: str, body: Mapping[str, Any]
                 ) -> Iterator[Span]:
    """One call to a provider: the GenAI client span `chat <model>`."""
    model = str(body.get("model", ""))
    with span(f"chat {model}", "CLIENT", **{
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": deployment,
            "gen_ai.request.model": model,
            "gen_ai.request.max_tokens": body.get("max_completion_tokens",
                                                  body.get("max_tokens")),
            "gen_ai.request.temperature": body.get("temperature"),
            "gen_ai.request.seed": body.get("seed"),
            "server.address": urlsplit(base_url).hostname, "stage5.tier": tier}) as s:
        yield s


@contextlib.contextmanager
def route_span(**attributes: Any) -> Iterator[Span]:
    """One routing decision; set its outcome with `decided`."""
    with span("stage5.route", **{"gen_ai.operation.name": "route", **attributes}) as s:
        yield s


def decided(s: Span, decision: Mapping[str, Any], lam: float | None = None) -> None:
    s.set(**{"stage5.decision_id": decision.get("decision_id"),
             "stage5.start_tier": decision.get("start_tier"),
             "stage5.source": decision.get("source"),
             "stage5.router_version": decision.get("router_version"),
             "stage5.lam": lam})


@contextlib.contextmanager
def gate_span(tier: str) -> Iterator[Span]:
    """One gate verdict; set it with `judged`."""
    with span("stage5.gate", **{"gen_ai.evaluation.name": "stage5.gate",
                                "stage5.tier": tier}) as s:
        yield s


def judged(s: Span, similarity: float | None, schema_valid: bool, verdict: str) -> None:
    s.set(**{"gen_ai.evaluation.score.value": similarity,
             "gen_ai.evaluation.score.label": "pass" if verdict == "none" else "fail",
             "stage5.schema_valid": schema_valid, "stage5.verdict": verdict})
