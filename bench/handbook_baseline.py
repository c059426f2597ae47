"""The Fraud Detection Handbook's chapter-3 baseline, reproducible: the reference vigil's
models are compared against.

Data: ../shared/data/handbook/ (README.md there): 1,169,723 simulated card transactions,
2018-04-01 to 2018-07-31, and the book's 14 engineered features.

Protocol (the book's get_train_test_set and performance_assessment, chapter 3):
  * A fold is named by its training start date S (00:00 UTC).
  * Training: the transactions with S <= TX_DATETIME < S + 7 days.
  * Delay: the next 7 days are not used (their labels are not known yet).
  * Test: the 7 days after that (TX_TIME_DAYS = s + 14 .. s + 20, s the first training
    day). From each test day d the cards (CUSTOMER_ID) with a fraud on any day from s up
    to and including d - 8 are removed: they are already known to be compromised.
  * Model: xgboost.XGBClassifier with its default parameters, random_state=0, n_jobs=2
    (--params adds or overrides parameters). As the book does, the inputs are
    standardised (StandardScaler fitted on the training week; --no-scale to skip it: a
    tree model is insensitive to it up to float32 rounding).
  * Inputs: TX_AMOUNT and the book's 14 features, plus --model-features.
  * Metrics on the test set: AUC-ROC and average precision (scikit-learn), each with a
    95 % bootstrap interval (--bootstrap row resamples of the test set, percentile
    method, seeded per fold from --seed and the fold's date, so a fold's interval does
    not depend on which other folds run); card precision@100 (the book's
    card_precision_top_k: each test day, each card's highest score and label, the 100
    top cards, the share truly compromised; cards found on earlier test days removed;
    mean over the 7 days).

    One deliberate difference: cards whose highest scores tie are ranked by CUSTOMER_ID
    (a stable sort), where the book's default quicksort leaves the order of ties to the
    numpy build. `ties_at_cutoff` in the JSON counts the days where a tie straddles
    rank k, the only case where this can change CP@k.

Input features, joined to the transactions by id (every column found by name):
  * default: the book's own file, features_2018-04-01_to_07-31.csv.gz (TRANSACTION_ID);
    TX_AMOUNT then comes from the transactions file;
  * --features OUT.csv: a `vigil backfill` output (event_id = TRANSACTION_ID; feature
    columns from OUT.csv.meta.json). Its CUSTOMER_ID and TX_FRAUD passthrough columns
    are checked against the transactions file.

Run with Debian's interpreter (pandas, scikit-learn, xgboost); `python3` on PATH may not
see them:

  /usr/bin/python3 bench/handbook_baseline.py --out /tmp/hb-book.json
  vigil backfill --schema examples/handbook/schema.yaml \\
      --features examples/handbook/features.yaml \\
      --events ../shared/data/handbook/transactions_2018-04-01_to_07-31.csv.gz \\
      --out /tmp/hb.csv
  /usr/bin/python3 bench/handbook_baseline.py --features /tmp/hb.csv --out /tmp/hb-vigil.json
  # task: more inputs from a richer spec, on other folds, with other parameters
  /usr/bin/python3 bench/handbook_baseline.py --features /tmp/hb-plus.csv \\
      --folds 2018-05-23,2018-05-30 --model-features all --drop-features 'CARD_FRAUD_*' \\
      --params '{"max_depth": 4, "n_estimators": 300, "learning_rate": 0.1}'

Prints a Markdown table (one row per fold, then the mean) on stdout, progress on
stderr; --out writes every figure as JSON. About 10 s to load, then 5-10 s per fold
with the defaults on 2 threads.
"""
import argparse
import datetime as dt
import fnmatch
import hashlib
import json
import os
import sys
import time

import numpy as np
import pandas as pd
import sklearn
import xgboost
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.preprocessing import StandardScaler

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.environ.get("VIGIL_HANDBOOK_DIR",
                      os.path.join(HERE, "..", "..", "shared", "data", "handbook"))
TRANSACTIONS = os.path.join(DATA, "transactions_2018-04-01_to_07-31.csv.gz")
BOOK_FEATURES = os.path.join(DATA, "features_2018-04-01_to_07-31.csv.gz")
DEFAULT_FOLDS = "2018-06-27,2018-07-04,2018-07-11"
EPOCH = dt.datetime(2018, 4, 1)  # TX_TIME_DAYS = 0

# The book's 15 inputs (chapter 3), in its order.
BOOK_INPUTS = [
    "TX_AMOUNT", "TX_DURING_WEEKEND", "TX_DURING_NIGHT",
    "CUSTOMER_ID_NB_TX_1DAY_WINDOW", "CUSTOMER_ID_AVG_AMOUNT_1DAY_WINDOW",
    "CUSTOMER_ID_NB_TX_7DAY_WINDOW", "CUSTOMER_ID_AVG_AMOUNT_7DAY_WINDOW",
    "CUSTOMER_ID_NB_TX_30DAY_WINDOW", "CUSTOMER_ID_AVG_AMOUNT_30DAY_WINDOW",
    "TERMINAL_ID_NB_TX_1DAY_WINDOW", "TERMINAL_ID_RISK_1DAY_WINDOW",
    "TERMINAL_ID_NB_TX_7DAY_WINDOW", "TERMINAL_ID_RISK_7DAY_WINDOW",
    "TERMINAL_ID_NB_TX_30DAY_WINDOW", "TERMINAL_ID_RISK_30DAY_WINDOW",
]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def select(patterns, available, strict=True):
    """Columns of `available` matching comma-separated names or shell patterns, in the
    order of `available`; `all` matches every one. An unmatched pattern is an error when
    `strict` (a typo would otherwise go unnoticed)."""
    out = []
    for pat in [p.strip() for p in patterns.split(",") if p.strip()]:
        hits = available if pat == "all" else [c for c in available if fnmatch.fnmatchcase(c, pat)]
        if not hits and strict:
            sys.exit(f"error: no feature column matches '{pat}'")
        out += [c for c in hits if c not in out]
    return [c for c in available if c in out]


def load(args):
    """The transactions (protocol columns) with the chosen input columns joined by id."""
    t0 = time.perf_counter()
    tx = pd.read_csv(args.transactions, float_precision="round_trip",
                     usecols=["TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TX_AMOUNT",
                              "TX_TIME_DAYS", "TX_FRAUD"],
                     dtype={"TRANSACTION_ID": np.int64, "CUSTOMER_ID": np.int64,
                            "TX_AMOUNT": np.float64, "TX_TIME_DAYS": np.int64,
                            "TX_FRAUD": np.int8})
    tx["TX_DATETIME"] = pd.to_datetime(tx.TX_DATETIME, format="%Y-%m-%d %H:%M:%S")
    source = {"path": os.path.abspath(args.features or BOOK_FEATURES)}
    if args.features:  # a vigil backfill CSV
        meta_path = args.features + ".meta.json"
        with open(meta_path) as f:
            meta = json.load(f)
        available = meta["feature_columns"]
        id_col = meta["id_column"]
        source.update(kind="vigil", spec=meta.get("spec"), spec_hash=meta.get("spec_hash"),
                      schema_hash=meta.get("schema_hash"))
    else:  # the book's file: TX_AMOUNT is in the transactions
        with pd.io.common.get_handle(BOOK_FEATURES, "r", compression="infer") as h:
            header = h.handle.readline().strip().split(",")
        available = ["TX_AMOUNT"] + [c for c in header if c != "TRANSACTION_ID"]
        id_col = "TRANSACTION_ID"
        source.update(kind="book")
    inputs = list(BOOK_INPUTS)
    missing = [c for c in inputs if c not in available]
    if missing:
        sys.exit(f"error: {source['path']} lacks the book's inputs {missing}")
    if args.model_features:
        inputs += [c for c in select(args.model_features, available) if c not in inputs]
    if args.drop_features:
        select(args.drop_features, available)  # every pattern names some column of the file
        dropped = select(args.drop_features, inputs, strict=False)
        inputs = [c for c in inputs if c not in dropped]
    if not inputs:
        sys.exit("error: no input left")

    if source["kind"] == "vigil":
        check = [c for c in ("CUSTOMER_ID", "TX_FRAUD") if c in meta.get("passthrough_fields", []) +
                 meta.get("label_fields", [])]
        want = [id_col] + check + inputs
        feats = pd.read_csv(args.features, usecols=want, float_precision="round_trip",
                            dtype={c: np.float64 for c in inputs})
        feats = feats.rename(columns={id_col: "TRANSACTION_ID"})
    else:
        want = ["TRANSACTION_ID"] + [c for c in inputs if c != "TX_AMOUNT"]
        feats = pd.read_csv(BOOK_FEATURES, usecols=want, float_precision="round_trip")
        check = []
    if feats.TRANSACTION_ID.duplicated().any():
        sys.exit("error: duplicate ids in the features file")
    df = tx.merge(feats, on="TRANSACTION_ID", how="left", suffixes=("", "_features"),
                  indicator=True, validate="one_to_one")
    source["rows_without_features"] = int((df._merge != "both").sum())
    df = df.drop(columns="_merge")
    for c in check:
        bad = (df[c + "_features"].notna() & (df[c + "_features"] != df[c])).sum()
        if bad:
            sys.exit(f"error: {c} differs between the transactions and {args.features} on {bad} rows")
        df = df.drop(columns=c + "_features")
    if source["kind"] == "vigil" and "TX_AMOUNT" in inputs:
        # Amount as the features file has it (vigil reads the decimal as a double).
        df = df.drop(columns="TX_AMOUNT").rename(columns={"TX_AMOUNT_features": "TX_AMOUNT"})
    log(f"loaded {len(df):,} transactions and {len(inputs)} inputs from "
        f"{source['path']} in {time.perf_counter() - t0:.1f} s")
    return df, inputs, source


def split(df, start):
    """The book's get_train_test_set: boolean masks of the training and test rows."""
    train = (df.TX_DATETIME >= start) & (df.TX_DATETIME < start + dt.timedelta(days=7))
    if not train.any():
        sys.exit(f"error: no transaction in the training week from {start.date()}")
    s = int(df.TX_TIME_DAYS[train].min())
    days = df.TX_TIME_DAYS.to_numpy()
    if days.max() < s + 20:
        sys.exit(f"error: the test week of fold {start.date()} ends after the data")
    # First fraud day of each card from the training start on; a test row on day d is
    # removed when that day is <= d - 8 (the book adds days s .. d - 8 to its known set).
    fraud = (df.TX_FRAUD.to_numpy() == 1) & (days >= s)
    first = pd.Series(days[fraud]).groupby(df.CUSTOMER_ID.to_numpy()[fraud]).min()
    first_day = df.CUSTOMER_ID.map(first).fillna(np.inf).to_numpy()
    test = (days >= s + 14) & (days <= s + 20) & ~(first_day <= days - 8)
    return train.to_numpy(), test


def card_precision_top_k(days, cards, labels, scores, k):
    """The book's card_precision_top_k with removal of detected cards; ties by card id."""
    frame = pd.DataFrame({"day": days, "card": cards, "y": labels, "p": scores})
    detected = set()
    per_day, compromised, ties = [], [], 0
    for day in sorted(frame.day.unique()):
        d = frame[(frame.day == day) & ~frame.card.isin(detected)]
        compromised.append(int(d.card[d.y == 1].nunique()))
        g = d.groupby("card")[["p", "y"]].max()  # sorted by card id
        g = g.sort_values("p", ascending=False, kind="mergesort")
        top = g.head(k)
        if len(g) > k and g.p.iloc[k] == g.p.iloc[k - 1]:
            ties += 1
        found = top.index[top.y == 1]
        per_day.append(len(found) / k)
        detected.update(found.tolist())
    return float(np.mean(per_day)), per_day, compromised, ties


class RankedScores:
    """AUC-ROC and average precision of one score vector under row weights (a bootstrap
    resample is a weight vector of counts), equal to scikit-learn's on the resampled
    rows: scores sorted once, ties grouped into blocks."""

    def __init__(self, y, s):
        self.order = np.argsort(-s, kind="mergesort")
        s_sorted = s[self.order]
        self.y = y[self.order].astype(np.float64)
        self.starts = np.r_[0, np.flatnonzero(np.diff(s_sorted)) + 1]

    def auc_ap(self, w):
        w = w[self.order]
        tp = np.add.reduceat(w * self.y, self.starts)
        fp = np.add.reduceat(w * (1.0 - self.y), self.starts)
        ctp, cfp = np.cumsum(tp), np.cumsum(fp)
        pos, neg = ctp[-1], cfp[-1]
        tpr = np.r_[0.0, ctp] / pos
        fpr = np.r_[0.0, cfp] / neg
        auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1])) / 2)
        seen = ctp + cfp
        precision = np.divide(ctp, seen, out=np.zeros_like(ctp), where=seen > 0)
        ap = float(np.sum(tp / pos * precision))
        return auc, ap


def bootstrap(y, s, n, seed):
    ranked = RankedScores(y, s)
    rng = np.random.default_rng(seed)
    rows = len(y)
    out = np.empty((n, 2))
    for i in range(n):
        w = np.bincount(rng.integers(0, rows, rows), minlength=rows).astype(np.float64)
        out[i] = ranked.auc_ap(w)
    return ranked, out


def run_fold(df, inputs, start, args, params):
    t0 = time.perf_counter()
    train, test = split(df, start)
    X_train = df.loc[train, inputs].to_numpy(np.float64)
    y_train = df.TX_FRAUD.to_numpy()[train]
    X_test = df.loc[test, inputs].to_numpy(np.float64)
    y_test = df.TX_FRAUD.to_numpy()[test]
    if args.scale:
        scaler = StandardScaler().fit(X_train)
        X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    model = xgboost.XGBClassifier(**params)
    model.fit(X_train, y_train)
    fit_s = time.perf_counter() - t0
    p = model.predict_proba(X_test)[:, 1]

    auc = float(roc_auc_score(y_test, p))
    ap = float(average_precision_score(y_test, p))
    seed = [args.seed, start.toordinal()]
    ranked, boot = bootstrap(y_test, p, args.bootstrap, seed)
    # The fast weighted metrics must agree with scikit-learn on the sample itself.
    auc1, ap1 = ranked.auc_ap(np.ones(len(p)))
    assert abs(auc1 - auc) < 1e-9 and abs(ap1 - ap) < 1e-9, (auc, auc1, ap, ap1)
    lo, hi = np.percentile(boot, [2.5, 97.5], axis=0)
    cp, per_day, compromised, ties = card_precision_top_k(
        df.TX_TIME_DAYS.to_numpy()[test], df.CUSTOMER_ID.to_numpy()[test], y_test, p, args.top_k)

    gain = model.get_booster().get_score(importance_type="total_gain")
    total = sum(gain.values()) or 1.0
    importance = {inputs[int(f[1:])]: v / total for f, v in gain.items()}
    importance = dict(sorted(importance.items(), key=lambda kv: -kv[1]))
    s = int(df.TX_TIME_DAYS[train].min())
    day = lambda n: (EPOCH + dt.timedelta(days=n)).date().isoformat()
    fold = {
        "train_start": start.date().isoformat(),
        "train_days": [day(s), day(s + 6)],
        "test_days": [day(s + 14), day(s + 20)],
        "train_rows": int(train.sum()), "train_frauds": int(y_train.sum()),
        "test_rows": int(test.sum()), "test_frauds": int(y_test.sum()),
        "test_cards_removed_rows": int(((df.TX_TIME_DAYS >= s + 14) & (df.TX_TIME_DAYS <= s + 20)).sum()
                                       - test.sum()),
        "auc_roc": auc, "auc_roc_ci95": [float(lo[0]), float(hi[0])],
        "average_precision": ap, "average_precision_ci95": [float(lo[1]), float(hi[1])],
        f"card_precision_at_{args.top_k}": cp,
        f"card_precision_at_{args.top_k}_per_day": per_day,
        "compromised_cards_per_day": compromised,
        "ties_at_cutoff": ties,
        "bootstrap": {"resamples": args.bootstrap, "seed": seed},
        "importance_total_gain": importance,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    log(f"fold {fold['train_start']}: AUC {auc:.4f} AP {ap:.4f} CP@{args.top_k} {cp:.4f} "
        f"({fit_s:.1f} s to fit, {fold['seconds']:.1f} s in all)")
    return fold


def markdown(folds, k):
    cpk = f"card_precision_at_{k}"
    lines = [f"| training start | test days | train rows (fraud) | test rows (fraud) | AUC ROC [95 % CI] "
             f"| AP [95 % CI] | CP@{k} |",
             "|---|---|---|---|---|---|---|"]
    for f in folds:
        lines.append(
            f"| {f['train_start']} | {f['test_days'][0]}..{f['test_days'][1][5:]} "
            f"| {f['train_rows']:,} ({f['train_frauds']}) | {f['test_rows']:,} ({f['test_frauds']}) "
            f"| {f['auc_roc']:.3f} [{f['auc_roc_ci95'][0]:.3f}, {f['auc_roc_ci95'][1]:.3f}] "
            f"| {f['average_precision']:.3f} [{f['average_precision_ci95'][0]:.3f}, "
            f"{f['average_precision_ci95'][1]:.3f}] | {f[cpk]:.3f} |")
    if len(folds) > 1:
        m = lambda key: np.mean([f[key] for f in folds])
        lines.append(f"| mean of {len(folds)} | | | | {m('auc_roc'):.3f} | {m('average_precision'):.3f} "
                     f"| {m(cpk):.3f} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="See the docstring at the top of this file for the protocol.")
    ap.add_argument("--folds", default=DEFAULT_FOLDS,
                    help=f"training start dates, comma-separated (default {DEFAULT_FOLDS})")
    ap.add_argument("--features", help="a vigil backfill CSV (default: the book's features file)")
    ap.add_argument("--transactions", default=TRANSACTIONS, help="the transactions CSV[.gz]")
    ap.add_argument("--model-features", default="",
                    help="extra input columns: comma-separated names or shell patterns, "
                         "'all' for every feature column of the file")
    ap.add_argument("--drop-features", default="",
                    help="input columns to leave out (names or patterns), after --model-features")
    ap.add_argument("--params", default="{}",
                    help='XGBClassifier parameters as JSON, over the defaults '
                         '(random_state=0, n_jobs=2), e.g. \'{"max_depth": 4}\'')
    ap.add_argument("--no-scale", dest="scale", action="store_false",
                    help="do not standardise the inputs (the book does)")
    ap.add_argument("--top-k", type=int, default=100, help="k of card precision@k (default 100)")
    ap.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000)")
    ap.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    ap.add_argument("--out", help="write every figure as JSON here")
    args = ap.parse_args()

    params = {"random_state": 0, "n_jobs": 2}
    params.update(json.loads(args.params))
    folds = [dt.datetime.strptime(d.strip(), "%Y-%m-%d") for d in args.folds.split(",") if d.strip()]
    df, inputs, source = load(args)
    if source["rows_without_features"]:
        log(f"warning: {source['rows_without_features']} transactions have no feature row")
    results = [run_fold(df, inputs, start, args, params) for start in folds]
    table = markdown(results, args.top_k)
    print(table)
    if args.out:
        cpk = f"card_precision_at_{args.top_k}"
        report = {
            "protocol": "Fraud Detection Handbook chapter 3: train 7 d, delay 7 d, test 7 d; "
                        "test day d drops cards with a fraud from the training start to d - 8",
            "transactions": {"path": os.path.abspath(args.transactions),
                             "sha256": sha256_of(args.transactions)},
            "features": source,
            "inputs": inputs,
            "scaled": args.scale,
            "params": params,
            "versions": {"xgboost": xgboost.__version__, "sklearn": sklearn.__version__,
                         "pandas": pd.__version__, "numpy": np.__version__},
            "folds": results,
            "mean": {key: float(np.mean([f[key] for f in results]))
                     for key in ("auc_roc", "average_precision", cpk)},
            "markdown": table,
        }
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
