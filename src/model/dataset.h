// Training and scoring data from a CSV feature table: the table held in
// memory, which columns are the id, time, label and features (from the
// backfill's .meta.json or by elimination), time ranges, and the dense
// float32 matrix XGBoost and the forest evaluator read.
//
// A column is numeric when every present value of the training rows parses
// as a number (missing: empty or one of pandas' NA spellings, IsMissingCell);
// otherwise it is categorical and becomes one 0/1
// feature per category seen in training ("column=value", the most frequent
// kMaxCategories); a missing or unseen category sets none of them.
//
// Thread-safety: every type here is a value; const methods may be called
// from several threads.
#ifndef VIGIL_MODEL_DATASET_H_
#define VIGIL_MODEL_DATASET_H_

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "nlohmann/json_fwd.hpp"

namespace vigil::event {
class LineReader;
}

namespace vigil::model {

// Categories kept per column. Every one costs a float per row in the dense
// matrix, but a cap cuts off the long tail of columns such as a merchant,
// where fraud often sits: at 100, on a table with 250 merchants, vigil's
// defaults lost 0.008 AUC and 0.013 average precision to XGBoost's defaults
// on pandas.get_dummies (TabularCliTest); at 1,000 they are equal.
inline constexpr size_t kMaxCategories = 1000;

// [from_ms, to_ms) parsed from "FROM..TO": dates or timestamps, UTC; a date
// as TO includes that whole day, a timestamp as TO is included itself.
struct TimeRange {
  int64_t from_ms = std::numeric_limits<int64_t>::min();
  int64_t to_ms = std::numeric_limits<int64_t>::max();
  std::string text;  // as given ("" = everything)
  bool Contains(int64_t t) const { return t >= from_ms && t < to_ms; }
  bool all() const { return text.empty(); }
};
absl::StatusOr<TimeRange> ParseTimeRange(std::string_view text);

// A CSV file (plain or gzip, RFC 4180 quotes) with a header, in memory.
class CsvTable {
 public:
  // NotFound, or InvalidArgument naming the line for a row whose cell count
  // differs from the header's.
  static absl::StatusOr<CsvTable> Read(const std::string& path);
  static absl::StatusOr<CsvTable> FromString(std::string text, std::string name);

  const std::string& path() const { return path_; }
  const std::vector<std::string>& header() const { return header_; }
  int Column(std::string_view name) const;  // -1 when absent
  size_t rows() const { return offsets_.size() - 1; }
  int64_t line_of(size_t row) const { return lines_[row]; }  // 1-based
  // Hex SHA-256 of the file's (uncompressed) bytes.
  const std::string& content_hash() const { return hash_; }

  // The cells of `row`; views into the table or into `scratch` (quoted
  // cells with doubled quotes), valid until the next call with `scratch`.
  void Split(size_t row, std::vector<std::string_view>* cells, std::string* scratch) const;
  // One cell (a convenience over Split for a column at a time).
  std::string_view Cell(size_t row, int col, std::vector<std::string_view>* cells,
                        std::string* scratch) const;

 private:
  static absl::StatusOr<CsvTable> Load(event::LineReader& reader, std::string name);

  std::string path_;
  std::string text_;              // records, each without its newline
  std::vector<uint64_t> offsets_;  // row i is text_[offsets_[i], offsets_[i+1])
  std::vector<int64_t> lines_;
  std::vector<std::string> header_;
  std::string hash_;
};

// Where the id, time, label and features of a table are, and where that came
// from ("meta" when the backfill's .meta.json named them).
struct TableColumns {
  int id = -1;
  int time = -1;
  int label = -1;
  std::vector<int> inputs;  // candidate feature columns, in table order
  std::string id_name, time_name, label_name;
  bool from_meta = false;
  std::string spec_hash, schema_hash;  // from the meta file, when present
  std::string spec_legacy_hash;        // likewise (FeatureSpec::legacy_hash)
};

struct ColumnOptions {
  std::string id;     // "" = the meta's id column, else event_id
  std::string time;   // "" = the meta's time column, else event_time
  std::string label;  // "" = no label (scoring)
  std::vector<std::string> drop;
  bool time_optional = false;  // scoring needs no time column
};

// Reads `<table path>.meta.json` when it exists. Errors name the missing
// column or the meta file's problem.
absl::StatusOr<TableColumns> ResolveColumns(const CsvTable& table, const ColumnOptions& options);

// How input columns become model features; stored in the bundle.
struct FeatureLayout {
  struct Input {
    std::string column;
    bool categorical = false;
    std::vector<std::string> categories;  // one feature each, in this order
    size_t first = 0;                     // index of its first feature
  };
  std::vector<Input> inputs;
  std::vector<std::string> feature_names;  // model features, in order

  size_t num_features() const { return feature_names.size(); }
  bool has_categorical() const;
  nlohmann::ordered_json ToJson() const;
  static absl::StatusOr<FeatureLayout> FromJson(const nlohmann::ordered_json& j);
  // Every input numeric, one feature per column (a bare XGBoost model).
  static FeatureLayout Numeric(std::vector<std::string> names);
};

// Decides each input's type from `rows` (the training rows only, so nothing
// outside them shapes the model) and collects the categories. With
// `numeric_only` (features computed by vigil) text is an error naming the
// line, column and value.
absl::StatusOr<FeatureLayout> InferLayout(const CsvTable& table, const std::vector<int>& inputs,
                                          const std::vector<uint32_t>& rows, bool numeric_only);

// Rows with a parseable time inside `range` (and, when `label` >= 0, a
// non-empty label). Errors name the row's line and the bad time.
struct RowSelection {
  std::vector<uint32_t> rows;
  int64_t unlabelled = 0;  // in range but with an empty label
  int64_t first_ms = 0, last_ms = 0;  // the times the whole table spans
};
absl::StatusOr<RowSelection> SelectRows(const CsvTable& table, int time_col, int label_col,
                                        const TimeRange& range);

// The dense row-major float32 matrix of `rows` under `layout` (NaN =
// missing), labels when `label` >= 0 (0/1; anything else is an error naming
// line, column and value), and times when `time_col` >= 0.
struct Dataset {
  size_t rows = 0, cols = 0;
  std::vector<float> x;
  std::vector<float> label;
  std::vector<int64_t> time_ms;
  std::vector<uint32_t> source_rows;  // row numbers in the table
  const float* row(size_t i) const { return x.data() + i * cols; }
  size_t positives() const;
};
absl::StatusOr<Dataset> BuildDataset(const CsvTable& table, const FeatureLayout& layout,
                                     const std::vector<uint32_t>& rows, int label_col,
                                     int time_col);

// An empty cell or one of pandas.read_csv's missing-value spellings (NA,
// N/A, NaN, null, None, …): missing in any column, an unlabelled row in the
// label column.
bool IsMissingCell(std::string_view cell);

// Reads a 0/1 label cell ("0", "1", "0.0", "1.0", "true", "false").
bool ParseLabel(std::string_view cell, float* out);

}  // namespace vigil::model

#endif  // VIGIL_MODEL_DATASET_H_
