#!/usr/bin/env python3
"""Prepares a running `vigil serve` for bench/serve.sh's load test, and the
request bodies of both services.

A simulated stream (`vigil simulate` JSON Lines, in time order) is split at
midnight after its first --warm-days days:

  1. The warm-up part is posted in order: all but its tail through POST
     /v1/events:batch (100 a request), the tail one at a time, the tail's
     scored events with ?features=true. Every answer must be 200 (nothing
     rejected, retried or late): the feature state is then warm.
  2. OUT/templates.tsv: the scored events (deposit, withdrawal, trade,
     signup, promo_redeem, api_key_create) of the rest, in order, one a line,
     "before the id<TAB>between the id and the time<TAB>after the time":
     bench/wrk_post.lua posts them in order with a fresh event id each and
     times spread evenly over the days they span, from the split on, so
     every request is a new event continuing the stream (a repeated id would
     only hit the retry memory).
  3. With --reference-bodies, OUT/reference.jsonl: the features vigil
     computed for the tail's scored events ({name: value}, null = missing),
     what the reference service is posted.

Prints "start_ms=S period_ms=N": the split, and the templates' span in whole
days, for the replay.

Usage: serve_warmup.py PORT KEY EVENTS OUT [--warm-days 1] [--tail 2000] [--reference-bodies]
Standard library only.
"""
import argparse
import http.client
import json
import sys
from datetime import datetime, timezone

SCORED = {"deposit", "withdrawal", "trade", "signup", "promo_redeem", "api_key_create"}


def ms_of(text):
    return int(datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp() * 1000 + 0.5)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("key")
    ap.add_argument("events")
    ap.add_argument("out")
    ap.add_argument("--warm-days", type=int, default=1, help="days of the stream posted before the load test")
    ap.add_argument("--tail", type=int, default=2000, help="scored events posted one at a time")
    ap.add_argument("--reference-bodies", action="store_true")
    a = ap.parse_args()

    with open(a.events) as f:
        lines = [l.rstrip("\n") for l in f if l.strip()]
    docs = [json.loads(l) for l in lines]
    types = [d["event_type"] for d in docs]
    times = [ms_of(d["time"]) for d in docs]
    day_ms = 86400000
    start = times[0] - times[0] % day_ms
    cut_ms = start + a.warm_days * day_ms
    cut = next((i for i, t in enumerate(times) if t >= cut_ms), len(lines))
    period_ms = -(-(times[-1] + 1 - cut_ms) // day_ms) * day_ms  # whole days
    if cut == len(lines) or cut == 0:
        sys.exit(f"serve_warmup: --warm-days {a.warm_days} leaves nothing to warm up with or to replay")
    # The warm-up's tail: from its a.tail-th scored event counted from the end.
    split, seen = cut, 0
    while split > 0 and seen < a.tail:
        split -= 1
        seen += types[split] in SCORED

    conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=60)
    hdr = {"Authorization": "Bearer " + a.key, "Content-Type": "application/json"}

    def post(path, body):
        conn.request("POST", path, body=body, headers=hdr)
        r = conn.getresponse()
        data = r.read()
        if r.status != 200:
            sys.exit(f"serve_warmup: {path} answered {r.status}: {data[:300]!r}")
        return json.loads(data)

    for i in range(0, split, 100):
        doc = post("/v1/events:batch", "[" + ",".join(lines[i:min(i + 100, split)]) + "]")
        bad = [r for r in doc["results"] if r["status"] != 200]
        if bad:
            sys.exit(f"serve_warmup: batch at event {i}: {bad[0]}")
    bodies = []
    for i in range(split, cut):
        scored = types[i] in SCORED
        doc = post("/v1/events?features=true" if scored else "/v1/events", lines[i])
        if doc.get("retry") or doc.get("late"):
            sys.exit(f"serve_warmup: event {i} was a retry or late: {doc}")
        if scored:
            if "features" not in doc:
                sys.exit(f"serve_warmup: no features in {doc}")
            bodies.append(json.dumps(doc["features"], separators=(",", ":")))

    n_templates = 0
    with open(f"{a.out}/templates.tsv", "w") as f:
        for line, t in zip(lines[cut:], types[cut:]):
            if t not in SCORED:
                continue
            i = line.index('"event_id":"') + len('"event_id":"')
            j = line.index('"', i)
            k = line.index('"time":"') + len('"time":"')
            m = line.index('"', k)
            if not (j < k):
                sys.exit(f"serve_warmup: expected event_id before time: {line}")
            f.write(f"{line[:i]}\t{line[j:k]}\t{line[m:]}\n")
            n_templates += 1
    if a.reference_bodies:
        with open(f"{a.out}/reference.jsonl", "w") as f:
            f.write("\n".join(bodies) + "\n")
    print(f"serve_warmup: {cut} events of {a.warm_days} days posted ({split} in batches, {cut - split} one "
          f"by one, {len(bodies)} with features); {n_templates} scored events of the next "
          f"{period_ms // day_ms} days to replay; start_ms={cut_ms} period_ms={period_ms}")


if __name__ == "__main__":
    main()
