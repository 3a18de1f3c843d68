"""Decisions: the gate, the ladder and the policy that picks each task's start tier.

- `gate`: the one gate (verdicts and the ladder's next step, per-field thresholds);
- `replay`: the exact vectorised replay of the ladder over an outcome table;
- `rules`: what needs no model: the seed's static starts, eligibility, exploration;
- `settings`: the policy's typed settings and the one place a dial is resolved;
- `ladder_cost`: the expected cost and bad-outcome model of running the ladder;
- `policy`: `RoutingPolicy`, learned decisions with the rules as fallback;
- `planner` (+ `_planner.pyx`): the same plan in C for serving;
- `routers`: the router contract and its registry (`conf/routers`).

Imports `model/`, `logs/` and the ground floor, never `serve/`.
"""
