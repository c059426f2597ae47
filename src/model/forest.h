// vigil's own evaluator of XGBoost tree ensembles: an XGBoost JSON model
// (gbtree; binary:logistic, reg:logistic, reg:squarederror) loaded into an
// immutable flat layout and scored exactly as XGBoost 1.7 scores it.
//
// Exactness: features are float32; a split sends x < threshold left, NaN
// the node's default way; the margin starts at the base margin (for the
// logistic objectives -log(1/p - 1) of the stored base_score p, in float)
// and adds each tree's leaf in float32, in tree order — XGBoost's own
// arithmetic, so margins are bit-equal (tests/data/models/ hold golden
// files). The probability is 1 / (1 + exp(-margin)) in float.
//
// Loading checks everything (array lengths, child indices, reachability,
// no cycles, feature indices below the feature count, depth), so scoring
// cannot fail: Margin, Score and MarginBatch never allocate, lock or make a
// virtual call, and read only the row.
//
// Reasons: PathContributions is the cheap attribution for every decision
// (each split on the path credits its feature with the change in the
// cover-weighted mean of the leaves below, as Saabas does); ShapContributions
// is exact TreeSHAP (path-dependent, as XGBoost's pred_contribs), for an
// analyst, milliseconds per row. Both sum to the margin, the bias included.
//
// Thread-safety: a Forest is immutable once loaded; share it freely.
#ifndef VIGIL_MODEL_FOREST_H_
#define VIGIL_MODEL_FOREST_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace vigil::model {

struct ShapPath;  // forest.cc

enum class Objective { kBinaryLogistic, kRegLogistic, kSquaredError };

class Forest {
 public:
  // From XGBoost JSON text; `name` is used in messages. InvalidArgument
  // naming the tree, the array and the problem for any malformed input.
  static absl::StatusOr<std::shared_ptr<const Forest>> FromJson(std::string_view json, std::string_view name);
  static absl::StatusOr<std::shared_ptr<const Forest>> Load(const std::string& path);

  size_t num_features() const { return num_features_; }
  size_t num_trees() const { return roots_.size(); }
  size_t num_nodes() const { return nodes_.size(); }
  int max_depth() const { return max_depth_; }
  const std::vector<std::string>& feature_names() const { return feature_names_; }  // may be empty
  Objective objective() const { return objective_; }
  float base_margin() const { return base_margin_; }

  // Per feature, the lowest and highest threshold it is split on; lo > hi
  // (+inf, -inf) for a feature no split uses.
  void SplitRanges(std::vector<float>* lo, std::vector<float>* hi) const;

  // `row` holds num_features() floats (NaN = missing).
  float Margin(const float* row) const noexcept;
  // The prediction: a probability for the logistic objectives.
  float Score(const float* row) const noexcept { return Transform(Margin(row)); }
  float Transform(float margin) const noexcept;
  // Margins of `n` rows stored row after row, num_features() floats each.
  void MarginBatch(const float* rows, size_t n, float* out) const noexcept;

  // Cheap attribution: `contrib` gets num_features() + 1 values, the last
  // the bias (base margin plus each tree's root mean); they sum to the margin
  // (up to float rounding). No allocation.
  void PathContributions(const float* row, float* contrib) const noexcept;
  // Margin(row), and PathContributions(row, contrib), bit for bit, walking
  // each tree once: with AVX2, 32 trees at a time as Margin does, recording
  // the paths, then the contributions along them (no dependent walk per
  // tree). What vigil serve calls for every decision with reasons.
  float MarginAndPathContributions(const float* row, float* contrib) const noexcept;
  // Exact TreeSHAP (XGBoost's pred_contribs): num_features() + 1 values, the
  // last the bias. Allocates its scratch.
  void ShapContributions(const float* row, double* contrib) const;

 private:
  // One node, 8 bytes: trees are laid out breadth-first, so a node's two
  // children are neighbours, `offset` after it. A leaf has no offset and
  // never moves (the direction is masked), so a walk of a fixed number of
  // steps ends on the leaf whatever the tree's shape.
  struct Node {
    float value;    // threshold, or the leaf value
    uint32_t info;  // feature (16 bits) | NaN goes right (1) | internal (1) | offset (14)
    uint32_t feature() const { return info & 0xffffu; }
    uint32_t default_right() const { return (info >> 16) & 1u; }
    uint32_t internal() const { return (info >> 17) & 1u; }
    bool leaf() const { return internal() == 0; }
    uint32_t offset() const { return info >> 18; }
  };
  static constexpr uint32_t kMaxOffset = (1u << 14) - 1;
  // Per-node data for the reasons (same indices as nodes_).
  struct NodeStats {
    double cover;  // sum of hessians
    double mean;   // cover-weighted mean of the leaf values below
  };

  template <int kTrees>
  float MarginInterleaved(const float* row) const noexcept;
  // AVX2 paths (chosen at load when the CPU has it; VIGIL_NO_AVX2 turns
  // them off): the same arithmetic, 8 walks per instruction.
  float MarginAvx2(const float* row) const noexcept;
  size_t MarginBatchAvx2(const float* rows, size_t n, float* out) const noexcept;  // rows done
  float MarginAndPathContributionsAvx2(const float* row, float* contrib) const noexcept;
  static constexpr size_t kGroup = 32;  // trees walked together for one row
  // The one-row walk of both: trees t..t+kGroup-1 to the deepest of them,
  // their leaves to leaf[k]; with kRecord, every step to path[d][k] too.
  template <bool kRecord>
  void WalkGroupAvx2(size_t t, const float* row, uint32_t* leaf, uint32_t (*path)[kGroup]) const noexcept;
  // One tree's part of PathContributions (its root's mean added to *bias);
  // returns the leaf reached.
  uint32_t TreePathContributions(size_t tree, const float* row, float* contrib, double* bias) const noexcept;
  // The deepest tree MarginAndPathContributionsAvx2 records paths for.
  static constexpr int kMaxRecordedDepth = 32;
  double ShapTree(size_t tree, const float* row, double* contrib, ShapPath* scratch) const;

  size_t num_features_ = 0;
  std::vector<std::string> feature_names_;
  Objective objective_ = Objective::kBinaryLogistic;
  float base_margin_ = 0;
  int max_depth_ = 0;
  std::vector<Node> nodes_;
  std::vector<NodeStats> stats_;
  std::vector<uint32_t> roots_;
  std::vector<uint8_t> depths_;  // steps from the root to the deepest leaf, per tree
  std::vector<uint8_t> group_depths_;  // the deepest of each group of kGroup trees
  bool avx2_ = false;
};

}  // namespace vigil::model

#endif  // VIGIL_MODEL_FOREST_H_
