#include "feature/spec.h"

#include <algorithm>
#include <charconv>
#include <functional>
#include <limits>

#include "core/file.h"
#include "core/config.h"
#include "core/hash.h"
#include "core/strings.h"
#include "core/time.h"
#include "event/pii.h"

namespace vigil::feature {
namespace {

using core::ConfigNode;
using core::ReadFile;
using event::EventTypeSpec;
using event::FieldSpec;
using event::FieldType;
using event::Role;
using event::Schema;

struct AggInfo {
  Agg agg;
  const char* name;
  bool needs_of;     // reads a value field
  bool numeric_of;   // the value must be a number
  double empty;      // over an empty window
};

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

const AggInfo kAggs[] = {
    {Agg::kCount, "count", false, false, 0},
    {Agg::kSum, "sum", true, true, 0},
    {Agg::kMean, "mean", true, true, kNaN},
    {Agg::kMin, "min", true, true, kNaN},
    {Agg::kMax, "max", true, true, kNaN},
    {Agg::kStddev, "stddev", true, true, kNaN},
    {Agg::kDistinctCount, "distinct_count", true, false, 0},
    {Agg::kLast, "last", true, true, kNaN},
    {Agg::kTimeSinceLast, "time_since_last", false, false, kNaN},
    {Agg::kFirstSeen, "first_seen", false, false, kNaN},
    {Agg::kDecayedSum, "decayed_sum", false, true, 0},
    {Agg::kGapMean, "gap_mean", false, false, kNaN},
    {Agg::kGapCv, "gap_cv", false, false, kNaN},
    {Agg::kClusterSize, "cluster_size", false, false, kNaN},
    {Agg::kClusterAccounts, "cluster_accounts", false, false, kNaN},
    {Agg::kClusterCounter, "cluster_counter", false, false, kNaN},
};

const AggInfo* FindAgg(std::string_view name) {
  for (const AggInfo& a : kAggs) {
    if (name == a.name) return &a;
  }
  return nullptr;
}

bool IsNumeric(FieldType t) {
  return t == FieldType::kInt || t == FieldType::kFloat || t == FieldType::kDecimal ||
         t == FieldType::kBool || t == FieldType::kTimestamp;
}

absl::StatusOr<std::vector<std::string>> StringList(const ConfigNode& n) {
  std::vector<std::string> out;
  if (!n.IsDefined() || n.IsNull()) return out;
  if (n.IsScalar()) {
    out.push_back(n.Text());
    return out;
  }
  if (!n.IsSequence()) return n.Error("expected a name or a list of names");
  for (const ConfigNode& i : n.Items()) {
    VIGIL_ASSIGN_OR_RETURN(std::string s, i.String());
    out.push_back(s);
  }
  return out;
}

std::string DirOf(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

// The declaration of `field` in the types `on` that matters most for leakage:
// ground truth, else the label with the longest delay, else any.
const FieldSpec* RoleField(const Schema& s, const std::vector<bool>& on, std::string_view field) {
  auto rank = [](const FieldSpec* f) {
    return f->role == Role::kGroundTruth ? 2 : (f->role == Role::kLabel ? 1 : 0);
  };
  const FieldSpec* best = nullptr;
  for (const EventTypeSpec& t : s.types) {
    if (!on[t.index]) continue;
    const FieldSpec* f = t.Find(field);
    if (!f) continue;
    if (!best || rank(f) > rank(best) ||
        (rank(f) == 1 && rank(best) == 1 && f->known_after_ms > best->known_after_ms)) {
      best = f;
    }
  }
  return best;
}

// The leakage guard: a label is read only through a lag at least as long as
// its delay; ground truth never.
absl::Status CheckLeakage(const ConfigNode& where, std::string_view feature, const FieldSpec* f,
                          int64_t lag_ms, bool can_lag) {
  if (!f) return absl::OkStatus();
  if (f->role == Role::kGroundTruth) {
    return where.Error(StrCat("feature '", feature, "' reads ", f->name,
                              ", a ground_truth field: the simulator's truth is never a feature"));
  }
  if (f->role == Role::kLabel && lag_ms < f->known_after_ms) {
    if (!can_lag) {
      return where.Error(StrCat("feature '", feature, "' reads the label ", f->name,
                                " of the current event, which is known only after ",
                                core::FormatDuration(f->known_after_ms),
                                ": read it through an aggregate with lag: ",
                                core::FormatDuration(f->known_after_ms), " or more"));
    }
    return where.Error(StrCat("feature '", feature, "' reads the label ", f->name, " (known after ",
                              core::FormatDuration(f->known_after_ms), ") through a lag of ",
                              core::FormatDuration(lag_ms), ": use lag: ",
                              core::FormatDuration(f->known_after_ms), " or more"));
  }
  return absl::OkStatus();
}

class Builder {
 public:
  Builder(std::shared_ptr<FeatureSpec> spec, std::string dir)
      : spec_(std::move(spec)), dir_(std::move(dir)) {}

  absl::Status Build(const ConfigNode& root, std::string* hashed_extra) {
    const Schema& s = *spec_->schema;
    if (!root.IsMap()) return root.Error("a feature spec is a map with at least `features:`");
    VIGIL_RETURN_IF_ERROR(root.CheckKeys({"name", "version", "description", "score_on", "lateness",
                                          "passthrough", "lists", "tables", "labels", "limits",
                                          "identity", "features"}));
    VIGIL_ASSIGN_OR_RETURN(spec_->name, root.GetString("name", "features"));
    VIGIL_ASSIGN_OR_RETURN(int64_t version, root.GetInt("version", 1));
    if (version != 1) return root["version"].Error("this vigil reads feature spec version 1");
    VIGIL_ASSIGN_OR_RETURN(spec_->lateness_ms, root.GetDurationMs("lateness", core::kMsPerHour));
    if (spec_->lateness_ms > 365 * core::kMsPerDay) return root["lateness"].Error("lateness: at most 365d");
    const ConfigNode limits = root["limits"];
    VIGIL_RETURN_IF_ERROR(limits.CheckKeys({"entity_ttl", "max_entries_per_key", "label_join_memory",
                                            "distinct_exact_limit"}));
    VIGIL_ASSIGN_OR_RETURN(spec_->distinct_exact_limit, limits.GetInt("distinct_exact_limit", 10000));
    if (spec_->distinct_exact_limit < 1) return limits["distinct_exact_limit"].Error("at least 1");
    VIGIL_ASSIGN_OR_RETURN(spec_->label_join_memory, limits.GetInt("label_join_memory", 1000000));
    if (spec_->label_join_memory < 0) return limits["label_join_memory"].Error("at least 0");
    VIGIL_ASSIGN_OR_RETURN(spec_->entity_ttl_ms, limits.GetDurationMs("entity_ttl", 400 * core::kMsPerDay));
    if (spec_->entity_ttl_ms > 36500 * core::kMsPerDay) return limits["entity_ttl"].Error("entity_ttl: at most 36500d");
    VIGIL_ASSIGN_OR_RETURN(spec_->max_entries_per_key, limits.GetInt("max_entries_per_key", 100000));
    if (spec_->max_entries_per_key < 16) {
      return limits["max_entries_per_key"].Error("max_entries_per_key: at least 16");
    }

    spec_->score_on.assign(s.types.size(), false);
    VIGIL_ASSIGN_OR_RETURN(spec_->score_on_names, StringList(root["score_on"]));
    if (spec_->score_on_names.empty()) {
      return root.Error("score_on: the event types that get a decision (and a backfill row)");
    }
    for (const std::string& t : spec_->score_on_names) {
      const EventTypeSpec* et = s.FindType(t);
      if (!et) return root["score_on"].Error(StrCat("score_on: no event type '", t, "' in ", s.file));
      spec_->score_on[et->index] = true;
    }
    VIGIL_ASSIGN_OR_RETURN(spec_->passthrough, StringList(root["passthrough"]));
    for (size_t i = 0; i < spec_->passthrough.size(); ++i) {
      const std::string& p = spec_->passthrough[i];
      if (!RoleField(s, spec_->score_on, p)) {
        return root["passthrough"].Error(StrCat("passthrough: '", p, "' is not a field of ",
                                                StrJoin(spec_->score_on_names, ", ")));
      }
      // (Backfill would write the column twice.)
      if (std::find(spec_->passthrough.begin(), spec_->passthrough.begin() + i, p) !=
          spec_->passthrough.begin() + i) {
        return root["passthrough"].Error(StrCat("passthrough: '", p, "' is listed twice"));
      }
    }

    // Lists and tables for expressions; list files count in the content hash.
    auto lists = expr::Lists::Load(root["lists"]);
    if (!lists.ok()) return lists.status();
    spec_->lists = std::make_shared<const expr::Lists>(std::move(*lists));
    VIGIL_ASSIGN_OR_RETURN(const auto list_nodes, root["lists"].MapEntries("lists"));
    for (const auto& [name, node] : list_nodes) {
      const std::string rel = node.Text();
      auto text = ReadFile(!rel.empty() && rel[0] == '/' ? rel : dir_ + "/" + rel);
      if (text.ok()) hashed_extra->append(*text);
    }
    VIGIL_ASSIGN_OR_RETURN(const auto table_nodes, root["tables"].MapEntries("tables"));
    for (const auto& [name, node] : table_nodes) {
      const std::string rel = node["file"].Text();
      if (rel.empty()) continue;
      auto text = ReadFile(rel[0] == '/' ? rel : dir_ + "/" + rel);
      if (text.ok()) hashed_extra->append(*text);
    }
    auto tables = expr::Tables::Load(root["tables"]);
    if (!tables.ok()) return tables.status();
    spec_->tables = std::make_shared<const expr::Tables>(std::move(*tables));

    const ConfigNode labels = root["labels"];
    VIGIL_ASSIGN_OR_RETURN(const auto label_nodes, labels.MapEntries("labels"));
    for (const auto& [kind, node] : label_nodes) {
      VIGIL_RETURN_IF_ERROR(node.CheckKeys({"horizon"}));
      LabelKind k;
      k.kind = kind;
      VIGIL_ASSIGN_OR_RETURN(k.horizon_ms, node.GetDurationMs("horizon", 0));
      if (k.horizon_ms <= 0) return node.Error(StrCat("labels.", kind, ": needs a horizon (e.g. 60d)"));
      if (!s.label_kinds.empty() &&
          std::find(s.label_kinds.begin(), s.label_kinds.end(), kind) == s.label_kinds.end()) {
        return node.Error(StrCat("labels: '", kind, "' is not a label kind of the schema (",
                                 StrJoin(s.label_kinds, ", "), ")"));
      }
      spec_->label_kinds.push_back(k);
    }

    VIGIL_RETURN_IF_ERROR(Identity(root["identity"], hashed_extra));

    const ConfigNode features = root["features"];
    if (!features.IsSequence() || features.size() == 0) {
      return features.Error("features: expected a list of features");
    }
    // Names first, so derived features can refer to any feature.
    std::vector<ConfigNode> nodes = features.Items();
    for (size_t i = 0; i < nodes.size(); ++i) {
      VIGIL_RETURN_IF_ERROR(nodes[i].CheckKeys({"name", "description", "agg", "key", "of", "on",
                                                "where", "window", "lag", "half_life", "default",
                                                "expr", "counter"}));
      FeatureDef f;
      VIGIL_ASSIGN_OR_RETURN(f.name, nodes[i].GetString("name", ""));
      if (f.name.empty()) return nodes[i].Error("a feature needs a name");
      if (names_.contains(f.name)) return nodes[i]["name"].Error(StrCat("feature '", f.name, "' twice"));
      // Backfill writes these columns beside the features: a feature of the
      // same name would let training take an id, a time or a label for one.
      const bool passthrough = std::find(spec_->passthrough.begin(), spec_->passthrough.end(),
                                         f.name) != spec_->passthrough.end();
      if (f.name == "event_id" || f.name == "event_time" || f.name == "event_type" || passthrough ||
          (!spec_->label_kinds.empty() && (f.name == "label" || f.name == "label_delay_ms"))) {
        return nodes[i]["name"].Error(
            StrCat("feature '", f.name, "': backfill writes a column of that name already (",
                   passthrough ? "a passthrough field"
                               : "event_id, event_time, event_type, label, label_delay_ms",
                   "): name the feature otherwise"));
      }
      f.index = static_cast<int>(i);
      f.where = nodes[i].Where();
      names_[f.name] = f.index;
      spec_->features.push_back(std::move(f));
    }
    for (size_t i = 0; i < nodes.size(); ++i) {
      VIGIL_RETURN_IF_ERROR(Feature(nodes[i], &spec_->features[i]));
    }
    int64_t reach = 0;
    for (const Stream& st : spec_->streams) reach = std::max(reach, st.max_reach_ms);
    if (spec_->entity_ttl_ms < reach + spec_->lateness_ms) {
      // Said where it is fixed: at entity_ttl when the spec sets it, else at
      // the feature that reaches furthest back.
      size_t furthest = 0;
      int64_t furthest_reach = -1;
      for (size_t i = 0; i < spec_->features.size(); ++i) {
        const FeatureDef& f = spec_->features[i];
        if (f.is_aggregate && f.window_ms > 0 && f.window_ms + f.lag_ms > furthest_reach) {
          furthest = i;
          furthest_reach = f.window_ms + f.lag_ms;
        }
      }
      const bool set = limits["entity_ttl"].IsDefined();
      const std::string message = StrCat(
          "entity_ttl (", core::FormatDuration(spec_->entity_ttl_ms), set ? "" : ", the default",
          ") must cover the longest window and lag (", core::FormatDuration(reach),
          furthest_reach == reach ? StrCat(", feature '", spec_->features[furthest].name, "'") : "",
          ") plus the lateness bound (", core::FormatDuration(spec_->lateness_ms),
          "): an entity would be forgotten while a window still reads it; set limits.entity_ttl to "
          "at least ",
          core::FormatDuration(reach + spec_->lateness_ms));
      if (set || furthest_reach != reach) return limits["entity_ttl"].Error(message);
      return nodes[furthest]["window"].Error(message);
    }
    return OrderDerived(nodes);
  }

 private:
  expr::Bindings Bind(int self) const {
    expr::Bindings b;
    b.schema = spec_->schema.get();
    b.lists = spec_->lists.get();
    b.tables = spec_->tables.get();
    b.feature = [this, self](std::string_view name) -> std::optional<int> {
      auto it = names_.find(name);
      if (it == names_.end()) return std::nullopt;
      return it->second == self ? expr::Bindings::kSelf : it->second;
    };
    return b;
  }

  // Every event type: keys, links and derived features read any of them.
  std::vector<bool> AllTypes() const { return std::vector<bool>(spec_->schema->types.size(), true); }

  // The node kind of a field: its entity kind when it has one, else its name.
  uint64_t KindOf(const std::string& field) const {
    for (const EventTypeSpec& t : spec_->schema->types) {
      const FieldSpec* f = t.Find(field);
      if (f && !f->entity.empty()) return core::Hash64(f->entity);
    }
    return core::Hash64(field);
  }

  absl::Status Identity(const ConfigNode& n, std::string* hashed_extra) {
    if (!n.IsDefined() || n.IsNull()) return absl::OkStatus();
    const Schema& s = *spec_->schema;
    IdentitySpec& g = spec_->identity;
    VIGIL_RETURN_IF_ERROR(n.CheckKeys({"account", "links", "link_ttl", "max_degree",
                                       "rebuild_every", "stop_lists", "counters"}));
    g.enabled = true;
    VIGIL_ASSIGN_OR_RETURN(g.account, n.GetString("account", ""));
    if (g.account.empty()) return n.Error("identity: needs account: the field of the account");
    VIGIL_ASSIGN_OR_RETURN(g.links, StringList(n["links"]));
    if (g.links.empty()) return n.Error("identity: needs links: the fields linked to the account");
    VIGIL_ASSIGN_OR_RETURN(g.link_ttl_ms, n.GetDurationMs("link_ttl", g.link_ttl_ms));
    VIGIL_ASSIGN_OR_RETURN(int64_t deg, n.GetInt("max_degree", g.max_degree));
    if (deg < 1 || deg > 1000000) return n["max_degree"].Error("max_degree: 1 to 1000000");
    g.max_degree = static_cast<int32_t>(deg);
    VIGIL_ASSIGN_OR_RETURN(g.rebuild_every_ms, n.GetDurationMs("rebuild_every", g.rebuild_every_ms));
    if (g.rebuild_every_ms <= 0) {
      return n["rebuild_every"].Error("rebuild_every: a positive duration (rebuilds apply the guardrails)");
    }
    if (g.link_ttl_ms <= 0 || g.link_ttl_ms > 3650 * core::kMsPerDay) {
      return n["link_ttl"].Error("link_ttl: a positive duration up to 3650d");
    }
    // Links expire only at rebuilds, and count toward the degree cap until
    // then: with a shorter TTL they would live a whole period regardless,
    // and make hubs of accounts that merely change devices.
    if (g.link_ttl_ms < g.rebuild_every_ms) {
      return (n["link_ttl"].IsDefined() ? n["link_ttl"] : n["rebuild_every"])
          .Error(StrCat("link_ttl (", core::FormatDuration(g.link_ttl_ms),
                        ") is shorter than rebuild_every (",
                        core::FormatDuration(g.rebuild_every_ms),
                        "): links expire only at rebuilds, and count toward max_degree until then; "
                        "make link_ttl at least rebuild_every"));
    }
    g.account_index.assign(s.types.size(), -1);
    g.link_index.assign(s.types.size() * g.links.size(), -1);
    bool any = false;
    for (const EventTypeSpec& t : s.types) {
      const FieldSpec* a = t.Find(g.account);
      if (a) {
        g.account_index[t.index] = a->index;
        any = true;
      }
      for (size_t i = 0; i < g.links.size(); ++i) {
        const FieldSpec* l = t.Find(g.links[i]);
        if (l) g.link_index[t.index * g.links.size() + i] = l->index;
      }
    }
    if (!any) return n["account"].Error(StrCat("identity: no event type has field '", g.account, "'"));
    for (const std::string& l : g.links) {
      if (!RoleField(s, AllTypes(), l)) {
        return n["links"].Error(StrCat("identity: no event type has field '", l, "'"));
      }
    }
    for (const std::string& field : [&] {
           std::vector<std::string> all = g.links;
           all.push_back(g.account);
           return all;
         }()) {
      const FieldSpec* rf = RoleField(s, AllTypes(), field);
      if (rf && (rf->role == Role::kLabel || rf->role == Role::kGroundTruth)) {
        return n.Error(StrCat("identity: '", field, "' is a ", event::RoleName(rf->role),
                              " field: it cannot link accounts"));
      }
    }
    g.account_kind = KindOf(g.account);
    for (const std::string& l : g.links) g.link_kind.push_back(KindOf(l));
    // Stop lists: field -> file of values that never link (a hot wallet, a NAT address).
    VIGIL_ASSIGN_OR_RETURN(const auto stop_lists,
                           n["stop_lists"].MapEntries("identity.stop_lists"));
    for (const auto& [field, file] : stop_lists) {
      if (std::find(g.links.begin(), g.links.end(), field) == g.links.end()) {
        return file.Error(StrCat("identity.stop_lists: '", field, "' is not one of the links"));
      }
      VIGIL_ASSIGN_OR_RETURN(std::string rel, file.String());
      const std::string path = !rel.empty() && rel[0] == '/' ? rel : dir_ + "/" + rel;
      auto text = ReadFile(path);
      if (!text.ok()) return file.Error(StrCat("cannot read stop list ", path));
      hashed_extra->append(*text);
      FieldType type = FieldType::kString;
      for (const EventTypeSpec& t : s.types) {
        const FieldSpec* f = t.Find(field);
        if (f) type = f->type;
      }
      for (std::string_view line : StrSplit(*text, '\n')) {
        while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
        if (line.empty() || line[0] == '#') continue;
        g.stop_nodes.push_back(core::HashCombine(KindOf(field), event::KeyHashOfText(type, line)));
      }
    }
    VIGIL_ASSIGN_OR_RETURN(const auto counters, n["counters"].MapEntries("identity.counters"));
    for (const auto& [name, c] : counters) {
      VIGIL_RETURN_IF_ERROR(c.CheckKeys({"on", "of"}));
      IdentitySpec::Counter counter;
      counter.name = name;
      counter.on_type.assign(s.types.size(), false);
      VIGIL_ASSIGN_OR_RETURN(std::vector<std::string> on, StringList(c["on"]));
      if (on.empty()) return c.Error(StrCat("identity.counters.", name, ": needs on: event types"));
      for (const std::string& t : on) {
        const EventTypeSpec* et = s.FindType(t);
        if (!et) return c["on"].Error(StrCat("no event type '", t, "'"));
        counter.on_type[et->index] = true;
      }
      VIGIL_ASSIGN_OR_RETURN(counter.of, c.GetString("of", ""));
      counter.of_index.assign(s.types.size(), -1);
      bool of_found = counter.of.empty();
      for (const EventTypeSpec& t : s.types) {
        const FieldSpec* f = counter.of.empty() ? nullptr : t.Find(counter.of);
        if (f && counter.on_type[t.index]) {
          if (!IsNumeric(f->type)) return c["of"].Error(StrCat("'", counter.of, "' is not a number"));
          VIGIL_RETURN_IF_ERROR(CheckLeakage(c["of"], name, f, 0, false));
          counter.of_index[t.index] = f->index;
          of_found = true;
        }
      }
      if (!of_found) {
        return c["of"].Error(StrCat("identity.counters.", name, ": '", counter.of,
                                    "' is in none of its event types"));
      }
      g.counters.push_back(std::move(counter));
    }
    return absl::OkStatus();
  }

  absl::Status Feature(const ConfigNode& n, FeatureDef* f) {
    const Schema& s = *spec_->schema;
    // (An unknown cluster_ name is an unknown aggregate, below.)
    if (n["agg"].IsDefined() && StartsWith(n["agg"].Text(), "cluster_") &&
        FindAgg(n["agg"].Text())) {
      return ClusterFeature(n, f);
    }
    const bool has_expr = n["expr"].IsDefined();
    const bool has_agg = n["agg"].IsDefined();
    if (has_expr == has_agg) {
      return n.Error(StrCat("feature '", f->name, "' needs exactly one of agg (an aggregate) or ",
                            "expr (a derived feature)"));
    }
    if (has_expr) {
      for (const char* k : {"key", "of", "on", "where", "window", "lag", "half_life", "default"}) {
        if (n[k].IsDefined()) {
          return n[k].Error(StrCat("feature '", f->name, "': '", k, "' is for aggregates, not expr"));
        }
      }
      VIGIL_ASSIGN_OR_RETURN(std::string text, n["expr"].String());
      auto e = expr::Expr::Compile(text, Bind(f->index), expr::SourcePosOf(n["expr"]));
      if (!e.ok()) return e.status();
      if (e->result_kind() == expr::Kind::kString) {
        return n["expr"].Error(
            StrCat("feature '", f->name,
                   "': expr gives a string; a feature is a number or true/false "
                   "(compare it, e.g. email_domain(event.email) in lists.disposable)"));
      }
      if (e->result_kind() == expr::Kind::kNull) {
        return n["expr"].Error(
            StrCat("feature '", f->name,
                   "': expr is always null, so the feature would always be missing"));
      }
      for (const std::string& field : e->event_fields_read()) {
        VIGIL_RETURN_IF_ERROR(CheckLeakage(n["expr"], f->name, RoleField(s, AllTypes(), field), 0, false));
      }
      f->expr = std::make_shared<const expr::Expr>(std::move(*e));
      return absl::OkStatus();
    }

    f->is_aggregate = true;
    VIGIL_ASSIGN_OR_RETURN(std::string agg_name, n["agg"].String());
    const AggInfo* info = FindAgg(agg_name);
    if (!info) {
      std::vector<std::string_view> names;
      for (const AggInfo& a : kAggs) names.push_back(a.name);
      const std::string hint = core::ClosestMatch(agg_name, names);
      return n["agg"].Error(StrCat("feature '", f->name, "': unknown aggregate '", agg_name, "'",
                                   hint.empty() ? "" : StrCat(" (did you mean '", hint, "'?)"),
                                   "; one of ", StrJoin(names, ", ")));
    }
    f->agg = info->agg;
    f->empty_value = info->empty;

    Stream st;
    VIGIL_ASSIGN_OR_RETURN(st.key_fields, StringList(n["key"]));
    if (st.key_fields.empty()) return n.Error(StrCat("feature '", f->name, "' needs key: a field or a list of fields"));
    std::vector<std::string> on;
    VIGIL_ASSIGN_OR_RETURN(on, StringList(n["on"]));
    st.on_type.assign(s.types.size(), false);
    if (on.empty()) {
      st.on_type = spec_->score_on;
    } else {
      for (const std::string& t : on) {
        const EventTypeSpec* et = s.FindType(t);
        if (!et) return n["on"].Error(StrCat("feature '", f->name, "': no event type '", t, "'"));
        st.on_type[et->index] = true;
      }
    }
    // Key fields: present in at least one of the types, never a label.
    st.key_field_index.assign(s.types.size() * st.key_fields.size(), -1);
    // The key is read from every type that has it: an event of one type reads
    // aggregates fed by others (logins in the last hour, at a withdrawal).
    st.key_exprs.assign(st.key_fields.size(), nullptr);
    for (size_t k = 0; k < st.key_fields.size(); ++k) {
      if (st.key_fields[k].find('(') != std::string::npos) {
        // An expression key: the /24 of an address, an e-mail's domain.
        if (st.on_type[s.label_type]) {
          return n["key"].Error(StrCat("feature '", f->name,
                                       "': labels name a field, not an expression: use a field key"));
        }
        expr::Bindings b = Bind(f->index);
        b.feature = [](std::string_view) -> std::optional<int> { return std::nullopt; };
        // A key tuple's expression is its own item of the list.
        const ConfigNode key = n["key"].IsSequence() ? n["key"].Items()[k] : n["key"];
        auto e = expr::Expr::Compile(st.key_fields[k], b, expr::SourcePosOf(key));
        if (!e.ok()) return e.status();
        if (e->result_kind() == expr::Kind::kBool || e->result_kind() == expr::Kind::kNull) {
          return n["key"].Error(StrCat("feature '", f->name, "': a key is a string or a number",
                                       e->result_kind() == expr::Kind::kNull
                                           ? " (this one is always null: no event would have it)"
                                           : ""));
        }
        for (const std::string& field : e->event_fields_read()) {
          VIGIL_RETURN_IF_ERROR(CheckLeakage(n["key"], f->name,
                                             RoleField(s, AllTypes(), field),
                                             0, false));
        }
        st.key_exprs[k] = std::make_shared<const expr::Expr>(std::move(*e));
        continue;
      }
      bool any = false;
      for (const EventTypeSpec& t : s.types) {
        const FieldSpec* kf = t.Find(st.key_fields[k]);
        if (!kf) continue;
        any |= st.on_type[t.index];
        st.key_field_index[t.index * st.key_fields.size() + k] = kf->index;
      }
      const bool label_fed = st.on_type[s.label_type];
      if (!any && !(label_fed && RoleField(s, AllTypes(), st.key_fields[k]))) {
        return n["key"].Error(StrCat("feature '", f->name, "': key field '", st.key_fields[k],
                                     "' is in none of its event types"));
      }
      if (label_fed) {
        if (st.key_fields.size() != 1) {
          return n["key"].Error(StrCat("feature '", f->name,
                                       "': a label names one entity: one key field with on: [label]"));
        }
        st.label_fed = true;
        // A label names its entity by one value (target_entity.value, as
        // text), read as the key field's type: the types that carry the
        // field must key alike, or which of them the label reaches would
        // depend on the schema's order.
        const EventTypeSpec* first = nullptr;
        for (const EventTypeSpec& t : s.types) {
          const FieldSpec* kf = t.Find(st.key_fields[k]);
          if (!kf) continue;
          if (first && !event::KeyTextAlike(kf->type, st.key_type)) {
            return n["key"].Error(StrCat(
                "feature '", f->name, "': key field '", st.key_fields[k], "' is ",
                event::FieldTypeName(st.key_type), " in ", first->name, " but ",
                event::FieldTypeName(kf->type), " in ", t.name,
                ", which key differently: a label names its entity by one value, so give the "
                "field one type"));
          }
          if (!first) first = &t;
          st.key_type = kf->type;
        }
      }
      // Keys are read from every type that has them, so check every type.
      const FieldSpec* rf = RoleField(s, AllTypes(), st.key_fields[k]);
      if (rf && (rf->role == Role::kLabel || rf->role == Role::kGroundTruth)) {
        return n["key"].Error(StrCat("feature '", f->name, "': key field '", rf->name, "' is a ",
                                     event::RoleName(rf->role), " field"));
      }
    }
    VIGIL_ASSIGN_OR_RETURN(f->window_ms, WindowOf(n, f));
    VIGIL_ASSIGN_OR_RETURN(f->lag_ms, n.GetDurationMs("lag", 0));
    if (f->lag_ms < 0 || f->lag_ms > 3650 * core::kMsPerDay) return n["lag"].Error("lag: at most 3650d");
    if (f->lag_ms > 0 && f->window_ms == 0) {
      return n["lag"].Error(StrCat("feature '", f->name, "': a lag needs a finite window"));
    }
    if ((f->agg == Agg::kFirstSeen || f->agg == Agg::kTimeSinceLast) && f->lag_ms > 0) {
      return n["lag"].Error(StrCat("feature '", f->name, "': ", info->name, " takes no lag"));
    }
    VIGIL_ASSIGN_OR_RETURN(f->half_life_ms, n.GetDurationMs("half_life", 0));
    if (f->agg == Agg::kDecayedSum && f->half_life_ms <= 0) {
      return n.Error(StrCat("feature '", f->name, "': decayed_sum needs half_life (e.g. 1d)"));
    }
    if (f->agg != Agg::kDecayedSum && n["half_life"].IsDefined()) {
      return n["half_life"].Error("half_life is for decayed_sum");
    }
    if (n["default"].IsDefined()) {
      if (f->agg == Agg::kTimeSinceLast || f->agg == Agg::kFirstSeen) {
        return n["default"].Error(StrCat(info->name, " is missing (NaN) for an entity never seen: ",
                                         "no default; use coalesce() in a derived feature"));
      }
      VIGIL_ASSIGN_OR_RETURN(f->empty_value, n["default"].Double());
    }

    VIGIL_ASSIGN_OR_RETURN(st.of, n.GetString("of", ""));
    if (info->needs_of && st.of.empty() && f->agg != Agg::kDecayedSum) {
      return n.Error(StrCat("feature '", f->name, "': ", info->name, " needs of: the field it reads"));
    }
    if (!info->needs_of && !st.of.empty() && f->agg != Agg::kDecayedSum) {
      return n["of"].Error(StrCat("feature '", f->name, "': ", info->name, " reads no field"));
    }
    st.of_field_index.assign(s.types.size(), -1);
    if (!st.of.empty()) {
      bool any = false;
      for (const EventTypeSpec& t : s.types) {
        if (!st.on_type[t.index]) continue;
        const FieldSpec* of = t.Find(st.of);
        if (!of) continue;
        any = true;
        if (info->numeric_of && !IsNumeric(of->type)) {
          return n["of"].Error(StrCat("feature '", f->name, "': ", info->name, " needs a number; '",
                                      st.of, "' is a ", event::FieldTypeName(of->type), " in '",
                                      t.name, "'"));
        }
        st.of_field_index[t.index] = of->index;
      }
      if (!any) {
        return n["of"].Error(StrCat("feature '", f->name, "': field '", st.of,
                                    "' is in none of its event types"));
      }
      VIGIL_RETURN_IF_ERROR(CheckLeakage(n["of"], f->name, RoleField(s, st.on_type, st.of),
                                         f->lag_ms, true));
    }
    if (n["where"].IsDefined()) {
      VIGIL_ASSIGN_OR_RETURN(st.where_text, n["where"].String());
      expr::Bindings b = Bind(f->index);
      b.feature = [](std::string_view) -> std::optional<int> { return std::nullopt; };
      auto e = expr::Expr::Compile(st.where_text, b, expr::SourcePosOf(n["where"]));
      if (!e.ok()) return e.status();
      if (e->result_kind() != expr::Kind::kBool) {
        return n["where"].Error(StrCat("feature '", f->name, "': where must be true or false"));
      }
      for (const std::string& field : e->event_fields_read()) {
        VIGIL_RETURN_IF_ERROR(CheckLeakage(n["where"], f->name, RoleField(s, st.on_type, field),
                                           f->lag_ms, true));
      }
      st.where = std::make_shared<const expr::Expr>(std::move(*e));
    }
    // Only a decayed_sum without `of` reads the entries' values (1 each) when
    // the stream has no field; counts and times never do.
    const bool unit = f->agg == Agg::kDecayedSum && st.of.empty();
    if (unit) st.unit_values = true;
    f->stream = StreamFor(std::move(st), info->needs_of || unit);
    Stream& stream = spec_->streams[f->stream];
    if (f->window_ms == 0) stream.lifetime = true;
    stream.max_reach_ms = std::max(stream.max_reach_ms, f->lag_ms + f->window_ms);
    if (f->agg == Agg::kDistinctCount) stream.distinct = true;
    return absl::OkStatus();
  }

  absl::Status ClusterFeature(const ConfigNode& n, FeatureDef* f) {
    const IdentitySpec& g = spec_->identity;
    const std::string agg = n["agg"].Text();
    if (!g.enabled) {
      return n["agg"].Error(StrCat("feature '", f->name, "': ", agg, " needs an identity: section"));
    }
    for (const char* k : {"key", "of", "on", "where", "window", "lag", "half_life", "expr"}) {
      if (n[k].IsDefined()) {
        return n[k].Error(StrCat("feature '", f->name, "': ", agg,
                                 " reads the identity graph of the event's account: no '", k, "'"));
      }
    }
    f->is_aggregate = true;
    f->agg = FindAgg(agg)->agg;
    f->empty_value = kNaN;
    if (f->agg == Agg::kClusterCounter) {
      VIGIL_ASSIGN_OR_RETURN(std::string counter, n.GetString("counter", ""));
      for (size_t i = 0; i < g.counters.size(); ++i) {
        if (g.counters[i].name == counter) f->counter = static_cast<int>(i);
      }
      if (f->counter < 0) {
        return n.Error(StrCat("feature '", f->name, "': counter: one of identity.counters (", 
                              counter.empty() ? "none given" : StrCat("no '", counter, "'"), ")"));
      }
    } else if (n["counter"].IsDefined()) {
      return n["counter"].Error("counter is for cluster_counter");
    }
    if (n["default"].IsDefined()) {
      VIGIL_ASSIGN_OR_RETURN(f->empty_value, n["default"].Double());
    }
    return absl::OkStatus();
  }

  absl::StatusOr<int64_t> WindowOf(const ConfigNode& n, const FeatureDef* f) {
    const ConfigNode w = n["window"];
    if (f->agg == Agg::kTimeSinceLast && w.IsDefined() && w.Text() != "lifetime") {
      return w.Error("time_since_last reads the entity's previous event, however old: no window");
    }
    if (!w.IsDefined()) {
      if (f->agg == Agg::kFirstSeen || f->agg == Agg::kTimeSinceLast) return 0;
      return n.Error(StrCat("feature '", f->name, "' needs window: a duration (1d) or lifetime"));
    }
    if (w.Text() == "lifetime") return 0;
    if (f->agg == Agg::kFirstSeen) return w.Error("first_seen is over the entity's lifetime: no window");
    auto ms = n.GetDurationMs("window", 0);
    if (!ms.ok()) return ms.status();
    if (*ms <= 0) return w.Error("window: a positive duration or lifetime");
    if (*ms > 3650 * core::kMsPerDay) return w.Error("window: at most 3650d");
    return *ms;
  }

  // Whether `field` is present in every valid event of the stream's types.
  bool AlwaysPresent(const Stream& st, const std::string& field) const {
    for (const EventTypeSpec& t : spec_->schema->types) {
      if (!st.on_type[t.index]) continue;
      const FieldSpec* f = t.Find(field);
      if (!f || !f->required || f->nullable) return false;
    }
    return true;
  }

  // The stream for `st`: an existing one with the same key, types and filter
  // and the same field; or, since counts and times do not read the value,
  // one whose field is always present (count and mean of the amount then
  // share one buffer per card).
  int StreamFor(Stream st, bool reads_value) {
    for (Stream& s : spec_->streams) {
      if (s.key_fields != st.key_fields || s.on_type != st.on_type || s.where_text != st.where_text) {
        continue;
      }
      if (s.of == st.of) {
        s.unit_values |= st.unit_values;
        return s.index;
      }
      if (!reads_value && st.of.empty() && AlwaysPresent(s, s.of)) return s.index;
      if (s.of.empty() && !s.unit_values && AlwaysPresent(st, st.of)) {
        s.of = st.of;
        s.of_field_index = st.of_field_index;
        return s.index;
      }
    }
    st.index = static_cast<int>(spec_->streams.size());
    spec_->streams.push_back(std::move(st));
    return spec_->streams.back().index;
  }

  // Orders derived features so that each comes after the derived features
  // it reads (aggregates are all computed first); a cycle is an error.
  absl::Status OrderDerived(const std::vector<ConfigNode>& nodes) {
    const auto& fs = spec_->features;
    std::vector<int> state(fs.size(), 0);  // 0 new, 1 visiting, 2 done
    std::vector<std::string> path;
    std::function<absl::Status(int)> visit = [&](int i) -> absl::Status {
      if (!fs[i].expr || state[i] == 2) return absl::OkStatus();
      if (state[i] == 1) {
        path.push_back(fs[i].name);
        return nodes[i]["expr"].Error(StrCat("derived features form a cycle: ", StrJoin(path, " -> ")));
      }
      state[i] = 1;
      path.push_back(fs[i].name);
      for (int dep : fs[i].expr->features_read()) VIGIL_RETURN_IF_ERROR(visit(dep));
      path.pop_back();
      state[i] = 2;
      spec_->eval_order.push_back(i);
      return absl::OkStatus();
    };
    for (size_t i = 0; i < fs.size(); ++i) VIGIL_RETURN_IF_ERROR(visit(static_cast<int>(i)));
    return absl::OkStatus();
  }

  std::shared_ptr<FeatureSpec> spec_;
  std::string dir_;
  StringMap<int> names_;
};

absl::StatusOr<std::shared_ptr<const FeatureSpec>> Load(std::string_view text, std::string name,
                                                        std::string dir,
                                                        std::shared_ptr<const Schema> schema) {
  VIGIL_ASSIGN_OR_RETURN(ConfigNode root, ConfigNode::LoadString(text, name));
  auto spec = std::make_shared<FeatureSpec>();
  spec->file = name;
  spec->schema = std::move(schema);
  std::string extra;
  Builder b(spec, std::move(dir));
  VIGIL_RETURN_IF_ERROR(b.Build(root, &extra));
  spec->content_hash =
      event::Sha256Hex(StrCat(root.CanonicalText(), "\n", extra, "\n", spec->schema->content_hash));
  spec->legacy_hash = event::Sha256Hex(StrCat(text, "\n", extra, "\n", spec->schema->text_hash));
  return std::shared_ptr<const FeatureSpec>(std::move(spec));
}

}  // namespace

const char* AggName(Agg a) {
  for (const AggInfo& i : kAggs) {
    if (i.agg == a) return i.name;
  }
  return "?";
}

absl::StatusOr<std::shared_ptr<const FeatureSpec>> FeatureSpec::Load(
    const std::string& path, std::shared_ptr<const Schema> schema) {
  auto text = ReadFile(path);
  if (!text.ok())
    return absl::NotFoundError(StrCat("cannot open the feature spec: ", text.status().message()));
  return feature::Load(*text, path, DirOf(path), std::move(schema));
}

absl::StatusOr<std::shared_ptr<const FeatureSpec>> FeatureSpec::LoadString(
    std::string_view yaml, std::string_view name, std::shared_ptr<const Schema> schema) {
  return feature::Load(yaml, std::string(name), ".", std::move(schema));
}

int FeatureSpec::FeatureIndex(std::string_view name) const {
  for (const FeatureDef& f : features) {
    if (f.name == name) return f.index;
  }
  return -1;
}

std::vector<std::string> FeatureSpec::FeatureNames() const {
  std::vector<std::string> out;
  for (const FeatureDef& f : features) out.push_back(f.name);
  return out;
}

}  // namespace vigil::feature
