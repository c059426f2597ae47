"""The reference for `vigil validate` on CSV: pandas.read_csv on the same file.

Times pandas.read_csv (C engine, default dtype inference) in this process,
best of REPEATS, twice: with parse_dates on the time column (the figure the
ratio uses, since vigil parses every timestamp too) and with the defaults
alone (the time column then stays a column of Python strings). Interpreter
start-up and `import pandas` are not timed, which favours pandas.

Run with Debian's interpreter, /usr/bin/python3 (python3-pandas); `python3`
on PATH may be another interpreter without pandas.

Usage: /usr/bin/python3 bench/pandas_read_csv.py FILE.csv TIME_COLUMN [REPEATS]
Prints one JSON object: rows, pandas version, and the best seconds of each.
"""
import json
import sys
import time

import pandas as pd


def best_of(repeats, fn):
    best = None
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        elapsed = time.perf_counter() - start
        best = elapsed if best is None else min(best, elapsed)
    return best, result


def main():
    path, time_column = sys.argv[1], sys.argv[2]
    repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    dates_s, df = best_of(repeats, lambda: pd.read_csv(path, parse_dates=[time_column]))
    if not str(df[time_column].dtype).startswith("datetime64"):
        sys.exit(f"pandas_read_csv: {time_column} did not parse as dates: {df[time_column].dtype}")
    rows = len(df)
    del df
    default_s, df = best_of(repeats, lambda: pd.read_csv(path))
    if len(df) != rows:
        sys.exit(f"pandas_read_csv: {len(df)} rows without parse_dates, {rows} with")
    print(json.dumps({
        "rows": rows,
        "pandas": pd.__version__,
        "repeats": repeats,
        "parse_dates_s": round(dates_s, 4),
        "default_s": round(default_s, 4),
        "dtypes_default": {k: str(v) for k, v in df.dtypes.items()},
    }))


if __name__ == "__main__":
    main()
