#include "policy/policy.h"

#include <algorithm>
#include <utility>

#include "core/config.h"
#include "core/file.h"
#include "core/strings.h"
#include "event/pii.h"

namespace vigil::policy {

using core::ConfigNode;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

constexpr std::string_view kDefault = "default";
constexpr std::string_view kThreshold = "threshold";
constexpr std::string_view kModelUnavailable = "on_model_unavailable";

bool IsRuleName(std::string_view s) {
  if (s.empty() || (s[0] >= '0' && s[0] <= '9')) return false;
  for (char c : s) {
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    if (!ok) return false;
  }
  return true;
}

std::string JoinNames(const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) StrAppend(&out, i ? ", " : "", names[i]);
  return out;
}

}  // namespace

const char* ActionName(Action a) {
  switch (a) {
    case Action::kAllow:
      return "allow";
    case Action::kChallenge:
      return "challenge";
    case Action::kReview:
      return "review";
    case Action::kBlock:
      return "block";
  }
  return "?";
}

std::optional<Action> ParseAction(std::string_view s) {
  if (s == "allow") return Action::kAllow;
  if (s == "challenge") return Action::kChallenge;
  if (s == "review") return Action::kReview;
  if (s == "block") return Action::kBlock;
  return std::nullopt;
}

const char* PathName(Path p) {
  switch (p) {
    case Path::kModel:
      return "model";
    case Path::kRulesOnly:
      return "rules_only";
    case Path::kFailOpen:
      return "fail_open";
    case Path::kFailClosed:
      return "fail_closed";
  }
  return "?";
}

// Reads and checks a policy document into a Policy.
class Policy::Loader {
 public:
  Loader(std::shared_ptr<const feature::FeatureSpec> spec, Policy* p)
      : spec_(std::move(spec)), p_(p) {}

  // What the lists of the policy's own `lists:` hold, name and sorted
  // entries each, for its version: a deny-list edit is another policy.
  const std::string& list_entries() const { return list_entries_; }

  // The lists rules read: the feature spec's, and the policy's own (read
  // again at every load, so a reload takes a list's edits; not in the
  // spec's hash, so an edit needs no retraining).
  absl::Status LoadLists(const ConfigNode& node) {
    if (spec_->lists) lists_ = *spec_->lists;
    if (!node.IsDefined() || node.IsNull()) return absl::OkStatus();
    VIGIL_ASSIGN_OR_RETURN(expr::Lists own, expr::Lists::Load(node));
    for (const auto& [name, value] : node.Entries()) {
      if (spec_->lists && spec_->lists->Find(name)) {
        return value.Error(StrCat("list '", name, "' is a list of the feature spec (", spec_->file,
                                  ") already; give the policy's another name"));
      }
      // What the rules will read (not the file again, which may have
      // changed since): its entries, sorted.
      const std::shared_ptr<const StringSet> set = own.Find(name);
      std::vector<std::string_view> entries(set->begin(), set->end());
      std::sort(entries.begin(), entries.end());
      StrAppend(&list_entries_, name, "\n", entries.size(), "\n");
      for (std::string_view e : entries) StrAppend(&list_entries_, e, "\n");
    }
    return lists_.Merge(own);
  }

  absl::Status Run(const ConfigNode& root) {
    const event::Schema& schema = *spec_->schema;
    if (!root.IsMap()) {
      return root.Error("a policy is a map with `event_types:` (and optionally `default:`)");
    }
    VIGIL_RETURN_IF_ERROR(
        root.CheckKeys({"version", "name", "description", "lists", "event_types", "default"}));
    VIGIL_ASSIGN_OR_RETURN(int64_t version, root.GetInt("version", 1));
    if (version != 1) return root["version"].Error("this vigil reads policy version 1");
    VIGIL_ASSIGN_OR_RETURN(p_->name_, root.GetString("name", ""));
    VIGIL_RETURN_IF_ERROR(root.GetString("description", "").status());
    VIGIL_RETURN_IF_ERROR(LoadLists(root["lists"]));

    const ConfigNode types = root["event_types"];
    const ConfigNode def = root["default"];
    const bool has_types = types.IsDefined() && !types.IsNull();
    const bool has_default = def.IsDefined() && !def.IsNull();
    if (!has_types && !has_default) {
      return root.Error(
          "a policy needs `event_types:` (a section per scored event type) or `default:`");
    }
    if (has_types && types.IsMap() && types.size() == 0 && !has_default) {
      return types.Error(
          "event_types: is empty and there is no default: the policy would decide nothing (every "
          "scored event allowed); give a section per scored event type, or a default:");
    }
    p_->section_of_type_.assign(schema.types.size(), -1);
    if (has_types) {
      if (!types.IsMap()) return types.Error("event_types: a map of event type -> its section");
      for (const auto& [type_name, node] : types.Entries()) {
        const event::EventTypeSpec* t = schema.FindType(type_name);
        if (t == nullptr) {
          std::vector<std::string_view> cands;
          for (const std::string& s : spec_->score_on_names) cands.push_back(s);
          const std::string hint = core::ClosestMatch(type_name, cands);
          return types.KeyError(
              type_name, StrCat("unknown event type '", type_name, "'",
                                hint.empty() ? "" : StrCat(" (did you mean '", hint, "'?)"),
                                "; the scored types are ", JoinNames(spec_->score_on_names)));
        }
        if (!spec_->score_on[static_cast<size_t>(t->index)]) {
          return types.KeyError(
              type_name,
              StrCat("event type '", type_name, "' is not scored (the feature spec's score_on is [",
                     JoinNames(spec_->score_on_names),
                     "]): the policy decides scored events only"));
        }
        p_->section_of_type_[static_cast<size_t>(t->index)] =
            static_cast<int>(p_->sections_.size());
        VIGIL_RETURN_IF_ERROR(ParseSection(node, type_name, {t->index}));
      }
    }
    if (has_default) {
      std::vector<int> covered;
      for (const event::EventTypeSpec& t : schema.types) {
        if (spec_->score_on[static_cast<size_t>(t.index)] &&
            p_->section_of_type_[static_cast<size_t>(t.index)] < 0) {
          covered.push_back(t.index);
        }
      }
      const int index = static_cast<int>(p_->sections_.size());
      for (int t : covered) p_->section_of_type_[static_cast<size_t>(t)] = index;
      VIGIL_RETURN_IF_ERROR(ParseSection(def, std::string(kDefault), covered));
    }

    // Hit counters: one per rule per event type, also where types share
    // `default`, so that /metrics can say which type a rule fired on.
    p_->counter_base_.assign(schema.types.size(), 0);
    size_t n = 0;
    for (size_t t = 0; t < schema.types.size(); ++t) {
      p_->counter_base_[t] = n;
      const int s = p_->section_of_type_[t];
      if (s >= 0) n += p_->sections_[static_cast<size_t>(s)].rules.size();
    }
    p_->counters_ = std::make_unique<Counter[]>(n == 0 ? 1 : n);
    return absl::OkStatus();
  }

 private:
  absl::Status ParseSection(const ConfigNode& n, const std::string& name,
                            const std::vector<int>& types) {
    if (!n.IsMap()) {
      return n.Error(StrCat(name, ": a map with thresholds:, rules: and on_model_unavailable:"));
    }
    VIGIL_RETURN_IF_ERROR(n.CheckKeys(
        {"thresholds", "rules", "on_model_unavailable", "closed_action", "description"}));
    VIGIL_RETURN_IF_ERROR(n.GetString("description", "").status());
    Section s;
    s.name = name;
    VIGIL_RETURN_IF_ERROR(ParseThresholds(n["thresholds"], name, &s));

    const ConfigNode unavailable = n["on_model_unavailable"];
    if (!unavailable.IsDefined() || unavailable.IsNull()) {
      if (!s.thresholds.empty()) {
        return n.Error(
            StrCat(name,
                   ": on_model_unavailable is required with thresholds: open (rules only, "
                   "otherwise allow) or closed (rules, otherwise closed_action, default review)"));
      }
    } else {
      VIGIL_ASSIGN_OR_RETURN(std::string mode, unavailable.String());
      if (mode == "closed") {
        s.fail_closed = true;
      } else if (mode != "open") {
        return unavailable.Error(
            StrCat("on_model_unavailable: open or closed, found '", mode, "'"));
      }
    }
    const ConfigNode closed = n["closed_action"];
    if (closed.IsDefined() && !closed.IsNull()) {
      if (!s.fail_closed) {
        return closed.Error("closed_action applies only with on_model_unavailable: closed");
      }
      VIGIL_ASSIGN_OR_RETURN(s.closed_action, ActionAt(closed));
      if (s.closed_action == Action::kAllow) {
        return closed.Error(
            "closed_action: challenge, review or block (allowing is on_model_unavailable: open)");
      }
    }

    const ConfigNode rules = n["rules"];
    if (rules.IsDefined() && !rules.IsNull()) {
      if (!rules.IsSequence()) return rules.Error("rules: a list of rules");
      for (const ConfigNode& r : rules.Items()) {
        VIGIL_RETURN_IF_ERROR(ParseRule(r, types, &s));
      }
    }
    p_->sections_.push_back(std::move(s));
    return absl::OkStatus();
  }

  absl::Status ParseThresholds(const ConfigNode& n, const std::string& section, Section* s) {
    if (!n.IsDefined() || n.IsNull()) return absl::OkStatus();
    if (!n.IsSequence()) {
      return n.Error("thresholds: a list of {action: ..., score_at_least: ...}");
    }
    std::vector<std::pair<Threshold, ConfigNode>> read;
    for (const ConfigNode& item : n.Items()) {
      if (!item.IsMap()) return item.Error("a threshold is {action: ..., score_at_least: ...}");
      VIGIL_RETURN_IF_ERROR(item.CheckKeys({"action", "score_at_least"}));
      if (!item["action"].IsDefined()) return item.Error("a threshold needs action:");
      if (!item["score_at_least"].IsDefined())
        return item.Error("a threshold needs score_at_least:");
      Threshold t;
      VIGIL_ASSIGN_OR_RETURN(t.action, ActionAt(item["action"]));
      if (t.action == Action::kAllow) {
        return item["action"].Error(
            "a threshold's action is challenge, review or block: allow is what a score below "
            "every threshold gets");
      }
      VIGIL_ASSIGN_OR_RETURN(t.at_least, item["score_at_least"].Double());
      if (!(t.at_least >= 0 && t.at_least <= 1)) {
        return item["score_at_least"].Error(
            StrCat("score_at_least: a probability in [0, 1], found ", t.at_least));
      }
      read.emplace_back(t, item);
    }
    std::stable_sort(read.begin(), read.end(), [](const auto& a, const auto& b) {
      return a.first.at_least > b.first.at_least;
    });
    for (size_t i = 1; i < read.size(); ++i) {
      const Threshold& hi = read[i - 1].first;
      const Threshold& lo = read[i].first;
      if (lo.at_least == hi.at_least) {
        return read[i].second.Error(StrCat("two thresholds at score_at_least ", lo.at_least,
                                           " (the other at ", read[i - 1].second.Where(), ")"));
      }
      if (lo.action >= hi.action) {
        return read[i].second.Error(
            StrCat(section, ": ", ActionName(lo.action), " at score_at_least ", lo.at_least,
                   " is not milder than ", ActionName(hi.action), " at ", hi.at_least,
                   ": a higher score must get a more severe action, each action at most once"));
      }
    }
    for (const auto& [t, node] : read) s->thresholds.push_back(t);
    return absl::OkStatus();
  }

  absl::Status ParseRule(const ConfigNode& r, const std::vector<int>& types, Section* s) {
    if (!r.IsMap()) return r.Error("a rule is a map with name:, when: and action:");
    VIGIL_RETURN_IF_ERROR(
        r.CheckKeys({"name", "when", "action", "reason", "shadow", "description"}));
    for (std::string_view key : {"name", "when", "action"}) {
      if (!r[key].IsDefined() || r[key].IsNull()) return r.Error(StrCat("a rule needs ", key, ":"));
    }
    RuleInfo info;
    info.where = r.Where();
    VIGIL_ASSIGN_OR_RETURN(info.name, r["name"].String());
    if (!IsRuleName(info.name)) {
      return r["name"].Error(StrCat("rule name '", info.name,
                                    "': letters, digits and _, not starting with a digit "
                                    "(it is a /metrics label)"));
    }
    for (const RuleInfo& other : s->rules) {
      if (other.name == info.name) {
        return r["name"].Error(StrCat("two rules named '", info.name, "' in ", s->name,
                                      " (the other at ", other.where, ")"));
      }
    }
    VIGIL_ASSIGN_OR_RETURN(info.action, ActionAt(r["action"]));
    VIGIL_ASSIGN_OR_RETURN(info.reason, r.GetString("reason", ""));
    VIGIL_ASSIGN_OR_RETURN(info.shadow, r.GetBool("shadow", false));
    VIGIL_RETURN_IF_ERROR(r.GetString("description", "").status());

    const ConfigNode when = r["when"];
    VIGIL_ASSIGN_OR_RETURN(info.when, when.String());
    // A block scalar keeps its final newline; logs and /metrics want the rule alone.
    while (!info.when.empty() && (info.when.back() == '\n' || info.when.back() == ' ')) {
      info.when.pop_back();
    }
    expr::Bindings b;
    b.schema = spec_->schema.get();
    b.score = true;  // rules run after the model: `model.score`
    const feature::FeatureSpec* spec = spec_.get();
    std::string unknown_feature;
    b.feature = [spec, &unknown_feature](std::string_view name) -> std::optional<int> {
      const int i = spec->FeatureIndex(name);
      if (i < 0) {
        unknown_feature = std::string(name);
        return std::nullopt;
      }
      return i;
    };
    b.lists = &lists_;
    b.tables = spec_->tables.get();
    absl::StatusOr<expr::Expr> compiled =
        expr::Expr::Compile(info.when, b, expr::SourcePosOf(when));
    if (!compiled.ok()) {
      // expr cannot guess a feature's name (it sees only a callback); the
      // spec's names can.
      if (!unknown_feature.empty()) {
        const std::vector<std::string> names = spec_->FeatureNames();
        const std::vector<std::string_view> cands(names.begin(), names.end());
        const std::string hint = core::ClosestMatch(unknown_feature, cands);
        if (!hint.empty()) {
          return absl::InvalidArgumentError(
              StrCat(compiled.status().message(), "; did you mean 'features.", hint, "'?"));
        }
      }
      return compiled.status();
    }
    expr::Expr e = *std::move(compiled);
    if (e.result_kind() != expr::Kind::kBool) {
      return when.Error(StrCat("rule '", info.name, "': when: must be true or false, but it is ",
                               e.result_kind() == expr::Kind::kNumber
                                   ? "a number (compare it: ... > 0)"
                                   : StrCat("a ", expr::KindName(e.result_kind()))));
    }
    VIGIL_RETURN_IF_ERROR(CheckFields(when, info.name, e, types));

    s->decided_by.push_back(StrCat("rule:", info.name));
    s->rules.push_back(std::move(info));
    s->when.push_back(std::move(e));
    return absl::OkStatus();
  }

  // A rule must be able to fire on the types it applies to, and must not
  // read what is known only later (labels) or never online (ground truth).
  absl::Status CheckFields(const ConfigNode& where, const std::string& rule, const expr::Expr& e,
                           const std::vector<int>& types) {
    if (types.empty()) return absl::OkStatus();  // a `default` that covers nothing
    const event::Schema& schema = *spec_->schema;
    for (const std::string& field : e.event_fields_read()) {
      if (field == "time" || field == "event_type" || field == "event_id") continue;
      bool carried = false;
      for (int t : types) {
        const event::FieldSpec* f = schema.types[static_cast<size_t>(t)].Find(field);
        if (f == nullptr) continue;
        carried = true;
        if (f->role == event::Role::kGroundTruth) {
          return where.Error(StrCat("rule '", rule, "' reads event.", field,
                                    ", a ground_truth field: the simulator's truth is never "
                                    "known when deciding"));
        }
        if (f->role == event::Role::kLabel) {
          return where.Error(StrCat("rule '", rule, "' reads the label event.", field,
                                    ", known only later: a decision cannot wait for it (read it "
                                    "through a lagged feature)"));
        }
      }
      if (!carried) {
        std::vector<std::string> names;
        for (int t : types) names.push_back(schema.types[static_cast<size_t>(t)].name);
        return where.Error(StrCat("rule '", rule, "' reads event.", field, ", which ",
                                  JoinNames(names), " events do not carry: the rule could never ",
                                  "see it"));
      }
    }
    return absl::OkStatus();
  }

  absl::StatusOr<Action> ActionAt(const ConfigNode& n) {
    VIGIL_ASSIGN_OR_RETURN(std::string s, n.String());
    if (auto a = ParseAction(s)) return *a;
    const std::string hint = core::ClosestMatch(s, {"allow", "challenge", "review", "block"});
    return n.Error(StrCat("unknown action '", s, "'",
                          hint.empty() ? "" : StrCat(" (did you mean '", hint, "'?)"),
                          "; actions are allow, challenge, review, block"));
  }

  std::shared_ptr<const feature::FeatureSpec> spec_;
  Policy* p_;
  expr::Lists lists_;
  std::string list_entries_;
};

Policy::~Policy() = default;

absl::StatusOr<std::shared_ptr<const Policy>> Policy::Load(
    const std::string& path, std::shared_ptr<const feature::FeatureSpec> spec) {
  VIGIL_ASSIGN_OR_RETURN(std::string text, core::ReadFile(path));
  return LoadString(text, path, std::move(spec));
}

absl::StatusOr<std::shared_ptr<const Policy>> Policy::LoadString(
    std::string_view yaml, std::string_view name,
    std::shared_ptr<const feature::FeatureSpec> spec) {
  if (spec == nullptr || spec->schema == nullptr) {
    return absl::InvalidArgumentError(StrCat(name, ": a policy needs a feature spec"));
  }
  VIGIL_ASSIGN_OR_RETURN(ConfigNode root, ConfigNode::LoadString(yaml, name));
  std::shared_ptr<Policy> p(new Policy());
  p->file_ = std::string(name);
  p->spec_ = spec;
  Loader loader(std::move(spec), p.get());
  VIGIL_RETURN_IF_ERROR(loader.Run(root));
  // Of what the policy says (a comment edited is not another policy).
  p->content_hash_ = event::Sha256Hex(StrCat(root.CanonicalText(), "\n", loader.list_entries()));
  return std::shared_ptr<const Policy>(std::move(p));
}

const Policy::Section* Policy::SectionOf(int event_type) const noexcept {
  if (event_type < 0 || static_cast<size_t>(event_type) >= section_of_type_.size()) return nullptr;
  const int s = section_of_type_[static_cast<size_t>(event_type)];
  return s < 0 ? nullptr : &sections_[static_cast<size_t>(s)];
}

Outcome Policy::Decide(const event::Record& rec, const double* features, double score,
                       bool model_configured) const noexcept {
  return Run(rec, features, score, model_configured, true);
}

Outcome Policy::DecideShadow(const event::Record& rec, const double* features, double score,
                             bool model_configured) const noexcept {
  return Run(rec, features, score, model_configured, false);
}

namespace {

// The deciding rule is always listed: past Outcome::kMaxListed fired rules it
// takes the last place (it comes after every listed one in file order).
void ListDecider(Outcome& o) {
  if (o.num_fired <= Outcome::kMaxListed) return;
  for (const FiredRule& f : o.fired) {
    if (f.rule == o.decided_rule) return;
  }
  o.fired[Outcome::kMaxListed - 1].rule = o.decided_rule;
}

}  // namespace

Outcome Policy::Run(const event::Record& rec, const double* features, double score,
                    bool model_configured, bool count) const noexcept {
  Outcome o;
  const int type = rec.type != nullptr ? rec.type->index : -1;
  const Section* s = SectionOf(type);
  // A probability outside [0, 1] comes from a broken model: no score. (NaN
  // fails both comparisons.)
  const bool has_score = score >= 0.0 && score <= 1.0;
  if (has_score) {
    o.path = Path::kModel;
  } else if (!model_configured) {
    o.path = Path::kRulesOnly;
  } else {
    o.path = s != nullptr && s->fail_closed ? Path::kFailClosed : Path::kFailOpen;
  }
  o.decided_by = kDefault;
  if (s == nullptr) return o;

  if (has_score) {
    for (const Threshold& t : s->thresholds) {
      if (score >= t.at_least) {
        o.model_action = t.action;
        o.threshold = t.at_least;
        break;
      }
    }
  }

  // Every rule is evaluated (all fired rules are reported and counted); the
  // first block, the first allow and the first most severe review/challenge
  // rule are remembered.
  int first_block = -1, first_allow = -1, worst_rule = -1;
  Action worst = Action::kAllow;
  Counter* counters = count ? counters_.get() + counter_base_[static_cast<size_t>(type)] : nullptr;
  const int n = static_cast<int>(s->rules.size());
  const double rule_score = has_score ? score : kNaN;  // model.score in the rules
  for (int i = 0; i < n; ++i) {
    if (!s->when[static_cast<size_t>(i)].EvalBool(rec, features, rule_score)) continue;
    if (counters != nullptr) counters[i].n.fetch_add(1, std::memory_order_relaxed);
    if (o.num_fired < Outcome::kMaxListed) o.fired[static_cast<size_t>(o.num_fired)].rule = i;
    ++o.num_fired;
    const RuleInfo& r = s->rules[static_cast<size_t>(i)];
    if (r.shadow) continue;
    if (r.action == Action::kBlock) {
      if (first_block < 0) first_block = i;
    } else if (r.action == Action::kAllow) {
      if (first_allow < 0) first_allow = i;
    } else if (r.action > worst) {
      worst = r.action;
      worst_rule = i;
    }
  }

  const int by_rule = first_block >= 0 ? first_block : first_allow;
  if (by_rule >= 0) {
    o.action = s->rules[static_cast<size_t>(by_rule)].action;
    o.decided_rule = by_rule;
    o.decided_by = s->decided_by[static_cast<size_t>(by_rule)];
    ListDecider(o);
    return o;
  }
  Action base = Action::kAllow;
  std::string_view base_by = kDefault;
  if (o.path == Path::kModel && o.model_action != Action::kAllow) {
    base = o.model_action;
    base_by = kThreshold;
  } else if (o.path == Path::kFailClosed) {
    base = s->closed_action;
    base_by = kModelUnavailable;
  }
  // On a tie the rule is named: it carries a reason.
  if (worst_rule >= 0 && worst >= base) {
    o.action = worst;
    o.decided_rule = worst_rule;
    o.decided_by = s->decided_by[static_cast<size_t>(worst_rule)];
    ListDecider(o);
  } else {
    o.action = base;
    o.decided_by = base_by;
  }
  return o;
}

const std::vector<RuleInfo>& Policy::rules_of(int event_type) const {
  static const std::vector<RuleInfo> kNone;
  const Section* s = SectionOf(event_type);
  return s == nullptr ? kNone : s->rules;
}

int64_t Policy::hits(int event_type, int rule) const {
  const Section* s = SectionOf(event_type);
  if (s == nullptr || rule < 0 || static_cast<size_t>(rule) >= s->rules.size()) return 0;
  return counters_[counter_base_[static_cast<size_t>(event_type)] + static_cast<size_t>(rule)]
      .n.load(std::memory_order_relaxed);
}

bool Policy::covers(int event_type) const { return SectionOf(event_type) != nullptr; }

bool Policy::has_thresholds(int event_type) const {
  const Section* s = SectionOf(event_type);
  return s != nullptr && !s->thresholds.empty();
}

}  // namespace vigil::policy
