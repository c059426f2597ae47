// libFuzzer target for event schemas: arbitrary text through
// Schema::LoadString and, when it loads, a Validator decoding and checking
// the exchange example's sample events against it (most are then rejected:
// the point is that nothing breaks). Any crash, sanitizer report or leak is a
// bug: a schema must only ever load or fail with an error, and a rejection
// always names its rule. Seeds are in tests/data/fuzz/schema.
#include <cstdint>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "event/pii.h"
#include "event/schema.h"
#include "event/validator.h"

namespace {

std::vector<std::string> Lines() {
  std::vector<std::string> out;
  std::ifstream in(std::string(VIGIL_SOURCE_DIR) + "/examples/exchange/sample.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) out.push_back(line + std::string(64, ' '));
  }
  // A handbook row as JSON, and the edges of the time and number forms.
  out.push_back(
      R"({"event_type":"transaction","TRANSACTION_ID":1,"TX_DATETIME":"2018-04-01 00:00:31","CUSTOMER_ID":596,"TERMINAL_ID":3156,"TX_AMOUNT":57.16,"TX_TIME_SECONDS":31,"TX_TIME_DAYS":0,"TX_FRAUD":0,"TX_FRAUD_SCENARIO":0})" +
      std::string(64, ' '));
  out.push_back(R"({"event_type":"label","event_id":"x","time":-1,"kind":"","value":1e400})" +
                std::string(64, ' '));
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace vigil;
  static const std::vector<std::string> lines = Lines();
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto schema = event::Schema::LoadString(text, "fuzz/schema.yaml");
  if (!schema.ok()) {
    if (schema.status().message().empty()) __builtin_trap();  // an error says what is wrong
    return 0;
  }
  event::PiiHasher hasher("fuzz");
  event::Validator validator(*schema, &hasher);
  event::Record rec;
  std::vector<event::Violation> violations;
  for (const std::string& l : lines) {
    violations.clear();
    const std::string_view json(l.data(), l.size() - 64);
    if (validator.DecodeJson(json, l.size(), &rec, &violations) &&
        validator.CheckAndCommit(rec, &violations)) {
      continue;
    }
    if (violations.empty()) __builtin_trap();  // a rejection names its rule
  }
  return 0;
}
