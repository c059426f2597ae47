// A data profile: per column, the count, missing rate, min, max, mean,
// standard deviation, quantiles from a mergeable sketch (KLL), the top
// categories with their frequencies, and a distinct-count estimate (HLL).
// `vigil profile` builds one per event field ("<event type>.<field>");
// training and monitoring build them over feature columns and compare live
// traffic against them. The JSON format is in docs/profile.md.
//
// Thread-safety: ColumnProfiler and ProfileBuilder are single-threaded;
// profilers of the same column merge. A loaded Profile is immutable.
#ifndef VIGIL_EVENT_PROFILE_H_
#define VIGIL_EVENT_PROFILE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "core/sketch.h"
#include "core/string_map.h"
#include "core/status.h"
#include "event/pii.h"
#include "event/record.h"
#include "event/schema.h"
#include "event/validator.h"

namespace vigil::event {

// The quantile levels every profile reports.
inline constexpr double kProfileQuantiles[] = {0,   0.001, 0.01, 0.05, 0.1,   0.25, 0.5,
                                               0.75, 0.9, 0.95, 0.99, 0.999, 1};
inline constexpr size_t kProfileTopK = 20;

// Summary of one column, as stored in a profile file.
struct ColumnStats {
  std::string name;
  std::string type;  // schema type, or "number" / "category" for generic columns
  std::string role;
  int64_t count = 0;    // values present
  int64_t missing = 0;  // absent or null
  double min = 0, max = 0, mean = 0, std = 0;
  bool numeric = false;
  std::vector<double> quantiles;  // at kProfileQuantiles, when numeric
  double distinct = 0;            // estimate
  struct Top {
    std::string value;
    int64_t count;
  };
  std::vector<Top> top;       // most frequent values (masked when pii)
  bool top_complete = false;  // every distinct value is listed (exact counts)

  double missing_rate() const {
    return count + missing > 0 ? static_cast<double>(missing) / static_cast<double>(count + missing)
                               : 0;
  }
  // The value at quantile q (linear between the stored levels).
  double Quantile(double q) const;
};

// Builds the statistics of one column from a stream of values.
class ColumnProfiler {
 public:
  ColumnProfiler(bool numeric, bool categorical);
  void AddNumber(double v) noexcept;         // NaN counts as missing
  void AddCategory(std::string_view v);      // a value counted in top/distinct
  void AddMissing() noexcept { ++missing_; }
  void Merge(const ColumnProfiler& o);
  ColumnStats Stats(std::string name, std::string type, std::string role) const;

 private:
  bool numeric_, categorical_;
  int64_t count_ = 0, missing_ = 0;
  double mean_ = 0, m2_ = 0;  // Welford
  core::QuantileSketch quantiles_;
  core::DistinctCounter distinct_;
  core::TopK top_;
};

struct Profile {
  std::string format = "vigil.profile/1";
  std::string source;
  std::string schema_hash;
  int64_t records = 0;
  std::map<std::string, int64_t> records_by_type;
  std::vector<ColumnStats> columns;

  const ColumnStats* Find(std::string_view name) const;
  std::string ToJson() const;
  static absl::StatusOr<Profile> FromJson(std::string_view json, std::string_view name);
  static absl::StatusOr<Profile> Load(const std::string& path);
  absl::Status Save(const std::string& path) const;
};

// Profiles valid event records, one column per field of each event type.
class ProfileBuilder {
 public:
  // `hasher` must outlive the builder.
  ProfileBuilder(std::shared_ptr<const Schema> schema, const PiiHasher* hasher);
  void Add(const Record& rec);
  Profile Finish(std::string source) const;

 private:
  std::shared_ptr<const Schema> schema_;
  const PiiHasher* hasher_;
  std::vector<std::vector<ColumnProfiler>> cols_;  // [type][field]
  std::vector<int64_t> records_;
};

// Flags values of valid records that lie far outside a profile's robust
// range [p1 − k·(p99 − p1), p99 + k·(p99 − p1)], and categories a complete
// profile never saw. Ids, times and entity keys are not checked: they are
// new by nature. Warnings only; nothing is rejected.
class OutlierChecker {
 public:
  OutlierChecker(Profile profile, const Schema& schema, double k);
  // Fills `warnings` and returns true when the record has any.
  bool Check(const Record& rec, const Validator& v, std::vector<Violation>* warnings) const;

 private:
  struct Check_ {
    const ColumnStats* stats = nullptr;
    double lo = 0, hi = 0;
    StringSet seen;
    bool categories = false;
    bool range = false;
  };
  Profile profile_;
  std::vector<std::vector<Check_>> checks_;  // [type][field]
};

}  // namespace vigil::event

#endif  // VIGIL_EVENT_PROFILE_H_
