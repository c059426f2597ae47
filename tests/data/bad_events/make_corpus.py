#!/usr/bin/env python3
"""Writes the malformed-records corpus of tests/data/bad_events.

Each record is listed beside what `vigil validate` must say about it, so a
record and its expectation are edited together. Run it from anywhere and
check in what it writes, as it is (bad.jsonl and bad.csv hold bytes that are
not UTF-8 on purpose):

  python3 tests/data/bad_events/make_corpus.py

Outputs, next to this script:
  bad.jsonl, bad.jsonl.expected.jsonl   all event types and labels, as JSON Lines
  bad.csv,   bad.csv.expected.jsonl     signups (csv.event_type in schema.yaml), as CSV

An expectation is one JSON object per rejected record: `record_no` (1-based
count of records; a blank JSON line is not a record), `line` (where the record
starts), `rule` and `field` of the first violation (field null for
whole-record rules), `reason_contains` (words of the message a user needs:
the field, the limit), and for a record that breaks several rules,
`violations`: every [rule, field] in the order vigil reports them. Records
without an expectation are valid.

The clear-text pii values (emails, phones) are listed in PII_CLEAR; no output
of vigil may contain them.
"""

import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))

# Every pii value written in clear into the corpus.
PII_CLEAR = []


def email(name):
    v = f"{name}@example.com"
    PII_CLEAR.append(v)
    return v


def phone(digits):
    v = f"+49{digits}"
    PII_CLEAR.append(v)
    return v


def pii(v):
    """Any other value written into a pii field."""
    PII_CLEAR.append(v)
    return v


def at(minute, day=1):
    """A time on 2024-03-<day> at 10:00 plus `minute` minutes, ISO-8601 UTC."""
    h, m = divmod(600 + minute, 60)
    return f"2024-03-{day:02d}T{h:02d}:{m:02d}:00Z"


def j(**kv):
    """A compact JSON object, keys in the order given (vigil reports in key order)."""
    return json.dumps(kv, separators=(",", ":"), ensure_ascii=False).encode()


def X(rule, field, reason, violations=None):
    e = {"rule": rule, "field": field, "reason_contains": reason}
    if violations:
        e["violations"] = [list(v) for v in violations]
    return e


# --------------------------------------------------------------------------
# JSON Lines: every event type, labels, and every rule JSON can break.
# Each entry: (bytes of the line, expectation or None for a valid record).
# --------------------------------------------------------------------------

def jsonl_records():
    r = []
    add = lambda raw, exp=None: r.append((raw, exp))

    # Valid records to start: they set the latest event time (10:00, day 1).
    add(j(event_type="signup", event_id="s-1", time=at(0), user_id="u1", email=email("alice"),
          phone=phone("15112345678"), country="DE", age=34, kyc_level="full",
          marketing_opt_in=True, risk_score=0.12, promo_credit="10.00",
          birth_date="1990-05-17", referrer="friend"))
    add(j(event_type="login", event_id="l-1", time=at(1), user_id="u1", ip="203.0.113.7",
          success=True, latency_ms=84.5, channel="web"))
    add(j(event_type="deposit", event_id="d-1", time=at(2), user_id="u1", amount="1500.00",
          asset="EUR", method="bank", confirmations=0, fee_rate=None))

    # malformed_json: a comma missing.
    add(b'{"event_type":"login","event_id":"l-mj","time":"' + at(3).encode() +
        b'","user_id":"u1" "ip":"203.0.113.7","success":true}',
        X("malformed_json", None, "invalid JSON"))
    # malformed_json with pii in it: the object is cut off after the phone.
    add(b'{"event_type":"signup","event_id":"s-mj","time":"' + at(4).encode() +
        b'","user_id":"u2","email":"' + email("mallory").encode() +
        b'","phone":"' + phone("17000000001").encode() + b'","country":"DE"',
        X("malformed_json", None, "invalid JSON"))
    # malformed_json: valid JSON, but not an object.
    add(b'["signup","s-arr","' + at(5).encode() + b'"]',
        X("malformed_json", None, "must be a JSON object"))
    # invalid_utf8: a Latin-1 byte in the country, pii beside it.
    add(b'{"event_type":"signup","event_id":"s-utf8","time":"' + at(6).encode() +
        b'","user_id":"u3","email":"' + email("victor").encode() +
        b'","country":"D\xe9","kyc_level":"none"}',
        X("invalid_utf8", None, "not valid UTF-8"))
    # record_too_large: over limits.max_record_bytes (600), pii at its start.
    add(b'{"event_type":"signup","event_id":"s-big","time":"' + at(7).encode() +
        b'","email":"' + email("trent").encode() + b'","user_id":"u4","referrer":"' +
        b"r" * 700 + b'"}',
        X("record_too_large", None, "limit is 600"))

    add(j(event_type="withdrawal", event_id="w-1", time=at(8), user_id="u1", amount="0.5",
          asset="BTC", address="bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", two_factor=True,
          requested_at=None, is_fraud=0))

    # unknown_event_type.
    add(j(event_type="transfer", event_id="t-1", time=at(9), user_id="u1", amount="5"),
        X("unknown_event_type", "event_type", "'transfer' is not in the schema"))
    # required: a JSON event without event_type.
    add(j(event_id="x-1", time=at(10), user_id="u1"),
        X("required", "event_type", "missing required field 'event_type'"))
    # duplicate_field: ip twice.
    add(b'{"event_type":"login","event_id":"l-dup","time":"' + at(11).encode() +
        b'","user_id":"u1","ip":"203.0.113.7","ip":"198.51.100.2","success":false}',
        X("duplicate_field", "ip", "field 'ip' appears twice"))
    # unknown_field.
    add(j(event_type="deposit", event_id="d-uf", time=at(12), user_id="u1", amount="20",
          asset="USDT", method="crypto", promo_code="SPRING24"),
        X("unknown_field", "promo_code", "'promo_code' is not in event type 'deposit'"))
    # required: a withdrawal without its address.
    add(j(event_type="withdrawal", event_id="w-req", time=at(13), user_id="u1",
          amount="1.25", asset="ETH", two_factor=True),
        X("required", "address", "missing required field 'address'"))
    # not_null: a required field given null.
    add(j(event_type="signup", event_id="s-null", time=at(14), user_id="u5",
          email=email("peggy"), country=None, kyc_level="basic"),
        X("not_null", "country", "field 'country' is null"))

    add(b"")  # a blank line: not a record

    add(j(event_type="signup", event_id="s-2", time=at(15), user_id="u6", email=email("bob"),
          phone=None, country="FR", kyc_level="basic"))

    # type: a string for a bool.
    add(j(event_type="login", event_id="l-type", time=at(16), user_id="u1", ip="203.0.113.7",
          success="yes"),
        X("type", "success", "field 'success': expected bool, found a string"))
    # type: a fraction for an int.
    add(j(event_type="deposit", event_id="d-type", time=at(17), user_id="u1", amount="3",
          asset="EUR", method="card", confirmations=2.5),
        X("type", "confirmations", "field 'confirmations': expected an integer"))
    # type: a number for a string that is not an id.
    add(j(event_type="signup", event_id="s-type", time=at(18), user_id="u7",
          email=email("carol"), country=49, kyc_level="none"),
        X("type", "country", "field 'country': expected string, found a number"))
    # type: a malformed decimal.
    add(j(event_type="withdrawal", event_id="w-type", time=at(19), user_id="u1",
          amount="12.5.3", asset="EUR", address="DE89370400440532013000", two_factor=False),
        X("type", "amount", "field 'amount': expected a decimal number"))
    # type: a number for a bool.
    add(j(event_type="withdrawal", event_id="w-type2", time=at(20), user_id="u1",
          amount="2", asset="EUR", address="DE89370400440532013000", two_factor=1),
        X("type", "two_factor", "field 'two_factor': expected bool, found a number"))
    # not_finite: NaN in a float field.
    add(j(event_type="login", event_id="l-nan", time=at(21), user_id="u1", ip="203.0.113.7",
          success=True, latency_ms="NaN"),
        X("not_finite", "latency_ms", "field 'latency_ms': NaN is not a finite number"))
    # not_finite: Infinity in a decimal amount.
    add(j(event_type="deposit", event_id="d-inf", time=at(22), user_id="u1",
          amount="Infinity", asset="BTC", method="crypto"),
        X("not_finite", "amount", "field 'amount': Infinity is not a finite number"))
    # min: int.
    add(j(event_type="signup", event_id="s-min", time=at(23), user_id="u8",
          email=email("oscar"), country="NL", age=16, kyc_level="none"),
        X("min", "age", "field 'age': 16 is below the minimum 18"))
    # min: decimal, exactly (0 < 0.00000001).
    add(j(event_type="withdrawal", event_id="w-min", time=at(24), user_id="u1", amount="0",
          asset="BTC", address="bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", two_factor=True),
        X("min", "amount", "below the minimum 0.00000001"))
    # min: timestamp.
    add(j(event_type="signup", event_id="s-tmin", time=at(25), user_id="u9",
          email=email("wendy"), country="AT", kyc_level="basic", birth_date="1850-01-01"),
        X("min", "birth_date", "below the minimum 1900-01-01"))
    # max: decimal.
    add(j(event_type="deposit", event_id="d-max", time=at(26), user_id="u1",
          amount="2000000", asset="EUR", method="bank"),
        X("max", "amount", "field 'amount': 2000000 is above the maximum 1000000"))
    # max: float.
    add(j(event_type="signup", event_id="s-max", time=at(27), user_id="u10",
          email=email("frank"), country="BE", kyc_level="full", risk_score=1.5),
        X("max", "risk_score", "field 'risk_score': 1.5 is above the maximum 1"))
    # max_length (and the same value breaks the pattern: 70 characters).
    add(j(event_type="withdrawal", event_id="w-len", time=at(28), user_id="u1", amount="1",
          asset="ETH", address="A" * 70, two_factor=True),
        X("max_length", "address", "field 'address' is 70 bytes long; the limit is 64",
          [("max_length", "address"), ("pattern", "address")]))
    # pattern.
    add(j(event_type="signup", event_id="s-pat", time=at(29), user_id="u11",
          email=email("grace"), country="Germany", kyc_level="none"),
        X("pattern", "country", "does not match the pattern [A-Z]{2}"))
    # pattern on a redacted pii field: the value is not shown.
    add(j(event_type="signup", event_id="s-pat2", time=at(30), user_id="u12",
          email=email("heidi"), phone=pii("call me maybe"), country="IT", kyc_level="none"),
        X("pattern", "phone", "field 'phone': [redacted] does not match the pattern"))
    # allowed: string.
    add(j(event_type="deposit", event_id="d-allow", time=at(31), user_id="u1", amount="50",
          asset="EUR", method="paypal"),
        X("allowed", "method", "paypal is not one of the allowed values (card, bank, crypto)"))
    # allowed: enum.
    add(j(event_type="withdrawal", event_id="w-allow", time=at(32), user_id="u1", amount="50",
          asset="DOGE", address="DE89370400440532013000", two_factor=True),
        X("allowed", "asset", "DOGE is not one of the allowed values (BTC, ETH, USDT, EUR)"))
    # allowed: an int label.
    add(j(event_type="withdrawal", event_id="w-label", time=at(33), user_id="u1", amount="50",
          asset="EUR", address="DE89370400440532013000", two_factor=True, is_fraud=2),
        X("allowed", "is_fraud", "field 'is_fraud': 2 is not one of the allowed values (0, 1)"))
    # timestamp: the event time.
    add(j(event_type="login", event_id="l-ts", time="yesterday", user_id="u1",
          ip="203.0.113.7", success=True),
        X("timestamp", "time", "field 'time': 'yesterday' is not a valid time"))
    # timestamp: another timestamp field; ISO-8601 without a zone.
    add(j(event_type="withdrawal", event_id="w-ts", time=at(34), user_id="u1", amount="5",
          asset="EUR", address="DE89370400440532013000", two_factor=True,
          requested_at="2024-03-01T10:30:00"),
        X("timestamp", "requested_at", "without a zone"))

    add(j(event_type="login", event_id="l-2", time=at(35), user_id="u6", ip="198.51.100.2",
          success=False, latency_ms=120, channel="ios"))

    # time_bounds: ten days ahead of the latest time (10:35 on day 1).
    add(j(event_type="deposit", event_id="d-ahead", time=at(36, day=11), user_id="u1",
          amount="5", asset="EUR", method="card"),
        X("time_bounds", "time", "time_bounds.max_ahead_of_latest"))
    # time_bounds: a fortnight behind it.
    add(j(event_type="deposit", event_id="d-behind", time="2024-02-16T10:00:00Z",
          user_id="u1", amount="5", asset="EUR", method="card"),
        X("time_bounds", "time", "time_bounds.max_behind_latest"))
    # duplicate_event_id: the id of the valid login above.
    add(j(event_type="login", event_id="l-1", time=at(37), user_id="u1", ip="203.0.113.7",
          success=True),
        X("duplicate_event_id", "event_id", "event id l-1 was already seen"))
    # Both stateful rules at once: far ahead and a repeated id.
    add(j(event_type="deposit", event_id="d-1", time=at(0, day=20), user_id="u1",
          amount="5", asset="EUR", method="card"),
        X("time_bounds", "time", "ahead of the latest event time seen",
          [("time_bounds", "time"), ("duplicate_event_id", "event_id")]))

    # Labels. Valid: by event, and by entity through the hashed email.
    add(j(event_type="label", event_id="lb-1", time=at(38), kind="fraud",
          target_event_id="w-1", value=1))
    add(j(event_type="label", event_id="lb-2", time=at(39), kind="account_takeover",
          target_entity={"key": "email", "value": email("alice")}, value=1))
    # label_target: two targets (and the entity is the pii email).
    add(j(event_type="label", event_id="lb-both", time=at(40), kind="fraud",
          target_event_id="d-1", target_entity={"key": "email", "value": email("ivan")},
          value=1),
        X("label_target", "target_event_id", "exactly one target"))
    # label_target: no target at all.
    add(j(event_type="label", event_id="lb-none", time=at(41), kind="chargeback", value=1),
        X("label_target", None, "exactly one target"))
    # label_target: a key that is not an entity field.
    add(j(event_type="label", event_id="lb-key", time=at(42), kind="fraud",
          target_entity={"key": "country", "value": "DE"}, value=1),
        X("label_target", "target_entity.key", "target_entity.key 'country' is not an entity key"))
    # label_target: a key without a value.
    add(j(event_type="label", event_id="lb-half", time=at(43), kind="fraud",
          target_entity={"key": "user_id"}, value=0),
        X("label_target", "target_entity.value", "needs both key"))
    # allowed: a label kind the schema does not list; its target is a pii email.
    add(j(event_type="label", event_id="lb-kind", time=at(44), kind="spam",
          target_entity={"key": "email", "value": email("judy")}, value=1),
        X("allowed", "kind", "spam is not one of the allowed values (fraud, chargeback, "
          "account_takeover)"))
    # required: a label without its value.
    add(j(event_type="label", event_id="lb-noval", time=at(45), kind="fraud",
          target_event_id="d-1"),
        X("required", "value", "missing required field 'value' of event type 'label'"))

    # Several rules in one record, reported in the record's key order.
    add(j(event_type="signup", event_id="s-multi", time=at(46), user_id="x12",
          email=email("sybil"), country="de", age=200, kyc_level="gold"),
        X("pattern", "user_id", "field 'user_id'",
          [("pattern", "user_id"), ("pattern", "country"), ("max", "age"),
           ("allowed", "kyc_level")]))
    # pii in an invalid email value: too long and not an email.
    add(j(event_type="signup", event_id="s-email", time=at(47), user_id="u13",
          email=email("x" * 70 + " rupert"), country="DE", kyc_level="none"),
        X("max_length", "email", "the limit is 64",
          [("max_length", "email"), ("pattern", "email")]))

    # Valid records to end with.
    add(j(event_type="deposit", event_id="d-2", time=at(48), user_id="u6",
          amount="0.00000001", asset="BTC", method="crypto", confirmations=100,
          fee_rate=0.1))
    add(j(event_type="withdrawal", event_id="w-2", time=at(49), user_id="u6", amount="250000",
          asset="USDT", address="TQn9Y2khEsLJW1ChVWFMSMeRDow5KcbLSE", two_factor=True,
          requested_at="2024-03-01 10:48:00", is_fraud=1))
    add(j(event_type="signup", event_id="s-3", time=at(50), user_id="u14", email=email("erin"),
          phone=phone("30123456789"), country="ES", age=18, kyc_level="none",
          marketing_opt_in=False, risk_score=0, promo_credit="50.00",
          birth_date="2006-01-01T00:00:00Z", referrer=None))
    # A corrected retry of a rejected record: a rejected id is not remembered.
    add(j(event_type="signup", event_id="s-min", time=at(51), user_id="u8",
          email=email("oscar"), country="NL", age=18, kyc_level="none"))
    return r


# --------------------------------------------------------------------------
# CSV: signups (csv.event_type: signup). Each entry: (bytes of the row,
# expectation or None). The header is written first.
# --------------------------------------------------------------------------

CSV_HEADER = (b"event_id,time,user_id,email,phone,country,age,kyc_level,marketing_opt_in,"
              b"risk_score,promo_credit,birth_date,referrer")


def row(event_id, time, user_id="u1", email_="", phone_="", country="DE", age="30",
        kyc="basic", opt="true", risk="0.5", promo="5.00", birth="1990-01-01", ref=""):
    cells = [event_id, time, user_id, email_, phone_, country, age, kyc, opt, risk, promo,
             birth, ref]
    return b",".join(c if isinstance(c, bytes) else c.encode() for c in cells)


def csv_records():
    r = []
    add = lambda raw, exp=None: r.append((raw, exp))
    T = lambda m, day=1: at(m, day)

    add(row("c-1", T(0), email_=email("csv.anna"), phone_=phone("15200000001")))
    # A quoted value with a comma.
    add(row("c-2", T(1), user_id="u2", email_=email("csv.ben"), ref='"ref, inc"'))
    # malformed_csv: text after a closing quote.
    add(row("c-mq1", T(2), email_=email("csv.carl"), ref='"abc"def'),
        X("malformed_csv", None, "column 13: text after a closing quote"))
    # malformed_csv: a quote inside an unquoted value (two, so the row ends at its newline).
    add(row("c-mq2", T(3), email_=email("csv.dora"), ref='ab""c'),
        X("malformed_csv", None, "column 13: a quote inside an unquoted value"))
    # column_count: one column short (no referrer cell).
    add(b"c-cc," + T(4).encode() + b",u1," + email("csv.eve").encode() +
        b",,DE,30,basic,true,0.5,5.00,1990-01-01",
        X("column_count", None, "the row has 12 columns; the header has 13"))
    # invalid_utf8: a Latin-1 byte, pii beside it.
    add(row("c-utf8", T(5), email_=email("csv.fay"), phone_=phone("15200000002"),
            ref=b"M\xfcnchen"),
        X("invalid_utf8", None, "not valid UTF-8"))
    # record_too_large.
    add(row("c-big", T(6), email_=email("csv.gus"), ref="r" * 700),
        X("record_too_large", None, "limit is 600"))
    # required: an empty cell is an absent value.
    add(row("c-req", T(7), email_=""),
        X("required", "email", "missing required field 'email' of event type 'signup'"))
    # type: int.
    add(row("c-type", T(8), email_=email("csv.hal"), age="twenty"),
        X("type", "age", "field 'age': expected an integer, found 'twenty'"))
    # type: bool.
    add(row("c-type2", T(9), email_=email("csv.ida"), opt="maybe"),
        X("type", "marketing_opt_in", "field 'marketing_opt_in': expected true or false"))

    add(row("c-3", T(10), user_id="u3", email_=email("csv.jon"), phone_=phone("15200000003"),
            age="", opt="", risk="", promo="", birth="", ref=""))

    # not_finite: float.
    add(row("c-inf", T(11), email_=email("csv.kim"), risk="inf"),
        X("not_finite", "risk_score", "field 'risk_score': inf is not a finite number"))
    # not_finite: decimal.
    add(row("c-nan", T(12), email_=email("csv.lea"), promo="NaN"),
        X("not_finite", "promo_credit", "field 'promo_credit': NaN is not a finite number"))
    # min: int.
    add(row("c-min", T(13), email_=email("csv.max"), age="17"),
        X("min", "age", "field 'age': 17 is below the minimum 18"))
    # min: timestamp.
    add(row("c-tmin", T(14), email_=email("csv.ned"), birth="1899-12-31"),
        X("min", "birth_date", "below the minimum 1900-01-01"))
    # max: decimal, exactly (50.01 > 50.00).
    add(row("c-max", T(15), email_=email("csv.ola"), promo="50.01"),
        X("max", "promo_credit", "field 'promo_credit': 50.01 is above the maximum 50.00"))
    # max: timestamp.
    add(row("c-tmax", T(16), email_=email("csv.pia"), birth="2015-06-01"),
        X("max", "birth_date", "above the maximum 2010-12-31"))
    # max_length.
    add(row("c-len", T(17), email_=email("csv.quin"), ref="r" * 20),
        X("max_length", "referrer", "field 'referrer' is 20 bytes long; the limit is 16"))
    # pattern on the hashed email: the value is shown hashed.
    add(row("c-pat", T(18), email_=pii("not-an-email")),
        X("pattern", "email", "field 'email': hmac:"))
    # pattern on the redacted phone.
    add(row("c-pat2", T(19), email_=email("csv.rex"), phone_=pii("0152-PHONE-99")),
        X("pattern", "phone", "field 'phone': [redacted] does not match the pattern"))
    # allowed.
    add(row("c-allow", T(20), email_=email("csv.sam"), kyc="gold"),
        X("allowed", "kyc_level", "gold is not one of the allowed values (none, basic, full)"))
    # timestamp: the event time (month 13).
    add(row("c-ts", "2024-13-01T10:00:00Z", email_=email("csv.tia")),
        X("timestamp", "time", "out of range"))
    # timestamp: another field.
    add(row("c-ts2", T(21), email_=email("csv.uma"), birth="01/02/1990"),
        X("timestamp", "birth_date", "field 'birth_date': '01/02/1990' is not a valid time"))

    # A valid record over two lines: a quoted newline.
    add(row("c-4", T(22), user_id="u4", email_=email("csv.vic"), ref='"two\nlines"'))

    # time_bounds: two days ahead.
    add(row("c-ahead", T(23, day=3), email_=email("csv.wes")),
        X("time_bounds", "time", "time_bounds.max_ahead_of_latest"))
    # duplicate_event_id.
    add(row("c-1", T(24), email_=email("csv.xia")),
        X("duplicate_event_id", "event_id", "event id c-1 was already seen"))
    # Several rules in one row, in column order.
    add(row("c-multi", T(25), email_=email("csv.yan"), country="xx", age="150"),
        X("pattern", "country", "does not match the pattern [A-Z]{2}",
          [("pattern", "country"), ("max", "age")]))
    add(row("c-5", T(26), user_id="u5", email_=email("csv.zoe"), phone_=phone("15200000004"),
            age="120", opt="FALSE", risk="1", promo="0", birth="2010-12-31"))
    # malformed_csv: the last row opens a quote that never closes (it would
    # swallow any row after it).
    add(row("c-open", T(27), email_=email("csv.ursula"), ref='"never closed'),
        X("malformed_csv", None, "a quote is never closed"))
    return r


def write(name, header, records):
    data = bytearray()
    expected = []
    line = 1
    record_no = 0
    if header is not None:
        data += header + b"\n"
        line += 1
    for raw, exp in records:
        if raw == b"":
            data += b"\n"
            line += 1
            continue
        record_no += 1
        if exp is not None:
            e = {"record_no": record_no, "line": line}
            e.update(exp)
            expected.append(e)
        data += raw + b"\n"
        line += 1 + raw.count(b"\n")
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(bytes(data))
    with open(os.path.join(HERE, name + ".expected.jsonl"), "w") as f:
        for e in expected:
            f.write(json.dumps(e, ensure_ascii=False) + "\n")
    return record_no, len(expected)


def main():
    n_json, bad_json = write("bad.jsonl", None, jsonl_records())
    n_csv, bad_csv = write("bad.csv", CSV_HEADER, csv_records())
    with open(os.path.join(HERE, "pii_clear.txt"), "w") as f:
        f.write("# Clear-text pii values in bad.jsonl and bad.csv (written by make_corpus.py).\n")
        f.write("# No output of vigil may contain any of them.\n")
        for v in sorted(set(PII_CLEAR)):
            f.write(v + "\n")
    print(f"bad.jsonl: {n_json} records, {bad_json} rejected; "
          f"bad.csv: {n_csv} records, {bad_csv} rejected")


if __name__ == "__main__":
    main()
