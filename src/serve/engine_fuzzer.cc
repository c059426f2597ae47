// libFuzzer target for the request path: what POST /v1/events,
// POST /v1/events:batch and POST /v1/labels do with a body, without the HTTP
// server. Two Engines over the exchange example (examples/exchange: schema,
// features, policy, model; the withdrawal type with a shadow and an A/B
// challenger and a holdout) take every input: one offline (`vigil decide`),
// one online with its SQLite store, event log and dead-letter file in a
// scratch folder, so that rejected bodies go through the dead-letter masking
// and retries through the decision log and the store.
//
// An input is split into lines; each line is one request:
//   '[' ...   a batch body, split as HandleMany splits it (serve::SplitBatch)
//             and each element decided;
//   '@' ...   a labels body (the rest of the line): one object or an array,
//             only label events decided;
//   '?' ...   GET /v1/decisions/<rest of the line>;
//   else      one event body, straight to Decide.
// Events of one input build on each other's feature state (and on earlier
// inputs': the engines are reopened, with fresh state, every kReopenEvery
// inputs so that the clock of the schema's time bounds and the duplicate-id
// memory do not drift away from the seeds for good; a crash that does not
// reproduce alone needed the state of the inputs before it).
//
// Any crash, sanitizer report or leak is a bug. So is an answer that is not
// JSON, a decision without an action, a stored decision GetDecision cannot
// read back, or an event not counted once by its outcome: every body,
// however hostile, must come back as a decision or a rejection. Seeds:
// tests/data/fuzz/engine (lines of examples/exchange/sample.jsonl, stories
// of several, batches, labels, retries and malformed bodies).
//
// The source tree comes from VIGIL_SOURCE_DIR in the environment, else the
// one this was built from.
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>

#include "nlohmann/json.hpp"
#include "serve/batch.h"
#include "vigil/engine.h"

#ifndef VIGIL_SOURCE_DIR
#error "VIGIL_SOURCE_DIR must name the source tree (examples/exchange)"
#endif

namespace {

namespace fs = std::filesystem;

constexpr int kReopenEvery = 2000;
constexpr size_t kMaxLines = 64;
constexpr int64_t kMaxBatch = 100;  // limits.max_batch in the config below

// A libFuzzer process has no way to report an error at init but to stop.
[[noreturn]] void Die(std::string_view what) {
  std::fprintf(stderr, "engine_fuzzer: %.*s\n", static_cast<int>(what.size()), what.data());
  std::abort();
}

// Checked by __builtin_trap so that libFuzzer keeps the input.
#define FUZZ_CHECK(cond)                                                   \
  do {                                                                     \
    if (!(cond)) {                                                         \
      std::fprintf(stderr, "engine_fuzzer: check failed: %s\n", #cond);    \
      __builtin_trap();                                                    \
    }                                                                      \
  } while (0)

struct Fixture {
  fs::path dir;
  std::unique_ptr<vigil::Engine> offline, online;
  int inputs = 0;
};

Fixture* g_fixture = nullptr;

std::string SourceDir() {
  const char* env = std::getenv("VIGIL_SOURCE_DIR");
  return env && *env ? env : VIGIL_SOURCE_DIR;
}

void WriteFile(const fs::path& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  if (!out) Die("cannot write " + path.string());
}

void Open(Fixture* f) {
  f->offline.reset();
  f->online.reset();  // stops the decision log and closes the event log first
  std::error_code ec;
  fs::remove_all(f->dir / "var", ec);
  vigil::EngineOptions o;
  o.config_path = (f->dir / "vigil.yaml").string();
  o.offline = true;
  auto offline = vigil::Engine::Open(o);
  if (!offline.ok()) Die(offline.status().ToString());
  o.offline = false;
  auto online = vigil::Engine::Open(o);
  if (!online.ok()) Die(online.status().ToString());
  f->offline = std::move(*offline);
  f->online = std::move(*online);
}

Fixture* Init() {
  auto* f = new Fixture;
  std::string tmpl = (fs::temp_directory_path() / "vigil-engine-fuzzer-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) Die("mkdtemp failed");
  f->dir = tmpl;
  // The scratch folder goes when the process ends normally; after a crash it
  // stays in the temp folder, with the stored decisions, for a look.
  g_fixture = f;
  std::atexit([] {
    g_fixture->offline.reset();
    g_fixture->online.reset();
    std::error_code ec;
    fs::remove_all(g_fixture->dir, ec);
  });
  const std::string ex = SourceDir() + "/examples/exchange";
  WriteFile(f->dir / "vigil.yaml", R"(schema: )" + ex + R"(/schema.yaml
features: )" + ex + R"(/features.yaml
policy: )" + ex + R"(/policy.yaml
models:
  withdrawal:
    champion: {name: exchange, bundle: )" + ex + R"(/model}
    challengers:
      - {name: shadow, bundle: )" + ex + R"(/model, mode: shadow}
      - {name: variant, bundle: )" + ex + R"(/model, mode: ab, share: 0.3}
    holdout: 0.5
  deposit: )" + ex + R"(/model
  trade: )" + ex + R"(/model
  promo_redeem: )" + ex + R"(/model
  signup: )" + ex + R"(/model
store: sqlite:var/vigil.db
journal: var/decisions.journal.jsonl
event_log: {dir: var/eventlog, rotate_mb: 1}
dead_letter: var/dead-letter.jsonl
limits: {max_batch: 100, recent_decisions: 64, queue_capacity: 4096}
)");
  // A fixed PII key: the same input hashes the same in every run.
  setenv("VIGIL_PII_KEY", "engine-fuzzer", 1);
  Open(f);
  return f;
}

Fixture& Get() {
  static Fixture* f = Init();
  if (++f->inputs % kReopenEvery == 0) Open(f);
  return *f;
}

// What every answer must be: a JSON document of the documented shape.
void CheckDecision(const vigil::Decision& d, size_t num_features, bool with_features) {
  using S = vigil::Decision::Status;
  nlohmann::ordered_json j = nlohmann::ordered_json::parse(d.json, nullptr, false);
  FUZZ_CHECK(!j.is_discarded() && j.is_object());
  switch (d.status) {
    case S::kDecided:
      FUZZ_CHECK(d.http_status == 200);
      FUZZ_CHECK(d.action == "allow" || d.action == "challenge" || d.action == "review" ||
                 d.action == "block");
      FUZZ_CHECK(j.value("scored", false) && j["action"] == d.action);
      FUZZ_CHECK(d.features.size() == num_features);
      FUZZ_CHECK(j.contains("features") == with_features);
      FUZZ_CHECK(!with_features || j["features"].size() == num_features);
      FUZZ_CHECK(d.model.empty() ? std::isnan(d.score) : (d.score >= 0 && d.score <= 1));
      FUZZ_CHECK(d.propensity > 0 && d.propensity <= 1);
      FUZZ_CHECK(!d.holdout || d.action == "allow");
      break;
    case S::kNotScored:
      FUZZ_CHECK(d.http_status == 200 && d.action.empty());
      FUZZ_CHECK(j.contains("scored") && j["scored"] == false);
      break;
    case S::kRejected:
      FUZZ_CHECK(d.http_status == 400);
      FUZZ_CHECK(j.value("error", "") == "invalid_event" && j["violations"].is_array());
      break;
    case S::kRetry:
      // (409: the decision is gone, or the id was taken by another type.)
      FUZZ_CHECK(d.http_status == 200 ||
                 (d.http_status == 409 && (j.value("error", "") == "decision_unavailable" ||
                                           j.value("error", "") == "event_id_taken")));
      break;
  }
}

void DecideOne(vigil::Engine* e, std::string_view body, bool with_features, vigil::Decision* d) {
  absl::Status s = e->Decide(body, d, with_features);
  // A failure of vigil itself (the event log cannot be written) never comes
  // from a body.
  if (!s.ok()) {
    std::fprintf(stderr, "engine_fuzzer: Decide failed: %s\n", s.ToString().c_str());
    __builtin_trap();
  }
  CheckDecision(*d, e->feature_names().size(), with_features);
}

void CheckStored(vigil::Engine* e, std::string_view id) {
  auto doc = e->GetDecision(id);
  if (!doc.ok()) {
    FUZZ_CHECK(absl::IsNotFound(doc.status()));
    return;
  }
  nlohmann::ordered_json j = nlohmann::ordered_json::parse(*doc, nullptr, false);
  FUZZ_CHECK(!j.is_discarded() && j.contains("exact_reasons"));
}

// One event body to both engines; the online one's decision read back.
void Event(Fixture& f, std::string_view body, bool with_features) {
  static vigil::Decision d;  // reused, as the server's are
  DecideOne(f.offline.get(), body, with_features, &d);
  DecideOne(f.online.get(), body, with_features, &d);
  if (d.status == vigil::Decision::Status::kDecided) CheckStored(f.online.get(), d.event_id);
}

// HttpServer's HandleMany: serve::SplitBatch splits the body into its
// elements as posted; with `labels`, a single object is a batch of one, and
// only elements serve::IsLabelEvent accepts are decided.
void Many(Fixture& f, std::string_view text, bool labels) {
  auto items = vigil::serve::SplitBatch(text, /*allow_object=*/labels);
  if (!items.ok() || static_cast<int64_t>(items->size()) > kMaxBatch) return;
  for (const std::string& ev : *items) {
    if (labels && !vigil::serve::IsLabelEvent(ev)) continue;
    Event(f, ev, false);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Fixture& f = Get();
  std::string_view in(reinterpret_cast<const char*>(data), size);
  size_t lines = 0;
  bool with_features = false;
  while (!in.empty() && lines++ < kMaxLines) {
    size_t nl = in.find('\n');
    std::string_view line = in.substr(0, nl);
    in.remove_prefix(nl == std::string_view::npos ? in.size() : nl + 1);
    if (!line.empty() && line[0] == '[') {
      Many(f, line, false);
    } else if (!line.empty() && line[0] == '@') {
      Many(f, line.substr(1), true);
    } else if (!line.empty() && line[0] == '?') {
      CheckStored(f.online.get(), line.substr(1));
      CheckStored(f.offline.get(), line.substr(1));
    } else {
      Event(f, line, with_features);
      with_features = !with_features;
    }
  }
  // Every event is counted once, by its outcome.
  for (vigil::Engine* e : {f.offline.get(), f.online.get()}) {
    vigil::EngineStats s = e->Stats();
    FUZZ_CHECK(s.events == s.decided + s.not_scored + s.rejected + s.retries);
  }
  return 0;
}
