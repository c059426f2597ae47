#!/usr/bin/env python3
"""vigil serve as a client sees it: a real server on a free loopback port,
real HTTP, the exchange example's schema, features, policy and model.

Usage: serve_test.py VIGIL_BINARY SOURCE_DIR TEST
TEST: api_docs | errors | dead_letters | crash_recovery | retries | store_failure | backfill_parity | config | decide | tls | reload | fd_exhaustion | stop | http

Standard library only (python3 on PATH is enough).
"""
import csv
import http.client
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

VIGIL, SRC, TEST = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]), sys.argv[3]
EX = os.path.join(SRC, "examples", "exchange")
ENV = dict(os.environ, VIGIL_PII_KEY="serve-test-key")


LIVE = []  # servers to kill if a check fails


def fail(msg):
    print("FAIL:", msg)
    for p in LIVE:
        if p.poll() is None:
            p.kill()
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


class Server:
    """A vigil serve process with its own state folder and three keys."""

    def __init__(self, work, limits=None, models=True, extra="", keys_file=True, tls=False, nofile=None,
                 save_state_s=600, fsize=None, schema=None):
        self.work = work
        self.cfg = os.path.join(work, "vigil.yaml")
        lim = {"max_body_bytes": 65536, "max_batch": 100, "threads": 2}
        lim.update(limits or {})
        model_block = ""
        if models:
            model_block = "models:\n" + "".join(
                f"  {t}: {{champion: {{name: exchange, bundle: {EX}/model}}}}\n"
                for t in ["signup", "deposit", "withdrawal", "trade", "promo_redeem", "api_key_create"])
        with open(self.cfg, "w") as f:
            f.write(f"schema: {schema or EX + '/schema.yaml'}\nfeatures: {EX}/features.yaml\npolicy: {EX}/policy.yaml\n"
                    f"{model_block}store: sqlite:{work}/var/vigil.db\njournal: {work}/var/journal.jsonl\n"
                    # sync_ms: the event log's sync thread runs in every server of these tests.
                    f"event_log: {{dir: {work}/var/eventlog, sync_ms: 50, save_state_s: {save_state_s}}}\n"
                    f"dead_letter: {work}/var/dead-letter.jsonl\n"
                    + (f"keys_file: {work}/var/keys.txt\n" if keys_file else "") + "listen: 127.0.0.1:0\n"
                    "limits: {" + ", ".join(f"{k}: {v}" for k, v in lim.items()) + "}\n" + extra)
        self.keys = {}
        for role in ["score", "label", "admin"]:
            r = subprocess.run([VIGIL, "keys", "create", "--config", self.cfg, "--role", role],
                               capture_output=True, text=True, env=ENV)
            check(r.returncode == 0, f"keys create: {r.stderr}")
            key = r.stdout.strip()
            check(re.fullmatch(r"vk_[0-9a-f]{64}", key) and r.stdout == key + "\n",
                  f"keys create prints the key alone: {r.stdout!r}")
            self.keys[role] = key
        stored = open(os.path.join(work, "var", "keys.txt" if keys_file else "vigil.db"), "rb").read()
        check(all(k.encode() not in stored for k in self.keys.values()), "the keys are not kept, only hashes")
        self.tls = tls
        self.nofile = nofile  # the open-file limit, soft and hard
        self.fsize = fsize  # the file size limit in bytes, soft and hard
        self.proc = None
        self.start()

    def start(self):
        def limit():
            import resource
            if self.nofile:
                resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))
            if self.fsize:
                resource.setrlimit(resource.RLIMIT_FSIZE, (self.fsize, self.fsize))
        self.proc = subprocess.Popen([VIGIL, "serve", "--config", self.cfg], stderr=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, text=True, env=ENV, preexec_fn=limit)
        self.log = []
        deadline = time.time() + 30
        self.port = None
        while time.time() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.log.append(line)
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                break
        LIVE.append(self.proc)
        check(self.port, "the server did not start:\n" + "".join(self.log))
        threading.Thread(target=lambda: self.log.extend(self.proc.stderr), daemon=True).start()
        if self.tls:
            import ssl
            ctx = ssl.create_default_context(cafile=os.path.join(self.work, "cert.pem"))
            ctx.check_hostname = False
            self.conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=30, context=ctx)
        else:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def stop(self):
        self.conn.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            fail("the server did not stop on SIGTERM")
        check(self.proc.returncode == 0, f"serve exit code {self.proc.returncode}:\n" + "".join(self.log))

    def request(self, method, path, body=None, key="score", ctype="application/json", headers=None):
        h = {}
        if key:
            h["Authorization"] = "Bearer " + (self.keys.get(key) or key)
        if ctype and body is not None:
            h["Content-Type"] = ctype
        h.update(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        try:
            self.conn.request(method, path, body=body, headers=h)
            r = self.conn.getresponse()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            # The server closes a keep-alive connection idle for 5 s (a test
            # that waited for the store): reconnect once, as a client would.
            self.conn.close()
            self.conn.request(method, path, body=body, headers=h)
            r = self.conn.getresponse()
        data = r.read().decode()
        try:
            doc = json.loads(data)
        except ValueError:
            doc = data
        return r.status, doc

    def post(self, event, features=False, key="score"):
        return self.request("POST", "/v1/events" + ("?features=true" if features else ""), event, key=key)


def post_event(s, event):
    """One event of a stream as a client posts it: a label to /v1/labels with
    a label key (a score key may not label), the rest to /v1/events.
    Returns the event's own status and answer."""
    ev = json.loads(event) if isinstance(event, str) else event
    if ev["event_type"] == "label":
        st, d = s.request("POST", "/v1/labels", event, key="label")
        return (d["results"][0]["status"], d["results"][0]["answer"]) if st == 200 else (st, d)
    return s.request("POST", "/v1/events", event)


def pipelined(port, key, requests):
    """Sends `requests` ((method, path, body) each) back to back on one
    connection before reading anything, then reads the answers in order."""
    raw = b""
    for method, path, body in requests:
        b = body.encode()
        raw += (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(b)}\r\n\r\n").encode() + b
    import socket
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(raw)
        f = sock.makefile("rb")
        answers = []
        for _ in requests:
            status = int(f.readline().split()[1])
            length = 0
            while (line := f.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            answers.append((status, json.loads(f.read(length))))
        return answers


def sample_events():
    with open(os.path.join(EX, "sample.jsonl")) as f:
        return [json.loads(l) for l in f if l.strip()]


# ---------------------------------------------------------------- api_docs
# (Not "message": the docs show each error's message as it is.)
VOLATILE = {"latency_us", "score", "model", "policy", "value", "contribution", "bias", "policy_hash",
            "feature_spec_hash", "keys", "reason", "name", "version", "path", "trees", "feature"}


def subset(expected, actual, where):
    """Every key the docs show is in the answer; fixed values are equal."""
    if isinstance(expected, dict):
        check(isinstance(actual, dict), f"{where}: expected an object, got {actual!r}")
        for k, v in expected.items():
            check(k in actual, f"{where}: key '{k}' missing from {json.dumps(actual)[:400]}")
            if k in VOLATILE:
                check(v is None or actual[k] is None or type(v) == type(actual[k])
                      or isinstance(v, (int, float)) and isinstance(actual[k], (int, float)),
                      f"{where}.{k}: type {type(actual[k]).__name__}, docs show {type(v).__name__}")
                continue
            subset(v, actual[k], f"{where}.{k}")
    elif isinstance(expected, list):
        check(isinstance(actual, list), f"{where}: expected a list, got {actual!r}")
        if expected and expected != [] and isinstance(expected[0], (dict, list)):
            check(len(actual) >= 1, f"{where}: empty list, docs show items")
            for i, e in enumerate(expected[:len(actual)]):
                subset(e, actual[i], f"{where}[{i}]")
    else:
        check(expected == actual, f"{where}: {actual!r}, docs show {expected!r}")


def test_api_docs():
    with tempfile.TemporaryDirectory() as work:
        s = Server(work)
        text = open(os.path.join(SRC, "docs", "api.md")).read()
        blocks = re.findall(r"```(\w+)\n(.*?)```", text, re.S)
        env = dict(ENV, VIGIL=f"http://127.0.0.1:{s.port}", KEY=s.keys["score"],
                   LABEL_KEY=s.keys["label"], ADMIN_KEY=s.keys["admin"])
        ran = 0
        for i, (lang, body) in enumerate(blocks):
            m = re.match(r"# expect (\d{3})\n", body)
            if lang != "sh" or not m:
                continue
            cmd = body[m.end():].strip().replace("\\\n", " ")
            r = subprocess.run(["bash", "-c", cmd + " -w '\\n%{http_code}'"], capture_output=True,
                               text=True, env=env, timeout=30)
            out, _, code = r.stdout.rpartition("\n")
            if os.environ.get("SHOW_ANSWERS"):
                print(cmd[:90], "\n ->", code, out)
            check(code == m.group(1), f"docs/api.md example {cmd[:100]}...: status {code}, docs say "
                  f"{m.group(1)}; answer {out[:300]}")
            check(i + 1 < len(blocks) and blocks[i + 1][0] == "json",
                  f"docs/api.md example {cmd[:80]}: no answer shown after it")
            subset(json.loads(blocks[i + 1][1]), json.loads(out), cmd.split('"$VIGIL')[1][:40])
            ran += 1
        check(ran >= 15, f"only {ran} examples found in docs/api.md")
        s.stop()
        print(f"ok: {ran} examples of docs/api.md answered as documented")


# ------------------------------------------------------------------ errors
def test_errors():
    with tempfile.TemporaryDirectory() as work:
        s = Server(work, limits={"max_body_bytes": 4096, "max_batch": 3, "rate_per_key": 5, "burst_per_key": 5})
        ev = sample_events()[0]
        st, doc = s.post(ev, key=None)
        check(st == 401 and doc["error"] == "unauthorized", f"no key: {st} {doc}")
        st, doc = s.post(ev, key="vk_" + "0" * 64)
        check(st == 401, f"unknown key: {st} {doc}")
        st, doc = s.post(ev, key="label")
        check(st == 403 and doc["error"] == "forbidden", f"label key on /v1/events: {st} {doc}")
        # A label event needs role label or admin on every endpoint: a score
        # key's is refused, alone or in a batch, and nothing of it is kept.
        lab = {"event_id": "e800000000009", "event_type": "label", "time": ev["time"], "kind": "chargeback",
               "target_event_id": ev["event_id"], "value": 1}
        st, doc = s.post(lab)
        check(st == 403 and doc == {"error": "forbidden", "message": "a label event needs a key with role label or admin"},
              f"a label event with a score key on /v1/events: {st} {doc}")
        st, doc = s.request("POST", "/v1/events:batch", [lab])
        check(st == 200 and doc["results"][0]["status"] == 403 and doc["results"][0]["answer"]["error"] == "forbidden",
              f"a label event with a score key in a batch: {st} {doc}")
        st, doc = s.request("POST", "/v1/labels", lab, key="label")
        r0 = doc["results"][0]
        check(st == 200 and r0["status"] == 200 and "retry" not in r0["answer"],
              f"the refused label was not applied: posted with a label key it is new: {st} {doc}")
        st, doc = s.request("GET", "/v1/admin/models", key="score")
        check(st == 403, f"score key on admin: {st}")
        # The body limit is checked from Content-Length, before the body is
        # read: 413 even for garbage (the HTTP layer's own answer, counted
        # under the endpoint).
        st, doc = s.request("POST", "/v1/events", "x" * 5000, key="admin")
        check(st == 413, f"5000-byte body over a 4096 limit: {st} {doc}")
        # A client still sending a large body reads the 413 too, not a reset
        # of the connection (the server reads the rest before it closes).
        st, doc = s.request("POST", "/v1/events", "x" * (4 << 20), key="admin")
        check(st == 413, f"4 MB body over a 4096 limit: {st} {doc}")
        st, doc = s.request("POST", "/v1/events:batch", [ev] * 4, key="admin")
        check(st == 413 and "max_batch" in doc["message"], f"batch of 4 over 3: {st} {doc}")
        st, doc = s.request("POST", "/v1/events", "{not json", key="admin")
        check(st == 400 and doc["error"] == "invalid_event", f"invalid JSON: {st} {doc}")
        bad = dict(ev, event_id="e800000000002", country=17)
        st, doc = s.request("POST", "/v1/events", bad, key="admin")
        check(st == 400 and any(v["field"] == "country" for v in doc["violations"]), f"schema violation: {st} {doc}")
        time.sleep(1.1)  # the admin key's bucket (5/s) refills
        st, doc = s.request("POST", "/v1/labels", [{"event_type": 5}], key="admin")
        check(st == 200 and doc["results"][0]["status"] == 400 and doc["results"][0]["answer"]["error"] == "not_a_label",
              f"a label whose event_type is a number: {st} {doc}")
        st, doc = s.request("POST", "/v1/events:batch", "[" * 2000 + "]" * 2000, key="admin")
        check(st == 400 and doc["error"] == "invalid_batch", f"2000 nested arrays: {st} {doc}")
        st, doc = s.request("POST", "/v1/events:batch",
                            '[{"event_type": "login", "user_id": "u0000001", "user_id": "u0000002"}]', key="admin")
        check(st == 200 and any(v["rule"] == "duplicate_field" for v in doc["results"][0]["answer"]["violations"]),
              f"a batch element is validated as posted (duplicate key): {doc}")
        st, doc = s.request("POST", "/v1/events", "hi", key="admin", ctype="text/plain")
        check(st == 415, f"text/plain: {st}")
        st, doc = s.request("GET", "/v1/nothing", key="admin")
        check(st == 404, f"unknown endpoint: {st}")
        st, doc = s.request("TRACE", "/v1/events", key="admin")
        check(st == 404 and doc["error"] == "not_found", f"TRACE reaches vigil's routes: {st} {doc}")
        # What the HTTP layer answers itself (connection closed), counted
        # under the endpoint when the request line was read.
        line, doc = raw_answer(s.port, b"BREW /v1/events HTTP/1.1\r\nHost: x\r\n\r\n")
        check(line == "HTTP/1.1 501 Not Implemented" and doc["error"] == "not_implemented",
              f"an unknown method: {line} {doc}")
        line, doc = raw_answer(s.port, b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: tea\r\n\r\n{}")
        check(line == "HTTP/1.1 417 Expectation Failed" and doc["error"] == "expectation_failed",
              f"an unknown Expect: {line} {doc}")
        # The rate limit: 5/s with a burst of 5, per key; the admin key has its own bucket.
        codes = [s.post(dict(ev, event_id=f"e7{i:011d}"))[0] for i in range(12)]
        check(codes.count(429) >= 5 and codes[:5] == [200] * 5, f"rate limit 5/s: {codes}")
        time.sleep(1.1)
        check(s.post(dict(ev, event_id="e800000000001"))[0] == 200, "the bucket refills")
        st, metrics = s.request("GET", "/metrics", key="label")
        check(st == 200 and "vigil_rate_limited_total" in metrics, f"/metrics with a label key: {st}")
        m = re.search(r"^vigil_rate_limited_total (\d+)", metrics, re.M)
        check(m and int(m.group(1)) == codes.count(429), "rate-limited requests counted")
        promtool = subprocess.run(["promtool", "check", "metrics"], input=metrics, capture_output=True, text=True)
        check(promtool.returncode == 0, f"promtool check metrics: {promtool.stdout} {promtool.stderr}")
        check(re.search(r'vigil_http_requests_total\{code="413",endpoint="events"\} 2', metrics)
              and re.search(r'vigil_http_requests_total\{code="413",endpoint="events_batch"\} 1', metrics),
              "413s counted on /metrics: " + "".join(l for l in metrics.splitlines(True) if "413" in l))
        check(re.search(r'vigil_http_requests_total\{code="501",endpoint="other"\} 1', metrics)
              and re.search(r'vigil_http_requests_total\{code="417",endpoint="events"\} 1', metrics),
              "501 and 417 counted on /metrics")
        s.stop()
        dead = [json.loads(l) for l in open(os.path.join(work, "var", "dead-letter.jsonl"))]
        check(len(dead) == 5 and dead[1]["event_id"] == "e800000000002" and dead[1]["field"] == "country"
              and dead[2]["file"] == "POST /v1/labels" and dead[2]["rule"] == "unknown_event_type"
              and dead[3]["file"] == "POST /v1/events:batch" and dead[4]["rule"] == "duplicate_field",
              f"dead-letter file: {[{k: str(v)[:80] for k, v in d.items()} for d in dead]}")
        print("ok: 400 401 403 404 413 415 429, dead-letter file, metrics")


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_fd_exhaustion():
    """Out of descriptors, the loops pause accepting instead of spinning,
    and accept again once connections close."""
    import socket
    with tempfile.TemporaryDirectory() as work:
        s = Server(work, nofile=48)
        check(s.request("GET", "/healthz")[0] == 200, "healthz")
        socks = [socket.create_connection(("127.0.0.1", s.port), timeout=30) for _ in range(80)]
        time.sleep(0.3)
        before = cpu_seconds(s.proc.pid)
        time.sleep(1.0)
        used = cpu_seconds(s.proc.pid) - before
        check(used < 0.3, f"{used:.2f} s of CPU in 1 s with the descriptors exhausted (spinning)")
        for so in socks:
            so.close()
        time.sleep(0.5)
        s.conn.close()
        st, doc = s.request("GET", "/healthz")
        check(st == 200, f"accepting again once connections closed: {st} {doc}")
        check(any("cannot accept a connection" in l for l in s.log), "the accept error is logged")
        s.stop()
    # A file size limit: a write past it fails (EFBIG) instead of killing the
    # server; the event log answers 503 and goes on in a new file, and a
    # restart replays every event it acknowledged.
    with tempfile.TemporaryDirectory() as work:
        limit = 256 << 10
        s = Server(work, fsize=limit)
        login = next(e for e in sample_events() if e["event_type"] == "login")
        statuses = []
        for b in range(12):
            batch = [dict(login, event_id=f"e77{b:04d}{i:06d}") for i in range(100)]
            st, doc = s.request("POST", "/v1/events:batch", batch)
            check(st == 200, f"batch {b}: {st} {doc}")
            statuses += [r["status"] for r in doc["results"]]
        check(s.proc.poll() is None, f"the server died under a file size limit: {s.proc.returncode}")
        logdir = os.path.join(work, "var", "eventlog")
        files = sorted(os.listdir(logdir))
        check(len(files) >= 2 and all(os.path.getsize(os.path.join(logdir, f)) <= limit for f in files),
              f"event log files under the limit, more than one: {files}")
        ok, refused = statuses.count(200), statuses.count(503)
        check(ok + refused == len(statuses) and 0 < refused <= len(files) and statuses[-1] == 200,
              f"200 but for a 503 where a file filled up: {ok} ok, {refused} refused, of {len(statuses)}")
        s.stop()
        s.fsize = None
        s.start()
        check(any(f"({ok:,} events)" in l for l in s.log),
              f"the restart restores the {ok:,} acknowledged events:\n" + "".join(s.log))
        s.stop()
        print(f"ok: descriptors exhausted, {used:.2f} s of CPU in 1 s; accepting again afterwards; "
              f"a file size limit: {refused} of {len(statuses)} events refused, {len(files)} log files")


def test_stop():
    """SIGTERM: an answer being written is finished, an idle keep-alive
    connection does not hold the server past its 5 s timeout."""
    import socket
    with tempfile.TemporaryDirectory() as work:
        s = Server(work)
        check(s.request("GET", "/healthz")[0] == 200, "healthz")  # s.conn stays open, idle
        events = [dict(e, event_id=f"e6{i:011d}") for i, e in enumerate(sample_events())]
        body = json.dumps(events).encode()
        slow = socket.create_connection(("127.0.0.1", s.port), timeout=30)
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.sendall(f"POST /v1/events:batch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {s.keys['score']}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        time.sleep(0.2)
        t0 = time.time()
        s.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)  # the server is stopping while the answer waits to be read
        data = b""
        while chunk := slow.recv(1000):
            data += chunk
            time.sleep(0.001)
        slow.close()
        head, _, doc = data.partition(b"\r\n\r\n")
        check(head.startswith(b"HTTP/1.1 200") and len(json.loads(doc)["results"]) == len(events),
              f"the answer in progress at SIGTERM arrives whole: {head[:60]!r}, {len(doc)} bytes")
        try:
            s.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            fail("the server did not stop on SIGTERM with an idle keep-alive connection open")
        took = time.time() - t0
        check(s.proc.returncode == 0 and took < 10, f"exit {s.proc.returncode} after {took:.1f} s")
        s.conn.close()
        print(f"ok: an answer in progress finished after SIGTERM; exit after {took:.1f} s with an idle connection")


# ----------------------------------------------------------------- retries
def test_retries():
    with tempfile.TemporaryDirectory() as work:
        s = Server(work)
        events = sample_events()
        by_id = {e["event_id"]: e for e in events}
        # Card c0deadbee deposits three times (e16, e17, e18) within minutes.
        for e in events:
            if e["event_id"] < "e000000000016" and e["event_type"] != "label":
                s.post(e)
        st1, d1 = s.post(by_id["e000000000016"], features=True)
        check(st1 == 200 and d1["scored"] and d1["features"]["card_deposits_1h"] == 1, f"first deposit: {d1}")
        st2, d2 = s.post(by_id["e000000000016"], features=True)
        check(st2 == 200 and d2 == d1, f"a retry returns the stored decision:\n{d1}\n{d2}")
        st2b, d2b = s.post(by_id["e000000000016"])
        check(d2b == {k: v for k, v in d1.items() if k != "features"}, "without ?features=true, no features")
        st, db = s.request("POST", "/v1/events:batch?features=true", [by_id["e000000000016"]])
        check(st == 200 and db["results"][0]["answer"] == d1, f"a batch's ?features=true: {db}")
        st, db = s.request("POST", "/v1/events:batch", [by_id["e000000000016"]])
        check(st == 200 and db["results"][0]["answer"] == d2b, f"a batch without ?features=true: {db}")
        _, d3 = s.post(by_id["e000000000017"], features=True)
        check(d3["features"]["card_deposits_1h"] == 2, f"the retries were not applied: {d3['features']}")
        st, doc = s.request("GET", "/v1/decisions/e000000000016")
        check(st == 200 and doc["action"] == d1["action"] and doc["features"] == d1["features"]
              and doc["exact_reasons"], f"GET decision: {st} {str(doc)[:300]}")
        # Pipelined: the stored decision (answered by the control-plane thread)
        # twice and a retry, sent before any answer is read; each answered in order.
        got = pipelined(s.port, s.keys["score"], [
            ("GET", "/v1/decisions/e000000000016", ""), ("GET", "/v1/decisions/e000000000016", ""),
            ("POST", "/v1/events", json.dumps(by_id["e000000000016"]))])
        check([st for st, _ in got] == [200, 200, 200] and got[0][1] == got[1][1] == doc
              and got[2][1] == d2b, f"pipelined requests: {[st for st, _ in got]}")
        margin = sum(r["contribution"] for r in doc["exact_reasons"]) + doc["bias"]
        p = 1 / (1 + 2.718281828459045 ** -margin)
        check(abs(p - d1["score"]) < 1e-5, f"TreeSHAP sums to the score's margin: {p} vs {d1['score']}")
        s.stop()
        # After a restart, a retry is answered from the store and still not applied.
        s.start()
        st5, d5 = s.post(by_id["e000000000016"])
        check(st5 == 200 and d5 == {k: v for k, v in d1.items() if k != "features"}, f"retry after restart: {d5}")
        _, d6 = s.post(by_id["e000000000018"], features=True)
        check(d6["features"]["card_deposits_1h"] == 3, f"state across the restart: {d6['features']}")
        s.stop()
        print("ok: retries return the stored decision and leave the features unchanged, across a restart too")


# ----------------------------------------------------------- store_failure
def decision_count(db, table="decisions"):
    c = sqlite3.connect(db, timeout=10)
    n = c.execute(f"select count(*) from {table}").fetchone()[0]
    c.close()
    return n


def simulate(work, users, days):
    path = os.path.join(work, "sim.jsonl")
    r = subprocess.run([VIGIL, "simulate", "--users", str(users), "--days", str(days), "--seed", "3",
                        "--out", path], capture_output=True, text=True, env=ENV)
    check(r.returncode == 0, f"simulate: {r.stderr}")
    with open(path) as f:
        return [l.rstrip("\n") for l in f if l.strip()]


def test_store_failure():
    with tempfile.TemporaryDirectory() as work:
        lines = simulate(work, 60, 4)
        s = Server(work)
        db = os.path.join(work, "var", "vigil.db")
        scored = 0
        labels = 0  # label events: stored against their decisions, journaled like them
        half = len(lines) // 2
        for l in lines[:half]:
            st, d = post_event(s, l)
            check(st == 200, f"{st} {d}")
            scored += bool(d.get("scored"))
            labels += '"event_type":"label"' in l.replace(" ", "")
        # The store fails: another connection holds an exclusive lock.
        lock = sqlite3.connect(db, timeout=10, isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        t0 = time.time()
        labels_before = labels
        for l in lines[half:]:
            st, d = post_event(s, l)
            check(st == 200, f"while the store is down: {st} {d}")
            scored += bool(d.get("scored"))
            labels += '"event_type":"label"' in l.replace(" ", "")
        elapsed = time.time() - t0
        check(labels > labels_before, f"the stream has labels while the store is down ({labels} in all)")
        # The store's writer runs at idle priority (raised when it falls
        # behind): on a busy machine its first failed write may take a while.
        deadline = time.time() + 20
        while True:
            _, metrics = s.request("GET", "/metrics")
            journaled = int(re.search(r"^vigil_decisions_journaled_total (\d+)", metrics, re.M).group(1))
            errors = int(re.search(r"^vigil_store_errors_total (\d+)", metrics, re.M).group(1))
            labels_journaled = int(re.search(r"^vigil_labels_journaled_total (\d+)", metrics, re.M).group(1))
            if (journaled > 0 and errors > 0 and labels_journaled > 0) or time.time() > deadline:
                break
            time.sleep(0.1)
        check(journaled > 0 and errors > 0, f"journaled {journaled}, store errors {errors}")
        check(labels_journaled > 0, f"labels journaled while the store is down: {labels_journaled}")
        _, ready = s.request("GET", "/readyz", key=None)
        check(ready["store"].startswith("degraded"), f"/readyz while down: {ready}")
        # Restore it, and count.
        lock.execute("COMMIT")
        lock.close()
        deadline = time.time() + 30
        while time.time() < deadline and decision_count(db) < scored:
            time.sleep(0.2)
        n = decision_count(db)
        check(n == scored, f"{n} decisions in the store, {scored} were made")
        c = sqlite3.connect(db)
        distinct = c.execute("select count(distinct event_id) from decisions").fetchone()[0]
        check(distinct == scored, "no decision stored twice")
        deadline = time.time() + 30
        while time.time() < deadline and decision_count(db, "labels") < labels:
            time.sleep(0.2)
        n = decision_count(db, "labels")
        check(n == labels, f"{n} labels in the store, {labels} were posted")
        # The store takes writes again: /readyz says so (the outage's error
        # is not reported for ever).
        deadline = time.time() + 10
        while True:
            _, ready = s.request("GET", "/readyz", key=None)
            if ready["store"] == "ok" or time.time() > deadline:
                break
            time.sleep(0.1)
        check(ready["store"] == "ok", f"/readyz once the journal is replayed: {ready}")
        # Down again, then stopped: the journal keeps them; a restart replays them.
        lock = sqlite3.connect(db, timeout=10, isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        more = simulate(work, 61, 1)  # another user population; new ids
        extra = 0
        for i, l in enumerate(more[:200]):
            ev = json.loads(l)
            ev["event_id"] = "again-" + ev["event_id"]
            ev["time"] = "2024-01-05T00:00:00.000Z"
            st, d = post_event(s, ev)
            extra += bool(d.get("scored"))
            labels += ev["event_type"] == "label"
        s.stop()
        lock.execute("COMMIT")
        lock.close()
        s.start()
        deadline = time.time() + 30
        while time.time() < deadline and decision_count(db) < scored + extra:
            time.sleep(0.2)
        n2 = decision_count(db)
        while time.time() < deadline and decision_count(db, "labels") < labels:
            time.sleep(0.2)
        n_labels = decision_count(db, "labels")
        s.stop()
        check(n2 == scored + extra, f"after a restart: {n2} stored, {scored + extra} made")
        check(n_labels == labels, f"after a restart: {n_labels} labels stored, {labels} posted")
        print(f"ok: {scored + extra} decisions and {labels} labels, {journaled}+ and {labels_journaled}+ "
              f"through the journal while the store was locked, none lost, none twice "
              f"({len(lines) - half} events in {elapsed:.1f} s while down)")


# --------------------------------------------------------- backfill_parity
def test_backfill_parity():
    with tempfile.TemporaryDirectory() as work:
        lines = simulate(work, 150, 10)
        s = Server(work, save_state_s=1)
        served = {}
        decided = {}  # the answers of scored events
        restored = []  # the events each restart's state held

        def restarted():
            m = next((re.search(r"restored the saved state \(([0-9,]+) events\), then replayed ([0-9,]+)", x)
                      for x in s.log if "restored the saved state" in x), None)
            check(m is not None, "serve says it restored its state:\n" + "".join(s.log))
            restored.append(int(m.group(1).replace(",", "")))
            return int(m.group(2).replace(",", ""))

        def metric(name):
            _, text = s.request("GET", "/metrics")
            return float(re.search(rf"^{name} (\S+)", text, re.M).group(1))

        for i, l in enumerate(lines):
            if i == len(lines) // 2:
                # A restart midway: the server saves its state at the stop and
                # restores it at the start.
                s.stop()
                check(any("saved the feature state" in x for x in s.log), "serve says it saved its state:\n"
                      + "".join(s.log))
                s.start()
                check(restarted() == 0, "nothing replayed after a clean stop:\n" + "".join(s.log))
                started = time.time()
            elif i == 3 * len(lines) // 4:
                # save_state_s: 1: this event, a second after the start,
                # saves the state in the background once it is decided.
                time.sleep(max(0.0, started + 1.2 - time.time()))
            elif i == 3 * len(lines) // 4 + 20:
                check(metric("vigil_state_saves_total") >= 1 and metric("vigil_state_save_errors_total") == 0,
                      "a save in the background while serving")
                check(metric("vigil_state_last_fork_seconds") > 0, "the fork's pause is reported")
                # Killed (no state saved at a stop): the state saved in the
                # background, then the events logged since. On a busy machine
                # a save may fall due before the sleep above, and another
                # after it whose child outlives the kill: whichever wrote the
                # state, it and the replay add up to every event logged.
                s.conn.close()
                s.proc.kill()
                s.proc.wait()
                s.start()
                n = restarted()
                logged = i - len(lines) // 2  # since the restart midway
                check(restored[1] > restored[0] and restored[1] - restored[0] + n == logged and n < logged,
                      f"after a kill, serve restores the state saved in the background ({restored}) and replays "
                      f"the {n} events logged since ({logged} since the restart before):\n" + "".join(s.log))
            ev = json.loads(l)
            if ev["event_type"] == "label":
                st, d = s.request("POST", "/v1/labels", l, key="label")
                check(st == 200 and d["results"][0]["status"] == 200, f"label: {d}")
            else:
                st, d = s.request("POST", "/v1/events?features=true", l)
                check(st == 200, f"{st} {d}")
                if d.get("scored"):
                    served[d["event_id"]] = d["features"]
                    decided[d["event_id"]] = d
            if i == 3 * len(lines) // 4:
                deadline = time.time() + 30
                while metric("vigil_state_saves_total") < 1 and time.time() < deadline:
                    time.sleep(0.05)
        # A label names its decision: GET shows it.
        last = json.loads(lines[-1])
        target = next(reversed(served))
        lab = {"event_id": "e999999999990", "event_type": "label", "time": last["time"], "kind": "chargeback",
               "target_event_id": target, "value": 1}
        st, d = s.request("POST", "/v1/labels", lab, key="label")
        check(st == 200 and d["results"][0]["status"] == 200, f"label: {d}")
        st, doc = s.request("GET", "/v1/decisions/" + target)
        check(st == 200 and any(x["label_id"] == lab["event_id"] for x in doc["labels"]), f"labels on GET: {doc.get('labels')}")
        s.stop()
        out = os.path.join(work, "features.csv")
        r = subprocess.run([VIGIL, "backfill", "--schema", f"{EX}/schema.yaml", "--features",
                            f"{EX}/features.yaml", "--events", os.path.join(work, "var", "eventlog"),
                            "--out", out], capture_output=True, text=True, env=ENV)
        check(r.returncode == 0, f"backfill over the event log: {r.stderr}")
        meta = json.load(open(out + ".meta.json"))
        names = meta["feature_columns"] if "feature_columns" in meta else meta["features"]
        rows = 0
        with open(out) as f:
            for row in csv.DictReader(f):
                srv = served.get(row["event_id"])
                check(srv is not None, f"backfill row {row['event_id']} was not served")
                for n in names:
                    a = srv[n]
                    b = row[n]
                    if b == "":
                        check(a is None, f"{row['event_id']} {n}: served {a}, backfill missing")
                    else:
                        check(a is not None and float(b) == float(a),
                              f"{row['event_id']} {n}: served {a!r}, backfill {b}")
                rows += 1
        check(rows == len(served), f"{rows} backfill rows, {len(served)} served decisions")
        check(rows > 500, f"only {rows} scored events")
        print(f"ok: backfill over the event log reproduces all {len(names)} features of {rows} decisions exactly, "
              "across a restart from the state saved at a stop, and a kill after a save in the background")

        # docs/api.md: `vigil decide` over the log's directory makes every
        # decision again exactly as it was made.
        logs = [f for f in os.listdir(os.path.join(work, "var", "eventlog")) if ".jsonl" in f]
        dout = os.path.join(work, "decisions.jsonl")
        r = subprocess.run([VIGIL, "decide", "--config", s.cfg, "--events", os.path.join(work, "var", "eventlog"),
                            "--out", dout], capture_output=True, text=True, env=ENV)
        check(r.returncode == 0, f"decide over the event log: {r.stderr}")
        again = [json.loads(x) for x in open(dout)]
        check([d["event_id"] for d in again] == list(decided), f"decide: {len(again)} decisions, {len(decided)} served")
        for d in again:
            want = decided[d["event_id"]]
            for k in ("action", "score", "model", "policy", "rules", "decided_by", "path", "experiment",
                      "reasons"):
                check(k in d and d[k] == want.get(k), f"decide over the log, {d['event_id']} {k}: {d.get(k)!r}, "
                      f"served {want.get(k)!r}")
        # The log with another file: all checked as plain files, and said.
        r = subprocess.run([VIGIL, "decide", "--config", s.cfg, "--events", os.path.join(work, "var", "eventlog"),
                            os.path.join(EX, "sample.jsonl"), "--out", dout], capture_output=True, text=True, env=ENV)
        check(r.returncode == 0 and f"{len(logs)} of the {len(logs) + 1} files are event-log files" in r.stderr,
              f"decide over a mix: {r.stderr}")
        print(f"ok: vigil decide over the event log's directory ({len(logs)} files) makes all {len(again)} "
              "decisions again as served, and warns when other files come with it")


# ------------------------------------------------------------------ config
def test_config():
    with tempfile.TemporaryDirectory() as work:
        # A bundle trained on another spec is refused at start, saying why.
        bad = os.path.join(work, "bad-model")
        os.makedirs(bad)
        for f in os.listdir(os.path.join(EX, "model")):
            open(os.path.join(bad, f), "w").write(open(os.path.join(EX, "model", f)).read())
        man = json.load(open(os.path.join(bad, "manifest.json")))
        man["feature_spec_hash"] = "0" * 64
        json.dump(man, open(os.path.join(bad, "manifest.json"), "w"))
        cfg = os.path.join(work, "vigil.yaml")
        open(cfg, "w").write(f"schema: {EX}/schema.yaml\nfeatures: {EX}/features.yaml\npolicy: {EX}/policy.yaml\n"
                             f"models:\n  deposit: {bad}\nstore: sqlite:{work}/v.db\n")
        r = subprocess.run([VIGIL, "serve", "--config", cfg, "--check"], capture_output=True, text=True, env=ENV)
        check(r.returncode == 2 and "another spec" in r.stderr and "vigil.yaml:5" in r.stderr,
              f"mismatched bundle: {r.returncode} {r.stderr}")
        open(cfg, "w").write(f"schema: {EX}/schema.yaml\nfeatures: {EX}/features.yaml\npolicy: {EX}/policy.yaml\n"
                             f"modles: {{}}\n")
        r = subprocess.run([VIGIL, "serve", "--config", cfg, "--check"], capture_output=True, text=True, env=ENV)
        check(r.returncode == 2 and "modles" in r.stderr and "vigil.yaml:4" in r.stderr, f"typo: {r.stderr}")
        r = subprocess.run([VIGIL, "serve", "--config", os.path.join(EX, "vigil.yaml"), "--check"],
                           capture_output=True, text=True, env=ENV)
        check(r.returncode == 0, f"the exchange example: {r.stderr}")
        # --check finds what the start would refuse, and makes nothing.
        base = (f"schema: {EX}/schema.yaml\nfeatures: {EX}/features.yaml\npolicy: {EX}/policy.yaml\n"
                f"store: sqlite:{work}/c/v.db\nevent_log: {{dir: {work}/c/log}}\n")
        os.makedirs(os.path.join(work, "c"), exist_ok=True)
        open(os.path.join(work, "c", "keys.txt"), "w").write("not a key line\n")
        open(os.path.join(work, "c", "notes.txt"), "w").write("not a certificate\n")
        for extra, words in [(f"keys_file: {work}/c/keys.txt\n", "keys.txt:1:"),
                             (f"tls: {{cert: {work}/c/notes.txt, key: {work}/c/notes.txt}}\n", "cannot load the certificate"),
                             ("listen: ::1:8080\n", "goes in brackets"),
                             (f"journal: {work}/c\n", "is a directory, not a file")]:
            open(cfg, "w").write(base + extra)
            r = subprocess.run([VIGIL, "serve", "--config", cfg, "--check"], capture_output=True, text=True, env=ENV)
            check(r.returncode == 2 and words in r.stderr, f"--check with {extra.strip()}: {r.returncode} {r.stderr}")
        open(cfg, "w").write(base + "listen: \"[::1]:0\"\n")
        r = subprocess.run([VIGIL, "serve", "--config", cfg, "--check"], capture_output=True, text=True, env=ENV)
        check(r.returncode == 0 and not os.path.exists(os.path.join(work, "c", "v.db"))
              and not os.path.exists(os.path.join(work, "c", "log")), f"--check of a good config: {r.stderr}")
        # A database of someone else's: --check leaves it as it was.
        import sqlite3
        other = sqlite3.connect(os.path.join(work, "c", "v.db"))
        other.execute("CREATE TABLE theirs (x)")
        other.commit()
        other.close()
        before = open(os.path.join(work, "c", "v.db"), "rb").read()
        r = subprocess.run([VIGIL, "serve", "--config", cfg, "--check"], capture_output=True, text=True, env=ENV)
        check(r.returncode == 0 and open(os.path.join(work, "c", "v.db"), "rb").read() == before
              and not os.path.exists(os.path.join(work, "c", "v.db-wal")), f"--check changed the store: {r.stderr}")
        open(os.path.join(work, "c", "v.db"), "w").write("not a database, longer than sixteen bytes\n")
        r = subprocess.run([VIGIL, "serve", "--config", cfg, "--check"], capture_output=True, text=True, env=ENV)
        check(r.returncode == 2 and "not an SQLite database" in r.stderr, f"--check of a store: {r.stderr}")
        # A key's name is one line of the keys file: a line break is refused.
        open(cfg, "w").write(f"schema: {EX}/schema.yaml\nfeatures: {EX}/features.yaml\npolicy: {EX}/policy.yaml\n"
                             f"store: sqlite:{work}/v.db\nkeys_file: {work}/keys.txt\n")
        r = subprocess.run([VIGIL, "keys", "create", "--config", cfg, "--role", "admin", "--name", "ops\nteam"],
                           capture_output=True, text=True, env=ENV)
        check(r.returncode == 2 and "line break" in r.stderr and r.stdout == "" and
              not os.path.exists(os.path.join(work, "keys.txt")), f"a name with a line break: {r.returncode} {r.stderr}")
        print("ok: configuration errors name file:line; the exchange example checks; --check finds keys, TLS "
              "and the state paths; a key's name is one line")


# ------------------------------------------------------------------ decide
def test_decide():
    with tempfile.TemporaryDirectory() as work:
        out, rep = os.path.join(work, "d.jsonl"), os.path.join(work, "r.json")
        r = subprocess.run([VIGIL, "decide", "--config", os.path.join(EX, "vigil.yaml"), "--events",
                            os.path.join(EX, "sample.jsonl"), "--out", out, "--report", rep],
                           capture_output=True, text=True, env=ENV)
        check(r.returncode == 0, f"decide: {r.stderr}")
        check(not os.path.exists(os.path.join(EX, "var")), "decide writes no state beside the config")
        decisions = [json.loads(l) for l in open(out)]
        events = sample_events()
        scored_types = {"signup", "deposit", "withdrawal", "trade", "promo_redeem", "api_key_create"}
        want = [e["event_id"] for e in events if e["event_type"] in scored_types]
        check([d["event_id"] for d in decisions] == want, f"one decision per scored event, in order: {len(decisions)}")
        check(all(d["action"] in ("allow", "challenge", "review", "block") for d in decisions), "actions")
        ato = [d for d in decisions if d["event_id"] == "e000000000025"][0]
        check(any(x["name"] == "takeover_new_wallet" for x in ato["rules"]), f"the takeover story fires its rule: {ato}")
        days = json.load(open(rep))["days"]
        check(sum(d["scored"] for d in days) == len(decisions) and sum(d["events"] for d in days) == len(events),
              f"per-day report: {days}")
        check("alerts" in r.stderr and "takeover_new_wallet" in r.stderr, f"per-day table: {r.stderr}")
        print(f"ok: vigil decide over the sample: {len(decisions)} decisions, report per day")

        # More rules fire than a decision lists (32), under the same names in
        # two sections: the report counts every hit, per event type.
        rules = "".join(f"      - {{name: r{i:02}, when: 'event.amount >= 0', action: review, reason: r}}\n"
                        for i in range(40))
        pol = os.path.join(work, "policy.yaml")
        with open(pol, "w") as f:
            f.write("event_types:\n" + "".join(f"  {t}:\n    rules:\n{rules}" for t in ("deposit", "withdrawal")))
        cfg = os.path.join(work, "vigil.yaml")
        with open(cfg, "w") as f:
            f.write(f"schema: {EX}/schema.yaml\nfeatures: {EX}/features.yaml\npolicy: {pol}\n")
        r = subprocess.run([VIGIL, "decide", "--config", cfg, "--events", os.path.join(EX, "sample.jsonl"),
                            "--out", out, "--report", rep], capture_output=True, text=True, env=ENV)
        check(r.returncode == 0, f"decide with 40 rules: {r.stderr}")
        decisions = [json.loads(l) for l in open(out)]
        check(any(d.get("rules_not_listed", 0) > 0 for d in decisions), "more rules fire than are listed")
        want, day_of = {}, {e["event_id"]: e["time"][:10] for e in events}
        for d in decisions:
            if d["event_type"] in ("deposit", "withdrawal"):
                day = want.setdefault(day_of[d["event_id"]], {}).setdefault(d["event_type"], {})
                for i in range(40):
                    day[f"r{i:02}"] = day.get(f"r{i:02}", 0) + 1
        got = {d["day"]: d["rules"] for d in json.load(open(rep))["days"] if d["rules"]}
        check(want and got == want, f"every hit counted, per type: {got} against {want}")
        print("ok: vigil decide's report counts rules past those listed, per event type")


# --------------------------------------------------------------------- tls
def test_tls():
    with tempfile.TemporaryDirectory() as work:
        r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                            "-keyout", os.path.join(work, "key.pem"), "-out", os.path.join(work, "cert.pem")],
                           capture_output=True, text=True)
        check(r.returncode == 0, f"openssl: {r.stderr}")
        s = Server(work, keys_file=False, tls=True,
                   extra=f"tls: {{cert: {work}/cert.pem, key: {work}/key.pem}}\n")
        check(any("(TLS)" in l for l in s.log), "serve says it listens with TLS")
        st, d = s.post(sample_events()[0])
        check(st == 200 and d["scored"], f"HTTPS with a key kept in the store: {st} {d}")
        plain = http.client.HTTPConnection("127.0.0.1", s.port, timeout=5)
        try:
            plain.request("GET", "/healthz")
            ok = plain.getresponse().status == 200
        except Exception:
            ok = False
        check(not ok, "plain HTTP is not served on the TLS port")
        # A client that pipelines over TLS and reads its answers slowly gets
        # every one (reading is held back meanwhile: docs/api.md).
        batch = json.dumps([dict(e, event_id=f"tls{i:06d}") for i, e in
                            enumerate(x for x in sample_events() if x["event_type"] != "label")])
        head = f"Host: x\r\nAuthorization: Bearer {s.keys['score']}\r\n"
        hz = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        post = (f"POST /v1/events:batch HTTP/1.1\r\n{head}Content-Type: application/json\r\n"
                f"Content-Length: {len(batch)}\r\n\r\n{batch}").encode()
        reps, per = 12, 300
        payload = (hz * per + post) * reps + b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        got = tls_pipeline(s.port, payload, read_bytes_per_s=400_000, timeout=60)
        answers = got.count(b"HTTP/1.1 ")
        check(answers == (per + 1) * reps + 1 and got.count(b"HTTP/1.1 200 ") == answers,
              f"{(per + 1) * reps + 1} pipelined requests over TLS, read slowly: {answers} answers, "
              f"{got.count(b'HTTP/1.1 200 ')} of them 200; the end: {got[-200:]!r}")
        s.stop()
        print("ok: TLS with a configured certificate; keys in the store; pipelining over TLS, read slowly")


def tls_pipeline(port, payload, read_bytes_per_s, timeout):
    """Sends `payload` over TLS on one connection as fast as the server takes
    it, reads the answers at about `read_bytes_per_s`, and returns what it
    read once the server closes (or at the timeout)."""
    import select
    import socket
    import ssl
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing)
    got, pos, wire, shaken, eof = b"", 0, b"", False, False
    t0 = last = time.time()
    budget = 0.0
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setblocking(False)
        while time.time() - t0 < timeout and not eof:
            if not shaken:
                try:
                    tls.do_handshake()
                    shaken = True
                except ssl.SSLWantReadError:
                    pass
            if shaken and pos < len(payload) and len(wire) < (1 << 20):
                pos += tls.write(payload[pos:pos + 65536])
            wire += outgoing.read()
            now = time.time()
            budget, last = min(budget + (now - last) * read_bytes_per_s, 65536.0), now
            readable, writable, _ = select.select([sock] if budget >= 1024 else [], [sock] if wire else [], [],
                                                  0.01)
            if writable:
                try:
                    wire = wire[sock.send(wire):]
                except BlockingIOError:
                    pass
            if readable:
                try:
                    data = sock.recv(int(budget))
                except BlockingIOError:
                    data = None
                if data == b"":
                    eof = True
                elif data:
                    budget -= len(data)
                    incoming.write(data)
            while shaken:
                try:
                    data = tls.read(1 << 18)
                except ssl.SSLWantReadError:
                    break
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    eof = True
                    break
                if not data:
                    eof = True
                    break
                got += data
    return got


# ------------------------------------------------------------------ reload
def test_reload():
    with tempfile.TemporaryDirectory() as work:
        lines = simulate(work, 80, 3)
        s = Server(work)
        statuses, stop = [], threading.Event()

        def load():
            c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
            for l in lines:
                if stop.is_set():
                    break
                label = '"event_type":"label"' in l.replace(" ", "")
                c.request("POST", "/v1/labels" if label else "/v1/events", body=l, headers={
                    "Authorization": "Bearer " + s.keys["label" if label else "score"],
                    "Content-Type": "application/json"})
                r = c.getresponse()
                r.read()
                statuses.append(r.status)
            c.close()

        t = threading.Thread(target=load)
        t.start()
        versions = set()
        for _ in range(5):
            st, doc = s.request("POST", "/v1/admin/reload", "", key="admin")
            check(st == 200 and doc["reloaded"], f"reload: {st} {doc}")
            versions.update(m["version"] for m in doc["models"]["models"])
            time.sleep(0.05)
        # The keys file moved away: the reload says so and keeps the keys it
        # had (not "no keys": every key, admin's too, would answer 401).
        keys = os.path.join(work, "var", "keys.txt")
        os.rename(keys, keys + ".moved")
        st, doc = s.request("POST", "/v1/admin/reload", "", key="admin")
        check(st == 200 and "does not exist" in doc.get("keys_error", ""), f"reload without the keys file: {st} {doc}")
        _, ready = s.request("GET", "/readyz", key=None)
        check(ready["keys"] == 3, f"the keys stay after a reload without the keys file: {ready}")
        st, doc = s.request("GET", "/v1/admin/models", key="admin")
        check(st == 200, f"the admin key after a reload without the keys file: {st} {doc}")
        # Caught empty (truncated by a tool rewriting it): the same.
        open(keys, "w").close()
        st, doc = s.request("POST", "/v1/admin/reload", "", key="admin")
        check(st == 200 and "holds no key" in doc.get("keys_error", ""), f"reload with an empty keys file: {st} {doc}")
        _, ready = s.request("GET", "/readyz", key=None)
        check(ready["keys"] == 3, f"the keys stay after a reload with an empty keys file: {ready}")
        os.rename(keys + ".moved", keys)
        # A broken model: the reload keeps the last good version and says so.
        bad = os.path.join(work, "model")
        subprocess.run(["cp", "-r", os.path.join(EX, "model"), bad], check=True)
        cfg = open(s.cfg).read().replace(f"{EX}/model", bad)
        open(s.cfg, "w").write(cfg)
        st, doc = s.request("POST", "/v1/admin/reload", "", key="admin")
        check(st == 200 and "warning" not in doc, f"reload onto a copy: {doc}")
        open(os.path.join(bad, "model.json"), "w").write("{broken")
        st, doc = s.request("POST", "/v1/admin/reload", "", key="admin")
        check(st == 200 and "keeping the last good version" in doc.get("warning", ""), f"broken model: {doc}")
        check({m["version"] for m in doc["models"]["models"]} == versions, "the last good version still decides")
        # A broken policy: nothing changes (409).
        pol = os.path.join(work, "policy.yaml")
        open(pol, "w").write("version: 1\nevent_types: {withdrawal: {thresholds: [{action: bloc, score_at_least: 2}]}}\n")
        open(s.cfg, "w").write(cfg.replace(f"{EX}/policy.yaml", pol))
        st, doc = s.request("POST", "/v1/admin/reload", "", key="admin")
        check(st == 409 and "policy.yaml" in doc["message"], f"broken policy: {st} {doc}")
        stop.set()
        t.join()
        check(statuses and all(x == 200 for x in statuses), f"requests during reloads: {set(statuses)}")
        st, d = s.post(json.loads(lines[-1]) | {"event_id": "e999999999999"})
        check(st == 200, "still serving")
        # A good policy with one threshold moved: later decisions name it, and
        # /metrics counts them under it.
        scored = next(json.loads(l) for l in reversed(lines) if '"withdrawal"' in l) | {
            "time": json.loads(lines[-1])["time"]}
        st, before = s.post(scored | {"event_id": "e999999999998"})
        check(st == 200 and before.get("policy", "").startswith("exchange@"), f"a decision names its policy: {before}")
        text = open(f"{EX}/policy.yaml").read()
        check("score_at_least: 0.97" in text, "the example policy has the threshold this test moves")
        open(pol, "w").write(text.replace("score_at_least: 0.97", "score_at_least: 0.96", 1))
        st, doc = s.request("POST", "/v1/admin/reload", "", key="admin")
        check(st == 200, f"reload of a changed policy: {st} {doc}")
        st, after = s.post(scored | {"event_id": "e999999999997"})
        check(st == 200 and after["policy"].startswith("exchange@") and after["policy"] != before["policy"],
              f"the changed policy decides: {before['policy']} then {after.get('policy')}")
        check(after["policy"][len("exchange@"):] == doc["models"]["policy_hash"][:12],
              f"the decision's policy is the loaded one: {after['policy']} {doc['models']['policy_hash']}")
        _, metrics = s.request("GET", "/metrics")
        for v in (before["policy"], after["policy"]):
            check(re.search(rf'^vigil_decisions_total{{[^}}]*policy="{re.escape(v)}"[^}}]*}} [1-9]', metrics, re.M),
                  f"vigil_decisions_total counts {v}:\n" + "\n".join(l for l in metrics.splitlines()
                                                                  if l.startswith("vigil_decisions_total")))

        # A save on demand (POST /v1/admin/save): admin only, and it ends as
        # the saves of save_state_s do, counted in /metrics.
        def state_metric(name):
            _, text = s.request("GET", "/metrics")
            return float(re.search(rf"^{name} (\S+)", text, re.M).group(1))

        st, doc = s.request("POST", "/v1/admin/save", "", key="score")
        check(st == 403, f"a save asked with a score key: {st} {doc}")
        saves = state_metric("vigil_state_saves_total")
        st, doc = s.request("POST", "/v1/admin/save", "", key="admin")
        check(st == 200 and doc == {"saving": True}, f"a save on demand: {st} {doc}")
        deadline = time.time() + 60
        while state_metric("vigil_state_saves_total") == saves and time.time() < deadline:
            time.sleep(0.05)
        check(state_metric("vigil_state_saves_total") == saves + 1
              and state_metric("vigil_state_save_errors_total") == 0, "the save on demand ended, without error")
        s.stop()
        print(f"ok: 8 reloads while {len(statuses)} requests were served, every one 200; a broken model "
              "keeps its last good version, a broken policy changes nothing, a changed one names the "
              "decisions after it; a save on demand is the admin's and ends as the others")


# -------------------------------------------------------------------- http
def raw_answer(port, raw):
    """Sends `raw` on a new connection: the answer's status line and body."""
    import socket
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(raw)
        f = sock.makefile("rb")
        status_line = f.readline().decode().rstrip("\r\n")
        length = 0
        while (line := f.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        return status_line, json.loads(f.read(length))


def test_http():
    """What HTTP says of headers and status lines: media types and the auth
    scheme without regard to case, 411 for a POST without a length, the
    reason phrase of a 429, one role named in an admin endpoint's 403."""
    with tempfile.TemporaryDirectory() as work:
        # 20 requests per key, then (almost) none: the 429 comes when asked.
        s = Server(work, limits={"rate_per_key": 0.01, "burst_per_key": 20})
        events = [dict(e, event_id=f"e5{i:011d}") for i, e in enumerate(sample_events()) if e["event_type"] != "label"]
        for i, ctype in enumerate(["Application/JSON", "application/json; charset=utf-8",
                                   " APPLICATION/json ;charset=UTF-8"]):
            st, doc = s.request("POST", "/v1/events", events[i], ctype=ctype)
            check(st == 200, f"Content-Type {ctype!r}: {st} {doc}")
        for ctype in ["application/jsonx", "text/plain; charset=application/json"]:
            st, doc = s.request("POST", "/v1/events", events[3], ctype=ctype)
            check(st == 415 and doc["error"] == "unsupported_media_type", f"Content-Type {ctype!r}: {st} {doc}")
        for scheme in ["bearer", "BEARER"]:
            st, doc = s.request("POST", "/v1/events", events[4], key=None,
                                headers={"Authorization": f"{scheme} {s.keys['score']}"})
            check(st == 200, f"the scheme {scheme!r}: {st} {doc}")
        st, doc = s.request("GET", "/v1/admin/models", key="score")
        check(st == 403 and doc["message"] == "this endpoint needs a key with role admin", f"admin's 403: {st} {doc}")
        st, doc = s.request("POST", "/v1/labels", [], key="score")
        check(st == 403 and doc["message"] == "this endpoint needs a key with role label or admin",
              f"labels' 403: {st} {doc}")
        line, doc = raw_answer(s.port, f"POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                                       f"{s.keys['score']}\r\nContent-Type: application/json\r\n\r\n".encode())
        check(line == "HTTP/1.1 411 Length Required" and doc["error"] == "length_required",
              f"a POST without Content-Length: {line} {doc}")
        # An event id may hold a '/', sent as %2F: the one path segment is the id.
        st, doc = s.request("GET", "/v1/decisions/e500000000000%2F")
        check(st == 404 and "no endpoint" not in doc["message"], f"an id with %2F is an id: {st} {doc}")
        st, doc = s.request("GET", "/v1/decisions/e500000000000/x")
        check(st == 404 and "no endpoint" in doc["message"], f"two segments are no endpoint: {st} {doc}")
        st, doc = s.request("GET", "//healthz")
        check(st == 404 and "no endpoint GET //healthz " in doc["message"], f"named as sent: {st} {doc}")
        # Where a body ends is in doubt: 400 (411 without any length), and the
        # connection ends there, so that what a proxy may have taken for a
        # body is never served as a request of its own (request smuggling).
        import socket
        smuggled = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        head = f"Host: x\r\nAuthorization: Bearer {s.keys['score']}\r\nContent-Type: application/json\r\n"
        for what, status, raw in [
                ("two Content-Lengths", 400, f"POST /v1/events HTTP/1.1\r\n{head}Content-Length: 2\r\n"
                                             f"Content-Length: {2 + len(smuggled)}\r\n\r\n{{}}{smuggled}"),
                ("Transfer-Encoding: identity", 400, f"POST /v1/events HTTP/1.1\r\n{head}"
                                                     f"Transfer-Encoding: identity\r\n\r\n{smuggled}"),
                ("a space before the colon", 400, f"POST /v1/events HTTP/1.1\r\n{head}"
                                                  f"Content-Length : {len(smuggled)}\r\n\r\n{smuggled}"),
                ("a body on a HEAD", 400, f"HEAD /healthz HTTP/1.1\r\n{head}Content-Length: {len(smuggled)}\r\n\r\n"
                                          f"{smuggled}"),
                ("no length", 411, f"POST /v1/events HTTP/1.1\r\n{head}\r\n{smuggled}")]:
            with socket.create_connection(("127.0.0.1", s.port), timeout=30) as sock:
                sock.sendall(raw.encode())
                answer = b""
                while chunk := sock.recv(65536):
                    answer += chunk
            text = answer.decode(errors="replace")
            check(text.startswith(f"HTTP/1.1 {status} ") and text.count("HTTP/1.1 ") == 1 and
                  "Connection: close" in text, f"{what}: one answer, {status}, and the connection closed: {text!r}")
        # A client that pipelines requests and never reads the answers: the
        # server stops reading from it, instead of buffering all it sends.
        def rss_mb():
            with open(f"/proc/{s.proc.pid}/status") as f:
                return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) / 1024
        before = rss_mb()
        sent, t0 = 0, time.time()
        with socket.create_connection(("127.0.0.1", s.port), timeout=0.5) as sock:
            try:
                while time.time() - t0 < 2:
                    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 1000)
                    sent += 1000
            except (TimeoutError, socket.timeout):
                pass
            grown = rss_mb() - before
        check(grown < 64, f"{sent} pipelined requests never read: the server grew by {grown:.0f} MB")
        # The reload takes no body: its Content-Type does not matter (docs/api.md).
        st, doc = s.request("POST", "/v1/admin/reload", "", key="admin", ctype="text/plain")
        check(st == 200 and doc["reloaded"], f"reload with text/plain: {st} {doc}")
        for _ in range(25):
            s.conn.request("GET", "/v1/decisions/e500000000000", headers={"Authorization": "Bearer " + s.keys["score"]})
            r = s.conn.getresponse()
            r.read()
            if r.status == 429:
                break
        check(r.status == 429 and r.reason == "Too Many Requests", f"the 429's status line: {r.status} {r.reason}")
        s.stop()
    # Bodies over 64 KiB where the limit allows them, whole or as one chunk:
    # read and answered (the read-ahead bound holds only while an answer is
    # written). A chunk-size line that never ends leaves no connection
    # stuck: the server still stops.
    with tempfile.TemporaryDirectory() as work:
        s = Server(work, limits={"max_body_bytes": 1 << 20, "max_batch": 1000})
        import socket
        sample = [e for e in sample_events() if e["event_type"] != "label"]
        for n, chunked in ((0, False), (1, True)):
            batch = [dict(sample[i % len(sample)], event_id=f"e7{n}{i:010d}") for i in range(400)]
            body = json.dumps(batch).encode()
            check(len(body) > 100_000, f"a batch of {len(body)} bytes")
            head = (f"POST /v1/events:batch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {s.keys['score']}\r\n"
                    "Content-Type: application/json\r\nConnection: close\r\n").encode()
            raw = head + (b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if chunked
                          else b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            with socket.create_connection(("127.0.0.1", s.port), timeout=30) as sock:
                sock.sendall(raw)
                answer = b""
                while chunk := sock.recv(1 << 20):
                    answer += chunk
            text = answer.decode(errors="replace")
            check(text.startswith("HTTP/1.1 200 ") and text.count('{"status":') == 400,
                  f"a {len(body)}-byte batch{' in one chunk' if chunked else ''}: {text[:300]!r}")
        with socket.create_connection(("127.0.0.1", s.port), timeout=30) as sock:
            sock.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + b"0" * 70000)
        s.stop()
        print("ok: media types and the auth scheme without regard to case; 411; 429 Too Many Requests; 403 messages; "
              "an id with %2F; a body whose end is in doubt refused and the connection closed; "
              "a client that never reads its answers is not buffered; bodies over 64 KiB where allowed")


# ------------------------------------------------------------------ dead letters
def test_dead_letters():
    """A batch or label body that holds no events is answered 400 invalid_batch
    and written whole to the dead-letter file, before the answer; an event
    without a known type is named by its event_id in the answer and there."""
    with tempfile.TemporaryDirectory() as work:
        s = Server(work)
        path = os.path.join(work, "var", "dead-letter.jsonl")

        def dead():
            return [json.loads(l) for l in open(path)] if os.path.exists(path) else []

        ev = sample_events()[3]
        valid = json.dumps(dict(ev, event_id="e810000000001"))
        cases = [  # endpoint, key, body, the reason's words
            ("/v1/labels", "label", "{bad", "not valid JSON"),
            ("/v1/events:batch", "score", '[{"event_id":"e1","email":"ann@gmail.com",]', "not valid JSON"),
            ("/v1/events:batch", "score", "[" + valid + ",5]", "element 1 of the array is not an object"),
            ("/v1/labels", "label", "[5]", "element 0 of the array is not an object"),
        ]
        for i, (endpoint, key, body, words) in enumerate(cases):
            st, doc = s.request("POST", endpoint, body, key=key)
            check(st == 400 and doc["error"] == "invalid_batch" and words in doc["message"],
                  f"{endpoint} {body[:40]}: {st} {doc}")
            d = dead()
            check(len(d) == i + 1, f"{endpoint} {body[:40]}: not in the dead-letter file at once: {d}")
            last = d[-1]
            check(last["file"] == "POST " + endpoint and last["rule"] == "malformed_json"
                  and last["event_id"] is None and words in last["reason"],
                  f"{endpoint} {body[:40]}: dead letter {last}")
            if "ann@gmail.com" in body:
                check("ann@gmail.com" not in last["raw"] and "hmac:" in last["raw"]
                      and last["raw"].startswith('[{"event_id":"e1","email":"'),
                      f"the body's pii is masked: {last['raw']}")
            else:
                check(last["raw"] == body, f"the raw body: {last['raw']!r}")
        st, doc = s.post(json.loads(valid))
        check(st == 200, f"the batch's valid element was not decided with the batch: {st} {doc}")

        # An event without event_type, or of an unknown type: its id is known all the same.
        for i, body in enumerate([{"event_id": "e810000000002", "user_id": "u0000001"},
                                  {"event_id": "e810000000003", "event_type": "transfer"}]):
            st, doc = s.post(body)
            check(st == 400 and doc["error"] == "invalid_event" and doc.get("event_id") == body["event_id"],
                  f"{body}: {st} {doc}")
            last = dead()[-1]
            check(last["event_id"] == body["event_id"] and last["field"] == "event_type",
                  f"{body}: dead letter {last}")

        # One element of a batch that is not UTF-8: it alone is refused (by
        # its id, and dead-lettered), the others are decided; so for a label.
        def not_utf8(event):
            return json.dumps(event).replace('"FR"', '"F~"').encode().replace(b'"F~"', b'"F\xff"')

        bad = not_utf8(dict(ev, event_id="e810000000012"))
        check(b"\xff" in bad, f"the test's invalid byte: {bad!r}")
        body = b"[" + b",".join([json.dumps(dict(ev, event_id="e810000000011")).encode(), bad,
                                 json.dumps(dict(ev, event_id="e810000000013")).encode()]) + b"]"
        st, doc = s.request("POST", "/v1/events:batch", body)
        check(st == 200 and [r["status"] for r in doc["results"]] == [200, 400, 200]
              and doc["results"][1]["answer"]["event_id"] == "e810000000012"
              and doc["results"][1]["answer"]["violations"][0]["rule"] == "invalid_utf8",
              f"a batch with one element not UTF-8: {st} {doc}")
        last = dead()[-1]
        check(last["event_id"] == "e810000000012" and last["rule"] == "invalid_utf8" and "raw_base64" in last,
              f"the element not UTF-8: dead letter {last}")
        lab = not_utf8({"event_id": "e810000000014", "event_type": "label", "time": ev["time"],
                        "kind": "chargeback", "target_event_id": "e810000000011", "value": 1, "note": "FR"})
        st, doc = s.request("POST", "/v1/labels", b"[" + lab + b"]", key="label")
        check(st == 200 and doc["results"][0]["status"] == 400
              and doc["results"][0]["answer"]["violations"][0]["rule"] == "invalid_utf8",
              f"a label not UTF-8: {st} {doc}")
        check(dead()[-1]["event_id"] == "e810000000014", f"the label not UTF-8: dead letter {dead()[-1]}")
        # An element of a label body that is no label: 400 not_a_label, and
        # dead-lettered like every 400.
        st, doc = s.request("POST", "/v1/labels", "[" + json.dumps(dict(ev, event_id="e810000000015")) + "]",
                            key="label")
        check(st == 200 and doc["results"][0]["status"] == 400
              and doc["results"][0]["answer"]["error"] == "not_a_label"
              and doc["results"][0]["answer"].get("event_id") == "e810000000015",
              f"a deposit among labels: {st} {doc}")
        last = dead()[-1]
        check(last["rule"] == "unknown_event_type" and last["file"] == "POST /v1/labels"
              and last["event_id"] == "e810000000015"
              and "e810000000015" in last["raw"] and "not a label event" in last["reason"],
              f"the deposit among labels: dead letter {last}")
        # One without an id: named by none.
        st, doc = s.request("POST", "/v1/labels", '[{"event_type": "deposit"}]', key="label")
        check(st == 200 and doc["results"][0]["status"] == 400
              and doc["results"][0]["answer"]["error"] == "not_a_label"
              and "event_id" not in doc["results"][0]["answer"] and dead()[-1]["event_id"] is None,
              f"a deposit without an id among labels: {st} {doc} {dead()[-1]}")
        st, metrics = s.request("GET", "/metrics", key="admin")
        check(re.search(r"^vigil_dead_letters_total 10$", metrics, re.M),
              "dead letters counted: " + "".join(l for l in metrics.splitlines(True) if "dead_letter" in l))
        s.stop()
        print("ok: invalid batch and label bodies dead-lettered whole; ids of events without a known type; "
              "one element not UTF-8 refused alone")


# ------------------------------------------------------------ crash_recovery
def server_children(pid):
    """The pids of a process's children (a state save in the background)."""
    out = []
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/children") as f:
                out += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def test_crash_recovery():
    """kill -9 right after answers: the decisions still queued for the store
    die with the process; the next start makes them again from the event log,
    so that the store ends up with a decision for every scored answer, the
    same action, and the recovered ones marked. The same when the kill lands
    while the state is being saved in the background: the saving child goes
    on after its parent, but a state whose decisions were not yet safe never
    takes the place of the last one, so their events are replayed."""
    for during_save in (False, True):
        with tempfile.TemporaryDirectory() as work:
            lines = [l for l in simulate(work, 600 if during_save else 150, 10)
                     if json.loads(l)["event_type"] != "label"]
            s = Server(work, save_state_s=1 if during_save else 600)
            db = os.path.join(work, "var", "vigil.db")
            answered = {}
            saver = None
            lock, stop = threading.Lock(), threading.Event()

            def post(part, conn, n):
                """Posts `part` in batches of `n`, keeping what was answered."""
                for i in range(0, len(part), n):
                    if stop.is_set():
                        return
                    try:
                        conn.request("POST", "/v1/events:batch", "[" + ",".join(part[i:i + n]) + "]",
                                     {"Authorization": "Bearer " + s.keys["score"],
                                      "Content-Type": "application/json"})
                        r = conn.getresponse()
                        d = json.loads(r.read())
                    except (OSError, http.client.HTTPException, ValueError):
                        return  # the server was killed
                    check(r.status == 200, f"batch: {r.status} {d}")
                    with lock:
                        for x in d["results"]:
                            if x["status"] == 200 and x["answer"].get("scored"):
                                answered[x["answer"]["event_id"]] = x["answer"]["action"]

            if not during_save:
                post(lines, http.client.HTTPConnection("127.0.0.1", s.port, timeout=30), 100)
            else:
                # Four clients keep both cores busy for a few seconds (small
                # batches), so that decisions wait in the queue (the writer
                # runs at idle priority) when a save, due every second,
                # starts; the kill lands as soon as its child is seen.
                posters = [threading.Thread(target=post, args=(lines[k::4], http.client.HTTPConnection(
                    "127.0.0.1", s.port, timeout=30), 2)) for k in range(4)]
                time.sleep(0.6)  # the first save falls due a second after the start: mid-posting
                for t in posters:
                    t.start()
                while any(t.is_alive() for t in posters):
                    if children := server_children(s.proc.pid):
                        saver = children[0]
                        break
                check(saver, "no state save seen in the background while posting")
            s.proc.kill()
            s.proc.wait()
            stop.set()
            if during_save:
                for t in posters:
                    t.join()
            stored_before = decision_count(db)
            lost = len(answered) - stored_before
            deadline = time.time() + 30
            while saver and os.path.exists(f"/proc/{saver}") and time.time() < deadline:
                time.sleep(0.02)  # the orphaned save writes its file and ends
            print(f"crash_recovery: {len(answered)} scored answers, {lost} not in the store after kill -9"
                  + (" during a save" if during_save else ""))
            s.start()
            # The start made its decisions again before it listened: stored
            # soon after, those of events in flight at the kill included.
            _, text = s.request("GET", "/metrics")
            m = re.search(r"^vigil_decisions_recovered_total (\S+)", text, re.M)
            made = int(float(m.group(1))) if m else -1
            deadline = time.time() + 30
            while decision_count(db) < stored_before + made and time.time() < deadline:
                time.sleep(0.05)
            c = sqlite3.connect(db, timeout=10)
            rows = c.execute("select event_id, action, json from decisions").fetchall()
            c.close()
            stored = {event_id: (action, '"recovered":true' in doc) for event_id, action, doc in rows}
            for event_id, action in answered.items():
                check(stored.get(event_id, (None,))[0] == action,
                      f"{event_id}: stored {stored.get(event_id)}, answered {action}:\n" + "".join(s.log))
            # Besides: the decisions of events in flight at the kill, applied
            # and logged but not answered; made again too.
            recovered = sum(r for _, r in stored.values())
            extra = [e for e in stored if e not in answered]
            check(all(stored[e][1] for e in extra), f"stored without an answer yet not recovered: {extra}")
            check(recovered == len(stored) - stored_before == made,
                  f"{recovered} decisions marked recovered, {len(stored) - stored_before} stored at the start, "
                  f"vigil_decisions_recovered_total {made} ({lost} answered were lost):\n" + "".join(s.log))
            if lost:
                check(any("made again" in x for x in s.log), "the start says it made decisions again:\n" + "".join(s.log))
            s.stop()
        print(f"ok: every scored answer has its decision in the store after kill -9"
              f"{' during a save in the background' if during_save else ''} ({lost} made again)")


def test_large_records():
    """A schema may allow records past the 1 MiB the readers take by
    default (limits.max_record_bytes raised): such an event is taken and
    logged, and the next start reads it back from the log like any other,
    so the state after a kill -9 still counts it."""
    with tempfile.TemporaryDirectory() as work:
        text = open(os.path.join(EX, "schema.yaml")).read()
        for a, b in [("max_record_bytes: 16384", "max_record_bytes: 4194304"),
                     ("max_string_length: 256", "max_string_length: 3000000"),
                     ("user_agent: &user_agent {type: string, required: true, max_length: 512}",
                      "user_agent: &user_agent {type: string, required: true, max_length: 3000000}")]:
            check(text.count(a) == 1, f"the exchange schema has no {a!r}")
            text = text.replace(a, b)
        schema = os.path.join(work, "schema.yaml")
        with open(schema, "w") as f:
            f.write(text)
        s = Server(work, models=False, schema=schema, limits={"max_body_bytes": 4194304})
        ev = {e["event_id"]: e for e in sample_events()}
        login = dict(ev["e000000000002"], user_agent="Mozilla/5.0 " + "x" * (3 << 19))  # 1.5 MiB
        for e in (ev["e000000000001"], login):
            st, d = s.post(e)
            check(st == 200, f"{e['event_type']}: {st} {d}")
        st, d = s.post(ev["e000000000004"], features=True)
        check(st == 200 and d["features"]["user_events_1h"] == 3, f"deposit: {st} {d}")
        s.proc.kill()
        s.proc.wait()
        s.start()  # no state saved: the whole log is read back
        st, d = s.post(ev["e000000000006"], features=True)
        check(st == 200 and d["features"]["user_events_1h"] == 4,
              f"withdrawal after the restart: {st} {d.get('features', d) if isinstance(d, dict) else d}:\n"
              + "".join(s.log))
        s.stop()
    print("ok: an event of 1.5 MiB the schema allows is read back from the event log at the next start")


def rss_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0


def test_pretouch():
    """limits.pretouch_mb: the memory written to at start stays the
    process's (jemalloc keeps what is freed: malloc_conf in main.cc), and the
    server answers as usual."""
    ev = sample_events()
    with tempfile.TemporaryDirectory() as wa, tempfile.TemporaryDirectory() as wb:
        plain = Server(wa)
        touched = Server(wb, limits={"pretouch_mb": 128})
        check(any("pretouched 128 MiB" in l for l in touched.log), "no pretouch line:\n" + "".join(touched.log))
        for s in (plain, touched):
            st, d = s.post(ev[0])
            check(st == 200, f"{st} {d}")
        a, b = rss_mib(plain.proc.pid), rss_mib(touched.proc.pid)
        check(b - a >= 100, f"RSS {b:.0f} MiB with pretouch_mb 128, {a:.0f} MiB without: the pretouched "
              "memory was given back (is jemalloc's malloc_conf in effect?)")
        plain.stop()
        touched.stop()
    print(f"ok: pretouch_mb 128 keeps {b - a:.0f} MiB more resident ({b:.0f} against {a:.0f} MiB)")


def test_foreign_state():
    """A saved state names its event log: one copied from another server's
    folder (same schema and spec) is not restored onto this log, whose
    events it never held; the whole log is replayed instead."""
    ev = {e["event_id"]: e for e in sample_events()}
    with tempfile.TemporaryDirectory() as wa, tempfile.TemporaryDirectory() as wb:
        a = Server(wa)
        time.sleep(1.1)  # b's log file is named after a's (its start time), as on another host
        b = Server(wb)
        for i in range(1, 7):  # u0000001's morning, on a
            st, d = a.post(ev[f"e00000000000{i}"])
            check(st == 200, f"a: {st} {d}")
        for i in (16, 17, 18):  # u0000004's deposits, on b
            st, d = b.post(ev[f"e0000000000{i}"])
            check(st == 200, f"b: {st} {d}")
        a.stop()
        b.stop()
        shutil.copy(os.path.join(wa, "var", "eventlog", "state.snap"),
                    os.path.join(wb, "var", "eventlog", "state.snap"))
        b.start()
        st, d = b.post(ev["e000000000025"], features=True)  # u0000001's withdrawal, 20:05
        check(st == 200 and d["features"]["user_events_1d"] == 1,
              f"b restored a's state: {st} {d.get('features', d) if isinstance(d, dict) else d}:\n"
              + "".join(b.log))
        check(any("another schema, feature spec or event log" in x and "replaying the whole event log" in x
                  for x in b.log), "the start says why the state was not used:\n" + "".join(b.log))
        b.stop()
    print("ok: a state copied from another server's event log folder is not restored")


TESTS = {"pretouch": test_pretouch, "foreign_state": test_foreign_state, "large_records": test_large_records, "crash_recovery": test_crash_recovery, "dead_letters": test_dead_letters, "http": test_http, "decide": test_decide, "fd_exhaustion": test_fd_exhaustion, "stop": test_stop, "tls": test_tls, "reload": test_reload,
 "api_docs": test_api_docs, "errors": test_errors, "retries": test_retries,
 "store_failure": test_store_failure, "backfill_parity": test_backfill_parity,
 "config": test_config}
try:
    TESTS[TEST]()
finally:
    for p in LIVE:  # never leave a server behind, whatever failed
        if p.poll() is None:
            p.kill()
