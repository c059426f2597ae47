// `vigil evaluate` and `vigil thresholds`: a model judged on labelled rows.
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "cli/event_input.h"
#include "cli/progress.h"
#include "core/strings.h"
#include "core/time.h"
#include "model/evaluate.h"

namespace vigil::cli {
namespace {

struct EvaluateArgs {
  model::EvalOptions o;
  std::string delay, out, html;
  int64_t seed = 1;
};

bool WriteFile(const std::string& path, const std::string& text, const char* what) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  f.close();
  if (!f) {
    PrintError(what, absl::PermissionDeniedError(StrCat(path, ": cannot write")));
    return false;
  }
  return true;
}

std::string Get(const nlohmann::ordered_json& j, const char* a, const char* b) {
  if (!j.contains(a) || !j[a].contains(b) || !j[a][b].is_number()) return "n/a";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4f", j[a][b].get<double>());
  return buf;
}

int RunEvaluate(EvaluateArgs& a) {
  a.o.seed = static_cast<uint64_t>(a.seed);
  if (!a.delay.empty()) {
    auto d = core::ParseDurationMs(a.delay);
    if (!d.ok()) {
      PrintError("evaluate", absl::InvalidArgumentError(StrCat("--delay ", d.status().message())));
      return kExitError;
    }
    a.o.exclude_delay_ms = *d;
  }
  if (!a.o.exclude_entities.empty() && a.delay.empty()) {
    PrintError("evaluate", absl::InvalidArgumentError("--exclude-known-entities needs --delay (7d)"));
    return kExitError;
  }
  Progress progress("evaluate");
  auto report = model::Evaluate(a.o);
  if (!report.ok()) {
    PrintError("evaluate", report.status());
    return kExitError;
  }
  if (!WriteFile(
          a.out,
          report->dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n",
          "evaluate"))
    return kExitError;
  if (!a.html.empty() && !WriteFile(a.html, model::RenderHtml(*report), "evaluate")) return kExitError;
  const auto& mx = (*report)["metrics"];
  const auto& d = (*report)["data"];
  std::fprintf(stderr, "evaluate: %s rows (%s positive) in %.2f s\n",
               Thousands(d["rows"].get<int64_t>()).c_str(), Thousands(d["positives"].get<int64_t>()).c_str(),
               progress.Seconds());
  std::fprintf(stderr, "          AUC %s [%s, %s]  AP %s [%s, %s]  recall@1%%FPR %s", Get(mx, "auc", "estimate").c_str(),
               Get(mx, "auc", "lower").c_str(), Get(mx, "auc", "upper").c_str(),
               Get(mx, "average_precision", "estimate").c_str(), Get(mx, "average_precision", "lower").c_str(),
               Get(mx, "average_precision", "upper").c_str(), Get(mx, "recall_at_fpr", "1%").c_str());
  if (mx.contains("entity_precision_at_k")) {
    std::fprintf(stderr, "  %s precision@%zu %s", a.o.entity.c_str(), a.o.k,
                 Get(mx, "entity_precision_at_k", "mean").c_str());
  }
  std::fprintf(stderr, "\n          report %s%s%s\n", a.out.c_str(), a.html.empty() ? "" : ", ", a.html.c_str());
  if (report->contains("fairness")) {
    for (const auto& [col, g] : (*report)["fairness"]["by"].items()) {
      if (g["flagged"].get<bool>()) {
        std::fprintf(stderr, "evaluate: warning: groups of %s differ beyond the tolerance (see the report)\n",
                     col.c_str());
      }
    }
  }
  return kExitOk;
}

struct ThresholdArgs {
  model::ThresholdOptions o;
  std::string budget, out;
};

int RunThresholds(ThresholdArgs& a) {
  if (!a.budget.empty()) {
    std::string b = a.budget;
    if (EndsWith(b, "/day")) b.resize(b.size() - 4);
    char* end = nullptr;
    a.o.review_budget = std::strtod(b.c_str(), &end);
    if (end == b.c_str() || *end != '\0' || a.o.review_budget < 0) {
      PrintError("thresholds", absl::InvalidArgumentError(
                                   StrCat("--review-budget ", a.budget, ": expected alerts per day, e.g. 100/day")));
      return kExitError;
    }
  }
  if (a.o.max_fpr >= 1) {
    PrintError("thresholds", absl::InvalidArgumentError("--max-fpr is a rate below 1, e.g. 0.01"));
    return kExitError;
  }
  auto res = model::ChooseThresholds(a.o);
  if (!res.ok()) {
    PrintError("thresholds", res.status());
    return kExitError;
  }
  std::fprintf(stderr, "thresholds: %s\n", res->summary.c_str());
  std::fprintf(stderr, "  %-12s %9s %10s %8s %9s %9s%s\n", "threshold", "alerts", "per day", "recall", "precision",
               "FPR", a.o.eval.amount.empty() ? "" : "  amount caught");
  for (const auto& r : res->table) {
    auto num = [&](const char* k, const char* fmt) {
      char b[32];
      if (!r.contains(k) || !r[k].is_number()) return std::string("n/a");
      std::snprintf(b, sizeof b, fmt, r[k].get<double>());
      return std::string(b);
    };
    std::fprintf(stderr, "%s %-12s %9s %10s %8s %9s %9s%s\n", r["chosen"].get<bool>() ? "*" : " ",
                 num("threshold", "%.6g").c_str(), Thousands(r["alerts"].get<int64_t>()).c_str(),
                 num("alerts_per_day", "%.1f").c_str(), num("recall", "%.4f").c_str(),
                 num("precision", "%.4f").c_str(), num("fpr", "%.5f").c_str(),
                 a.o.eval.amount.empty() ? "" : StrCat("  ", num("amount_recall", "%.4f")).c_str());
  }
  if (!a.out.empty()) {
    if (!WriteFile(a.out, res->snippet, "thresholds")) return kExitError;
  } else {
    std::fputs(res->snippet.c_str(), stdout);
  }
  return kExitOk;
}

void AddDataOptions(CLI::App* cmd, model::EvalOptions& o) {
  cmd->add_option("--model", o.model, "bundle directory or XGBoost JSON model")->required();
  cmd->add_option("--features", o.features, "labelled feature table (CSV, plain or gzip)")->required();
  cmd->add_option("--label", o.label, "the 0/1 label column; rows with it empty are left out")->required();
  cmd->add_option("--range", o.range, "rows of FROM..TO only (UTC dates or timestamps; a date as TO includes that day)");
  cmd->add_option("--id", o.id, "id column (default: the .meta.json's, the bundle's, else event_id)");
  cmd->add_option("--time", o.time,
                  "time column (default: the .meta.json's, event_time, else the model's training --time)");
}

}  // namespace

Runner AddEvaluateCommand(CLI::App& app) {
  auto a = std::make_shared<EvaluateArgs>();
  CLI::App* cmd = app.add_subcommand(
      "evaluate",
      "Judge a model on labelled rows: AUC and average precision with bootstrap intervals, recall\n"
      "at 0.1/1/5 % false-positive rate, precision@k, entity precision@k per day (the handbook's\n"
      "card precision@100), amount caught, Brier score and reliability, confusion at operating\n"
      "points, and per-group rates (fairness). JSON report, and an HTML page to send on.\n"
      "docs/evaluation.md.");
  AddDataOptions(cmd, a->o);
  cmd->add_option("--entity", a->o.entity, "entity column for precision@k per UTC day (e.g. the card)");
  cmd->add_option("--amount", a->o.amount, "amount column: the share of fraud money caught");
  cmd->add_option("--group-by", a->o.group_by, "columns whose groups are compared (alert rate, FPR, TPR, precision)")
      ->expected(1, -1);
  cmd->add_option("--exclude-known-entities", a->o.exclude_entities,
                  "drop, from each day, entities with a fraud up to --delay + 1 day before it");
  cmd->add_option("--delay", a->delay, "label delay for --exclude-known-entities (e.g. 7d)");
  cmd->add_option("--known-from", a->o.known_from,
                  "frauds count as known from this date (default: the model's training start)");
  cmd->add_option("--k", a->o.k, "k of precision@k (default 100)");
  cmd->add_option("--threshold", a->o.thresholds, "extra operating points: alert when score >= T")->expected(1, -1);
  cmd->add_option("--fairness-fpr", a->o.fairness_fpr, "groups are compared at this overall FPR (default 0.01)");
  cmd->add_option("--tolerance", a->o.tolerance, "flag group ratios outside [t, 1/t] (default 0.8)");
  cmd->add_option("--resamples", a->o.resamples, "bootstrap resamples (default 1000)");
  cmd->add_option("--seed", a->seed, "bootstrap seed (default 1)");
  cmd->add_option("--out", a->out, "report.json")->required();
  cmd->add_option("--html", a->html, "report.html: curves and tables, opens in any browser");
  cmd->footer(
      "Example (the Fraud Detection Handbook's protocol):\n"
      "  vigil evaluate --model model/ --features f.csv --label TX_FRAUD \\\n"
      "      --range 2018-07-25..2018-07-31 --entity CUSTOMER_ID --amount TX_AMOUNT \\\n"
      "      --exclude-known-entities CUSTOMER_ID --delay 7d --out report.json --html report.html");
  return [a] { return RunEvaluate(*a); };
}

Runner AddThresholdsCommand(CLI::App& app) {
  auto a = std::make_shared<ThresholdArgs>();
  CLI::App* cmd = app.add_subcommand(
      "thresholds",
      "The score threshold that meets an operating constraint — so many manual reviews a day, or a\n"
      "false-positive rate — with the recall, precision and money caught there and at budgets\n"
      "around it. Prints a snippet for the decision policy on standard output.");
  AddDataOptions(cmd, a->o.eval);
  cmd->add_option("--review-budget", a->budget, "alerts a day the team can review, e.g. 100/day");
  cmd->add_option("--max-fpr", a->o.max_fpr, "highest false-positive rate, e.g. 0.01");
  cmd->add_option("--amount", a->o.eval.amount, "amount column: the share of fraud money caught");
  cmd->add_option("--action", a->o.action, "action in the snippet (default review)");
  cmd->add_option("--out", a->out, "write the snippet here instead of standard output");
  cmd->footer(
      "Example:\n"
      "  vigil thresholds --model model/ --features f.csv --label TX_FRAUD \\\n"
      "      --range 2018-07-25..2018-07-31 --review-budget 100/day --amount TX_AMOUNT");
  return [a] { return RunThresholds(*a); };
}

}  // namespace vigil::cli
