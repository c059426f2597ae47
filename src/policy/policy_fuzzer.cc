// libFuzzer target for decision policies: arbitrary text through
// Policy::LoadString against the exchange example's feature spec and, when
// it loads, Decide and DecideShadow on the example's sample events (their
// features computed once) with scores from none to out of range. Any crash,
// sanitizer report or leak is a bug: a policy must only ever load or fail
// with an error. So is DecideShadow deciding otherwise than Decide on the
// same inputs, a deciding rule that is not among those fired, or a fired
// rule index out of range. Seeds are in tests/data/fuzz/policy.
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "event/fuzz_records.h"
#include "event/schema.h"
#include "feature/engine.h"
#include "feature/spec.h"
#include "policy/policy.h"

namespace {

using namespace vigil;

const std::string kExample = std::string(VIGIL_SOURCE_DIR) + "/examples/exchange";

struct Env {
  std::shared_ptr<const feature::FeatureSpec> spec;
  std::unique_ptr<event::FuzzRecords> records;
  std::vector<std::vector<double>> features;  // per record
};

const Env& GetEnv() {
  static const Env* env = [] {
    auto* e = new Env;
    auto schema = event::Schema::Load(kExample + "/schema.yaml");
    if (!schema.ok()) __builtin_trap();
    auto spec = feature::FeatureSpec::Load(kExample + "/features.yaml", *schema);
    if (!spec.ok()) __builtin_trap();
    e->spec = *spec;
    e->records = std::make_unique<event::FuzzRecords>(*schema);
    e->records->AddFile(kExample + "/sample.jsonl");
    feature::FeatureEngine engine(e->spec);
    for (size_t i = 0; i < e->records->size(); ++i) {
      std::vector<double> f(engine.num_features(), std::numeric_limits<double>::quiet_NaN());
      (void)engine.Process((*e->records)[i], f);
      e->features.push_back(std::move(f));
    }
    return e;
  }();
  return *env;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Env& env = GetEnv();
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto policy = policy::Policy::LoadString(text, kExample + "/policy.yaml", env.spec);
  if (!policy.ok()) {
    if (policy.status().message().empty()) __builtin_trap();  // an error says what is wrong
    return 0;
  }
  const policy::Policy& p = **policy;
  const double scores[] = {
      std::numeric_limits<double>::quiet_NaN(), 0.0, 0.5, 0.97, 1.0, 2.0, -1.0};
  for (size_t i = 0; i < env.records->size(); ++i) {
    const event::Record& rec = (*env.records)[i];
    const int type = rec.type->index;
    const size_t rules = p.rules_of(type).size();
    for (double score : scores) {
      for (bool configured : {true, false}) {
        const policy::Outcome o = p.Decide(rec, env.features[i].data(), score, configured);
        const policy::Outcome s = p.DecideShadow(rec, env.features[i].data(), score, configured);
        if (o.action != s.action || o.decided_by != s.decided_by || o.path != s.path ||
            o.num_fired != s.num_fired) {
          __builtin_trap();
        }
        if (o.num_fired < 0 || o.num_listed() > policy::Outcome::kMaxListed) __builtin_trap();
        bool decider_fired = o.decided_rule < 0;
        for (int k = 0; k < o.num_listed(); ++k) {
          if (o.fired[k].rule < 0 || static_cast<size_t>(o.fired[k].rule) >= rules)
            __builtin_trap();
          decider_fired |= o.fired[k].rule == o.decided_rule;
        }
        if (!decider_fired) __builtin_trap();  // the deciding rule is always listed
        (void)policy::ActionName(o.action);
        (void)policy::PathName(o.path);
      }
    }
    for (size_t r = 0; r < rules; ++r) (void)p.hits(type, static_cast<int>(r));
    (void)p.covers(type);
  }
  return 0;
}
