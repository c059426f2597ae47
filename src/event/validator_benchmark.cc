// Micro-benchmarks of the per-record hot path of `vigil validate`: decoding a
// handbook transaction from CSV or JSON into a Record, the stateful checks
// (time bounds, duplicate ids) in CheckAndCommit, and timestamp parsing.
// Whole-file figures and the pandas reference are in bench/validate.sh; these
// say where the time inside one record goes.
//
// Rows carry distinct, increasing ids and times, as in the handbook file, so
// that CheckAndCommit accepts every one. A Validator is replaced (outside the
// timed region) each time the rows run out, since replaying the same ids would
// turn every record into a duplicate. The dedup set therefore never holds more
// than kRows ids: smaller, and friendlier to the cache, than on a real file.
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "benchmark/benchmark.h"
#include "core/time.h"
#include "event/pii.h"
#include "event/record.h"
#include "event/schema.h"
#include "event/validator.h"

namespace vigil::event {
namespace {

// examples/handbook/schema.yaml without its comments.
constexpr std::string_view kHandbookSchema = R"(
name: handbook
version: 1
unknown_fields: reject
csv:
  event_type: transaction
time_bounds:
  max_ahead_of_latest: 1d
  max_behind_latest: 1d
event_types:
  transaction:
    fields:
      TRANSACTION_ID: {type: int, required: true, min: 0, role: event_id}
      TX_DATETIME: {type: timestamp, required: true, role: event_time}
      CUSTOMER_ID: {type: int, required: true, min: 0, role: entity, entity: card}
      TERMINAL_ID: {type: int, required: true, min: 0, role: entity, entity: terminal}
      TX_AMOUNT: {type: decimal, required: true, min: 0, role: amount, currency: EUR}
      TX_TIME_SECONDS: {type: int, required: true, min: 0}
      TX_TIME_DAYS: {type: int, required: true, min: 0}
      TX_FRAUD: {type: int, required: true, allowed: [0, 1], role: label, known_after: 7d}
      TX_FRAUD_SCENARIO: {type: int, required: true, allowed: [0, 1, 2, 3], role: ground_truth}
)";

constexpr std::string_view kHeader =
    "TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,TX_AMOUNT,TX_TIME_SECONDS,TX_TIME_DAYS,"
    "TX_FRAUD,TX_FRAUD_SCENARIO";

constexpr int kRows = 1 << 16;
// simdjson may read this far past a record (Validator::DecodeJson REQUIRES).
constexpr size_t kJsonPadding = 64;

std::shared_ptr<const Schema> HandbookSchema() {
  static const std::shared_ptr<const Schema> schema = [] {
    auto s = Schema::LoadString(kHandbookSchema, "validator_benchmark.yaml");
    if (!s.ok()) {
      std::fprintf(stderr, "validator_benchmark: %s\n", std::string(s.status().message()).c_str());
      std::abort();
    }
    return *s;
  }();
  return schema;
}

const PiiHasher& Hasher() {
  static const PiiHasher hasher("validator-benchmark-key");
  return hasher;
}

// kRows handbook-like transactions, one every 9 s from 2018-04-01, in one
// buffer (views into it stay valid) followed by JSON padding.
struct Rows {
  std::string buffer;
  std::vector<std::string_view> lines;
};

Rows MakeRows(bool json) {
  Rows rows;
  std::vector<std::pair<size_t, size_t>> spans;
  char line[512];
  for (int i = 0; i < kRows; ++i) {
    const int64_t secs = 31 + 9 * static_cast<int64_t>(i);
    const int64_t day = secs / 86400;
    const int64_t sod = secs % 86400;
    const int customer = static_cast<int>((int64_t{i} * 7919) % 5000);
    const int terminal = static_cast<int>((int64_t{i} * 104729) % 10000);
    const int cents = 100 + static_cast<int>((int64_t{i} * 3571) % 30000);
    int n;
    if (json) {
      n = std::snprintf(line, sizeof line,
                        "{\"event_type\":\"transaction\",\"event_id\":%d,"
                        "\"time\":\"2018-%02d-%02d %02d:%02d:%02d\",\"CUSTOMER_ID\":%d,"
                        "\"TERMINAL_ID\":%d,\"TX_AMOUNT\":%d.%02d,\"TX_TIME_SECONDS\":%lld,"
                        "\"TX_TIME_DAYS\":%lld,\"TX_FRAUD\":0,\"TX_FRAUD_SCENARIO\":0}",
                        i, 4 + static_cast<int>(day / 30), 1 + static_cast<int>(day % 30),
                        static_cast<int>(sod / 3600), static_cast<int>(sod / 60 % 60),
                        static_cast<int>(sod % 60), customer, terminal, cents / 100, cents % 100,
                        static_cast<long long>(secs), static_cast<long long>(day));
    } else {
      n = std::snprintf(line, sizeof line, "%d,2018-%02d-%02d %02d:%02d:%02d,%d,%d,%d.%02d,%lld,%lld,0,0",
                        i, 4 + static_cast<int>(day / 30), 1 + static_cast<int>(day % 30),
                        static_cast<int>(sod / 3600), static_cast<int>(sod / 60 % 60),
                        static_cast<int>(sod % 60), customer, terminal, cents / 100, cents % 100,
                        static_cast<long long>(secs), static_cast<long long>(day));
    }
    spans.emplace_back(rows.buffer.size(), static_cast<size_t>(n));
    rows.buffer.append(line, static_cast<size_t>(n));
    rows.buffer += '\n';
  }
  rows.buffer.append(kJsonPadding, ' ');
  for (const auto& [off, len] : spans) rows.lines.emplace_back(rows.buffer.data() + off, len);
  return rows;
}

const Rows& CsvRows() {
  static const Rows rows = MakeRows(false);
  return rows;
}

const Rows& JsonRows() {
  static const Rows rows = MakeRows(true);
  return rows;
}

std::unique_ptr<Validator> NewValidator(bool csv) {
  auto v = std::make_unique<Validator>(HandbookSchema(), &Hasher());
  if (csv) {
    if (auto st = v->SetCsvHeader(kHeader); !st.ok()) {
      std::fprintf(stderr, "validator_benchmark: %s\n", std::string(st.message()).c_str());
      std::abort();
    }
  }
  return v;
}

[[noreturn]] void Rejected(const char* what, std::string_view line,
                           const std::vector<Violation>& violations) {
  std::fprintf(stderr, "validator_benchmark: %s rejected '%.*s': %s\n", what,
               static_cast<int>(line.size()), line.data(),
               violations.empty() ? "?" : violations[0].reason.c_str());
  std::abort();
}

size_t Readable(const Rows& rows, std::string_view line) {
  return static_cast<size_t>(rows.buffer.data() + rows.buffer.size() - line.data());
}

// DecodeCsv alone, on the same row each time (it keeps no state).
void BM_DecodeCsv(benchmark::State& state) {
  const Rows& rows = CsvRows();
  auto v = NewValidator(true);
  Record rec;
  std::vector<Violation> violations;
  const std::string_view line = rows.lines[1000];
  for (auto _ : state) {
    if (!v->DecodeCsv(line, &rec, &violations)) Rejected("DecodeCsv", line, violations);
    benchmark::DoNotOptimize(rec.time_ms);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(line.size() + 1));
}
BENCHMARK(BM_DecodeCsv);

// What `vigil validate` does per CSV row, without reading the file:
// DecodeCsv then CheckAndCommit, on distinct rows in time order.
void BM_DecodeCsvAndCommit(benchmark::State& state) {
  const Rows& rows = CsvRows();
  auto v = NewValidator(true);
  Record rec;
  std::vector<Violation> violations;
  size_t i = 0;
  int64_t bytes = 0;
  for (auto _ : state) {
    if (i == rows.lines.size()) {
      state.PauseTiming();
      v = NewValidator(true);
      i = 0;
      state.ResumeTiming();
    }
    const std::string_view line = rows.lines[i++];
    if (!v->DecodeCsv(line, &rec, &violations)) Rejected("DecodeCsv", line, violations);
    if (!v->CheckAndCommit(rec, &violations)) Rejected("CheckAndCommit", line, violations);
    bytes += static_cast<int64_t>(line.size() + 1);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(bytes);
}
BENCHMARK(BM_DecodeCsvAndCommit);

// DecodeJson alone, on the same event each time.
void BM_DecodeJson(benchmark::State& state) {
  const Rows& rows = JsonRows();
  auto v = NewValidator(false);
  Record rec;
  std::vector<Violation> violations;
  const std::string_view line = rows.lines[1000];
  const size_t readable = Readable(rows, line);
  for (auto _ : state) {
    if (!v->DecodeJson(line, readable, &rec, &violations)) Rejected("DecodeJson", line, violations);
    benchmark::DoNotOptimize(rec.time_ms);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(line.size() + 1));
}
BENCHMARK(BM_DecodeJson);

// DecodeJson then CheckAndCommit, on distinct events in time order.
void BM_DecodeJsonAndCommit(benchmark::State& state) {
  const Rows& rows = JsonRows();
  auto v = NewValidator(false);
  Record rec;
  std::vector<Violation> violations;
  size_t i = 0;
  int64_t bytes = 0;
  for (auto _ : state) {
    if (i == rows.lines.size()) {
      state.PauseTiming();
      v = NewValidator(false);
      i = 0;
      state.ResumeTiming();
    }
    const std::string_view line = rows.lines[i++];
    if (!v->DecodeJson(line, Readable(rows, line), &rec, &violations)) {
      Rejected("DecodeJson", line, violations);
    }
    if (!v->CheckAndCommit(rec, &violations)) Rejected("CheckAndCommit", line, violations);
    bytes += static_cast<int64_t>(line.size() + 1);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(bytes);
}
BENCHMARK(BM_DecodeJsonAndCommit);

// core::ParseTimestamp on each accepted form.
constexpr std::string_view kTimestamps[] = {
    "2018-04-01 00:00:31",            // the handbook's form
    "2018-04-01T00:00:31Z",           // ISO-8601, UTC
    "2018-04-01T02:00:31.250+02:00",  // ISO-8601 with fraction and offset
    "2018-04-01",                     // a date alone
    "1522540831",                     // epoch seconds
    "1522540831250",                  // epoch milliseconds
};

void BM_ParseTimestamp(benchmark::State& state) {
  const std::string_view text = kTimestamps[state.range(0)];
  state.SetLabel(std::string(text));
  int64_t ms = 0;
  for (auto _ : state) {
    std::string_view t = text;
    benchmark::DoNotOptimize(t);
    if (core::ParseTimestamp(t, &ms) != core::TimeError::kOk) {
      state.SkipWithError("ParseTimestamp failed");
      break;
    }
    benchmark::DoNotOptimize(ms);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ParseTimestamp)->DenseRange(0, std::size(kTimestamps) - 1);

}  // namespace
}  // namespace vigil::event
