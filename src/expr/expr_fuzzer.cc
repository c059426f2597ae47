// libFuzzer target for the expression language: arbitrary text through
// Expr::Compile and, when it compiles, Eval on a few records of different
// event types (one with most fields, a sparse one, a login, a label). Any
// crash, sanitizer report or leak is a bug, and so is a result whose kind is
// neither null nor the expression's static kind: compiling untrusted text
// must only ever produce errors, and evaluating a compiled expression can
// never fail. Seeds are in fuzz_seeds/.
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "event/fuzz_records.h"
#include "event/schema.h"
#include "expr/expr.h"

namespace {

using namespace vigil;

constexpr std::string_view kSchema = R"(
name: fuzz
labels: {kinds: [chargeback]}
event_types:
  deposit:
    fields:
      user_id: {type: string, required: true, role: entity, entity: user}
      email: string
      amount: {type: decimal, required: true, min: 0}
      asset: {type: enum, values: [USD, BTC]}
      risk: float
      n: int
      first: bool
      seen_at: timestamp
      ip: string
      card: string
  login:
    fields:
      user_id: string
      success: {type: bool, required: true}
      ip: string
      amount: float
)";

constexpr const char* kRecords[] = {
    R"({"event_type":"deposit","event_id":"d-1","time":"2018-04-07T13:45:00Z","user_id":"u-1","email":"Alice@Mailinator.com","amount":"250.50","asset":"BTC","risk":0.25,"n":-3,"first":true,"seen_at":"1969-12-31T23:00:00Z","ip":"1.2.3.4","card":"411111******1234"})",
    R"({"event_type":"deposit","event_id":"d-2","time":0,"user_id":"U-666","amount":"0"})",
    R"({"event_type":"login","event_id":"l-1","time":"2018-04-08T23:59:59.999Z","user_id":"u-1","success":false,"ip":"10.9.8.7","amount":1e300})",
    R"({"event_type":"label","event_id":"lb-1","time":"2018-04-10T00:00:00Z","kind":"chargeback","target_entity":{"key":"user_id","value":"u-1"},"value":1})",
};

struct Env {
  std::unique_ptr<event::FuzzRecords> records;
  expr::Lists lists;
  expr::Tables tables;
  expr::Bindings bindings;
  double features[6] = {
      4,    0,    std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity(),
      -2.5, 1e308};
};

const Env& GetEnv() {
  static const Env* env = [] {
    auto* e = new Env;
    e->records =
        std::make_unique<event::FuzzRecords>(*event::Schema::LoadString(kSchema, "fuzz.yaml"));
    for (const char* json : kRecords) e->records->Add(json);
    (void)e->lists.AddEntries("disposable", {"mailinator.com", "yopmail.com"});
    (void)e->lists.AddEntries("deny.users", {"u-666"});
    auto cfg = core::ConfigNode::LoadString(R"(
bin: {kind: prefix, entries: {"4": XX, "4111": US, "411111": GB}}
ip: {kind: ip_range, entries: [["1.2.3.0", "1.2.3.255", AU], ["10.0.0.0", "10.255.255.255", ZZ]]}
)",
                                            "tables.yaml");
    e->tables = *expr::Tables::Load(*cfg);
    e->bindings.schema = e->records->schema().get();
    e->bindings.lists = &e->lists;
    e->bindings.tables = &e->tables;
    e->bindings.feature = [](std::string_view name) -> std::optional<int> {
      if (name.size() == 2 && name[0] == 'f' && name[1] >= '0' && name[1] <= '5') {
        return name[1] - '0';
      }
      return std::nullopt;
    };
    return e;
  }();
  return *env;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Env& env = GetEnv();
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto e = expr::Expr::Compile(text, env.bindings, expr::SourcePos{"fuzz.yaml", 3, 7, 5});
  if (!e.ok()) return 0;
  for (size_t i = 0; i < env.records->size(); ++i) {
    const event::Record* rec = &(*env.records)[i];
    const expr::Value v = e->Eval(*rec, env.features);
    if (v.kind != expr::Kind::kNull && v.kind != e->result_kind()) __builtin_trap();
    if (v.kind == expr::Kind::kNumber && !std::isfinite(v.num)) {
      // Only a feature read as is can be infinite.
      if (e->features_read().empty()) __builtin_trap();
    }
    volatile size_t sink = 0;
    for (char c : v.str) sink = sink + static_cast<unsigned char>(c);  // the view must be readable
    (void)e->EvalNumber(*rec, env.features);
    (void)e->EvalBool(*rec, env.features);
  }
  return 0;
}
