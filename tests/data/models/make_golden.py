#!/usr/bin/python3
"""Golden files for src/model/forest_test.cc: XGBoost's own predictions.

Run once with Debian's interpreter (python3-xgboost 1.7.4):

    /usr/bin/python3 tests/data/models/make_golden.py

and commit what it writes. For each model below, a folder holding

  model.json            the model as XGBoost saves it (JSON)
  rows.csv              input rows, a header of feature names; NaN is empty
  margins.txt           predict(output_margin=True), one per row
  scores.txt            predict(): the probability, or the value for
                        reg:squarederror
  pred_contribs.csv     predict(pred_contribs=True): TreeSHAP, the bias last
  approx_contribs.csv   predict(pred_contribs=True, approx_contribs=True):
                        Saabas, the bias last

Every expected value comes from a booster loaded back from model.json, so the
file on disk is the reference, and every float32 is written with '%.9g',
which reads back bit for bit.

The rows are chosen to catch the mistakes an evaluator makes: rows from the
training distribution with NaNs, a row with NaN in every feature, zeros and
negative zeros, extremes (+-1e30, +-FLT_MAX, the smallest normal and a
subnormal), every split threshold exactly (XGBoost sends x == threshold
right) and the float just below it, and a feature the trees never split on
(constant in training). Infinity is not among them: XGBoost 1.7 refuses it in
its input.

It also writes the fuzzer's seeds (tests/data/fuzz/forest/): a tiny 3-tree
model, a hand-minimal one and truncated copies.
"""
import json
import os
import sys

import numpy as np
import pandas as pd
import xgboost as xgb

HERE = os.path.dirname(os.path.abspath(__file__))
FUZZ_SEEDS = os.path.join(HERE, "..", "fuzz", "forest")
F32_MAX = float(np.finfo(np.float32).max)
F32_TINY = float(np.finfo(np.float32).tiny)
NAN = float("nan")
N_TRAIN = 600


def features(rng, n, num_features):
    """float32 rows: mixed scales, ties, heavy missingness, one constant column."""
    x = rng.normal(size=(n, num_features))
    x[:, 1] = rng.lognormal(mean=3, sigma=1.5, size=n)  # amounts: heavy tail
    x[:, 2] = rng.integers(0, 8, size=n)  # small integers: many ties
    x[rng.random(n) < 0.4, 3] = NAN  # often missing
    x[rng.random((n, num_features)) < 0.05] = NAN  # a little missing everywhere
    x[:, num_features - 1] = 1.0  # constant: never split on
    x[:5, :] = NAN  # rows missing everything
    return x.astype(np.float32)


def signal(x):
    z = np.nan_to_num(x.astype(np.float64), nan=0.0)
    return (1.2 * z[:, 0] + 0.01 * z[:, 1] - 0.3 * z[:, 2] + np.isnan(x[:, 3]) * 1.5
            + 0.8 * z[:, 4] * z[:, 5] - 1.0)


def binary_labels(rng, x):
    return (rng.random(len(x)) < 1 / (1 + np.exp(-signal(x)))).astype(np.float32)


def thresholds(booster):
    """(feature, threshold) of every split, from the model's JSON."""
    out = set()
    for tree in json.loads(booster.save_raw("json"))["learner"]["gradient_booster"]["model"]["trees"]:
        for left, feat, cond in zip(tree["left_children"], tree["split_indices"],
                                    tree["split_conditions"]):
            if left != -1:
                out.add((feat, np.float32(cond)))
    return sorted(out)


def golden_rows(rng, booster, num_features, max_threshold_rows=24):
    """The rows to score: see the module comment."""
    base = features(rng, 35, num_features)[5:]  # 30 ordinary rows
    rows = [r for r in base]
    rows.append(np.full(num_features, NAN, np.float32))
    rows.append(np.zeros(num_features, np.float32))
    rows.append(np.full(num_features, -0.0, np.float32))
    for v in (1e30, -1e30, F32_MAX, -F32_MAX, F32_TINY, -F32_TINY, 1e-45):
        rows.append(np.full(num_features, v, np.float32))
    for v in (1e30, -F32_MAX):  # one extreme feature in an ordinary row
        for f in range(0, num_features, 2):
            r = base[f % len(base)].copy()
            r[f] = v
            rows.append(r)
    splits = thresholds(booster)
    picked = [splits[i] for i in rng.permutation(len(splits))[:max_threshold_rows]]
    for i, (feat, cond) in enumerate(picked):
        r = base[i % len(base)].copy()
        r[feat] = cond
        rows.append(r)
        r = r.copy()
        r[feat] = np.nextafter(cond, np.float32(-np.inf))
        rows.append(r)
    return np.array(rows, dtype=np.float32)


def g(v):
    return "%.9g" % float(v)


def write_csv(path, header, matrix):
    with open(path, "w") as f:
        f.write(",".join(header) + "\n")
        for row in matrix:
            f.write(",".join("" if np.isnan(v) else g(v) for v in row) + "\n")


def write_golden(name, booster, x, names=None):
    """Saves the model, reloads it, and writes what the reloaded one predicts."""
    folder = os.path.join(HERE, name)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "model.json")
    booster.save_model(path)
    loaded = xgb.Booster(model_file=path)
    dm = xgb.DMatrix(pd.DataFrame(x, columns=names) if names else x, missing=NAN)
    margins = loaded.predict(dm, output_margin=True)
    scores = loaded.predict(dm)
    # The saved file predicts exactly as the booster that was trained.
    assert np.array_equal(margins, booster.predict(dm, output_margin=True)), name
    shap = loaded.predict(dm, pred_contribs=True)
    saabas = loaded.predict(dm, pred_contribs=True, approx_contribs=True)
    assert margins.dtype == scores.dtype == shap.dtype == np.float32
    header = names or ["f%d" % i for i in range(x.shape[1])]
    write_csv(os.path.join(folder, "rows.csv"), header, x)
    for fname, values in (("margins.txt", margins), ("scores.txt", scores)):
        with open(os.path.join(folder, fname), "w") as f:
            f.writelines(g(v) + "\n" for v in values)
    write_csv(os.path.join(folder, "pred_contribs.csv"), header + ["bias"], shap)
    write_csv(os.path.join(folder, "approx_contribs.csv"), header + ["bias"], saabas)
    size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
    print("%-22s %3d trees %5d rows %7d bytes" % (name, booster.num_boosted_rounds(), len(x), size))


def train(params, x, y, rounds, names=None):
    dm = xgb.DMatrix(pd.DataFrame(x, columns=names) if names else x, label=y, missing=NAN)
    params = dict(params, seed=7, nthread=2)
    return xgb.train(params, dm, num_boost_round=rounds)


def main():
    rng = np.random.default_rng(20240613)
    nf = 8
    x = features(rng, N_TRAIN, nf)
    y = binary_labels(rng, x)

    # (a) binary:logistic, 50 trees of depth 4.
    b = train({"objective": "binary:logistic", "max_depth": 4, "eta": 0.3,
               "min_child_weight": 5, "tree_method": "hist"}, x, y, 50)
    write_golden("binary_d4", b, golden_rows(rng, b, nf))

    # (b) base_score 0.2, 100 trees of depth 6, learned directions for
    # missing values (exact greedy: thresholds are midpoints, not bin edges).
    b = train({"objective": "binary:logistic", "max_depth": 6, "eta": 0.1, "base_score": 0.2,
               "tree_method": "exact", "min_child_weight": 8, "gamma": 0.5, "subsample": 0.8},
              x, y, 100)
    dump = json.loads(b.save_raw("json"))["learner"]["gradient_booster"]["model"]["trees"]
    assert max(max(depth_of(t)) for t in dump) == 6
    write_golden("binary_base02_d6", b, golden_rows(rng, b, nf))

    # (c) reg:squarederror on a target in the thousands: margins far from 0.
    target = (1000 * signal(x) + 50 * rng.normal(size=N_TRAIN)).astype(np.float32)
    b = train({"objective": "reg:squarederror", "max_depth": 4, "eta": 0.2, "base_score": 100,
               "min_child_weight": 20, "tree_method": "hist"}, x, target, 20)
    write_golden("squarederror", b, golden_rows(rng, b, nf))

    # (d) reg:logistic on a target in [0, 1].
    target = (1 / (1 + np.exp(-signal(x)))).astype(np.float32)
    b = train({"objective": "reg:logistic", "max_depth": 4, "eta": 0.3,
               "tree_method": "hist"}, x, target, 20)
    write_golden("reglogistic", b, golden_rows(rng, b, nf))

    # (e) lossguide: leaves grown best-first, so the trees' depths are uneven.
    b = train({"objective": "binary:logistic", "grow_policy": "lossguide", "max_leaves": 12,
               "max_depth": 0, "eta": 0.3, "tree_method": "hist"}, x, y, 20)
    dump = json.loads(b.save_raw("json"))["learner"]["gradient_booster"]["model"]["trees"]
    depth_spread = {max(depth_of(t)) - min(depth_of(t)) for t in dump}
    assert max(depth_spread) >= 3, depth_spread  # really uneven
    write_golden("lossguide", b, golden_rows(rng, b, nf))

    # (f) from a pandas DataFrame: feature names (and types) stored in the model.
    names = ["amount_z", "amount", "hour_bucket", "ip_risk", "velocity_1h", "velocity_1d",
             "card_age", "const_flag"]
    b = train({"objective": "binary:logistic", "max_depth": 3, "eta": 0.3,
               "tree_method": "hist"}, x, y, 12, names=names)
    assert json.loads(b.save_raw("json"))["learner"]["feature_names"] == names
    write_golden("pandas_named", b, golden_rows(rng, b, nf), names=names)

    write_fuzz_seeds(rng)


def depth_of(tree):
    """Depth of every leaf of a tree in XGBoost's JSON layout."""
    depths, stack = [], [(0, 0)]
    while stack:
        node, d = stack.pop()
        if tree["left_children"][node] == -1:
            depths.append(d)
        else:
            stack += [(tree["left_children"][node], d + 1), (tree["right_children"][node], d + 1)]
    return depths


MINIMAL = """{"learner":{"learner_model_param":{"base_score":"5E-1","num_class":"0",
"num_feature":"2","num_target":"1"},"objective":{"name":"binary:logistic"},
"gradient_booster":{"name":"gbtree","model":{"trees":[{"left_children":[1,-1,-1],
"right_children":[2,-1,-1],"split_indices":[1,0,0],"split_conditions":[0.5,-0.25,0.75],
"default_left":[1,0,0],"sum_hessian":[10,4,6],"split_type":[0,0,0]}]}}}}
"""


def write_fuzz_seeds(rng):
    """A tiny real model, a hand-minimal one, and truncated copies (< 4 KB each)."""
    os.makedirs(FUZZ_SEEDS, exist_ok=True)
    x = features(rng, 300, 8)
    y = binary_labels(rng, x)
    x = np.ascontiguousarray(x[:, [0, 3, 4]])  # one of them often missing
    b = train({"objective": "binary:logistic", "max_depth": 2, "eta": 0.5,
               "tree_method": "hist"}, x, y, 3)
    tiny = b.save_raw("json").decode()
    assert len(tiny) < 4096, len(tiny)
    seeds = {"tiny3": tiny, "minimal": MINIMAL,
             "tiny3_cut_half": tiny[:len(tiny) // 2], "tiny3_cut_end": tiny[:-3],
             "minimal_cut": MINIMAL[:200]}
    for name, text in seeds.items():
        with open(os.path.join(FUZZ_SEEDS, name + ".json"), "w") as f:
            f.write(text)


if __name__ == "__main__":
    sys.exit(main())
