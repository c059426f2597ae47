#include "model/forest.h"

#include <immintrin.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "core/file.h"
#include "core/strings.h"
#include "simdjson.h"

namespace vigil::model {
namespace {

using simdjson::dom::array;
using simdjson::dom::element;
using simdjson::dom::object;

constexpr size_t kMaxNodes = size_t{1} << 26;  // 1 GB of layout: far beyond any real model
constexpr int kMaxDepth = 255;

// XGBoost writes numbers in model parameters as strings ("5E-1", "15").
// Takes the lookup's result, not an element: converting a failed lookup (a
// missing key) to an element throws.
bool NumberOrString(simdjson::simdjson_result<element> field, double* out) {
  element e;
  if (field.get(e) != simdjson::SUCCESS) return false;
  if (e.get_double().get(*out) == simdjson::SUCCESS) return true;
  std::string_view s;
  if (e.get_string().get(s) != simdjson::SUCCESS) return false;
  std::string tmp(s);
  char* end = nullptr;
  *out = std::strtod(tmp.c_str(), &end);
  return end != tmp.c_str() && *end == '\0';
}

// The float XGBoost reads from the number simdjson read as `d`. XGBoost writes
// each float in its shortest decimal form and parses it straight into a
// float; rounding the nearest double instead gives the same float for every
// finite float but +-7.038531E-26 (checked over all 2^32), whose nearest
// double lies exactly halfway between two floats, where rounding to even
// picks the wrong one. So at a halfway point, the float is the neighbour
// whose shortest form reads back as `d`; a halfway number no float prints as
// rounds to even, as a float parser would.
float ToFloat(double d) {
  const float f = static_cast<float>(d);
  if (!std::isfinite(f) || static_cast<double>(f) == d) return f;
  const float other = std::nextafter(f, d > f ? HUGE_VALF : -HUGE_VALF);
  if ((static_cast<double>(f) + static_cast<double>(other)) / 2 != d) return f;  // exact in double
  for (float candidate : {f, other}) {
    char text[32];
    const char* end = std::to_chars(text, text + sizeof text, candidate).ptr;
    double back = 0;
    if (std::from_chars(text, end, back).ptr == end && back == d) return candidate;
  }
  return f;
}

// An array of numbers (or booleans, as older XGBoost wrote default_left).
absl::Status Numbers(object tree, const char* key, size_t tree_no, std::vector<double>* out) {
  array a;
  if (tree[key].get_array().get(a) != simdjson::SUCCESS) {
    return absl::InvalidArgumentError(StrCat("tree ", tree_no, ": '", key, "' is missing or not an array"));
  }
  out->clear();
  for (element v : a) {
    double d;
    bool b;
    if (v.get_double().get(d) == simdjson::SUCCESS) {
      out->push_back(d);
    } else if (v.get_bool().get(b) == simdjson::SUCCESS) {
      out->push_back(b ? 1 : 0);
    } else {
      return absl::InvalidArgumentError(StrCat("tree ", tree_no, ": '", key, "' holds a non-number"));
    }
    if (out->size() > kMaxNodes) {
      return absl::InvalidArgumentError(StrCat("tree ", tree_no, ": '", key, "' is too long"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::shared_ptr<const Forest>> Forest::Load(const std::string& path) {
  VIGIL_ASSIGN_OR_RETURN(std::string text, core::ReadFile(path));
  return FromJson(text, path);
}

absl::StatusOr<std::shared_ptr<const Forest>> Forest::FromJson(std::string_view json, std::string_view name) {
  auto fail = [&](std::string_view why) {
    return absl::InvalidArgumentError(StrCat(name, ": not a model vigil can score: ", why));
  };
  simdjson::dom::parser parser;
  element root;
  if (auto err = parser.parse(simdjson::padded_string(json)).get(root); err) {
    return fail(StrCat("invalid JSON (", simdjson::error_message(err), ")"));
  }
  object learner;
  if (root["learner"].get_object().get(learner)) return fail("no 'learner' object (an XGBoost JSON model has one)");

  auto forest = std::make_shared<Forest>();
  Forest& F = *forest;

  // Parameters.
  object lmp;
  if (learner["learner_model_param"].get_object().get(lmp)) return fail("no learner_model_param");
  double num_feature = 0, base_score = 0.5, num_class = 0, num_target = 1;
  if (!NumberOrString(lmp["num_feature"], &num_feature) || !(num_feature >= 1 && num_feature <= 65535) ||
      num_feature != std::floor(num_feature)) {
    return fail("num_feature must be a whole number within 1..65535");
  }
  F.num_features_ = static_cast<size_t>(num_feature);
  if (!NumberOrString(lmp["base_score"], &base_score) || !std::isfinite(base_score)) {
    return fail("base_score is missing or not a number");
  }
  if (auto e = lmp["num_class"]; e.error() == simdjson::SUCCESS && (!NumberOrString(e, &num_class) || num_class > 1)) {
    return fail("multi-class models are not supported (num_class > 1)");
  }
  if (auto e = lmp["num_target"]; e.error() == simdjson::SUCCESS && (!NumberOrString(e, &num_target) || num_target != 1)) {
    return fail("multi-target models are not supported");
  }
  std::string_view objective;
  if (learner["objective"]["name"].get_string().get(objective)) return fail("no objective name");
  if (objective == "binary:logistic") {
    F.objective_ = Objective::kBinaryLogistic;
  } else if (objective == "reg:logistic") {
    F.objective_ = Objective::kRegLogistic;
  } else if (objective == "reg:squarederror" || objective == "reg:linear") {
    F.objective_ = Objective::kSquaredError;
  } else {
    return fail(StrCat("objective ", objective, " (supported: binary:logistic, reg:logistic, reg:squarederror)"));
  }
  // XGBoost 1.7 keeps base_score as a probability for the logistic
  // objectives and turns it into a margin in float.
  const float p = ToFloat(base_score);
  if (!std::isfinite(p)) return fail("base_score is outside float's range");
  if (F.objective_ == Objective::kSquaredError) {
    F.base_margin_ = p;
  } else {
    if (!(p > 0 && p < 1)) return fail("base_score of a logistic model must lie strictly between 0 and 1");
    F.base_margin_ = -std::log(1.0f / p - 1.0f);
  }
  if (array names; learner["feature_names"].get_array().get(names) == simdjson::SUCCESS) {
    for (element n : names) {
      std::string_view s;
      if (n.get_string().get(s)) return fail("feature_names holds a non-string");
      F.feature_names_.emplace_back(s);
    }
    if (!F.feature_names_.empty() && F.feature_names_.size() != F.num_features_) {
      return fail(StrCat(F.feature_names_.size(), " feature names for num_feature ", F.num_features_));
    }
  }

  object booster;
  if (learner["gradient_booster"].get_object().get(booster)) return fail("no gradient_booster");
  std::string_view booster_name;
  if (booster["name"].get_string().get(booster_name) || booster_name != "gbtree") {
    return fail(StrCat("booster '", booster_name, "' (only gbtree is supported)"));
  }
  array trees;
  if (booster["model"]["trees"].get_array().get(trees)) return fail("no gradient_booster.model.trees array");

  // Trees.
  std::vector<double> left, right, feature, cond, dleft, hess, stype;
  size_t tree_no = 0;
  for (element te : trees) {
    object t;
    if (te.get_object().get(t)) return fail(StrCat("tree ", tree_no, " is not an object"));
    absl::Status s;
    if (!(s = Numbers(t, "left_children", tree_no, &left)).ok() ||
        !(s = Numbers(t, "right_children", tree_no, &right)).ok() ||
        !(s = Numbers(t, "split_indices", tree_no, &feature)).ok() ||
        !(s = Numbers(t, "split_conditions", tree_no, &cond)).ok() ||
        !(s = Numbers(t, "default_left", tree_no, &dleft)).ok() ||
        !(s = Numbers(t, "sum_hessian", tree_no, &hess)).ok()) {
      return fail(std::string(s.message()));
    }
    const size_t n = left.size();
    if (n == 0) return fail(StrCat("tree ", tree_no, " has no nodes"));
    if (right.size() != n || feature.size() != n || cond.size() != n || dleft.size() != n || hess.size() != n) {
      return fail(StrCat("tree ", tree_no, ": its node arrays have different lengths"));
    }
    // Older models have no split_type; one that is there must be read, or a
    // malformed one would hide a categorical split.
    if (t["split_type"].error() != simdjson::NO_SUCH_FIELD) {
      if (!(s = Numbers(t, "split_type", tree_no, &stype)).ok()) return fail(std::string(s.message()));
      if (stype.size() != n) return fail(StrCat("tree ", tree_no, ": its node arrays have different lengths"));
      for (double v : stype) {
        if (v != 0) return fail(StrCat("tree ", tree_no, " has a categorical split (not supported; one-hot encode instead)"));
      }
    }
    if (F.nodes_.size() + n > kMaxNodes) return fail("too many nodes");

    // Breadth-first from the root: every node reached once (a tree, no
    // cycle), children in range, depth bounded.
    const uint32_t base = static_cast<uint32_t>(F.nodes_.size());
    std::vector<int64_t> order{0};  // original indices in BFS order
    std::vector<int32_t> new_index(n, -1), depth_of(n, 0);
    new_index[0] = 0;
    int depth = 0;
    for (size_t k = 0; k < order.size(); ++k) {
      const int64_t i = order[k];
      const double l = left[static_cast<size_t>(i)], r = right[static_cast<size_t>(i)];
      if (l == -1 && r == -1) continue;
      for (double c : {l, r}) {
        if (!(c >= 0 && c < static_cast<double>(n)) || c != std::floor(c)) {
          return fail(StrCat("tree ", tree_no, ": node ", i, " has child ", c, " outside 0..", n - 1));
        }
        const size_t ci = static_cast<size_t>(c);
        if (new_index[ci] >= 0) {
          return fail(StrCat("tree ", tree_no, ": node ", ci, " is reached twice (a cycle or a shared child)"));
        }
        new_index[ci] = static_cast<int32_t>(order.size());
        depth_of[ci] = depth_of[static_cast<size_t>(i)] + 1;
        depth = std::max(depth, depth_of[ci]);
        if (depth > kMaxDepth) return fail(StrCat("tree ", tree_no, " is deeper than ", kMaxDepth));
        order.push_back(static_cast<int64_t>(ci));
      }
    }
    for (size_t k = 0; k < order.size(); ++k) {
      const size_t i = static_cast<size_t>(order[k]);
      Node node{};
      const bool leaf = left[i] == -1;
      // A double beyond float's range is finite here but infinite as a float.
      node.value = ToFloat(cond[i]);
      if (!std::isfinite(node.value)) {
        return fail(StrCat("tree ", tree_no, ": node ", i, " has a value outside float's range"));
      }
      if (!leaf) {
        if (!(feature[i] >= 0 && feature[i] < static_cast<double>(F.num_features_)) || feature[i] != std::floor(feature[i])) {
          return fail(StrCat("tree ", tree_no, ": node ", i, " splits on feature ", feature[i],
                             " but the model has ", F.num_features_));
        }
        // Breadth-first order put the children side by side, left first.
        const size_t l = static_cast<size_t>(new_index[static_cast<size_t>(left[i])]);
        const size_t offset = l - k;
        if (offset > kMaxOffset) {
          return fail(StrCat("tree ", tree_no, " is wider than ", kMaxOffset, " nodes on one level"));
        }
        node.info = static_cast<uint32_t>(feature[i]) | (dleft[i] == 0 ? 1u << 16 : 0u) | (1u << 17) |
                    static_cast<uint32_t>(offset) << 18;
      }
      F.nodes_.push_back(node);
      F.stats_.push_back({std::isfinite(hess[i]) ? hess[i] : 0.0, 0.0});
    }
    // Cover-weighted means, children before parents (reverse BFS order).
    for (size_t k = order.size(); k-- > 0;) {
      const uint32_t at = base + static_cast<uint32_t>(k);
      const Node& node = F.nodes_[at];
      NodeStats& st = F.stats_[at];
      if (node.leaf()) {
        st.mean = node.value;
      } else {
        const NodeStats& l = F.stats_[at + node.offset()];
        const NodeStats& r = F.stats_[at + node.offset() + 1];
        st.mean = st.cover > 0 ? (l.mean * l.cover + r.mean * r.cover) / st.cover : 0.5 * (l.mean + r.mean);
      }
    }
    F.roots_.push_back(base);
    F.depths_.push_back(static_cast<uint8_t>(depth));
    F.max_depth_ = std::max(F.max_depth_, depth);
    ++tree_no;
  }
  // Groups of kGroup trees walk to the deepest of them (MarginAvx2).
  for (size_t t = 0; t + kGroup <= F.roots_.size(); t += kGroup) {
    F.group_depths_.push_back(*std::max_element(F.depths_.begin() + static_cast<std::ptrdiff_t>(t),
                                                F.depths_.begin() + static_cast<std::ptrdiff_t>(t + kGroup)));
  }
  F.avx2_ = __builtin_cpu_supports("avx2") && std::getenv("VIGIL_NO_AVX2") == nullptr;
  return std::shared_ptr<const Forest>(std::move(forest));
}

void Forest::SplitRanges(std::vector<float>* lo, std::vector<float>* hi) const {
  lo->assign(num_features_, std::numeric_limits<float>::infinity());
  hi->assign(num_features_, -std::numeric_limits<float>::infinity());
  for (const Node& n : nodes_) {
    if (n.leaf()) continue;
    (*lo)[n.feature()] = std::min((*lo)[n.feature()], n.value);
    (*hi)[n.feature()] = std::max((*hi)[n.feature()], n.value);
  }
}

// ------------------------------------------------------------------ scoring

namespace {

// The next node from `idx`: x < threshold goes left, NaN the default way;
// a leaf stays where it is.
inline uint32_t Step(const auto& node, uint32_t idx, const float* row) {
  const float x = row[node.feature()];
  const uint32_t dir = std::isnan(x) ? node.default_right() : static_cast<uint32_t>(!(x < node.value));
  return idx + node.offset() + (dir & node.internal());
}

// The same step for 8 walks at once with AVX2 gathers: `idx` holds node
// indices, lane i reads its feature from rowbase[rowoff[i] + feature].
// Bit for bit the scalar Step: x < v is an ordered compare (false for NaN),
// and NaN lanes take the node's default way.
__attribute__((target("avx2"))) inline __m256i Step8(const float* nodes, __m256i idx, const float* rowbase,
                                                     __m256i rowoff) {
  // Each node is one 8-byte load: two gathers of four, then split into the
  // thresholds (low words) and the info words (high words).
  const auto* base = reinterpret_cast<const long long*>(nodes);
  const __m256i g0 = _mm256_i32gather_epi64(base, _mm256_castsi256_si128(idx), 8);
  const __m256i g1 = _mm256_i32gather_epi64(base, _mm256_extracti128_si256(idx, 1), 8);
  const __m256i split = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
  const __m256i p0 = _mm256_permutevar8x32_epi32(g0, split);
  const __m256i p1 = _mm256_permutevar8x32_epi32(g1, split);
  const __m256 v = _mm256_castsi256_ps(_mm256_permute2x128_si256(p0, p1, 0x20));
  const __m256i info = _mm256_permute2x128_si256(p0, p1, 0x31);
  const __m256i one = _mm256_set1_epi32(1);
  const __m256i feature = _mm256_and_si256(info, _mm256_set1_epi32(0xffff));
  const __m256 x = _mm256_i32gather_ps(rowbase, _mm256_add_epi32(rowoff, feature), 4);
  const __m256i lt = _mm256_castps_si256(_mm256_cmp_ps(x, v, _CMP_LT_OQ));
  const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q));
  __m256i dir = _mm256_andnot_si256(lt, one);
  dir = _mm256_blendv_epi8(dir, _mm256_and_si256(_mm256_srli_epi32(info, 16), one), nan);
  dir = _mm256_and_si256(dir, _mm256_srli_epi32(info, 17));  // leaves stay (internal bit)
  return _mm256_add_epi32(_mm256_add_epi32(idx, _mm256_srli_epi32(info, 18)), dir);
}

}  // namespace

// Trees t..t+kGroup-1 for one row, together (16 walks in two vectors of
// gathers, 16 by scalar code, in one loop: they use different parts of the
// core), to the deepest of them: a leaf stays where it is. The leaves go to
// leaf[k] and, with kRecord, every step to path[d][k] (tree t + k's node
// after d steps; path[0] are the roots).
template <bool kRecord>
__attribute__((target("avx2"))) inline void Forest::WalkGroupAvx2(size_t t, const float* row, uint32_t* leaf,
                                                                  uint32_t (*path)[kGroup]) const noexcept {
  const float* nodes = reinterpret_cast<const float*>(nodes_.data());
  const __m256i zero = _mm256_setzero_si256();
  __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(roots_.data() + t));
  __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(roots_.data() + t + 8));
  uint32_t b[16];
  for (int k = 0; k < 16; ++k) b[k] = roots_[t + 16 + static_cast<size_t>(k)];
  if constexpr (kRecord) {
    std::copy(roots_.begin() + static_cast<std::ptrdiff_t>(t),
              roots_.begin() + static_cast<std::ptrdiff_t>(t + kGroup), path[0]);
  }
  const int depth = group_depths_[t / kGroup];
  for (int d = 0; d < depth; ++d) {
    a = Step8(nodes, a, row, zero);
    c = Step8(nodes, c, row, zero);
    for (int k = 0; k < 16; ++k) b[k] = Step(nodes_[b[k]], b[k], row);
    if constexpr (kRecord) {
      _mm256_store_si256(reinterpret_cast<__m256i*>(path[d + 1]), a);
      _mm256_store_si256(reinterpret_cast<__m256i*>(path[d + 1] + 8), c);
      std::copy(b, b + 16, path[d + 1] + 16);
    }
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(leaf), a);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(leaf + 8), c);
  std::copy(b, b + 16, leaf + 16);
}

// One row, kGroup trees at a time; leaves added to the margin one by one in
// tree order.
__attribute__((target("avx2"))) float Forest::MarginAvx2(const float* row) const noexcept {
  float margin = base_margin_;
  const size_t n = roots_.size();
  size_t t = 0;
  for (; t + kGroup <= n; t += kGroup) {
    uint32_t leaf[kGroup];
    WalkGroupAvx2<false>(t, row, leaf, nullptr);
    for (size_t k = 0; k < kGroup; ++k) margin += nodes_[leaf[k]].value;  // tree order
  }
  for (; t < n; ++t) {
    uint32_t idx = roots_[t];
    for (int d = 0; d < depths_[t]; ++d) idx = Step(nodes_[idx], idx, row);
    margin += nodes_[idx].value;
  }
  return margin;
}

// Blocks of kVectors × 8 rows walked with gathers plus kScalar rows walked
// by scalar code in the same loop, each tree in turn: the gathers and the
// scalar loads use different parts of the core, so they overlap.
__attribute__((target("avx2"))) size_t Forest::MarginBatchAvx2(const float* rows, size_t n,
                                                               float* out) const noexcept {
  constexpr int kVectors = 2;
  constexpr size_t kScalar = 16;
  constexpr size_t kRows = 8 * kVectors + kScalar;
  const float* nodes = reinterpret_cast<const float*>(nodes_.data());
  const int stride = static_cast<int>(num_features_);
  const __m256i lanes = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(stride));
  __m256i off[kVectors];
  for (int v = 0; v < kVectors; ++v) off[v] = _mm256_add_epi32(lanes, _mm256_set1_epi32(8 * v * stride));
  size_t start = 0;
  for (; start + kRows <= n; start += kRows) {
    const float* block = rows + start * num_features_;
    const float* tail = block + 8 * kVectors * num_features_;
    __m256 acc[kVectors];
    float sacc[kScalar];
    for (int v = 0; v < kVectors; ++v) acc[v] = _mm256_set1_ps(base_margin_);
    for (size_t r = 0; r < kScalar; ++r) sacc[r] = base_margin_;
    for (size_t t = 0; t < roots_.size(); ++t) {
      __m256i idx[kVectors];
      uint32_t sidx[kScalar];
      for (int v = 0; v < kVectors; ++v) idx[v] = _mm256_set1_epi32(static_cast<int>(roots_[t]));
      for (size_t r = 0; r < kScalar; ++r) sidx[r] = roots_[t];
      for (int d = 0; d < depths_[t]; ++d) {
        for (int v = 0; v < kVectors; ++v) idx[v] = Step8(nodes, idx[v], block, off[v]);
        for (size_t r = 0; r < kScalar; ++r) sidx[r] = Step(nodes_[sidx[r]], sidx[r], tail + r * num_features_);
      }
      for (int v = 0; v < kVectors; ++v) {
        acc[v] = _mm256_add_ps(acc[v], _mm256_i32gather_ps(nodes, _mm256_slli_epi32(idx[v], 1), 4));
      }
      for (size_t r = 0; r < kScalar; ++r) sacc[r] += nodes_[sidx[r]].value;
    }
    for (int v = 0; v < kVectors; ++v) _mm256_storeu_ps(out + start + 8 * static_cast<size_t>(v), acc[v]);
    for (size_t r = 0; r < kScalar; ++r) out[start + 8 * kVectors + r] = sacc[r];
  }
  return start;
}

template <int kTrees>
float Forest::MarginInterleaved(const float* row) const noexcept {
  float margin = base_margin_;
  const size_t n = roots_.size();
  size_t t = 0;
  for (; t + kTrees <= n; t += kTrees) {
    uint32_t idx[kTrees];
    int depth = 0;
    for (int k = 0; k < kTrees; ++k) {
      idx[k] = roots_[t + static_cast<size_t>(k)];
      depth = std::max(depth, static_cast<int>(depths_[t + static_cast<size_t>(k)]));
    }
    for (int d = 0; d < depth; ++d) {
      for (int k = 0; k < kTrees; ++k) idx[k] = Step(nodes_[idx[k]], idx[k], row);
    }
    for (int k = 0; k < kTrees; ++k) margin += nodes_[idx[k]].value;  // tree order
  }
  for (; t < n; ++t) {
    uint32_t idx = roots_[t];
    for (int d = 0; d < depths_[t]; ++d) idx = Step(nodes_[idx], idx, row);
    margin += nodes_[idx].value;
  }
  return margin;
}

float Forest::Margin(const float* row) const noexcept {
  return avx2_ ? MarginAvx2(row) : MarginInterleaved<16>(row);
}

float Forest::Transform(float margin) const noexcept {
  if (objective_ == Objective::kSquaredError) return margin;
  return 1.0f / (1.0f + std::exp(-margin));
}

void Forest::MarginBatch(const float* rows, size_t n, float* out) const noexcept {
  constexpr size_t kBlock = 32;
  const size_t stride = num_features_;
  // Whole blocks with AVX2 where the lane offsets fit an int; the rest here.
  const size_t first = avx2_ && stride * 64 < (size_t{1} << 30) ? MarginBatchAvx2(rows, n, out) : 0;
  for (size_t start = first; start < n; start += kBlock) {
    const size_t m = std::min(kBlock, n - start);
    float acc[kBlock];
    for (size_t r = 0; r < m; ++r) acc[r] = base_margin_;
    const float* block = rows + start * stride;
    for (size_t t = 0; t < roots_.size(); ++t) {
      uint32_t idx[kBlock];
      for (size_t r = 0; r < m; ++r) idx[r] = roots_[t];
      for (int d = 0; d < depths_[t]; ++d) {
        for (size_t r = 0; r < m; ++r) idx[r] = Step(nodes_[idx[r]], idx[r], block + r * stride);
      }
      for (size_t r = 0; r < m; ++r) acc[r] += nodes_[idx[r]].value;
    }
    for (size_t r = 0; r < m; ++r) out[start + r] = acc[r];
  }
}

// ------------------------------------------------------------------ reasons

inline uint32_t Forest::TreePathContributions(size_t tree, const float* row, float* contrib,
                                       double* bias) const noexcept {
  uint32_t idx = roots_[tree];
  double value = stats_[idx].mean;
  *bias += value;
  while (!nodes_[idx].leaf()) {
    const uint32_t f = nodes_[idx].feature();
    idx = Step(nodes_[idx], idx, row);
    const double next = stats_[idx].mean;
    contrib[f] += static_cast<float>(next - value);
    value = next;
  }
  return idx;
}

// MarginAvx2's walk with every step recorded (WalkGroupAvx2). Then the
// margin adds the leaves and the contributions follow each path, in
// PathContributions' order (trees in order, each from the root down), so
// both are bit-identical.
__attribute__((target("avx2"))) float Forest::MarginAndPathContributionsAvx2(const float* row,
                                                                            float* contrib) const noexcept {
  std::fill(contrib, contrib + num_features_ + 1, 0.0f);
  float margin = base_margin_;
  double bias = base_margin_;
  const size_t n = roots_.size();
  size_t t = 0;
  alignas(32) uint32_t path[kMaxRecordedDepth + 1][kGroup];
  for (; t + kGroup <= n; t += kGroup) {
    uint32_t leaf[kGroup];
    WalkGroupAvx2<true>(t, row, leaf, path);
    for (size_t k = 0; k < kGroup; ++k) margin += nodes_[leaf[k]].value;  // tree order
    for (size_t k = 0; k < kGroup; ++k) {
      uint32_t idx = path[0][k];
      double value = stats_[idx].mean;
      bias += value;
      for (int d = 1; !nodes_[idx].leaf(); ++d) {
        const uint32_t f = nodes_[idx].feature();
        idx = path[d][k];
        const double next = stats_[idx].mean;
        contrib[f] += static_cast<float>(next - value);
        value = next;
      }
    }
  }
  for (; t < n; ++t) margin += nodes_[TreePathContributions(t, row, contrib, &bias)].value;
  contrib[num_features_] = static_cast<float>(bias);
  return margin;
}

float Forest::MarginAndPathContributions(const float* row, float* contrib) const noexcept {
  if (avx2_ && max_depth_ <= kMaxRecordedDepth) return MarginAndPathContributionsAvx2(row, contrib);
  PathContributions(row, contrib);
  return Margin(row);
}

void Forest::PathContributions(const float* row, float* contrib) const noexcept {
  std::fill(contrib, contrib + num_features_ + 1, 0.0f);
  double bias = base_margin_;
  for (size_t t = 0; t < roots_.size(); ++t) TreePathContributions(t, row, contrib, &bias);
  contrib[num_features_] = static_cast<float>(bias);
}

// TreeSHAP (Lundberg, Erion and Lee 2018, algorithm 2), path-dependent, as
// XGBoost's RegTree::TreeShap computes pred_contribs.
struct ShapPath {
  int feature;
  double zero_fraction, one_fraction, pweight;
};

namespace {

void ExtendPath(ShapPath* path, unsigned depth, double zero, double one, int feature) {
  path[depth] = {feature, zero, one, depth == 0 ? 1.0 : 0.0};
  for (int i = static_cast<int>(depth) - 1; i >= 0; --i) {
    path[i + 1].pweight += one * path[i].pweight * (i + 1) / static_cast<double>(depth + 1);
    path[i].pweight = zero * path[i].pweight * (depth - i) / static_cast<double>(depth + 1);
  }
}

void UnwindPath(ShapPath* path, unsigned depth, unsigned index) {
  const double one = path[index].one_fraction, zero = path[index].zero_fraction;
  double next = path[depth].pweight;
  for (int i = static_cast<int>(depth) - 1; i >= 0; --i) {
    if (one != 0) {
      const double tmp = path[i].pweight;
      path[i].pweight = next * (depth + 1) / ((i + 1) * one);
      next = tmp - path[i].pweight * zero * (depth - i) / static_cast<double>(depth + 1);
    } else {
      path[i].pweight = path[i].pweight * (depth + 1) / (zero * (depth - i));
    }
  }
  for (unsigned i = index; i < depth; ++i) {
    path[i].feature = path[i + 1].feature;
    path[i].zero_fraction = path[i + 1].zero_fraction;
    path[i].one_fraction = path[i + 1].one_fraction;
  }
}

double UnwoundPathSum(const ShapPath* path, unsigned depth, unsigned index) {
  const double one = path[index].one_fraction, zero = path[index].zero_fraction;
  double next = path[depth].pweight, total = 0;
  for (int i = static_cast<int>(depth) - 1; i >= 0; --i) {
    if (one != 0) {
      const double tmp = next * (depth + 1) / ((i + 1) * one);
      total += tmp;
      next = path[i].pweight - tmp * zero * ((depth - i) / static_cast<double>(depth + 1));
    } else if (zero != 0) {
      total += (path[i].pweight / zero) / ((depth - i) / static_cast<double>(depth + 1));
    }
  }
  return total;
}

}  // namespace

void Forest::ShapContributions(const float* row, double* contrib) const {
  std::fill(contrib, contrib + num_features_ + 1, 0.0);
  const int maxd = max_depth_ + 2;
  std::vector<ShapPath> scratch(static_cast<size_t>(maxd * (maxd + 1)) / 2 + 1);
  double bias = base_margin_;
  for (size_t t = 0; t < roots_.size(); ++t) bias += ShapTree(t, row, contrib, scratch.data());
  contrib[num_features_] += bias;
}

double Forest::ShapTree(size_t tree, const float* row, double* phi, ShapPath* scratch) const {
  // Recursion over nodes, as XGBoost's; the depth is bounded at load.
  struct Walker {
    const Forest& f;
    const float* row;
    double* phi;
    void Go(uint32_t node, unsigned depth, ShapPath* parent_path, double parent_zero, double parent_one,
            int parent_feature) {
      ShapPath* path = parent_path + depth + 1;
      std::copy(parent_path, parent_path + depth + 1, path);
      ExtendPath(path, depth, parent_zero, parent_one, parent_feature);
      const Node& n = f.nodes_[node];
      if (n.leaf()) {
        for (unsigned i = 1; i <= depth; ++i) {
          const double w = UnwoundPathSum(path, depth, i);
          phi[path[i].feature] += w * (path[i].one_fraction - path[i].zero_fraction) * n.value;
        }
        return;
      }
      const uint32_t hot = Step(n, node, row);
      const uint32_t left = node + n.offset();
      const uint32_t cold = hot == left ? left + 1 : left;
      const double w = f.stats_[node].cover;
      const double hot_zero = f.stats_[hot].cover / w;
      const double cold_zero = f.stats_[cold].cover / w;
      double incoming_zero = 1, incoming_one = 1;
      unsigned index = 0;
      for (; index <= depth; ++index) {
        if (path[index].feature == static_cast<int>(n.feature())) break;
      }
      if (index != depth + 1) {
        incoming_zero = path[index].zero_fraction;
        incoming_one = path[index].one_fraction;
        UnwindPath(path, depth, index);
        depth -= 1;
      }
      Go(hot, depth + 1, path, hot_zero * incoming_zero, incoming_one, static_cast<int>(n.feature()));
      Go(cold, depth + 1, path, cold_zero * incoming_zero, 0, static_cast<int>(n.feature()));
    }
  };
  Walker walker{*this, row, phi};
  const uint32_t root = roots_[tree];
  walker.Go(root, 0, scratch, 1, 1, -1);
  return stats_[root].mean;
}

}  // namespace vigil::model
