"""Classification and calibration metrics for pass probabilities, overall and by group."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    roc_auc_score,
)


def expected_calibration_error(y: np.ndarray, p: np.ndarray, n_bins: int = 15) -> float:
    """ECE: the share-weighted gap between mean prediction and pass rate, equal-width bins."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    if y.size == 0:
        return float("nan")
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    conf = np.bincount(bins, weights=p, minlength=n_bins)
    acc = np.bincount(bins, weights=y, minlength=n_bins)
    return float(np.abs(acc - conf).sum() / y.size)


def classification_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    """ROC-AUC, PR-AUC, Brier, log-loss and ECE; AUCs are None when only one class occurs."""
    y = np.asarray(y, dtype=int)
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    two_classes = 0 < y.sum() < y.size
    return {
        "n": int(y.size),
        "pass_rate": float(y.mean()) if y.size else None,
        "mean_prediction": float(p.mean()) if y.size else None,
        "roc_auc": float(roc_auc_score(y, p)) if two_classes else None,
        "pr_auc": float(average_precision_score(y, p)) if two_classes else None,
        "brier": float(brier_score_loss(y, p)) if y.size else None,
        "log_loss": float(log_loss(y, p, labels=[0, 1])) if y.size else None,
        "ece": expected_calibration_error(y, p),
    }


def grouped_metrics(frame: pd.DataFrame, y: np.ndarray, p: np.ndarray, by: str
                    ) -> dict[str, dict[str, Any]]:
    keys = frame[by].to_numpy()
    return {str(k): classification_metrics(y[keys == k], p[keys == k])
            for k in sorted(pd.unique(keys))}


def full_report(frame: pd.DataFrame, y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    return {"overall": classification_metrics(y, p),
            "by_tier": grouped_metrics(frame, y, p, "tier"),
            "by_field": grouped_metrics(frame, y, p, "field")}


def reliability_plot(curves: dict[str, tuple[np.ndarray, np.ndarray]], y: np.ndarray,
                     path: str, n_bins: int = 15) -> None:
    """Reliability diagram: one line per named probability vector, plus a histogram."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.calibration import calibration_curve

    fig, (ax, hist) = plt.subplots(2, 1, figsize=(6, 7), height_ratios=[3, 1], sharex=True)
    ax.plot([0, 1], [0, 1], ls="--", color="grey", label="perfectly calibrated")
    for name, (yy, pp) in curves.items():
        frac, mean = calibration_curve(yy, pp, n_bins=n_bins, strategy="uniform")
        ax.plot(mean, frac, marker="o", ms=3,
                label=f"{name} (ECE {expected_calibration_error(yy, pp, n_bins):.3f})")
        hist.hist(pp, bins=n_bins, range=(0, 1), histtype="step", label=name)
    ax.set_ylabel("observed pass rate")
    ax.set_title("Reliability of pass probabilities (held-out courses)")
    ax.legend(loc="upper left", fontsize=8)
    hist.set_xlabel("predicted pass probability")
    hist.set_ylabel("examples")
    hist.set_yscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
