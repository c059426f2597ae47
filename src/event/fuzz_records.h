// Fixture records for the libFuzzer targets: JSON events decoded once and
// kept for the whole run. Each record keeps its own padded text and its own
// Validator, since a Record's views live in them. Any event the schema
// rejects traps: the fixture itself is wrong.
//
// Thread-safety: none (a fuzzer builds one at start, then only reads it).
#ifndef VIGIL_EVENT_FUZZ_RECORDS_H_
#define VIGIL_EVENT_FUZZ_RECORDS_H_

#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "event/pii.h"
#include "event/record.h"
#include "event/schema.h"
#include "event/validator.h"

namespace vigil::event {

class FuzzRecords {
 public:
  explicit FuzzRecords(std::shared_ptr<const Schema> schema) : schema_(std::move(schema)) {}

  // Decodes one JSON event and keeps it.
  void Add(std::string_view json) {
    // The padded copy: the decoder may read 64 bytes past the line.
    lines_.push_back(std::make_unique<std::string>(std::string(json) + std::string(64, ' ')));
    validators_.push_back(std::make_unique<Validator>(schema_, &hasher_));
    records_.push_back(std::make_unique<Record>());
    std::vector<Violation> v;
    const std::string_view text = std::string_view(*lines_.back()).substr(0, json.size());
    if (!validators_.back()->DecodeJson(text, lines_.back()->size(), records_.back().get(), &v)) {
      __builtin_trap();
    }
  }
  // Every non-empty line of a JSON Lines file; traps when there is none.
  void AddFile(const std::string& path) {
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
      if (!line.empty()) Add(line);
    }
    if (records_.empty()) __builtin_trap();
  }

  const std::shared_ptr<const Schema>& schema() const { return schema_; }
  size_t size() const { return records_.size(); }
  const Record& operator[](size_t i) const { return *records_[i]; }

 private:
  std::shared_ptr<const Schema> schema_;
  PiiHasher hasher_{"fuzz"};
  std::vector<std::unique_ptr<std::string>> lines_;
  std::vector<std::unique_ptr<Validator>> validators_;
  std::vector<std::unique_ptr<Record>> records_;
};

}  // namespace vigil::event

#endif  // VIGIL_EVENT_FUZZ_RECORDS_H_
