#!/usr/bin/python3
"""scikit-learn's answers for tests/integration/metrics_sklearn_test.cc.

Usage: /usr/bin/python3 metrics_sklearn.py DATA.csv

DATA.csv has the header `set,score,label,entity,day` and one row per scored
row; rows of one set need not be adjacent. Prints one JSON object:

  {"sklearn": VERSION, "sets": {NAME: {...}, ...}}

where each set holds roc_auc_score, average_precision_score,
brier_score_loss, the roc_curve (drop_intermediate=False) and
precision_recall_curve points, the recall at FPR 0.001 / 0.01 / 0.05 read off
that roc_curve, confusion_matrix at a few thresholds (score >= threshold is
an alert), IsotonicRegression(out_of_bounds="clip") predictions on a grid,
and the Fraud Detection Handbook's card precision@k per day (its pandas code,
with entity for CUSTOMER_ID and day for TX_TIME_DAYS). Non-finite numbers are
written as null (JSON has no infinity).

Exits 3, with a message on standard error, when numpy, pandas or
scikit-learn is missing.
"""
import csv
import json
import math
import sys

try:
    import numpy as np
    import pandas as pd
    import sklearn
    from sklearn.isotonic import IsotonicRegression
    from sklearn.metrics import (average_precision_score, brier_score_loss,
                                 confusion_matrix, precision_recall_curve,
                                 roc_auc_score, roc_curve)
except ImportError as e:
    sys.stderr.write(f"metrics_sklearn.py: {e}; /usr/bin/python3 needs numpy, pandas and "
                     "scikit-learn: run scripts/install-deps.sh\n")
    sys.exit(3)

MAX_FPRS = [0.001, 0.01, 0.05]
CARD_K = 20


# card_precision_top_k_day and card_precision_top_k from the Fraud Detection
# Handbook (chapter 4, "Precision top-k metrics"), as published.
def card_precision_top_k_day(df_day, top_k):
    df_day = df_day.groupby('CUSTOMER_ID').max().sort_values(
        by="predictions", ascending=False).reset_index(drop=False)
    df_day_top_k = df_day.head(top_k)
    list_detected_compromised_cards = list(df_day_top_k[df_day_top_k.TX_FRAUD == 1].CUSTOMER_ID)
    card_precision_top_k = len(list_detected_compromised_cards) / top_k
    return list_detected_compromised_cards, card_precision_top_k


def card_precision_top_k(predictions_df, top_k, remove_detected_compromised_cards=True):
    list_days = list(predictions_df['TX_TIME_DAYS'].unique())
    list_days.sort()
    list_detected_compromised_cards = []
    card_precision_top_k_per_day_list = []
    nb_compromised_cards_per_day = []
    for day in list_days:
        df_day = predictions_df[predictions_df['TX_TIME_DAYS'] == day]
        df_day = df_day[['predictions', 'CUSTOMER_ID', 'TX_FRAUD']]
        df_day = df_day[df_day.CUSTOMER_ID.isin(list_detected_compromised_cards) == False]
        nb_compromised_cards_per_day.append(len(df_day[df_day.TX_FRAUD == 1].CUSTOMER_ID.unique()))
        detected_compromised_cards, card_precision_top_k = card_precision_top_k_day(df_day, top_k)
        card_precision_top_k_per_day_list.append(card_precision_top_k)
        if remove_detected_compromised_cards:
            list_detected_compromised_cards.extend(detected_compromised_cards)
    mean_card_precision_top_k = np.array(card_precision_top_k_per_day_list).mean()
    return nb_compromised_cards_per_day, card_precision_top_k_per_day_list, mean_card_precision_top_k


def finite(values):
    return [float(v) if math.isfinite(v) else None for v in values]


def reference(scores, labels, entities, days):
    out = {"rows": len(scores), "positives": int(labels.sum())}
    out["roc_auc"] = roc_auc_score(labels, scores)
    out["average_precision"] = average_precision_score(labels, scores)
    out["brier"] = brier_score_loss(labels, scores)

    fpr, tpr, thr = roc_curve(labels, scores, drop_intermediate=False)
    out["roc"] = {"fpr": finite(fpr), "tpr": finite(tpr), "thresholds": finite(thr)}
    out["recall_at_fpr"] = [{"max_fpr": x, "recall": float(tpr[fpr <= x].max())}
                            for x in MAX_FPRS]

    precision, recall, thr = precision_recall_curve(labels, scores)
    out["pr"] = {"precision": finite(precision), "recall": finite(recall),
                 "thresholds": finite(thr)}

    # Round thresholds and one that is a score of the data (ties at >=).
    thresholds = [0.1, 0.25, 0.5, 0.73, 0.9, float(np.median(scores))]
    out["confusion"] = []
    for t in thresholds:
        tn, fp, fn, tp = confusion_matrix(labels, scores >= t, labels=[0, 1]).ravel()
        out["confusion"].append({"threshold": t, "tp": int(tp), "fp": int(fp),
                                 "tn": int(tn), "fn": int(fn)})

    iso = IsotonicRegression(out_of_bounds="clip", increasing=True).fit(scores, labels)
    grid = np.concatenate([np.linspace(-0.05, 1.05, 221), np.unique(scores)[::7]])
    out["isotonic"] = {"grid": finite(grid), "predictions": finite(iso.predict(grid))}

    df = pd.DataFrame({"predictions": scores, "TX_FRAUD": labels, "CUSTOMER_ID": entities,
                       "TX_TIME_DAYS": days})
    compromised, per_day, mean = card_precision_top_k(df, CARD_K)
    out["card_precision"] = {"k": CARD_K, "per_day": per_day, "mean": float(mean),
                             "compromised_per_day": [int(c) for c in compromised]}
    return out


def main():
    if len(sys.argv) != 2:
        sys.stderr.write("usage: metrics_sklearn.py DATA.csv\n")
        sys.exit(2)
    sets = {}
    with open(sys.argv[1], newline="") as f:
        for row in csv.DictReader(f):
            s = sets.setdefault(row["set"], ([], [], [], []))
            s[0].append(float(row["score"]))
            s[1].append(int(row["label"]))
            s[2].append(int(row["entity"]))
            s[3].append(int(row["day"]))
    result = {"sklearn": sklearn.__version__, "sets": {}}
    for name, columns in sets.items():
        result["sets"][name] = reference(*(np.array(c) for c in columns))
    json.dump(result, sys.stdout, allow_nan=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
