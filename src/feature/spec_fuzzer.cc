// libFuzzer target for feature specs: arbitrary text through
// FeatureSpec::LoadString against the exchange example's schema and, when it
// loads, a FeatureEngine over the example's sample events (every event type,
// labels included). Any crash, sanitizer report or leak is a bug: a spec
// must only ever load or fail with an error. So is a snapshot that does not
// restore to the same bytes, or features that differ after a restore
// midway from those of an uninterrupted run (docs/features.md). Seeds are in
// tests/data/fuzz/spec.
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "event/fuzz_records.h"
#include "event/schema.h"
#include "feature/engine.h"
#include "feature/spec.h"

namespace {

using namespace vigil;

const std::string kExample = std::string(VIGIL_SOURCE_DIR) + "/examples/exchange";

const event::FuzzRecords& Records() {
  static const event::FuzzRecords* records = [] {
    auto schema = event::Schema::Load(kExample + "/schema.yaml");
    if (!schema.ok()) __builtin_trap();
    auto* r = new event::FuzzRecords(*schema);
    r->AddFile(kExample + "/sample.jsonl");
    return r;
  }();
  return *records;
}

bool SameBits(const std::vector<double>& a, const std::vector<double>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const event::FuzzRecords& records = Records();
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  // Named as the example's spec, so that its lists/ and tables resolve.
  auto spec = feature::FeatureSpec::LoadString(text, kExample + "/features.yaml", records.schema());
  if (!spec.ok()) {
    if (spec.status().message().empty()) __builtin_trap();  // an error says what is wrong
    return 0;
  }
  const size_t n = (*spec)->features.size();
  const size_t half = records.size() / 2;
  feature::FeatureEngine whole(*spec), first(*spec);
  std::vector<std::vector<double>> expected;
  std::vector<double> out(n);
  for (size_t i = 0; i < records.size(); ++i) {
    std::fill(out.begin(), out.end(), 0.0);
    if (whole.Process(records[i], out) != feature::FeatureEngine::Result::kScored) {
      out.assign(n, 0.0);
    }
    expected.push_back(out);
    if (i < half) (void)first.Process(records[i], out);
  }
  // Snapshot midway, restore, go on: the same bytes back, the same features.
  std::string snap, again;
  first.SerializeTo(&snap);
  feature::FeatureEngine restored(*spec);
  if (!restored.Restore(snap).ok()) __builtin_trap();
  restored.SerializeTo(&again);
  if (snap != again) __builtin_trap();
  for (size_t i = half; i < records.size(); ++i) {
    std::fill(out.begin(), out.end(), 0.0);
    if (restored.Process(records[i], out) != feature::FeatureEngine::Result::kScored) {
      out.assign(n, 0.0);
    }
    if (!SameBits(out, expected[i])) __builtin_trap();
  }
  (void)whole.Stats();
  return 0;
}
