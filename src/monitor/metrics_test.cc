#include "monitor/metrics.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "core/strings.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vigil::monitor {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(RegistryTest, RendersCountersAndGaugesExactly) {
  Registry r;
  r.GetCounter("vigil_requests_total", "Requests received.", {{"route", "/v1/decide"}})->Inc(3);
  r.GetCounter("vigil_requests_total", "Requests received.", {{"route", "/v1/label"}})->Inc();
  r.GetGauge("vigil_queue_depth", "Events waiting.")->Set(2.5);
  EXPECT_EQ(r.Render(),
            "# HELP vigil_queue_depth Events waiting.\n"
            "# TYPE vigil_queue_depth gauge\n"
            "vigil_queue_depth 2.5\n"
            "# HELP vigil_requests_total Requests received.\n"
            "# TYPE vigil_requests_total counter\n"
            "vigil_requests_total{route=\"/v1/decide\"} 3\n"
            "vigil_requests_total{route=\"/v1/label\"} 1\n");
  EXPECT_TRUE(r.status().ok());
}

TEST(RegistryTest, RendersHistogramBucketsCumulativeWithInfSumAndCount) {
  Registry r;
  Histogram* h = r.GetHistogram("vigil_latency_seconds", "Latency.", {0.001, 0.01, 0.1},
                                {{"stage", "forest"}});
  for (double v : {0.0005, 0.001, 0.002, 0.05, 0.05, 3.0}) h->Observe(v);
  h->Observe(std::nan(""));  // ignored
  EXPECT_EQ(r.Render(),
            "# HELP vigil_latency_seconds Latency.\n"
            "# TYPE vigil_latency_seconds histogram\n"
            "vigil_latency_seconds_bucket{stage=\"forest\",le=\"0.001\"} 2\n"
            "vigil_latency_seconds_bucket{stage=\"forest\",le=\"0.01\"} 3\n"
            "vigil_latency_seconds_bucket{stage=\"forest\",le=\"0.1\"} 5\n"
            "vigil_latency_seconds_bucket{stage=\"forest\",le=\"+Inf\"} 6\n"
            "vigil_latency_seconds_sum{stage=\"forest\"} 3.1035\n"
            "vigil_latency_seconds_count{stage=\"forest\"} 6\n");
  const Histogram::Snapshot s = h->Collect();
  EXPECT_EQ(s.count, 6u);
  EXPECT_EQ(s.cumulative, (std::vector<uint64_t>{2, 3, 5, 6}));
}

TEST(RegistryTest, RendersHistogramWithoutLabelsAndEmpty) {
  Registry r;
  r.GetHistogram("h", "H.", {1});
  EXPECT_EQ(r.Render(),
            "# HELP h H.\n# TYPE h histogram\n"
            "h_bucket{le=\"1\"} 0\nh_bucket{le=\"+Inf\"} 0\nh_sum 0\nh_count 0\n");
}

TEST(RegistryTest, EscapesLabelValuesAndHelp) {
  Registry r;
  r.GetCounter("x_total", "Help with \\ and\nnewline and \"quotes\".", {{"v", "a\\b \"c\"\nd"}})
      ->Inc();
  EXPECT_EQ(r.Render(),
            "# HELP x_total Help with \\\\ and\\nnewline and \"quotes\".\n"
            "# TYPE x_total counter\n"
            "x_total{v=\"a\\\\b \\\"c\\\"\\nd\"} 1\n");
}

TEST(RegistryTest, ReplacesBytesThatAreNotUtf8) {
  Registry r;
  // \xff never appears in UTF-8; \xc3 starts a sequence it does not finish;
  // \xed\xa0\x80 is a surrogate. "\xc3\xa9" (é) and "\xe2\x82\xac" (€) stay.
  r.GetGauge("g", "Caf\xc3\xa9 \xff", {{"v", "\xc3\xa9\xe2\x82\xac\xff\xc3(\xed\xa0\x80"}})->Set(1);
  EXPECT_EQ(r.Render(),
            "# HELP g Caf\xc3\xa9 \xef\xbf\xbd\n# TYPE g gauge\n"
            "g{v=\"\xc3\xa9\xe2\x82\xac\xef\xbf\xbd\xef\xbf\xbd("
            "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"} 1\n");
}

TEST(RegistryTest, SameNameAndLabelsInAnyOrderReturnTheSameSeries) {
  Registry r;
  Counter* a = r.GetCounter("c_total", "C.", {{"a", "1"}, {"b", "2"}});
  Counter* b = r.GetCounter("c_total", "other help is ignored", {{"b", "2"}, {"a", "1"}});
  Counter* c = r.GetCounter("c_total", "C.", {{"a", "1"}, {"b", "3"}});
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  Histogram* h1 = r.GetHistogram("h", "H.", {1, 2});
  EXPECT_EQ(h1, r.GetHistogram("h", "H.", {1, 2}));
  EXPECT_EQ(r.GetGauge("g", "G."), r.GetGauge("g", "G."));
  EXPECT_THAT(r.Render(), HasSubstr("c_total{a=\"1\",b=\"2\"} 0\nc_total{a=\"1\",b=\"3\"} 0\n"));
  EXPECT_TRUE(r.status().ok());
}

TEST(RegistryTest, MisuseReturnsAWorkingUnexportedMetricAndAnError) {
  struct Case {
    const char* what;
    std::function<void(Registry&)> register_it;
    const char* message;
  };
  const std::vector<Case> cases = {
      {"bad name", [](Registry& r) { r.GetGauge("9lives", "x")->Set(1); }, "valid metric name"},
      {"no _total", [](Registry& r) { r.GetCounter("requests", "x")->Inc(); }, "_total"},
      {"bad label",
       [](Registry& r) {
         r.GetGauge("g", "x", {{"a-b", "1"}})->Set(1);
       },
       "valid label name"},
      {"reserved label",
       [](Registry& r) {
         r.GetGauge("g", "x", {{"__name", "1"}})->Set(1);
       },
       "valid label name"},
      {"label twice",
       [](Registry& r) {
         r.GetGauge("g", "x", {{"a", "1"}, {"a", "2"}})->Set(1);
       },
       "given twice"},
      {"le",
       [](Registry& r) {
         r.GetHistogram("h", "x", {1}, {{"le", "1"}})->Observe(1);
       },
       "bucket label"},
      {"bounds",
       [](Registry& r) {
         r.GetHistogram("h", "x", {1, 1})->Observe(1);
       },
       "strictly increasing"},
      {"infinite bound",
       [](Registry& r) {
         r.GetHistogram("h", "x", {1, std::numeric_limits<double>::infinity()})->Observe(1);
       },
       "finite"},
      {"type",
       [](Registry& r) {
         r.GetGauge("m_total", "x");
         r.GetCounter("m_total", "x")->Inc();
       },
       "registered before as a gauge"},
      {"other bounds",
       [](Registry& r) {
         r.GetHistogram("h", "x", {1});
         r.GetHistogram("h", "x", {2}, {{"a", "b"}})->Observe(1);
       },
       "other bucket bounds"},
      {"clash with _sum",
       [](Registry& r) {
         r.GetHistogram("h", "x", {1});
         r.GetGauge("h_sum", "x")->Set(1);
       },
       "clashes with the series of histogram h"},
      {"clash from a histogram",
       [](Registry& r) {
         r.GetCounter("h_count_total", "x");
         r.GetGauge("h_count", "x");
         r.GetHistogram("h", "x", {1})->Observe(1);
       },
       "clashes with the series of gauge h_count"},
  };
  for (const Case& c : cases) {
    Registry r;
    c.register_it(r);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << c.what;
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(c.message)) << c.what;
    const std::string text = r.Render();
    EXPECT_THAT(text, HasSubstr("# vigil: metric not exported: ")) << c.what;
    EXPECT_THAT(text, Not(HasSubstr(" 1\n"))) << c.what << ": the misused metric is rendered\n"
                                              << text;
  }
}

TEST(RegistryTest, CollectorsAppendAfterTheFamiliesAndMayRegister) {
  Registry r;
  r.GetGauge("a", "A.")->Set(1);
  r.AddCollector([&r](std::string* out) {
    AppendHeader(out, "z_rule_hits_total", "Rule hits.", MetricType::kCounter);
    AppendSample(out, "z_rule_hits_total", {{"rule", "velocity \"x\""}}, 7);
    AppendSample(out, "z_rule_hits_total", {{"rule", "y"}}, int64_t{1} << 60);
    r.GetGauge("b", "B.");  // no deadlock: collectors run outside the lock
  });
  r.AddCollector([](std::string* out) {
    AppendHeader(out, "q", "Q.", MetricType::kGauge);
    out->append("q 1");  // no newline: the registry adds it
  });
  r.AddCollector([](std::string* out) {
    AppendHeader(out, "w", "W.", MetricType::kGauge);
    AppendSample(out, "w", {}, std::numeric_limits<double>::infinity());
  });
  EXPECT_EQ(r.Render(),
            "# HELP a A.\n# TYPE a gauge\na 1\n"
            "# HELP z_rule_hits_total Rule hits.\n# TYPE z_rule_hits_total counter\n"
            "z_rule_hits_total{rule=\"velocity \\\"x\\\"\"} 7\n"
            "z_rule_hits_total{rule=\"y\"} 1152921504606846976\n"
            "# HELP q Q.\n# TYPE q gauge\nq 1\n"
            "# HELP w W.\n# TYPE w gauge\nw +Inf\n");
}

TEST(FormatTest, ValuesAsPrometheusReadsThem) {
  auto v = [](double d) {
    std::string s;
    AppendValue(&s, d);
    return s;
  };
  EXPECT_EQ(v(0), "0");
  EXPECT_EQ(v(-2), "-2");
  EXPECT_EQ(v(0.1), "0.1");
  EXPECT_EQ(v(5e-6), "5e-06");
  EXPECT_EQ(v(1e21), "1e+21");
  EXPECT_EQ(v(std::nan("")), "NaN");
  EXPECT_EQ(v(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_TRUE(IsValidMetricName("a:b_c9"));
  EXPECT_FALSE(IsValidMetricName(""));
  EXPECT_FALSE(IsValidMetricName("a.b"));
  EXPECT_TRUE(IsValidLabelName("_a9"));
  EXPECT_FALSE(IsValidLabelName("a:b"));
}

TEST(LatencyBucketsTest, FiveMicrosecondsToOneSecondIncreasingAndShortAsText) {
  const std::vector<double> b = LatencyBuckets();
  ASSERT_FALSE(b.empty());
  EXPECT_EQ(b.front(), 5e-6);
  EXPECT_EQ(b.back(), 1.0);
  for (size_t i = 1; i < b.size(); ++i) EXPECT_LT(b[i - 1], b[i]);
  Registry r;
  r.GetHistogram("l_seconds", "L.", b);
  const std::string text = r.Render();
  EXPECT_THAT(text, HasSubstr("l_seconds_bucket{le=\"2.5e-05\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("l_seconds_bucket{le=\"0.25\"} 0\n"));
  EXPECT_TRUE(r.status().ok());
}

TEST(MetricsConcurrencyTest, FourThreadsOfAMillionIncrementsSumExactly) {
  Registry r;
  Counter* c = r.GetCounter("c_total", "C.");
  Gauge* g = r.GetGauge("g", "G.");
  Histogram* h = r.GetHistogram("h", "H.", {0.5, 1.5});
  constexpr int kThreads = 4;
  constexpr int kPerThread = 1'000'000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        c->Inc();
        if (i % 16 == 0) g->Add(1);
        if (i % 4 == 0) h->Observe(t % 2);  // 0 or 1: exact in the sum
      }
    });
  }
  // Rendering while the writers run must not tear a line or crash.
  for (int i = 0; i < 20; ++i) EXPECT_THAT(r.Render(), HasSubstr("# TYPE h histogram\n"));
  for (auto& t : threads) t.join();
  EXPECT_EQ(c->value(), int64_t{kThreads} * kPerThread);
  EXPECT_EQ(g->value(), kThreads * kPerThread / 16.0);
  const Histogram::Snapshot s = h->Collect();
  EXPECT_EQ(s.count, uint64_t{kThreads} * kPerThread / 4);
  EXPECT_EQ(s.cumulative[0], s.count / 2);
  EXPECT_EQ(s.sum, kPerThread / 4.0 * kThreads / 2);
  EXPECT_THAT(r.Render(), HasSubstr("c_total 4000000\n"));
}

// --- promtool ---

// promtool from PATH, or empty.
std::string FindPromtool() {
  const char* path = std::getenv("PATH");
  for (std::string_view dir : StrSplit(path ? path : "/usr/bin:/bin", ':')) {
    const std::string p = StrCat(dir.empty() ? "." : dir, "/promtool");
    if (access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

// Runs `promtool check metrics` on `text`; returns its exit code and output.
std::pair<int, std::string> PromtoolCheck(const std::string& promtool, const std::string& text) {
  char tmpl[] = "/tmp/vigil-metrics-XXXXXX";
  const int fd = mkstemp(tmpl);
  if (fd < 0) return {-1, "mkstemp failed"};
  close(fd);
  std::ofstream(tmpl, std::ios::binary) << text;
  const std::string cmd = StrCat("'", promtool, "' check metrics < ", tmpl, " 2>&1");
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while (p && (n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = p ? pclose(p) : -1;
  unlink(tmpl);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

TEST(PromtoolTest, CheckMetricsAcceptsTheRenderingWithoutLintWarnings) {
  const std::string promtool = FindPromtool();
  ASSERT_FALSE(promtool.empty())
      << "promtool is not installed: run scripts/install-deps.sh (Debian package prometheus)";
  Registry r;
  r.GetCounter("vigil_requests_total", "Requests received, by route.", {{"route", "/v1/decide"}})
      ->Inc(12);
  r.GetCounter("vigil_requests_total", "Requests received, by route.",
               {{"route", "odd \"route\"\\\nname"}});
  r.GetGauge("vigil_model_info", "The serving model.", {{"model_id", "m-2024-01"}})->Set(1);
  r.GetGauge("vigil_queue_depth_events", "Events waiting.")->Set(-3.25);
  r.GetGauge("vigil_model_info", "The serving model.", {{"model_id", "caf\xc3\xa9\xff"}})->Set(1);
  Histogram* h = r.GetHistogram("vigil_request_duration_seconds", "Request latency.",
                                LatencyBuckets(), {{"route", "/v1/decide"}});
  for (double v : {3e-6, 4e-5, 0.002, 0.3, 7.0}) h->Observe(v);
  r.GetHistogram("vigil_stage_duration_seconds", "Stage latency.", {0.001, 0.01},
                 {{"stage", "features"}})
      ->Observe(0.004);
  r.AddCollector([](std::string* out) {
    AppendHeader(out, "vigil_rule_hits_total", "Decisions where the rule fired.",
                 MetricType::kCounter);
    AppendSample(out, "vigil_rule_hits_total", {{"rule", "high_velocity"}}, 5);
    AppendSample(out, "vigil_rule_hits_total", {{"rule", "new_device"}}, 0);
    AppendHeader(out, "vigil_ratio", "A ratio.", MetricType::kGauge);
    AppendSample(out, "vigil_ratio", {}, std::nan(""));
  });
  const std::string text = r.Render();
  auto [code, out] = PromtoolCheck(promtool, text);
  EXPECT_EQ(code, 0) << out << "\n--- the exposition ---\n" << text;
  EXPECT_EQ(out, "") << "--- the exposition ---\n" << text;

  // And promtool does reject what the registry would never write.
  auto [bad_code, bad_out] = PromtoolCheck(promtool, "# TYPE x counter\nx{a=\"b} 1\n");
  EXPECT_NE(bad_code, 0) << bad_out;
}

TEST(PromtoolTest, RegistrationErrorCommentsAreStillValidExposition) {
  const std::string promtool = FindPromtool();
  ASSERT_FALSE(promtool.empty())
      << "promtool is not installed: run scripts/install-deps.sh (Debian package prometheus)";
  Registry r;
  r.GetCounter("vigil_bad", "No _total.")->Inc();
  r.GetGauge("vigil_ok", "Fine.")->Set(1);
  const std::string text = r.Render();
  ASSERT_THAT(text, HasSubstr("# vigil: metric not exported"));
  auto [code, out] = PromtoolCheck(promtool, text);
  EXPECT_EQ(code, 0) << out << "\n--- the exposition ---\n" << text;
}

}  // namespace
}  // namespace vigil::monitor
