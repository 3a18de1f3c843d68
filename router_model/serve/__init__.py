"""Serving: the routing service and its clients.

- `core`: `RouterService`, decisions, escalation, reloads, shadow scoring, decision log;
- `requests`: the request models (strict, plain JSON);
- `http_guard`: the body guard in front of every POST;
- `metrics`: every Prometheus series the service exposes;
- `endpoints`: the HTTP endpoints, one small function each, on FastAPI routers;
- `app`: the FastAPI app that puts them together;
- `client`: the same calls in-process or over HTTP;
- `cli`: `router-serve`.

The top floor of `router_model`: it may import everything below, nothing imports it but
the generator and the CLIs.
"""
