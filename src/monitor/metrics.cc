#include "monitor/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>

#include "core/strings.h"

namespace vigil::monitor {

namespace metrics_internal {
uint32_t AssignShard() noexcept {
  static std::atomic<uint32_t> next{0};
  tls_shard = next.fetch_add(1, std::memory_order_relaxed) % kShards;
  return tls_shard;
}
}  // namespace metrics_internal

const char* MetricTypeName(MetricType t) {
  switch (t) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

// --- metrics ---

int64_t Counter::value() const noexcept {
  int64_t v = 0;
  for (const Cell& c : cells_) v += c.v.load(std::memory_order_relaxed);
  return v;
}

Histogram::Histogram(std::vector<double> upper_bounds) : bounds_(std::move(upper_bounds)) {
  constexpr size_t kWordsPerLine = kCacheLine / sizeof(uint64_t);
  const size_t words = bounds_.size() + 2;  // sum, the bounds, +Inf
  stride_ = (words + kWordsPerLine - 1) / kWordsPerLine * kWordsPerLine;
  // Over-allocate by a line and start the cells on a line boundary, so that
  // no two shards share one.
  storage_.reset(new std::atomic<uint64_t>[stride_ * kShards + kWordsPerLine]());
  const uintptr_t p = reinterpret_cast<uintptr_t>(storage_.get());
  const uintptr_t aligned = (p + kCacheLine - 1) / kCacheLine * kCacheLine;
  cells_ = storage_.get() + (aligned - p) / sizeof(uint64_t);
}

Histogram::Snapshot Histogram::Collect() const {
  Snapshot s;
  s.upper_bounds = bounds_;
  s.cumulative.assign(bounds_.size() + 1, 0);
  for (uint32_t k = 0; k < kShards; ++k) {
    const std::atomic<uint64_t>* cell = shard(k);
    s.sum += std::bit_cast<double>(cell[0].load(std::memory_order_relaxed));
    for (size_t i = 0; i <= bounds_.size(); ++i) {
      s.cumulative[i] += cell[1 + i].load(std::memory_order_relaxed);
    }
  }
  for (size_t i = 1; i < s.cumulative.size(); ++i) s.cumulative[i] += s.cumulative[i - 1];
  s.count = s.cumulative.back();
  return s;
}

std::vector<double> LatencyBuckets() {
  // Written out rather than computed: 2.5 * 1e-5 is not the double nearest
  // 2.5e-05 and would render as 2.5000000000000004e-05.
  return {5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3,
          5e-3, 1e-2, 2.5e-2, 5e-2, 0.1,  0.25,   0.5,  1.0};
}

// --- formatting ---

namespace {

bool NameChar(char c, bool first, bool colon) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') return true;
  if (colon && c == ':') return true;
  return !first && c >= '0' && c <= '9';
}

// Length of the valid UTF-8 sequence at the start of `s`, or 0.
size_t Utf8Length(std::string_view s) {
  const auto b = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char c = b(0);
  size_t n;
  unsigned char lo = 0x80, hi = 0xBF;  // range of the second byte
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;  // no surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (s.size() < n || b(1) < lo || b(1) > hi) return 0;
  for (size_t i = 2; i < n; ++i) {
    if (b(i) < 0x80 || b(i) > 0xBF) return 0;
  }
  return n;
}

// Appends `text` with \ and newline escaped (and " too when `quote`), each
// byte that is not valid UTF-8 replaced by U+FFFD: Prometheus refuses the
// whole exposition over one bad byte.
void AppendEscaped(std::string* out, std::string_view text, bool quote) {
  while (!text.empty()) {
    const char c = text[0];
    if (c == '\\') {
      out->append("\\\\");
    } else if (c == '\n') {
      out->append("\\n");
    } else if (c == '"' && quote) {
      out->append("\\\"");
    } else {
      const size_t n = Utf8Length(text);
      if (n == 0) {
        out->append("\xEF\xBF\xBD");
        text.remove_prefix(1);
      } else {
        out->append(text.substr(0, n));
        text.remove_prefix(n);
      }
      continue;
    }
    text.remove_prefix(1);
  }
}

void AppendEscapedHelp(std::string* out, std::string_view help) {
  AppendEscaped(out, help, /*quote=*/false);
}

// `{k="v",...` without the closing brace, or nothing for no labels.
void AppendLabelsOpen(std::string* out, const Labels& labels) {
  if (labels.empty()) return;
  out->push_back('{');
  bool first = true;
  for (const auto& [k, v] : labels) {
    if (!first) out->push_back(',');
    first = false;
    out->append(k);
    out->append("=\"");
    AppendEscapedLabelValue(out, v);
    out->push_back('"');
  }
}

void AppendLabels(std::string* out, const Labels& labels) {
  AppendLabelsOpen(out, labels);
  if (!labels.empty()) out->push_back('}');
}

}  // namespace

bool IsValidMetricName(std::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    if (!NameChar(name[i], i == 0, /*colon=*/true)) return false;
  }
  return true;
}

bool IsValidLabelName(std::string_view name) {
  if (name.empty() || StartsWith(name, "__")) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    if (!NameChar(name[i], i == 0, /*colon=*/false)) return false;
  }
  return true;
}

void AppendEscapedLabelValue(std::string* out, std::string_view value) {
  AppendEscaped(out, value, /*quote=*/true);
}

void AppendValue(std::string* out, double value) {
  if (std::isnan(value)) {
    out->append("NaN");
  } else if (std::isinf(value)) {
    out->append(value > 0 ? "+Inf" : "-Inf");
  } else {
    char buf[32];
    auto r = std::to_chars(buf, buf + sizeof buf, value);
    out->append(buf, static_cast<size_t>(r.ptr - buf));
  }
}

void AppendHeader(std::string* out, std::string_view name, std::string_view help, MetricType type) {
  out->append("# HELP ");
  out->append(name);
  out->push_back(' ');
  AppendEscapedHelp(out, help);
  out->append("\n# TYPE ");
  out->append(name);
  out->push_back(' ');
  out->append(MetricTypeName(type));
  out->push_back('\n');
}

void AppendSample(std::string* out, std::string_view name, const Labels& labels, double value) {
  out->append(name);
  AppendLabels(out, labels);
  out->push_back(' ');
  AppendValue(out, value);
  out->push_back('\n');
}

void AppendIntSample(std::string* out, std::string_view name, const Labels& labels, int64_t value) {
  out->append(name);
  AppendLabels(out, labels);
  StrAppend(out, " ", value, "\n");
}

// --- the registry ---

struct Registry::Series {
  Labels labels;  // sorted by name
  std::unique_ptr<Counter> counter;
  std::unique_ptr<Gauge> gauge;
  std::unique_ptr<Histogram> histogram;
};

struct Registry::Family {
  std::string name;
  std::string help;
  MetricType type;
  std::vector<double> bounds;  // histograms
  // Keyed by the rendered, sorted labels: one key per label set.
  std::map<std::string, Series> series;
};

Registry::Registry() = default;
Registry::~Registry() = default;

void Registry::RecordError(std::string message) {
  // The same mistake made in a loop is one error.
  if (std::ranges::find(errors_, message) == errors_.end()) errors_.push_back(std::move(message));
}

absl::Status Registry::status() const {
  std::lock_guard<std::mutex> l(mu_);
  if (errors_.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(errors_.front());
}

Registry::Family* Registry::FamilyFor(std::string_view name, std::string_view help, MetricType type,
                                      const std::vector<double>* bounds, Labels* labels,
                                      std::string* key) {
  const char* type_name = MetricTypeName(type);
  const std::string what = StrCat(type_name, " ", name);
  if (!IsValidMetricName(name)) {
    RecordError(StrCat(what, ": not a valid metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)"));
    return nullptr;
  }
  if (type == MetricType::kCounter && !EndsWith(name, "_total")) {
    RecordError(StrCat(what, ": a counter's name ends in _total"));
    return nullptr;
  }
  std::sort(labels->begin(), labels->end());
  for (size_t i = 0; i < labels->size(); ++i) {
    const std::string& k = (*labels)[i].first;
    if (!IsValidLabelName(k)) {
      RecordError(StrCat(what, ": label \"", k,
                         "\" is not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*, not __*)"));
      return nullptr;
    }
    if (i > 0 && (*labels)[i - 1].first == k) {
      RecordError(StrCat(what, ": label \"", k, "\" given twice"));
      return nullptr;
    }
    if (type == MetricType::kHistogram && k == "le") {
      RecordError(StrCat(what, ": \"le\" is the bucket label of a histogram"));
      return nullptr;
    }
  }
  if (bounds) {
    for (size_t i = 0; i < bounds->size(); ++i) {
      const double b = (*bounds)[i];
      if (!std::isfinite(b) || (i > 0 && !(b > (*bounds)[i - 1]))) {
        RecordError(StrCat(what, ": bucket bounds must be finite and strictly increasing (bound ",
                           i, " is ", b, ")"));
        return nullptr;
      }
    }
  }
  // Names a histogram renders besides its own.
  auto derived = [](std::string_view n) {
    return std::vector<std::string>{StrCat(n, "_bucket"), StrCat(n, "_sum"), StrCat(n, "_count")};
  };
  auto it = families_.find(name);
  if (it == families_.end()) {
    for (const auto& [other_name, other] : families_) {
      const bool clash =
          (other->type == MetricType::kHistogram &&
           std::ranges::count(derived(other_name), name) > 0) ||
          (type == MetricType::kHistogram && std::ranges::count(derived(name), other_name) > 0);
      if (clash) {
        RecordError(StrCat(what, ": clashes with the series of ", MetricTypeName(other->type), " ",
                           other_name));
        return nullptr;
      }
    }
    auto f = std::make_unique<Family>();
    f->name = std::string(name);
    f->help = std::string(help);
    f->type = type;
    if (bounds) f->bounds = *bounds;
    it = families_.emplace(f->name, std::move(f)).first;
  }
  Family* f = it->second.get();
  if (f->type != type) {
    RecordError(StrCat(what, ": registered before as a ", MetricTypeName(f->type)));
    return nullptr;
  }
  if (bounds && f->bounds != *bounds) {
    RecordError(StrCat(what, ": registered before with other bucket bounds"));
    return nullptr;
  }
  key->clear();
  AppendLabels(key, *labels);
  return f;
}

Counter* Registry::GetCounter(std::string_view name, std::string_view help, Labels labels) {
  std::lock_guard<std::mutex> l(mu_);
  std::string key;
  Family* f = FamilyFor(name, help, MetricType::kCounter, nullptr, &labels, &key);
  if (!f) {
    detached_counters_.push_back(std::unique_ptr<Counter>(new Counter()));
    return detached_counters_.back().get();
  }
  Series& s = f->series[key];
  if (!s.counter) {
    s.labels = std::move(labels);
    s.counter.reset(new Counter());
  }
  return s.counter.get();
}

Gauge* Registry::GetGauge(std::string_view name, std::string_view help, Labels labels) {
  std::lock_guard<std::mutex> l(mu_);
  std::string key;
  Family* f = FamilyFor(name, help, MetricType::kGauge, nullptr, &labels, &key);
  if (!f) {
    detached_gauges_.push_back(std::unique_ptr<Gauge>(new Gauge()));
    return detached_gauges_.back().get();
  }
  Series& s = f->series[key];
  if (!s.gauge) {
    s.labels = std::move(labels);
    s.gauge.reset(new Gauge());
  }
  return s.gauge.get();
}

Histogram* Registry::GetHistogram(std::string_view name, std::string_view help,
                                  std::vector<double> upper_bounds, Labels labels) {
  std::lock_guard<std::mutex> l(mu_);
  std::string key;
  Family* f = FamilyFor(name, help, MetricType::kHistogram, &upper_bounds, &labels, &key);
  if (!f) {
    detached_histograms_.push_back(
        std::unique_ptr<Histogram>(new Histogram(std::move(upper_bounds))));
    return detached_histograms_.back().get();
  }
  Series& s = f->series[key];
  if (!s.histogram) {
    s.labels = std::move(labels);
    s.histogram.reset(new Histogram(std::move(upper_bounds)));
  }
  return s.histogram.get();
}

void Registry::AddCollector(std::function<void(std::string* out)> render_lines) {
  std::lock_guard<std::mutex> l(mu_);
  collectors_.push_back(std::move(render_lines));
}

std::string Registry::Render() const {
  std::string out;
  std::vector<std::function<void(std::string*)>> collectors;
  {
    std::lock_guard<std::mutex> l(mu_);
    // Comments: Prometheus ignores them, a person reading /metrics sees them.
    for (const std::string& e : errors_) {
      out.append("# vigil: metric not exported: ");
      AppendEscapedHelp(&out, e);
      out.push_back('\n');
    }
    for (const auto& [name, f] : families_) {
      AppendHeader(&out, name, f->help, f->type);
      for (const auto& [key, s] : f->series) {
        switch (f->type) {
          case MetricType::kCounter:
            AppendIntSample(&out, name, s.labels, s.counter->value());
            break;
          case MetricType::kGauge:
            AppendSample(&out, name, s.labels, s.gauge->value());
            break;
          case MetricType::kHistogram: {
            const Histogram::Snapshot snap = s.histogram->Collect();
            for (size_t i = 0; i < snap.cumulative.size(); ++i) {
              StrAppend(&out, name, "_bucket");
              AppendLabelsOpen(&out, s.labels);
              out.append(s.labels.empty() ? "{le=\"" : ",le=\"");
              if (i < snap.upper_bounds.size()) {
                AppendValue(&out, snap.upper_bounds[i]);
              } else {
                out.append("+Inf");
              }
              StrAppend(&out, "\"} ", snap.cumulative[i], "\n");
            }
            AppendSample(&out, StrCat(name, "_sum"), s.labels, snap.sum);
            AppendIntSample(&out, StrCat(name, "_count"), s.labels,
                            static_cast<int64_t>(snap.count));
            break;
          }
        }
      }
    }
    collectors = collectors_;
  }
  for (const auto& c : collectors) {
    c(&out);
    // A collector that forgot the last newline must not glue its line to
    // the next family.
    if (!out.empty() && out.back() != '\n') out.push_back('\n');
  }
  return out;
}

}  // namespace vigil::monitor
