"""The compiled planner (`_planner.pyx`) of serving decisions, built from a policy's parts.

A single decision spends most of its time on Python steps of a few microseconds each:
three tier rows, the trees, calibration, false-pass rates, attempt prices, two dynamic
programmes and the choice. The planner does all of them in one C call per decision (or per
batch). It applies when the
trees are compiled and the calibrator is isotonic or Platt; otherwise (or when the
extension was not built, e.g. no C compiler at install) the policy plans in Python, with
the same numbers, and the log says why once.
"""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

log = logging.getLogger("stage5_router.planner")


def build_planner(model: Any, catalog: Any, settings: Any,
                  tier_constants: list[tuple[float, float, float, float]],
                  false_pass_model: dict[str, Any] | None) -> Any:
    """A `CompiledPlanner` for a policy's model (a `PassModel`, None for none or a lookup
    table) and settings; None where it does not apply (trees not compiled, another
    calibrator, the extension not built). `tier_constants`: the cost model's per-tier
    (schema share, severe share, near-miss share, retry pass rate)."""
    compiled = model.compiled if model is not None else None
    address = compiled.entry_address if compiled is not None else None
    calibrator = _calibrator(model.calibrator) if model is not None else None
    planner_class = _planner_class() if address and calibrator else None
    if planner_class is None:
        return None
    ladder = catalog.ladder
    tier_col, codes = model.tier_codes(tuple(ladder))
    false_pass = None if false_pass_model is None else (
        float(false_pass_model["slope"]),
        [float(false_pass_model["intercept"].get(t, 0.0)) for t in ladder])
    try:
        return planner_class(
            compiled, address, len(model.spec.columns), tier_col, codes.tolist(), calibrator,
            [_tier_numbers(catalog.tiers[t]) for t in ladder], _gate_numbers(catalog, settings),
            tier_constants, false_pass, catalog.gate.retries_per_tier,
            settings.rule == "threshold")
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. retries past a C int
        log.warning("deciding in Python: the compiled planner cannot take this model or "
                    "config (%s)", exc)
        return None


@cache
def _planner_class() -> Any:
    """The extension's class, or None (said once) when it was not built."""
    try:
        from router_model.decide._planner import CompiledPlanner
    except ImportError as exc:
        log.warning("deciding in Python: the compiled planner is not built (%s); "
                    "reinstall with a C compiler (make install)", exc)
        return None
    return CompiledPlanner


def _calibrator(calibrator: Any) -> tuple[str, Any, Any] | None:
    """What `model.apply_calibrator` applies, as plain numbers."""
    if hasattr(calibrator, "X_thresholds_"):
        return ("isotonic", [float(x) for x in calibrator.X_thresholds_],
                [float(y) for y in calibrator.y_thresholds_])
    if hasattr(calibrator, "a_") and hasattr(calibrator, "b_"):
        return ("sigmoid", float(calibrator.a_), float(calibrator.b_))
    return None


def _tier_numbers(tier: Any) -> tuple[float, ...]:
    return (float(tier.price_in_per_m), float(tier.price_out_per_m), float(tier.first_token_s),
            float(tier.output_tokens_per_s), float(tier.context_window))


def _gate_numbers(catalog: Any, settings: Any) -> tuple[Any, ...]:
    """The gate's per-attempt cost and seconds, as `Catalog.gate_cost` / `gate_latency_s`."""
    gate = catalog.gate
    validator = catalog.tiers[gate.validation_tier]
    return ((float(validator.price_in_per_m), float(validator.price_out_per_m)),
            float(gate.validation_prompt_overhead_tokens), float(gate.validation_output_tokens),
            float(gate.embedding_price_per_m), float(catalog.gate_latency_s()),
            float(settings.latency_price_per_s))
