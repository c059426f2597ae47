#!/usr/bin/python3
"""XGBoost's defaults on one-hot columns, beside vigil's scores, for
tests/integration/tabular_cli_test.cc.

Usage: /usr/bin/python3 tabular_reference.py DATA.csv VIGIL_SCORES.csv \
           --id COL --time COL --label COL --drop COL... --test-from DATE

DATA.csv is read by pandas as any user would read it (pandas.read_csv's
defaults). Rows before --test-from train, rows from it on are the later range
both models are judged on. The reference is xgboost.XGBClassifier(random_state=0)
on pandas.get_dummies of every column but the id, time, label and dropped ones
(n_jobs=1: the default `exact` tree method gives the same model on any number
of threads, and the test machines are shared). VIGIL_SCORES.csv is `vigil
predict`'s output for DATA.csv (`<id>,score`).

Prints one JSON object: for "reference" and "vigil", the AUC and average
precision on the later range (scikit-learn's roc_auc_score and
average_precision_score), and the row and feature counts.

Exits 3, with a message on standard error, when pandas, scikit-learn or
xgboost is missing.
"""
import argparse
import json
import sys

try:
    import pandas as pd
    import xgboost
    from sklearn.metrics import average_precision_score, roc_auc_score
except ImportError as e:
    sys.stderr.write(f"tabular_reference.py: {e}; /usr/bin/python3 needs pandas, scikit-learn and "
                     "xgboost: run scripts/install-deps.sh\n")
    sys.exit(3)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("scores")
    ap.add_argument("--id", required=True)
    ap.add_argument("--time", required=True)
    ap.add_argument("--label", required=True)
    ap.add_argument("--drop", nargs="*", default=[])
    ap.add_argument("--test-from", required=True)
    a = ap.parse_args()

    df = pd.read_csv(a.data)
    t = pd.to_datetime(df[a.time])
    later = (t >= pd.Timestamp(a.test_from)).to_numpy()
    y = df[a.label].astype(int).to_numpy()
    x = pd.get_dummies(df.drop(columns=[a.id, a.time, a.label] + a.drop))
    model = xgboost.XGBClassifier(random_state=0, n_jobs=1)
    model.fit(x[~later], y[~later])
    reference = model.predict_proba(x[later])[:, 1]

    scores = pd.read_csv(a.scores, dtype={a.id: str})
    if len(scores) != len(df) or not (scores[a.id].to_numpy() == df[a.id].astype(str).to_numpy()).all():
        sys.stderr.write("tabular_reference.py: vigil's scores are not one per row in input order\n")
        sys.exit(1)
    ours = scores["score"].to_numpy()[later]

    def figures(s):
        return {"auc": roc_auc_score(y[later], s), "average_precision": average_precision_score(y[later], s)}

    json.dump({"xgboost": xgboost.__version__, "train_rows": int((~later).sum()),
               "test_rows": int(later.sum()), "test_positives": int(y[later].sum()),
               "reference_features": x.shape[1], "reference": figures(reference),
               "vigil": figures(ours)}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
