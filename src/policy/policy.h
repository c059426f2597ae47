// A decision policy (policy.yaml, docs/policy.md): per scored event type,
// the model's score thresholds and rules written in the expression language
// (docs/expressions.md) over the event and its features, turned into one
// action: allow < challenge < review < block.
//
// Precedence, for one event:
//   1. a block rule fired            -> block  (the first such rule decides)
//   2. else an allow rule fired      -> allow  (overrides the model and the
//                                               review/challenge rules, never
//                                               a block rule)
//   3. else the most severe of the fired review/challenge rules and the
//      model's action: the first threshold the score meets, or, when the
//      model is configured but unavailable, allow (on_model_unavailable:
//      open) or closed_action (closed). Nothing fired, nothing met: allow.
// Every fired rule is listed in the Outcome, whether it decided or not;
// `shadow: true` rules are listed and counted but never decide.
//
// Ownership: Load returns an immutable Policy behind a shared_ptr; a server
// publishes it by swapping the pointer and a request keeps its copy, so a
// reload never pulls a policy from under a decision. Rules hold the lists and
// tables of the feature spec by reference count (expr/expr.h). Views an
// Outcome returns (decided_by) stay valid while the Policy lives.
//
// Thread-safety: immutable after Load except the per-rule hit counters,
// which are relaxed atomics. Decide may run on any number of threads.
#ifndef VIGIL_POLICY_POLICY_H_
#define VIGIL_POLICY_POLICY_H_

#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "event/record.h"
#include "expr/expr.h"
#include "feature/spec.h"

namespace vigil::policy {

// Actions, in increasing severity: a comparison of two actions compares
// their severity.
enum class Action : uint8_t { kAllow, kChallenge, kReview, kBlock };

// "allow", "challenge", "review", "block".
const char* ActionName(Action a);
// The action called `s` (exact, lower case), or nullopt.
std::optional<Action> ParseAction(std::string_view s);

// How the model stood for a decision (what decided is Outcome::decided_by).
//   kModel:      a model score was available (rules may also have fired, and
//                may have decided);
//   kRulesOnly:  the event type has no model configured;
//   kFailOpen / kFailClosed: a model is configured but gave no score
//                (missing, broken, timed out), handled as the type's
//                on_model_unavailable says.
enum class Path : uint8_t { kModel, kRulesOnly, kFailOpen, kFailClosed };

// "model", "rules_only", "fail_open", "fail_closed".
const char* PathName(Path p);

// A rule that fired: an index into Policy::rules_of(event type).
struct FiredRule {
  int rule = 0;
};

// What Decide returns. Fixed size: building one allocates nothing.
struct Outcome {
  static constexpr int kMaxListed = 32;

  Action action = Action::kAllow;
  Path path = Path::kModel;
  // What decided: "rule:<name>", "threshold", "on_model_unavailable" (the
  // closed_action of a fail-closed type) or "default" (nothing fired and no
  // threshold was met). A view into the Policy (or a literal): valid while
  // the Policy lives.
  std::string_view decided_by = "default";
  // The deciding rule's index into rules_of(type), or -1 when no rule decided.
  int decided_rule = -1;
  // What the thresholds alone say for the score (kAllow without a score or
  // below every threshold), and the score_at_least met (NaN if none): logged
  // so that an override by a rule can be seen.
  Action model_action = Action::kAllow;
  double threshold = std::nan("");
  // Every rule that fired, in file order, shadow rules included. num_fired
  // counts them all; only the first kMaxListed are listed (num_listed()).
  std::array<FiredRule, kMaxListed> fired;
  int num_fired = 0;
  // Set by Holdout::Apply: the model would have blocked this event, and the
  // random holdout let it through (action is then kAllow).
  bool held_out = false;

  int num_listed() const { return num_fired < kMaxListed ? num_fired : kMaxListed; }
};

// A rule as written, for decision logs, /metrics labels and the admin API.
struct RuleInfo {
  std::string name;
  Action action = Action::kAllow;
  std::string reason;   // "" when none was given
  std::string when;     // the expression's text
  bool shadow = false;  // evaluated, listed and counted; never decides
  std::string where;    // file:line:col of the rule
};

class Policy {
 public:
  // Loads the policy file at `path` for the events and features of `spec`.
  // Fails with NotFound for an unreadable file and InvalidArgument
  // "file:line:col: ..." for anything wrong in it: an unknown key, an event
  // type the schema does not have or the spec does not score, a bad action,
  // a threshold outside [0, 1] or out of order, a missing
  // on_model_unavailable, a duplicate rule name, a rule that does not
  // compile (unknown field, feature, list; expr's message with its hint),
  // is not true/false, or reads a field its event types never carry, a
  // label or the simulator's ground truth.
  // REQUIRES: `spec` is not null.
  static absl::StatusOr<std::shared_ptr<const Policy>> Load(
      const std::string& path, std::shared_ptr<const feature::FeatureSpec> spec);
  // As Load, from text; `name` stands for the file in messages.
  static absl::StatusOr<std::shared_ptr<const Policy>> LoadString(
      std::string_view yaml, std::string_view name,
      std::shared_ptr<const feature::FeatureSpec> spec);

  Policy(const Policy&) = delete;
  Policy& operator=(const Policy&) = delete;
  ~Policy();

  // The decision for `rec`. `score` is the champion model's probability;
  // NaN (or anything outside [0, 1]) means no score. `model_configured`: a
  // model is configured for this event type, so that no score means it is
  // unavailable (fail open or closed) rather than absent (rules only).
  // Counts a hit for every fired rule. A record of a type the policy does
  // not cover (or without a type) gets allow, decided_by "default".
  // REQUIRES: `features` holds the spec's features.size() values in spec
  // order (NaN = missing); `rec` was decoded against the spec's schema.
  // Hot path: no allocation, no lock.
  Outcome Decide(const event::Record& rec, const double* features, double score,
                 bool model_configured) const noexcept;
  // Decide without counting hits: for challengers scored in shadow, whose
  // decisions are logged but never acted on, and for replays.
  // Hot path: no allocation, no lock.
  Outcome DecideShadow(const event::Record& rec, const double* features, double score,
                       bool model_configured) const noexcept;

  // The rules that apply to an event type (its own section, or `default`),
  // in file order; empty for a type the policy does not cover.
  const std::vector<RuleInfo>& rules_of(int event_type) const;
  // Times rule `rule` of `event_type` fired since Load (shadow decisions not
  // counted); 0 for indices out of range. Per event type even where types
  // share the `default` section. A reload starts again from zero.
  int64_t hits(int event_type, int rule) const;
  // Whether the policy has a section (its own or `default`) for the type.
  bool covers(int event_type) const;
  // Whether that section maps the model's score to actions (thresholds:).
  bool has_thresholds(int event_type) const;
  // SHA-256 (hex) of what the policy says (ConfigNode::CanonicalText) and
  // the lists it loads, for reload and version reporting.
  const std::string& content_hash() const { return content_hash_; }
  // The policy's `name:` ("" if none) and file.
  const std::string& name() const { return name_; }
  const std::string& file() const { return file_; }
  const feature::FeatureSpec& spec() const { return *spec_; }

 private:
  struct Threshold {
    double at_least = 0;
    Action action = Action::kAllow;
  };
  // One `event_types.<type>` entry or `default`.
  struct Section {
    std::string name;
    std::vector<Threshold> thresholds;  // highest at_least first
    bool fail_closed = false;
    Action closed_action = Action::kReview;
    std::vector<RuleInfo> rules;
    std::vector<expr::Expr> when;         // [rule]
    std::vector<std::string> decided_by;  // [rule]: "rule:<name>"
  };
  // A hit counter on its own cache line: rules hit from many threads at once.
  struct alignas(64) Counter {
    std::atomic<int64_t> n{0};
  };
  class Loader;

  Policy() = default;
  Outcome Run(const event::Record& rec, const double* features, double score, bool model_configured,
              bool count) const noexcept;
  const Section* SectionOf(int event_type) const noexcept;

  std::string name_;
  std::string file_;
  std::string content_hash_;
  std::shared_ptr<const feature::FeatureSpec> spec_;
  std::vector<Section> sections_;
  std::vector<int> section_of_type_;  // [event type] -> sections_ index, -1 none
  std::vector<size_t> counter_base_;  // [event type] -> first counter
  std::unique_ptr<Counter[]> counters_;
};

}  // namespace vigil::policy

#endif  // VIGIL_POLICY_POLICY_H_
