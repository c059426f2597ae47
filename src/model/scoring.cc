#include "model/scoring.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>

#include "core/strings.h"
#include "model/forest.h"

namespace vigil::model {

absl::StatusOr<ScoredTable> ScoreTable(const std::string& model_path, const std::string& features_path,
                                       const ScoreOptions& options) {
  const std::string& id = options.id;
  const bool margin = options.margin;
  ScoredTable s;
  s.margin = margin;
  VIGIL_ASSIGN_OR_RETURN(s.bundle, Bundle::Load(model_path));
  VIGIL_ASSIGN_OR_RETURN(s.table, CsvTable::Read(features_path));
  ColumnOptions co;
  co.label = options.label;
  co.time_optional = true;
  co.id = id;
  co.time = options.time;
  VIGIL_ASSIGN_OR_RETURN(s.cols, ResolveColumns(s.table, co));
  if (options.time.empty() && !s.cols.from_meta && s.cols.time < 0 && !s.bundle.time_column.empty()) {
    // A plain CSV without event_time: its time column is the one the model
    // was trained with (`vigil train --time`), as for the id column below.
    co.time = s.bundle.time_column;
    VIGIL_ASSIGN_OR_RETURN(s.cols, ResolveColumns(s.table, co));
  }
  VIGIL_RETURN_IF_ERROR(CheckCompatible(s.bundle, s.table, s.cols));
  // The id column: --id, the table's meta, the bundle's, event_id.
  s.id_name = !id.empty() ? id : s.cols.from_meta ? s.cols.id_name
                               : !s.bundle.id_column.empty() ? s.bundle.id_column : "event_id";
  s.id_col = s.table.Column(s.id_name);
  if (s.id_col < 0) {
    return absl::InvalidArgumentError(StrCat(features_path, ": no id column '", s.id_name,
                                             "' (name it with --id); columns: ", StrJoin(s.table.header(), ", ")));
  }
  std::vector<uint32_t> rows(s.table.rows());
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = static_cast<uint32_t>(i);
  VIGIL_ASSIGN_OR_RETURN(Dataset d, BuildDataset(s.table, s.bundle.layout, rows, -1, -1));
  const std::shared_ptr<const Forest>& forest = s.bundle.forest;
  std::vector<float> out(d.rows);
  forest->MarginBatch(d.x.data(), d.rows, out.data());
  s.scores.resize(d.rows);
  for (size_t i = 0; i < d.rows; ++i) s.scores[i] = margin ? out[i] : forest->Transform(out[i]);
  if (!margin && s.bundle.calibration) {
    for (double& v : s.scores) v = s.bundle.calibration->Apply(v);
  }
  if (options.reasons > 0) {
    const size_t nf = forest->num_features();
    s.k = std::min(options.reasons, nf);
    s.reasons.resize(d.rows * s.k);
    std::vector<float> contrib(nf + 1);
    std::vector<double> shap(nf + 1);
    std::vector<uint32_t> order(nf);
    for (size_t i = 0; i < d.rows; ++i) {
      const float* row = d.row(i);
      if (options.exact) {
        forest->ShapContributions(row, shap.data());
        for (size_t f = 0; f < nf; ++f) contrib[f] = static_cast<float>(shap[f]);
      } else {
        forest->PathContributions(row, contrib.data());
      }
      for (uint32_t f = 0; f < nf; ++f) order[f] = f;
      std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(s.k), order.end(),
                        [&](uint32_t a, uint32_t b) {
                          const float x = std::fabs(contrib[a]), y = std::fabs(contrib[b]);
                          return x != y ? x > y : a < b;
                        });
      for (size_t r = 0; r < s.k; ++r) s.reasons[i * s.k + r] = {order[r], row[order[r]], contrib[order[r]]};
    }
  }
  return s;
}

namespace {

// ",<value>" in the fewest digits that read back exactly; "," for NaN.
void AppendShortest(double v, bool as_double, std::string* out) {
  out->push_back(',');
  if (std::isnan(v)) return;
  char num[32];
  auto res = as_double ? std::to_chars(num, num + sizeof num, v)
                       : std::to_chars(num, num + sizeof num, static_cast<float>(v));
  out->append(num, res.ptr);
}

}  // namespace

absl::Status WriteScores(const ScoredTable& s, const std::string& out) {
  std::ofstream file;
  std::ostream* os = &std::cout;
  if (out != "-") {
    file.open(out, std::ios::binary | std::ios::trunc);
    if (!file) return absl::PermissionDeniedError(StrCat(out, ": cannot write"));
    os = &file;
  }
  std::string buf = StrCat(s.id_name, s.margin ? ",margin" : ",score");
  for (size_t r = 1; r <= s.k; ++r) StrAppend(&buf, ",r", r, "_feature,r", r, "_value,r", r, "_contrib");
  buf.push_back('\n');
  const std::vector<std::string>& names = s.bundle.layout.feature_names;
  std::vector<std::string_view> cells;
  std::string scratch;
  for (size_t r = 0; r < s.scores.size(); ++r) {
    std::string_view id = s.table.Cell(r, s.id_col, &cells, &scratch);
    const bool quote = id.find_first_of(",\"\n") != std::string_view::npos;
    if (quote) {
      buf.push_back('"');
      for (char c : id) {
        if (c == '"') buf.push_back('"');
        buf.push_back(c);
      }
      buf.push_back('"');
    } else {
      buf.append(id);
    }
    // Scores are float32 (calibrated ones double): the shortest text that
    // reads back to the same value.
    AppendShortest(s.scores[r], s.bundle.calibration && !s.margin, &buf);
    for (size_t k = 0; k < s.k; ++k) {
      const Reason& why = s.reasons[r * s.k + k];
      StrAppend(&buf, ",", names[why.feature]);
      AppendShortest(why.value, false, &buf);
      AppendShortest(why.contrib, false, &buf);
    }
    buf.push_back('\n');
    if (buf.size() > (1 << 20)) {
      os->write(buf.data(), static_cast<std::streamsize>(buf.size()));
      buf.clear();
    }
  }
  os->write(buf.data(), static_cast<std::streamsize>(buf.size()));
  os->flush();
  if (!*os) return absl::DataLossError(StrCat(out, ": write failed"));
  return absl::OkStatus();
}

}  // namespace vigil::model
