// Experiments around the decision (docs/policy.md, "Experiments"):
//
//  - ArmAssigner: A/B arms by a stable hash of a unit (the user), with
//    configured shares. The same user gets the same arm in every process,
//    on every machine and after every restart (core/hash.h), so a user sees
//    one model for the whole experiment. The propensity of a decision's arm
//    is that arm's share.
//  - Holdout: a small share of would-be-blocked events let through, marked,
//    so that the precision of blocks can be measured later without the bias
//    of only ever seeing the labels of allowed events. Drawn from the event
//    id's hash: a replay or a client's retry of the same event gets the same
//    answer.
//
// Challengers scored in shadow need no mechanism here: they score the same
// feature vector and Policy::DecideShadow turns their score into a logged
// decision that is never acted on.
//
// Both hash their key with a salt (vigil.yaml's experiment_salt) and a
// constant of their own, so that arm and holdout draws are independent of
// each other and a new salt reshuffles every assignment.
//
// Thread-safety: immutable after construction; every const method may be
// called from any number of threads.
#ifndef VIGIL_POLICY_EXPERIMENT_H_
#define VIGIL_POLICY_EXPERIMENT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "policy/policy.h"

namespace vigil::policy {

// One arm of an A/B split: a name (the model's, as decisions report it) and
// the share of units it gets.
struct Arm {
  std::string name;
  double share = 0;
};

class ArmAssigner {
 public:
  // Arms in order; units are laid out over [0, 1) by cumulative share, so
  // changing one arm's share moves only the units between the old and the
  // new boundaries (and those of the arms after it). Fails with
  // InvalidArgument when there is no arm, a name is empty or repeated, a
  // share is outside [0, 1], or the shares do not sum to 1 (within 1e-9).
  static absl::StatusOr<ArmAssigner> Create(std::vector<Arm> arms, uint64_t salt);

  // The arm of the unit whose key hashes to `unit_hash` (core::Hash64 of
  // the user id, as event::Value::hash carries it). Never an arm of share 0.
  // Hot path: no allocation, no lock.
  int Assign(uint64_t unit_hash) const noexcept;

  // The arm's share: the propensity of a decision made in it.
  // REQUIRES: 0 <= arm < size().
  double share(int arm) const { return arms_[static_cast<size_t>(arm)].share; }
  const std::string& name(int arm) const { return arms_[static_cast<size_t>(arm)].name; }
  size_t size() const { return arms_.size(); }

 private:
  ArmAssigner(std::vector<Arm> arms, std::vector<uint64_t> upper, int last, uint64_t salt)
      : arms_(std::move(arms)), upper_(std::move(upper)), last_(last), salt_(salt) {}

  std::vector<Arm> arms_;
  // Arm i takes the mixed hashes below upper_[i] (and at or above upper_[i-1]).
  std::vector<uint64_t> upper_;
  int last_ = 0;  // the last arm with a share above 0: takes what rounding leaves
  uint64_t salt_ = 0;
};

class Holdout {
 public:
  // A holdout of `share` of would-be blocks. A share outside [0, 1] is
  // clamped into it (NaN: 0); Create checks instead.
  explicit Holdout(double share, uint64_t salt);
  // Fails with InvalidArgument for a share outside [0, 1].
  static absl::StatusOr<Holdout> Create(double share, uint64_t salt);

  // Whether the event whose id hashes to `event_id_hash` (Record::id_hash)
  // is let through: true for a fraction `share` of ids, always the same
  // answer for the same id and salt. Hot path.
  bool LetThrough(uint64_t event_id_hash) const noexcept;

  // Applies the holdout to a decision: when the model's thresholds decided
  // block (decided_by "threshold") and LetThrough says so, the action
  // becomes allow and `held_out` is set. Blocks by a rule (deny lists, hard
  // rules) and by a fail-closed type are never let through: they are not
  // the model's, whose precision the holdout measures.
  // Returns the propensity of the action now in `o` given what the policy
  // decided: `share` for a held-out event, 1 - share for a threshold block
  // kept, 1 otherwise. Hot path.
  double Apply(Outcome* o, uint64_t event_id_hash) const noexcept;

  double share() const { return share_; }

 private:
  double share_ = 0;
  uint64_t bound_ = 0;  // mixed hashes below it are let through
  bool all_ = false;    // share 1: every one (no uint64 bound holds 2^64)
  uint64_t salt_ = 0;
};

}  // namespace vigil::policy

#endif  // VIGIL_POLICY_EXPERIMENT_H_
