#include "model/isotonic.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "core/strings.h"

namespace vigil::model {
namespace {

// sklearn's _make_unique pools x values within np.finfo(float64).resolution
// of the first value of their run.
constexpr double kPoolTolerance = 1e-15;

// A run of pooled points with one fitted value: positives / rows. Integer
// counts keep the pooling exact, so equal means compare equal.
struct Block {
  uint64_t positives;
  uint64_t rows;
  size_t points;  // distinct x values covered
};

// a's mean >= b's mean, exactly.
bool NotBelow(const Block& a, const Block& b) {
  return static_cast<unsigned __int128>(a.positives) * b.rows >=
         static_cast<unsigned __int128>(b.positives) * a.rows;
}

}  // namespace

absl::Status IsotonicCalibration::Fit(std::span<const double> scores,
                                      std::span<const uint8_t> labels) {
  if (scores.empty()) return absl::InvalidArgumentError("isotonic fit: no rows");
  if (scores.size() != labels.size()) {
    return absl::InvalidArgumentError(
        StrCat("isotonic fit: ", scores.size(), " scores but ", labels.size(), " labels"));
  }
  std::vector<std::pair<double, uint8_t>> rows(scores.size());
  for (size_t i = 0; i < scores.size(); ++i) {
    if (!std::isfinite(scores[i])) {
      return absl::InvalidArgumentError(
          StrCat("isotonic fit: score of row ", i, " is not finite (", scores[i], ")"));
    }
    rows[i] = {scores[i], static_cast<uint8_t>(labels[i] != 0)};
  }
  std::sort(rows.begin(), rows.end());

  // Distinct x values (after pooling), and pool-adjacent-violators over them
  // on a stack of blocks: a new point merges backwards while the block
  // before it is not below it (sklearn merges equal neighbours too).
  std::vector<double> xs;
  std::vector<Block> blocks;
  for (size_t i = 0; i < rows.size();) {
    const double first = rows[i].first;
    Block b{0, 0, 1};
    for (; i < rows.size() && rows[i].first - first < kPoolTolerance; ++i) {
      b.positives += rows[i].second;
      ++b.rows;
    }
    xs.push_back(first);
    while (!blocks.empty() && NotBelow(blocks.back(), b)) {
      b.positives += blocks.back().positives;
      b.rows += blocks.back().rows;
      b.points += blocks.back().points;
      blocks.pop_back();
    }
    blocks.push_back(b);
  }
  std::vector<double> ys;
  ys.reserve(xs.size());
  for (const Block& b : blocks) {
    ys.insert(ys.end(), b.points, static_cast<double>(b.positives) / static_cast<double>(b.rows));
  }

  // Keep the ends and every point whose value differs from a neighbour's:
  // the interior of a flat stretch adds nothing to the interpolation.
  std::vector<double> x, y;
  for (size_t i = 0; i < xs.size(); ++i) {
    const bool end = i == 0 || i + 1 == xs.size();
    if (end || ys[i] != ys[i - 1] || ys[i] != ys[i + 1]) {
      x.push_back(xs[i]);
      y.push_back(ys[i]);
    }
  }
  x_ = std::move(x);
  y_ = std::move(y);
  return absl::OkStatus();
}

double IsotonicCalibration::Apply(double score) const noexcept {
  if (x_.empty() || std::isnan(score)) return std::numeric_limits<double>::quiet_NaN();
  if (x_.size() == 1) return y_[0];
  const double v = std::clamp(score, x_.front(), x_.back());
  // As scipy's interp1d: the segment ending at the first knot >= v, and
  // the first segment for v == x_[0].
  size_t hi = static_cast<size_t>(std::lower_bound(x_.begin(), x_.end(), v) - x_.begin());
  hi = std::clamp<size_t>(hi, 1, x_.size() - 1);
  const size_t lo = hi - 1;
  const double slope = (y_[hi] - y_[lo]) / (x_[hi] - x_[lo]);
  // Within the segment's own values: rounding could take the top knot's
  // 1 to 1.0000000000000002, which the policy reads as no score at all.
  return std::clamp(slope * (v - x_[lo]) + y_[lo], y_[lo], y_[hi]);
}

nlohmann::ordered_json IsotonicCalibration::ToJson() const {
  nlohmann::ordered_json j;
  j["x"] = x_;
  j["y"] = y_;
  return j;
}

absl::StatusOr<IsotonicCalibration> IsotonicCalibration::FromJson(const nlohmann::ordered_json& j) {
  if (!j.is_object()) {
    return absl::InvalidArgumentError(
        "isotonic calibration: expected an object {\"x\":[...],\"y\":[...]}");
  }
  for (const auto& item : j.items()) {
    if (item.key() != "x" && item.key() != "y") {
      return absl::InvalidArgumentError(
          StrCat("isotonic calibration: unknown key '", item.key(), "' (expected x and y)"));
    }
  }
  std::vector<double> arrays[2];
  const char* const keys[2] = {"x", "y"};
  for (int a = 0; a < 2; ++a) {
    const auto it = j.find(keys[a]);
    if (it == j.end() || !it->is_array() || it->empty()) {
      return absl::InvalidArgumentError(
          StrCat("isotonic calibration: '", keys[a], "' must be a non-empty array of numbers"));
    }
    for (size_t i = 0; i < it->size(); ++i) {
      const nlohmann::ordered_json& v = (*it)[i];
      if (!v.is_number() || !std::isfinite(v.get<double>())) {
        return absl::InvalidArgumentError(
            StrCat("isotonic calibration: ", keys[a], "[", i, "] is not a finite number"));
      }
      arrays[a].push_back(v.get<double>());
    }
  }
  std::vector<double>& x = arrays[0];
  std::vector<double>& y = arrays[1];
  if (x.size() != y.size()) {
    return absl::InvalidArgumentError(
        StrCat("isotonic calibration: x has ", x.size(), " values but y has ", y.size()));
  }
  // y is a probability: the policy reads a calibrated score outside [0, 1]
  // as no score at all.
  for (size_t i = 0; i < y.size(); ++i) {
    if (y[i] < 0 || y[i] > 1) {
      return absl::InvalidArgumentError(
          StrCat("isotonic calibration: y[", i, "] = ", y[i], " is not a probability in [0, 1]"));
    }
  }
  for (size_t i = 1; i < x.size(); ++i) {
    if (!(x[i] > x[i - 1])) {
      return absl::InvalidArgumentError(
          StrCat("isotonic calibration: x[", i, "] = ", x[i], " is not above x[", i - 1, "]"));
    }
    if (y[i] < y[i - 1]) {
      return absl::InvalidArgumentError(
          StrCat("isotonic calibration: y[", i, "] = ", y[i], " is below y[", i - 1, "]"));
    }
  }
  IsotonicCalibration c;
  c.x_ = std::move(x);
  c.y_ = std::move(y);
  return c;
}

}  // namespace vigil::model
