// libFuzzer target for the event readers: arbitrary bytes as a CSV or JSON
// Lines file (plain or gzip) through EventReader, validation, pii masking,
// dead-letter encoding and profiling. Any crash, sanitizer report or leak is
// a bug: decoding untrusted input must only ever produce rejections.
//
// The first input byte picks the mode: bit 0 CSV (else JSON Lines), bit 1
// prepend a valid CSV header (so the fuzzer reaches row decoding quickly).
#include <cstdint>
#include <string>
#include <vector>

#include "event/dead_letter.h"
#include "event/event_reader.h"
#include "event/profile.h"
#include "event/schema.h"

namespace {

using namespace vigil::event;

constexpr std::string_view kSchema = R"(
name: fuzz
limits: {max_record_bytes: 512, max_string_length: 32}
duplicates: {memory: 16}
time_bounds: {max_ahead_of_latest: 1d, max_behind_latest: 1h}
labels: {kinds: [chargeback, account_takeover]}
csv: {event_type: deposit}
event_types:
  deposit:
    fields:
      user_id: {type: string, required: true, role: entity, entity: user}
      email: {type: string, pii: hash, role: entity}
      phone: {type: string, pii: redact}
      amount: {type: decimal, required: true, min: 0, role: amount, currency_field: asset}
      asset: {type: enum, values: [USD, BTC]}
      method: {type: string, pattern: "card|bank|[a-z]{2,5}"}
      risk: {type: float, min: 0, max: 1}
      n: {type: int, min: -5, max: 5, allowed: [-5, 0, 5]}
      first: bool
      seen_at: {type: timestamp, min: "2000-01-01", unit: s}
      note: {type: string, nullable: true}
  login:
    unknown_fields: ignore
    fields:
      user_id: {type: int, role: entity}
      ok: {type: bool, required: true}
)";

constexpr std::string_view kHeader =
    "event_id,time,user_id,email,phone,amount,asset,method,risk,n,first,seen_at,note\n";

const std::shared_ptr<const Schema>& FuzzSchema() {
  static const auto* s = new std::shared_ptr<const Schema>(*Schema::LoadString(kSchema, "fuzz"));
  return *s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  const bool csv = mode & 1;
  if (csv && (mode & 2)) text = std::string(kHeader) + text;
  static const PiiHasher hasher("fuzz-key");
  auto reader = EventReader::FromString(std::move(text), FuzzSchema(), &hasher,
                                        csv ? Format::kCsv : Format::kJsonLines);
  if (!reader.ok()) return 0;  // a bad header is refused as a whole
  ProfileBuilder profile(FuzzSchema(), &hasher);
  Record rec;
  Rejection rej;
  size_t sink = 0;
  // Read-ahead hints off the raw text of lines not decoded yet: every field
  // of the CSV type, 1 to 7 lines ahead (the mode's high bits).
  std::vector<int> fields;
  for (const FieldSpec& f :
       FuzzSchema()->types[static_cast<size_t>(FuzzSchema()->csv_type)].fields) {
    fields.push_back(f.index);
  }
  std::vector<uint64_t> hashes(fields.size());
  const size_t ahead = 1 + (mode >> 5);
  while (true) {
    const auto r = (*reader)->Next(&rec, &rej);
    if (r == EventReader::Result::kEnd) break;
    (*reader)->PeekKeyHashes(ahead, fields, hashes);
    for (uint64_t h : hashes) sink += h & 1;
    if (r == EventReader::Result::kRecord) {
      profile.Add(rec);
    } else {
      sink += RejectionToJson(rej).size();
    }
  }
  sink += profile.Finish("fuzz").ToJson().size();
  return sink == 0 ? 1 : 0;
}
