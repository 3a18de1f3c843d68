"""The reference point for perf/serve_speed.py: a bare FastAPI `async def` endpoint that
returns one LightGBM prediction, nothing else (no features, policy, logging or metrics)."""

from __future__ import annotations

import os

import numpy as np
from fastapi import FastAPI

from router_model.model.artifact import load_artifact

app = FastAPI()
_model = load_artifact(os.environ["BENCH_ARTIFACT"]).model
_booster = _model.estimator.booster_
_row = np.zeros((1, len(_model.spec.columns)))


@app.post("/predict")
async def predict(body: dict) -> dict:
    return {"p": float(_booster.predict(_row, num_threads=1)[0])}
