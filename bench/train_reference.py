"""XGBoost training on the same matrix `vigil train` builds, for bench/train.sh.

Reads the backfill CSV with pandas, keeps the rows of the training range and
the feature columns its .meta.json lists, builds the float32 DMatrix, and
trains with the given parameters. Prints one JSON line: seconds preparing
(read + filter + DMatrix) and seconds training.

  /usr/bin/python3 bench/train_reference.py FEATURES.csv LABEL FROM TO_EXCLUSIVE PARAMS_JSON ROUNDS
"""
import json
import sys
import time

import numpy as np
import pandas as pd
import xgboost as xgb


def main():
    path, label, start, end, params, rounds = sys.argv[1:7]
    t0 = time.perf_counter()
    meta = json.load(open(path + ".meta.json"))
    df = pd.read_csv(path)
    t = pd.to_datetime(df[meta["time_column"]], utc=True)
    keep = (t >= pd.Timestamp(start, tz="UTC")) & (t < pd.Timestamp(end, tz="UTC")) & df[label].notna()
    x = df.loc[keep, meta["feature_columns"]].to_numpy(dtype=np.float32)
    y = df.loc[keep, label].to_numpy(dtype=np.float32)
    dtrain = xgb.DMatrix(x, label=y, missing=np.nan, feature_names=meta["feature_columns"])
    prep = time.perf_counter() - t0
    t1 = time.perf_counter()
    xgb.train(json.loads(params), dtrain, num_boost_round=int(rounds), evals=[(dtrain, "train")],
              verbose_eval=False)
    train = time.perf_counter() - t1
    print(json.dumps({"rows": int(keep.sum()), "seconds_preparing": prep, "seconds_training": train}))


if __name__ == "__main__":
    main()
