#include "policy/experiment.h"

#include <cmath>
#include <utility>

#include "core/hash.h"
#include "core/strings.h"

namespace vigil::policy {

namespace {

// Domain constants: with one salt for both, an arm draw and a holdout draw
// of the same 64-bit key are still unrelated.
constexpr uint64_t kArmDomain = 0x61726d5f61737369ull;      // "arm_assi"
constexpr uint64_t kHoldoutDomain = 0x686f6c646f75745full;  // "holdout_"

// Two rounds of mixing: the key may be a well-spread hash (an id's Hash64)
// or, from a careless caller, a small sequential number.
inline uint64_t Draw(uint64_t key, uint64_t salt, uint64_t domain) noexcept {
  return core::HashCombine(core::HashInt(key, salt ^ domain), domain);
}

// floor(p * 2^64) for p in [0, 1), exactly for the double p.
inline uint64_t Bound(double p) noexcept {
  if (!(p > 0)) return 0;
  return static_cast<uint64_t>(std::ldexp(p, 64));
}

}  // namespace

absl::StatusOr<ArmAssigner> ArmAssigner::Create(std::vector<Arm> arms, uint64_t salt) {
  if (arms.empty()) return absl::InvalidArgumentError("an A/B split needs at least one arm");
  double sum = 0;
  int last = -1;
  for (size_t i = 0; i < arms.size(); ++i) {
    const Arm& a = arms[i];
    if (a.name.empty()) return absl::InvalidArgumentError(StrCat("arm ", i, " has no name"));
    for (size_t j = 0; j < i; ++j) {
      if (arms[j].name == a.name) {
        return absl::InvalidArgumentError(StrCat("two arms named '", a.name, "'"));
      }
    }
    if (!(a.share >= 0 && a.share <= 1)) {
      return absl::InvalidArgumentError(
          StrCat("arm '", a.name, "': share ", a.share, " is not in [0, 1]"));
    }
    if (a.share > 0) last = static_cast<int>(i);
    sum += a.share;
  }
  if (std::fabs(sum - 1) > 1e-9) {
    std::string shares;
    for (const Arm& a : arms) StrAppend(&shares, shares.empty() ? "" : " + ", a.name, " ", a.share);
    return absl::InvalidArgumentError(
        StrCat("the shares of an A/B split sum to 1, but ", shares, " = ", sum));
  }
  std::vector<uint64_t> upper(arms.size());
  double cum = 0;
  for (size_t i = 0; i < arms.size(); ++i) {
    cum += arms[i].share;
    upper[i] = cum >= 1 ? UINT64_MAX : Bound(cum);
  }
  return ArmAssigner(std::move(arms), std::move(upper), last, salt);
}

int ArmAssigner::Assign(uint64_t unit_hash) const noexcept {
  const uint64_t h = Draw(unit_hash, salt_, kArmDomain);
  // A handful of arms: a linear scan beats a binary search.
  for (int i = 0; i < last_; ++i) {
    if (h < upper_[static_cast<size_t>(i)]) return i;
  }
  return last_;
}

Holdout::Holdout(double share, uint64_t salt) : salt_(salt) {
  share_ = share >= 0 ? (share <= 1 ? share : 1.0) : 0.0;  // NaN -> 0
  all_ = share_ >= 1;
  bound_ = all_ ? UINT64_MAX : Bound(share_);
}

absl::StatusOr<Holdout> Holdout::Create(double share, uint64_t salt) {
  if (!(share >= 0 && share <= 1)) {
    return absl::InvalidArgumentError(StrCat("holdout: share ", share, " is not in [0, 1]"));
  }
  return Holdout(share, salt);
}

bool Holdout::LetThrough(uint64_t event_id_hash) const noexcept {
  if (all_) return true;
  return Draw(event_id_hash, salt_, kHoldoutDomain) < bound_;
}

double Holdout::Apply(Outcome* o, uint64_t event_id_hash) const noexcept {
  if (o->action != Action::kBlock || o->decided_by != "threshold") return 1.0;
  if (LetThrough(event_id_hash)) {
    o->action = Action::kAllow;
    o->held_out = true;
    return share_;
  }
  return 1.0 - share_;
}

}  // namespace vigil::policy
