"""The scoring service a team would write instead of vigil serve: Flask +
XGBoost's Python package, under gunicorn (bench/serve.sh runs it beside vigil).

    POST /score   {"feature name": value, ...}  (null = missing)   -> {"score": p}
                  or [v1, v2, ...] in the model's feature order

It loads the same model file vigil serves (XGBoost JSON, e.g.
examples/exchange/model/model.json) with xgboost.Booster and scores the posted
features, one request at a time, the usual way: a one-row DMatrix and
Booster.predict, one thread each. It does far less than vigil: no event parsing or validation,
no features (the caller posts them), no policy, no keys, no logging. Its score
is the model's raw probability (vigil applies a bundle's calibration when it
has one; the exchange bundles have none).

Run (what bench/serve.sh does):
    VIGIL_REF_MODEL=examples/exchange/model/model.json \
    /usr/bin/python3 -m gunicorn -w 2 -b 127.0.0.1:8000 --chdir bench serve_reference:app

Debian 12's python3-flask, python3-xgboost and gunicorn; /usr/bin/python3
(python3 on PATH may be another interpreter without them).
"""
import math
import os

import numpy as np
import xgboost
from flask import Flask, jsonify, request

MODEL = os.environ.get("VIGIL_REF_MODEL", "examples/exchange/model/model.json")

booster = xgboost.Booster(model_file=MODEL)
# One thread per request, for the DMatrix as for the prediction: gunicorn's
# workers are the parallelism. XGBoost's default (OpenMP threads on every core
# in every worker) makes a one-row DMatrix wait for a second core that the
# other worker and the client hold: 10-20 ms per request instead of ~0.1 ms
# on two busy cores.
booster.set_param({"nthread": 1})
FEATURES = booster.feature_names
INDEX = {name: i for i, name in enumerate(FEATURES)}

app = Flask(__name__)


def row_of(doc):
    """The posted features as one float32 row in the model's order (NaN = missing)."""
    row = np.full((1, len(FEATURES)), np.nan, dtype=np.float32)
    if isinstance(doc, dict):
        for name, value in doc.items():
            i = INDEX.get(name)
            if i is None:
                raise ValueError(f"unknown feature {name!r}")
            if value is not None:
                row[0, i] = float(value)
    elif isinstance(doc, list):
        if len(doc) != len(FEATURES):
            raise ValueError(f"{len(doc)} values; the model has {len(FEATURES)} features")
        row[0, :] = [math.nan if v is None else float(v) for v in doc]
    else:
        raise ValueError("a JSON object of feature name -> value, or a list in the model's order")
    return row


@app.post("/score")
def score():
    doc = request.get_json(silent=True)
    try:
        row = row_of(doc)
    except (TypeError, ValueError) as e:
        return jsonify(error="invalid_features", message=str(e)), 400
    p = booster.predict(xgboost.DMatrix(row, feature_names=FEATURES, missing=np.nan, nthread=1))
    return jsonify(score=float(p[0]))


@app.get("/healthz")
def healthz():
    return jsonify(status="ok", trees=booster.num_boosted_rounds(), features=len(FEATURES))
