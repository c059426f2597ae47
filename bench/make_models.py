"""The reference models of bench/forest.sh, trained by Debian's python3-xgboost.

  /usr/bin/python3 bench/make_models.py OUT_DIR

Writes OUT_DIR/{trees300_depth6,trees1000_depth8}.json and rows.csv: 30
features (a few with missing values) of 100 k synthetic rows with a nonlinear
signal, hist trees, 300 rounds of depth 6 and 1,000 rounds of depth 8 (the
issue's two sizes). Deterministic (seed 0); skips models already present.
"""
import os
import sys

import numpy as np
import xgboost as xgb


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(0)
    n, f = 100_000, 30
    x = rng.normal(size=(n, f)).astype(np.float32)
    x[:, :10] = np.exp(x[:, :10])             # skewed, like amounts and counts
    x[rng.random(size=(n, f)) < 0.05] = np.nan  # missing values
    z = np.nan_to_num(x)
    logit = 0.8 * z[:, 0] - 0.5 * z[:, 1] * z[:, 2] + np.sin(3 * z[:, 3]) + 0.3 * z[:, 4:12].sum(axis=1) - 3
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    names = [f"f{i:02d}" for i in range(f)]
    d = xgb.DMatrix(x, label=y, missing=np.nan, feature_names=names)
    for name, rounds, depth in (("trees300_depth6", 300, 6), ("trees1000_depth8", 1000, 8)):
        path = os.path.join(out, name + ".json")
        if os.path.exists(path):
            continue
        params = {"objective": "binary:logistic", "tree_method": "hist", "max_depth": depth, "eta": 0.05,
                  "min_child_weight": 0.1, "subsample": 0.8, "seed": 0, "nthread": 2}
        xgb.train(params, d, num_boost_round=rounds).save_model(path)
        print(f"make_models: {path}", file=sys.stderr)
    rows = os.path.join(out, "rows.csv")
    if not os.path.exists(rows):
        with open(rows, "w") as fh:
            fh.write("event_id," + ",".join(names) + "\n")
            for i in range(10_000):
                fh.write(str(i) + "," + ",".join("" if np.isnan(v) else repr(float(v)) for v in x[i]) + "\n")


if __name__ == "__main__":
    main()
