#!/usr/bin/env python3
"""Per-scenario summary of a backfilled feature file: for each attack scenario,
how many rows, how many carry a matured label, and the features that single
out its rows best (AUC of the feature alone against genuine rows, in either
direction), with medians. No model is involved: this is what the features
offer a model. Run with Debian's Python (pandas):

  /usr/bin/python3 scripts/scenario_summary.py features.csv [--markdown]
"""
import json
import sys

import numpy as np
import pandas as pd


def auc(pos, neg):
    """Mann-Whitney AUC of pos over neg (ties count half); NaN as the lowest."""
    pos = np.nan_to_num(pos.astype(float), nan=-np.inf)
    neg = np.nan_to_num(neg.astype(float), nan=-np.inf)
    both = np.concatenate([pos, neg])
    ranks = pd.Series(both).rank(method="average").to_numpy()
    r = ranks[: len(pos)].sum()
    return (r - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))


def main():
    path = sys.argv[1]
    markdown = "--markdown" in sys.argv
    meta = json.load(open(path + ".meta.json"))
    features = meta["feature_columns"]
    df = pd.read_csv(path, low_memory=False)
    scen = df["scenario"].fillna("")
    genuine = df[scen == ""]
    if len(genuine) > 200000:
        genuine = genuine.sample(200000, random_state=1)
    rows = []
    for s in sorted(x for x in scen.unique() if x):
        part = df[scen == s]
        scored = []
        for f in features:
            a = auc(part[f].to_numpy(), genuine[f].to_numpy())
            scored.append((max(a, 1 - a), f, a))
        scored.sort(reverse=True)
        labelled = part["label"].eq(1).mean() if "label" in part else float("nan")
        top = []
        for best, f, a in scored[:3]:
            top.append(f"{f} {best:.3f} (median {part[f].median():.4g} vs {genuine[f].median():.4g})")
        rows.append((s, len(part), labelled, top))
    if markdown:
        print("| scenario | rows | labelled 1 | best single features: AUC (median attack vs genuine) |")
        print("|---|---|---|---|")
        for s, n, lab, top in rows:
            print(f"| {s} | {n:,} | {lab:.0%} | {'<br>'.join(top)} |")
        print(f"\nGenuine rows: {int((scen == '').sum()):,}. Features: {len(features)}. A missing value "
              "ranks lowest, so a feature the attack's rows lack (no device on API trades) separates "
              "them too: look at the medians.")
    else:
        for s, n, lab, top in rows:
            print(f"{s:18} {n:8,} rows, {lab:5.0%} labelled 1")
            for t in top:
                print(f"    {t}")


if __name__ == "__main__":
    main()
