// libFuzzer target for the forest loader: arbitrary bytes through
// Forest::FromJson and, when a model loads, every scoring and reason path on
// a few rows (zeros, NaNs, extremes). A crash, a sanitizer report or a leak
// is a bug: loading a hostile file must only ever produce an error, and a
// loaded forest can always score. So is a row whose margin differs, bit for
// bit, between Margin and MarginBatch: the two walk the trees differently
// (trees interleaved, rows in blocks) and must add the same leaves in the
// same order, whatever the trees' shapes. Seeds: tests/data/fuzz/forest.
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string_view>
#include <vector>

#include "model/forest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto forest = vigil::model::Forest::FromJson(
      std::string_view(reinterpret_cast<const char*>(data), size), "fuzz");
  if (!forest.ok()) return 0;
  const vigil::model::Forest& f = **forest;
  const size_t n = f.num_features();
  const float kNaN = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> rows(3 * n);
  for (size_t i = 0; i < n; ++i) {
    rows[i] = 0;
    rows[n + i] = kNaN;
    rows[2 * n + i] = (i % 2) ? 1e30f : -1e30f;
  }
  std::vector<float> out(3), contrib(n + 1);
  std::vector<double> shap(n + 1);
  f.MarginBatch(rows.data(), 3, out.data());
  for (size_t r = 0; r < 3; ++r) {
    const float margin = f.Margin(rows.data() + r * n);
    if (std::bit_cast<uint32_t>(margin) != std::bit_cast<uint32_t>(out[r])) __builtin_trap();
    volatile float s = f.Score(rows.data() + r * n);
    (void)s;
    f.PathContributions(rows.data() + r * n, contrib.data());
    if (f.num_nodes() < 20000) f.ShapContributions(rows.data() + r * n, shap.data());
  }
  return 0;
}
