// Isotonic calibration: a non-decreasing, piecewise-linear map from a model
// score to a probability of fraud, fitted to labelled scores by
// pool-adjacent-violators. It reproduces scikit-learn 1.2's
// IsotonicRegression(increasing=True, out_of_bounds="clip") fitted on
// (score, label) and its predict(): scores outside the fitted range are
// clipped to it, scores between two fitted points are interpolated linearly.
//
// The object owns its two arrays of knots. Thread-safety: const methods may
// be called concurrently; Fit needs exclusive access.
#ifndef VIGIL_MODEL_ISOTONIC_H_
#define VIGIL_MODEL_ISOTONIC_H_

#include <cstdint>
#include <span>
#include <vector>

#include "core/status.h"
#include "nlohmann/json.hpp"

namespace vigil::model {

class IsotonicCalibration {
 public:
  // An unfitted calibration: Apply returns NaN.
  IsotonicCalibration() = default;

  // Fits the calibration to `scores` with their `labels` (0 genuine, any
  // other value fraud), replacing any earlier fit. As in sklearn, scores
  // closer than 1e-15 to the first score of their run are pooled as one
  // point, and knots inside a flat stretch are dropped. Memory O(n), time
  // O(n log n).
  // Returns InvalidArgument, and leaves the object as it was, when the input
  // is empty, the spans differ in length or a score is not finite (the
  // message names the row).
  absl::Status Fit(std::span<const double> scores, std::span<const uint8_t> labels);

  // The calibrated probability of `score`: clipped to the fitted range, then
  // interpolated between knots. NaN for a NaN score or an unfitted object.
  // Hot path: O(log knots), no allocation.
  double Apply(double score) const noexcept;

  // {"x":[...],"y":[...]}: the knots, x strictly increasing, y
  // non-decreasing; both empty when unfitted. A JSON value, so that a
  // bundle's manifest can hold it; dump() writes doubles that read back
  // exactly.
  nlohmann::ordered_json ToJson() const;
  // Reads what ToJson wrote (of a fitted calibration). Returns
  // InvalidArgument, naming the key and index, for anything but an object
  // with exactly the keys x and y, arrays of different lengths or empty, a
  // value that is not a finite number, x not strictly increasing or y
  // decreasing.
  static absl::StatusOr<IsotonicCalibration> FromJson(const nlohmann::ordered_json& json);

  bool fitted() const { return !x_.empty(); }
  const std::vector<double>& x() const { return x_; }  // knots, ascending
  const std::vector<double>& y() const { return y_; }  // calibrated values at x

 private:
  std::vector<double> x_, y_;
};

}  // namespace vigil::model

#endif  // VIGIL_MODEL_ISOTONIC_H_
