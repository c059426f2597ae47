#include "serve/config.h"

#include <cctype>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "core/config.h"
#include "core/strings.h"
#include "store/store.h"

namespace vigil::serve {
namespace {

namespace fs = std::filesystem;

std::string Resolve(const std::string& dir, const std::string& p) {
  if (p.empty() || fs::path(p).is_absolute()) return p;
  return (fs::path(dir) / p).lexically_normal().string();
}

// A file vigil writes (the store, the journal...): refused at its key when
// empty, or naming a directory, so that --check says what the start would.
absl::Status CheckWrittenFile(const core::ConfigNode& n, std::string_view key,
                              const std::string& full) {
  std::error_code ec;
  if (full.empty()) return n.Error(StrCat("'", key, "': needs a path"));
  if (full.back() == '/' || fs::is_directory(full, ec)) {
    return n.Error(StrCat("'", key, "': ", full, " is a directory, not a file"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> RequiredPath(const core::ConfigNode& root, std::string_view key,
                                         const std::string& dir) {
  core::ConfigNode n = root[key];
  if (!n.IsDefined() || n.IsNull()) return root.Error(StrCat("'", key, "' is required"));
  VIGIL_ASSIGN_OR_RETURN(std::string p, n.String());
  std::string full = Resolve(dir, p);
  std::error_code ec;
  if (!fs::exists(full, ec)) return n.Error(StrCat("'", key, "': ", full, " does not exist"));
  return full;
}

absl::StatusOr<ModelRef> ParseModel(const core::ConfigNode& n, const std::string& dir,
                                    bool challenger) {
  ModelRef m;
  m.where = n.Where();
  if (n.IsScalar()) {  // champion: models/w1
    VIGIL_ASSIGN_OR_RETURN(m.bundle, n.String());
  } else {
    VIGIL_RETURN_IF_ERROR(n.CheckKeys({"name", "bundle", "mode", "share"}));
    VIGIL_ASSIGN_OR_RETURN(m.bundle, n["bundle"].String());
    VIGIL_ASSIGN_OR_RETURN(m.name, n.GetString("name", ""));
    VIGIL_ASSIGN_OR_RETURN(std::string mode, n.GetString("mode", challenger ? "shadow" : "champion"));
    if (!challenger) {
      if (mode != "champion") return n["mode"].Error("the champion's mode is 'champion'");
    } else if (mode == "shadow") {
      m.mode = ModelRef::Mode::kShadow;
    } else if (mode == "ab") {
      m.mode = ModelRef::Mode::kAb;
      VIGIL_ASSIGN_OR_RETURN(m.share, n["share"].Double());
      if (!(m.share > 0 && m.share < 1)) return n["share"].Error("share must be in (0, 1)");
    } else {
      return n["mode"].Error(StrCat("mode '", mode, "': a challenger is 'shadow' or 'ab'"));
    }
    if (m.mode != ModelRef::Mode::kAb && n["share"].IsDefined())
      return n["share"].Error("share is for mode: ab");
  }
  // A missing bundle is the engine's to report: at start it refuses to
  // start, at a reload the model keeps its last good version.
  m.bundle = Resolve(dir, m.bundle);
  const bool named = !m.name.empty();
  if (!named) m.name = ModelNameOfBundle(m.bundle);
  if (const std::string why = BadModelName(m.name); !why.empty()) {
    return (named ? n["name"] : n)
        .Error(StrCat(
            why, named ? "" : " (a model takes its bundle's folder name unless it has a name:)"));
  }
  return m;
}

constexpr int64_t kYearSeconds = 366 * 86400;
constexpr int64_t kMaxPretouchMb = 1 << 20;  // 1 TiB
constexpr int64_t kMaxRecentDecisions = 10'000'000;

// What the server writes must be files of their own: a journal that is the
// store's database moved every stored decision out of it at the next
// start, and a dead-letter file that is the schema broke the next start.
// Compared as the paths resolve (symbolic links followed where they exist).
absl::Status CheckPathsApart(const core::ConfigNode& root, const ServeConfig& c) {
  struct Named {
    std::string key;
    std::string path;
    bool written;
  };
  std::vector<Named> paths = {{"store", store::StoreFilePath(c.store), true},
                              {"journal", c.journal, true},
                              {"dead_letter", c.dead_letter, true},
                              {"event_log", c.event_log_dir, true},
                              {"schema", c.schema, false},
                              {"features", c.features, false},
                              {"policy", c.policy, false}};
  if (!c.keys_file.empty()) paths.push_back({"keys_file", c.keys_file, true});
  if (!c.tls_cert.empty()) paths.push_back({"tls.cert", c.tls_cert, false});
  if (!c.tls_key.empty()) paths.push_back({"tls.key", c.tls_key, false});
  paths.push_back({"the config itself", c.file, false});
  for (Named& n : paths) {
    std::error_code ec;
    fs::path canon = fs::weakly_canonical(fs::path(n.path), ec);
    n.path = (ec ? fs::path(n.path).lexically_normal() : canon).string();
  }
  for (size_t i = 0; i < paths.size(); ++i) {
    for (size_t j = i + 1; j < paths.size(); ++j) {
      const Named& a = paths[i];
      const Named& b = paths[j];
      if (!(a.written || b.written) || a.path.empty() || a.path != b.path) continue;
      const Named& w = a.written ? a : b;
      const Named& o = a.written ? b : a;
      const core::ConfigNode at = root[w.key];
      return (at.IsDefined() ? at : root)
          .Error(StrCat(w.key, " and ", o.key, " are the same file (", w.path, "): vigil writes ",
                        w.key, ", so each needs a file of its own"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

std::string ModelNameOfBundle(const std::string& bundle) {
  fs::path p = fs::path(bundle).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  return p.filename().string();
}

std::string BadModelName(std::string_view name) {
  if (name.empty()) return "a model needs a name";
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) {
      return StrCat("model name '", name,
                    "': letters, digits, '.', '_' and '-' only (it shows as name@version in "
                    "decisions and /metrics)");
    }
  }
  return "";
}

absl::Status ParseListen(std::string_view text, std::string* host, int* port) {
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0)
    return absl::InvalidArgumentError(StrCat("listen address '", text, "': expected HOST:PORT"));
  *host = std::string(text.substr(0, colon));
  // An IPv6 address in brackets, as in a URL: [::1]:8080.
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']') {
    *host = host->substr(1, host->size() - 2);
  } else if (host->find(':') != std::string::npos) {
    return absl::InvalidArgumentError(
        StrCat("listen address '", text, "': an IPv6 address goes in brackets, as [::1]:8080"));
  }
  std::string_view p = text.substr(colon + 1);
  int v = 0;
  if (p.empty() || p.size() > 5) v = -1;
  for (char c : p) {
    if (c < '0' || c > '9') { v = -1; break; }
    v = v * 10 + (c - '0');
  }
  if (v < 0 || v > 65535)
    return absl::InvalidArgumentError(StrCat("listen address '", text, "': the port must be 0..65535"));
  *port = v;
  return absl::OkStatus();
}

absl::Status EnsureStateDirs(const ServeConfig& c) {
  std::vector<fs::path> dirs = {fs::path(c.journal).parent_path(), fs::path(c.dead_letter).parent_path(),
                                fs::path(c.event_log_dir)};
  dirs.push_back(fs::path(store::StoreFilePath(c.store)).parent_path());
  if (!c.keys_file.empty()) dirs.push_back(fs::path(c.keys_file).parent_path());
  for (const fs::path& d : dirs) {
    if (d.empty()) continue;
    std::error_code ec;
    fs::create_directories(d, ec);
    if (ec) return absl::PermissionDeniedError(StrCat("cannot create the folder ", d.string(), ": ", ec.message()));
  }
  return absl::OkStatus();
}

absl::Status CheckStatePaths(const ServeConfig& c) {
  std::error_code ec;
  auto is = [&](const fs::path& p, bool dir, std::string_view what) -> absl::Status {
    if (p.empty() || !fs::exists(p, ec)) return absl::OkStatus();
    if (fs::is_directory(p, ec) != dir) {
      return absl::FailedPreconditionError(StrCat(
          what, " ", p.string(), " is ", dir ? "not a directory" : "a directory, not a file"));
    }
    return absl::OkStatus();
  };
  const std::string db = store::StoreFilePath(c.store);
  VIGIL_RETURN_IF_ERROR(is(c.event_log_dir, true, "the event log folder"));
  VIGIL_RETURN_IF_ERROR(is(c.journal, false, "the journal"));
  VIGIL_RETURN_IF_ERROR(is(c.dead_letter, false, "the dead-letter file"));
  VIGIL_RETURN_IF_ERROR(is(db, false, "the store"));
  if (!c.keys_file.empty()) VIGIL_RETURN_IF_ERROR(is(c.keys_file, false, "the keys file"));
  for (const std::string& f : {c.journal, c.dead_letter, db, c.keys_file}) {
    if (!f.empty()) VIGIL_RETURN_IF_ERROR(is(fs::path(f).parent_path(), true, "the folder"));
  }
  return store::CheckStoreFile(c.store);
}

absl::StatusOr<ServeConfig> LoadServeConfig(const std::string& path) {
  VIGIL_ASSIGN_OR_RETURN(core::ConfigNode root, core::ConfigNode::LoadFile(path));
  if (!root.IsMap()) return root.Error("vigil.yaml must be a map (schema:, features:, models:, ...)");
  VIGIL_RETURN_IF_ERROR(root.CheckKeys({"schema", "features", "policy", "models", "store", "journal",
                                        "event_log", "dead_letter", "listen", "keys_file", "tls",
                                        "reasons", "experiment_salt", "limits"}));
  ServeConfig c;
  c.file = path;
  c.dir = fs::path(path).parent_path().string();
  if (c.dir.empty()) c.dir = ".";
  VIGIL_ASSIGN_OR_RETURN(c.schema, RequiredPath(root, "schema", c.dir));
  VIGIL_ASSIGN_OR_RETURN(c.features, RequiredPath(root, "features", c.dir));
  VIGIL_ASSIGN_OR_RETURN(c.policy, RequiredPath(root, "policy", c.dir));

  core::ConfigNode models = root["models"];
  if (models.IsDefined() && !models.IsNull()) {
    if (!models.IsMap()) return models.Error("models: a map from event type to its models");
    for (auto& [type, n] : models.Entries()) {
      TypeModels t;
      t.event_type = type;
      t.where = n.Where();
      if (n.IsScalar()) {
        VIGIL_ASSIGN_OR_RETURN(t.champion, ParseModel(n, c.dir, false));
      } else {
        VIGIL_RETURN_IF_ERROR(n.CheckKeys({"champion", "challengers", "holdout"}));
        if (!n["champion"].IsDefined()) return n.Error(StrCat("models.", type, ": 'champion' is required"));
        VIGIL_ASSIGN_OR_RETURN(t.champion, ParseModel(n["champion"], c.dir, false));
        if (n["challengers"].IsDefined()) {
          if (!n["challengers"].IsSequence()) return n["challengers"].Error("challengers: a list");
          double ab = 0;
          for (const core::ConfigNode& ch : n["challengers"].Items()) {
            VIGIL_ASSIGN_OR_RETURN(ModelRef m, ParseModel(ch, c.dir, true));
            if (m.mode == ModelRef::Mode::kAb) ab += m.share;
            bool taken = m.name == t.champion.name;
            for (const ModelRef& o : t.challengers) taken = taken || o.name == m.name;
            if (taken) return ch.Error(StrCat("two models of ", type, " are named '", m.name, "'"));
            t.challengers.push_back(std::move(m));
          }
          if (ab >= 1) return n["challengers"].Error("the A/B shares must leave the champion a share (sum < 1)");
        }
        VIGIL_ASSIGN_OR_RETURN(t.holdout, n.GetDouble("holdout", 0));
        if (!(t.holdout >= 0 && t.holdout <= 0.5))
          return n["holdout"].Error("holdout must be in [0, 0.5]: the share of would-be blocks let through");
      }
      c.models.push_back(std::move(t));
    }
  }

  VIGIL_ASSIGN_OR_RETURN(c.store, root.GetString("store", c.store));
  if (c.store.rfind("sqlite:", 0) == 0) {
    std::string p = c.store.substr(7);
    if (p.empty()) return root["store"].Error("store: sqlite:PATH needs a path");
    VIGIL_RETURN_IF_ERROR(CheckWrittenFile(root["store"], "store", Resolve(c.dir, p)));
    c.store = "sqlite:" + Resolve(c.dir, p);
  } else {
    return root["store"].Error(StrCat("store '", c.store, "': supported is sqlite:PATH"));
  }
  VIGIL_ASSIGN_OR_RETURN(c.journal, root.GetString("journal", "decisions.journal.jsonl"));
  c.journal = Resolve(c.dir, c.journal);
  VIGIL_RETURN_IF_ERROR(CheckWrittenFile(root["journal"], "journal", c.journal));
  VIGIL_ASSIGN_OR_RETURN(c.dead_letter, root.GetString("dead_letter", "dead-letter.jsonl"));
  c.dead_letter = Resolve(c.dir, c.dead_letter);
  VIGIL_RETURN_IF_ERROR(CheckWrittenFile(root["dead_letter"], "dead_letter", c.dead_letter));
  core::ConfigNode log = root["event_log"];
  c.event_log_dir = "eventlog";
  if (log.IsDefined() && log.IsScalar()) {
    VIGIL_ASSIGN_OR_RETURN(c.event_log_dir, log.String());
  } else if (log.IsDefined()) {
    VIGIL_RETURN_IF_ERROR(log.CheckKeys(
        {"dir", "rotate_mb", "rotate_daily", "sync_ms", "save_state_s", "save_timeout_s"}));
    VIGIL_ASSIGN_OR_RETURN(c.event_log_dir, log.GetString("dir", c.event_log_dir));
    VIGIL_ASSIGN_OR_RETURN(int64_t mb, log.GetInt("rotate_mb", c.event_log_rotate_bytes >> 20));
    if (mb < 1 || mb > (int64_t{1} << 20))
      return log["rotate_mb"].Error("rotate_mb must be in 1..1048576 (1 TiB)");
    c.event_log_rotate_bytes = mb << 20;
    VIGIL_ASSIGN_OR_RETURN(c.event_log_rotate_daily, log.GetBool("rotate_daily", true));
    VIGIL_ASSIGN_OR_RETURN(c.event_log_sync_ms, log.GetInt("sync_ms", c.event_log_sync_ms));
    if (c.event_log_sync_ms < 0 || c.event_log_sync_ms > 3'600'000)
      return log["sync_ms"].Error("sync_ms must be in 0..3600000 (an hour; 0: never fsync)");
    VIGIL_ASSIGN_OR_RETURN(c.event_log_save_state_s, log.GetInt("save_state_s", c.event_log_save_state_s));
    if (c.event_log_save_state_s < 0 || c.event_log_save_state_s > kYearSeconds) {
      return log["save_state_s"].Error(
          "save_state_s must be in 0..31622400 (a year; 0: save the state only at a clean stop)");
    }
    VIGIL_ASSIGN_OR_RETURN(c.event_log_save_timeout_s,
                           log.GetInt("save_timeout_s", c.event_log_save_timeout_s));
    if (c.event_log_save_timeout_s < 0 || c.event_log_save_timeout_s > kYearSeconds) {
      return log["save_timeout_s"].Error(
          "save_timeout_s must be in 0..31622400 (a year; 0: three times save_state_s, and at "
          "least 60)");
    }
  }
  c.event_log_dir = Resolve(c.dir, c.event_log_dir);
  {
    const core::ConfigNode at = log.IsMap() ? log["dir"] : log;
    std::error_code ec;
    if (c.event_log_dir.empty()) return at.Error("'event_log': needs a directory");
    if (fs::exists(c.event_log_dir, ec) && !fs::is_directory(c.event_log_dir, ec)) {
      return at.Error(StrCat("'event_log': ", c.event_log_dir, " is not a directory"));
    }
  }

  VIGIL_ASSIGN_OR_RETURN(c.listen, root.GetString("listen", c.listen));
  std::string host;
  int port = 0;
  if (absl::Status s = ParseListen(c.listen, &host, &port); !s.ok()) return root["listen"].Error(std::string(s.message()));
  VIGIL_ASSIGN_OR_RETURN(c.keys_file, root.GetString("keys_file", ""));
  c.keys_file = Resolve(c.dir, c.keys_file);
  if (root["keys_file"].IsDefined() && !root["keys_file"].IsNull()) {
    VIGIL_RETURN_IF_ERROR(CheckWrittenFile(root["keys_file"], "keys_file", c.keys_file));
  }
  if (core::ConfigNode tls = root["tls"]; tls.IsDefined()) {
    VIGIL_RETURN_IF_ERROR(tls.CheckKeys({"cert", "key"}));
    VIGIL_ASSIGN_OR_RETURN(c.tls_cert, RequiredPath(tls, "cert", c.dir));
    VIGIL_ASSIGN_OR_RETURN(c.tls_key, RequiredPath(tls, "key", c.dir));
  }
  VIGIL_ASSIGN_OR_RETURN(c.reasons, root.GetInt("reasons", c.reasons));
  if (c.reasons < 0 || c.reasons > 32) return root["reasons"].Error("reasons must be in 0..32");
  VIGIL_ASSIGN_OR_RETURN(int64_t salt, root.GetInt("experiment_salt", 0));
  c.experiment_salt = static_cast<uint64_t>(salt);

  if (core::ConfigNode l = root["limits"]; l.IsDefined()) {
    VIGIL_RETURN_IF_ERROR(
        l.CheckKeys({"max_body_bytes", "max_batch", "rate_per_key", "burst_per_key", "threads",
                     "recent_decisions", "queue_capacity", "max_ahead_of_clock_s", "pretouch_mb"}));
    Limits& x = c.limits;
    VIGIL_ASSIGN_OR_RETURN(x.max_body_bytes, l.GetInt("max_body_bytes", x.max_body_bytes));
    VIGIL_ASSIGN_OR_RETURN(x.max_batch, l.GetInt("max_batch", x.max_batch));
    VIGIL_ASSIGN_OR_RETURN(x.rate_per_key, l.GetDouble("rate_per_key", x.rate_per_key));
    VIGIL_ASSIGN_OR_RETURN(x.burst_per_key, l.GetDouble("burst_per_key", x.burst_per_key));
    VIGIL_ASSIGN_OR_RETURN(x.threads, l.GetInt("threads", x.threads));
    VIGIL_ASSIGN_OR_RETURN(x.recent_decisions, l.GetInt("recent_decisions", x.recent_decisions));
    VIGIL_ASSIGN_OR_RETURN(x.queue_capacity, l.GetInt("queue_capacity", x.queue_capacity));
    VIGIL_ASSIGN_OR_RETURN(x.max_ahead_of_clock_s,
                           l.GetInt("max_ahead_of_clock_s", x.max_ahead_of_clock_s));
    VIGIL_ASSIGN_OR_RETURN(x.pretouch_mb, l.GetInt("pretouch_mb", x.pretouch_mb));
    if (x.pretouch_mb < 0 || x.pretouch_mb > kMaxPretouchMb) {
      return l["pretouch_mb"].Error(
          StrCat("pretouch_mb must be in 0..", kMaxPretouchMb, " (MiB; 0 = off)"));
    }
    if (x.max_body_bytes < 256) return l["max_body_bytes"].Error("max_body_bytes must be at least 256");
    if (x.max_batch < 1) return l["max_batch"].Error("max_batch must be at least 1");
    if (x.rate_per_key < 0) return l["rate_per_key"].Error("rate_per_key must be >= 0 (0 = off)");
    // A bucket smaller than one token never lets a request through.
    if (x.burst_per_key != 0 && x.burst_per_key < 1)
      return l["burst_per_key"].Error("burst_per_key must be 0 (one second's worth) or at least 1");
    if (x.threads < 1 || x.threads > 64) return l["threads"].Error("threads must be in 1..64");
    // The retry memory's table is sized for it at start (2 x 64 bytes each)
    // and each holds a decision's document (a few KiB).
    if (x.recent_decisions < 0 || x.recent_decisions > kMaxRecentDecisions) {
      return l["recent_decisions"].Error(StrCat(
          "recent_decisions must be in 0..", kMaxRecentDecisions, " (decisions kept in memory)"));
    }
    if (x.queue_capacity < 1) return l["queue_capacity"].Error("queue_capacity must be at least 1");
    if (x.max_ahead_of_clock_s < 0 || x.max_ahead_of_clock_s > kYearSeconds) {
      return l["max_ahead_of_clock_s"].Error(
          "max_ahead_of_clock_s must be in 0..31622400 (a year; 0 = off)");
    }
  }
  VIGIL_RETURN_IF_ERROR(CheckPathsApart(root, c));
  return c;
}

}  // namespace vigil::serve
