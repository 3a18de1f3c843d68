"""The seed note's rule ladder: what to do after each gate result.

Written once, over numpy arrays, so that the offline replay of millions of tasks and the
serving endpoint that answers one gate result at a time run the very same rules.

Tier indices follow `Catalog.tier_names`: ladder tiers 0..L-1 (cheap -> premium), then the
off-ladder overflow tier at index L.

Rules (seed note, "Escalation Strategy and Quality Gates"):
- schema valid and similarity >= pass threshold: accept;
- schema error: escalate one tier;
- similarity < severe threshold: jump to the premium tier;
- otherwise (severe <= similarity < pass, or a transient error): retry at the same tier while
  retries remain, then escalate one tier;
- at the premium tier (or on the overflow tier, which has nowhere to go) every failure retries
  while retries remain; then the best attempt is kept and the field is flagged for review.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from router_model.config import Catalog


class Action(IntEnum):
    ACCEPT = 0
    RETRY = 1
    ESCALATE = 2
    JUMP_PREMIUM = 3
    FLAG_FOR_REVIEW = 4


REASONS = {
    "mid_similarity": "similarity below the pass threshold: retry at the same tier",
    "retry_limit": "retries at this tier used up: escalate one tier",
    "schema_error": "schema error: escalate one tier",
    "severe_similarity": "similarity below the severe threshold: jump to premium",
    "exhausted": "premium (or overflow) tier still failing: keep best attempt, flag for review",
}


@dataclass(frozen=True)
class LadderRules:
    """Thresholds and shape of the ladder, taken from the catalog."""

    n_ladder: int
    retries_per_tier: int
    pass_threshold: float
    severe_threshold: float

    @classmethod
    def from_catalog(cls, catalog: Catalog) -> LadderRules:
        g = catalog.gate
        return cls(n_ladder=len(catalog.ladder), retries_per_tier=g.retries_per_tier,
                   pass_threshold=g.pass_threshold, severe_threshold=g.severe_threshold)

    def next_step(self, tier: np.ndarray, retry: np.ndarray, similarity: np.ndarray,
                  schema_valid: np.ndarray, transient: np.ndarray | None = None,
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Vectorised rules. Returns (action, next tier, next retry count, reason code).

        `similarity` may be NaN when the call produced nothing to compare (treated as severe
        unless `transient` marks a rate limit / timeout, which is retried like a mid failure).
        """
        tier = np.asarray(tier)
        retry = np.asarray(retry)
        sim = np.asarray(similarity, dtype=float)
        valid = np.asarray(schema_valid, dtype=bool)
        transient = np.zeros_like(valid) if transient is None else np.asarray(transient, bool)
        top = self.n_ladder - 1
        stuck = tier >= top  # premium, or the off-ladder overflow tier
        can_retry = retry < self.retries_per_tier

        with np.errstate(invalid="ignore"):
            passed = valid & (sim >= self.pass_threshold) & ~transient
            severe = valid & ~transient & ~(sim >= self.severe_threshold)
        schema_err = ~valid & ~transient
        mid = ~passed & ~schema_err & ~severe

        action = np.full(tier.shape, Action.RETRY, dtype=np.int8)
        reason = np.full(tier.shape, "mid_similarity", dtype=object)
        nxt = tier.copy()
        nretry = retry + 1

        # Failures with somewhere to go.
        esc = ~stuck & (schema_err | (mid & ~can_retry))
        jump = ~stuck & severe
        action[esc] = Action.ESCALATE
        reason[esc & schema_err] = "schema_error"
        reason[esc & mid] = "retry_limit"
        nxt[esc] = tier[esc] + 1
        action[jump] = Action.JUMP_PREMIUM
        reason[jump] = "severe_similarity"
        nxt[jump] = top
        nretry[esc | jump] = 0

        # Failures with nowhere to go: retry while allowed, then flag.
        flag = ~passed & stuck & ~can_retry
        action[flag] = Action.FLAG_FOR_REVIEW
        reason[flag] = "exhausted"
        reason[~passed & stuck & can_retry & schema_err] = "schema_error"
        reason[~passed & stuck & can_retry & severe] = "severe_similarity"

        action[passed] = Action.ACCEPT
        reason[passed] = ""
        nxt[passed | flag] = tier[passed | flag]
        nretry[passed | flag] = retry[passed | flag]
        return action, nxt, nretry, reason
