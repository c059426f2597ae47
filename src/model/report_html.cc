// The HTML page of an evaluation report: one file, inline CSS and SVG, no
// script, readable offline and printable.
#include <cmath>
#include <cstdio>
#include <string>

#include "core/strings.h"
#include "model/evaluate.h"

namespace vigil::model {
namespace {

using Json = nlohmann::ordered_json;

std::string Esc(std::string_view s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      default: o.push_back(c);
    }
  }
  return o;
}

std::string Fmt(const Json& v, int digits = 4) {
  if (v.is_null()) return "–";
  if (v.is_number_integer() || v.is_number_unsigned()) {
    const std::string digits = std::to_string(v.get<int64_t>());
    std::string s;
    for (size_t i = 0; i < digits.size(); ++i) {
      if (i > 0 && digits[i - 1] != '-' && (digits.size() - i) % 3 == 0) s.push_back(',');
      s.push_back(digits[i]);
    }
    return s;
  }
  if (v.is_number()) {
    char b[32];
    std::snprintf(b, sizeof b, "%.*f", digits, v.get<double>());
    return b;
  }
  if (v.is_boolean()) return v.get<bool>() ? "yes" : "no";
  return Esc(v.is_string() ? v.get<std::string>()
                           : v.dump(-1, ' ', false, Json::error_handler_t::replace));
}

std::string Pct(const Json& v) {
  if (!v.is_number()) return "–";
  char b[32];
  std::snprintf(b, sizeof b, "%.2f%%", v.get<double>() * 100);
  return b;
}

std::string Get(const Json& j, std::initializer_list<const char*> path) {
  const Json* p = &j;
  for (const char* k : path) {
    if (!p->is_object() || !p->contains(k)) return "–";
    p = &(*p)[k];
  }
  return Fmt(*p);
}

// A square plot of one or more polylines in [0,1]², with axes and a title.
struct Series {
  std::vector<double> x, y;
  std::string colour;
  bool dashed = false;
  bool dots = false;
};
std::string Plot(const std::string& title, const std::string& xlabel, const std::string& ylabel,
                 const std::vector<Series>& series) {
  const double W = 320, H = 320, L = 48, T = 28, P = 250;  // P: plot side
  std::string s = StrCat("<svg xmlns='http://www.w3.org/2000/svg' width='", W, "' height='", H,
                         "' viewBox='0 0 ", W, " ", H, "' role='img' aria-label='", Esc(title), "'>");
  StrAppend(&s, "<text x='", L + P / 2, "' y='18' text-anchor='middle' class='t'>", Esc(title), "</text>");
  StrAppend(&s, "<rect x='", L, "' y='", T, "' width='", P, "' height='", P, "' class='frame'/>");
  for (int i = 0; i <= 4; ++i) {
    const double f = i / 4.0;
    char lab[16];
    std::snprintf(lab, sizeof lab, "%.2g", f);
    StrAppend(&s, "<line x1='", L + f * P, "' y1='", T, "' x2='", L + f * P, "' y2='", T + P, "' class='grid'/>");
    StrAppend(&s, "<line x1='", L, "' y1='", T + P - f * P, "' x2='", L + P, "' y2='", T + P - f * P, "' class='grid'/>");
    StrAppend(&s, "<text x='", L + f * P, "' y='", T + P + 14, "' text-anchor='middle'>", lab, "</text>");
    StrAppend(&s, "<text x='", L - 6, "' y='", T + P - f * P + 4, "' text-anchor='end'>", lab, "</text>");
  }
  StrAppend(&s, "<text x='", L + P / 2, "' y='", T + P + 32, "' text-anchor='middle'>", Esc(xlabel), "</text>");
  StrAppend(&s, "<text transform='translate(12,", T + P / 2, ") rotate(-90)' text-anchor='middle'>", Esc(ylabel),
            "</text>");
  for (const Series& se : series) {
    std::string pts;
    for (size_t i = 0; i < se.x.size() && i < se.y.size(); ++i) {
      if (!std::isfinite(se.x[i]) || !std::isfinite(se.y[i])) continue;
      char b[48];
      std::snprintf(b, sizeof b, "%.1f,%.1f ", L + se.x[i] * P, T + P - se.y[i] * P);
      pts += b;
      if (se.dots) {
        std::snprintf(b, sizeof b, "%.1f", L + se.x[i] * P);
        StrAppend(&s, "<circle cx='", b, "' cy='", T + P - se.y[i] * P, "' r='3' fill='", se.colour, "'/>");
      }
    }
    StrAppend(&s, "<polyline fill='none' stroke='", se.colour, "' stroke-width='", se.dashed ? "1" : "2", "'",
              se.dashed ? " stroke-dasharray='4 3'" : "", " points='", pts, "'/>");
  }
  s += "</svg>";
  return s;
}

std::vector<double> Vec(const Json& j) {
  std::vector<double> v;
  if (j.is_array()) {
    for (const auto& e : j) v.push_back(e.is_number() ? e.get<double>() : NAN);
  }
  return v;
}

}  // namespace

std::string RenderHtml(const Json& r) {
  std::string h;
  const Json& m = r["model"];
  const Json& d = r["data"];
  const Json& mx = r["metrics"];
  h += "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>\n";
  StrAppend(&h, "<title>Model evaluation: ", Fmt(m["name"]), "</title>\n");
  h += R"(<style>
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1060px;color:#1d2430;padding:0 1em}
h1{font-size:22px;margin-bottom:.2em}h2{font-size:17px;margin-top:1.8em;border-bottom:1px solid #d8dde6}
.sub{color:#5b6575}table{border-collapse:collapse;margin:.6em 0}td,th{padding:3px 10px;border-bottom:1px solid #e6e9ef;text-align:right}
th{background:#f3f5f8}td:first-child,th:first-child{text-align:left}.flag{background:#fde8e8;color:#9b1c1c;font-weight:600}
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{border:1px solid #d8dde6;border-radius:6px;padding:8px 14px;min-width:150px}
.card b{font-size:20px;display:block}.plots{display:flex;flex-wrap:wrap;gap:8px}
svg text{font-size:11px;fill:#333}svg .t{font-size:13px;font-weight:600}.frame{fill:none;stroke:#888}.grid{stroke:#eee}
</style></head><body>
)";
  StrAppend(&h, "<h1>Model evaluation: ", Fmt(m["name"]), "</h1>\n<p class='sub'>");
  StrAppend(&h, "Model <code>", Fmt(m["path"]), "</code>", m.contains("train") ? StrCat(", trained on ", Fmt(m["train"])) : "",
            ". Data <code>", Fmt(d["file"]), "</code>", d["range"].is_null() ? "" : StrCat(", range ", Fmt(d["range"])),
            ": ", Fmt(d["rows"]), " rows, ", Fmt(d["positives"]), " positive (", Pct(d["positive_rate"]), ")");
  if (d.contains("known_entities_excluded")) {
    StrAppend(&h, "; ", Fmt(d["known_entities_excluded"]["rows"]), " rows of entities (",
              Fmt(d["known_entities_excluded"]["column"]), ") already known to be fraudulent were left out");
  }
  StrAppend(&h, ". Created ", Fmt(r["created"]), ".</p>\n");

  // Headline figures.
  h += "<div class='cards'>";
  auto card = [&](const std::string& name, const std::string& value, const std::string& note) {
    StrAppend(&h, "<div class='card'>", Esc(name), "<b>", value, "</b><span class='sub'>", note, "</span></div>");
  };
  card("AUC ROC", Get(mx, {"auc", "estimate"}),
       StrCat("95% CI ", Get(mx, {"auc", "lower"}), " – ", Get(mx, {"auc", "upper"})));
  card("Average precision", Get(mx, {"average_precision", "estimate"}),
       StrCat("95% CI ", Get(mx, {"average_precision", "lower"}), " – ", Get(mx, {"average_precision", "upper"})));
  if (mx.contains("entity_precision_at_k")) {
    card(StrCat(Fmt(mx["entity_precision_at_k"]["entity"]), " precision@", Fmt(mx["entity_precision_at_k"]["k"])),
         Fmt(mx["entity_precision_at_k"]["mean"]), "mean over days");
  }
  card(StrCat("Precision@", Fmt(mx["precision_at_k"]["k"])), Fmt(mx["precision_at_k"]["value"]), "top rows");
  card("Recall at 1% FPR", Fmt(mx["recall_at_fpr"]["1%"]), StrCat("0.1%: ", Fmt(mx["recall_at_fpr"]["0.1%"]),
                                                                  ", 5%: ", Fmt(mx["recall_at_fpr"]["5%"])));
  card("Brier score", Fmt(mx["brier"]), "lower is better");
  h += "</div>\n";

  // Curves.
  h += "<h2>Curves</h2><div class='plots'>";
  const Json& curves = r["curves"];
  h += Plot("ROC", "false-positive rate", "true-positive rate",
            {{Vec(curves["roc"]["fpr"]), Vec(curves["roc"]["tpr"]), "#1f5fbf"},
             {{0, 1}, {0, 1}, "#999", true}});
  const double base = d["positive_rate"].is_number() ? d["positive_rate"].get<double>() : 0;
  h += Plot("Precision–recall", "recall", "precision",
            {{Vec(curves["pr"]["recall"]), Vec(curves["pr"]["precision"]), "#1f7f4f"},
             {{0, 1}, {base, base}, "#999", true}});
  Series rel{{}, {}, "#b3541e", false, true};
  for (const auto& b : r["calibration"]) {
    if (b["count"].get<uint64_t>() == 0) continue;
    rel.x.push_back(b["mean_score"].is_number() ? b["mean_score"].get<double>() : NAN);
    rel.y.push_back(b["positive_rate"].is_number() ? b["positive_rate"].get<double>() : NAN);
  }
  h += Plot("Reliability", "mean score in bin", "share positive", {rel, {{0, 1}, {0, 1}, "#999", true}});
  h += "</div>\n";

  // Operating points.
  h += "<h2>Operating points</h2><table><tr><th>alert when</th><th>threshold</th><th>alerts</th><th>TP</th><th>FP</th>"
       "<th>FN</th><th>precision</th><th>recall</th><th>FPR</th>";
  const bool amounts = !r["operating_points"].empty() && r["operating_points"][0].contains("amount_recall");
  if (amounts) h += "<th>amount caught</th>";
  h += "</tr>";
  for (const auto& p : r["operating_points"]) {
    const Json& c = p["confusion"];
    StrAppend(&h, "<tr><td>", Fmt(p["name"]), "</td><td>", Fmt(p["threshold"], 6), "</td><td>",
              Fmt(Json(c["tp"].get<uint64_t>() + c["fp"].get<uint64_t>())), "</td><td>", Fmt(c["tp"]), "</td><td>",
              Fmt(c["fp"]), "</td><td>", Fmt(c["fn"]), "</td><td>", Fmt(c["precision"]), "</td><td>", Fmt(c["tpr"]),
              "</td><td>", Fmt(c["fpr"], 5), "</td>", amounts ? StrCat("<td>", Pct(p["amount_recall"]), "</td>") : "",
              "</tr>");
  }
  h += "</table>\n";

  if (mx.contains("entity_precision_at_k")) {
    const Json& ep = mx["entity_precision_at_k"];
    StrAppend(&h, "<h2>", Fmt(ep["entity"]), " precision@", Fmt(ep["k"]), " per day</h2>",
              "<p class='sub'>Each day, each entity's highest score; the top ", Fmt(ep["k"]),
              " entities; the share truly fraudulent. Entities found on earlier days are left out.</p>",
              "<table><tr><th>day</th><th>precision</th><th>entities</th><th>fraudulent</th><th>found</th></tr>");
    for (const auto& day : ep["days"]) {
      StrAppend(&h, "<tr><td>", Fmt(day["day"]), "</td><td>", Fmt(day["precision"]), "</td><td>",
                Fmt(day["entities"]), "</td><td>", Fmt(day["positive_entities"]), "</td><td>", Fmt(day["detected"]),
                "</td></tr>");
    }
    h += "</table>\n";
  }

  if (r.contains("fairness")) {
    const Json& f = r["fairness"];
    StrAppend(&h, "<h2>Groups</h2><p class='sub'>At threshold ", Fmt(f["threshold"], 6), " (", Fmt(f["chosen_by"]),
              "). Each group's FPR and TPR are divided by the largest group's; ratios outside [",
              Fmt(f["tolerance"], 2), ", ", Fmt(Json(1.0 / f["tolerance"].get<double>()), 2), "] are flagged.</p>");
    for (const auto& [col, g] : f["by"].items()) {
      StrAppend(&h, "<h3>", Esc(col), " (reference: ", Fmt(g["reference"]), ")</h3><table><tr><th>group</th>",
                "<th>rows</th><th>positives</th><th>alert rate</th><th>FPR</th><th>TPR</th><th>precision</th>",
                "<th>FPR ratio</th><th>TPR ratio</th></tr>");
      for (const auto& row : g["groups"]) {
        const bool flag = row["flagged"].get<bool>();
        StrAppend(&h, "<tr", flag ? " class='flag'" : "", "><td>", Fmt(row["value"]), flag ? " ⚑" : "", "</td><td>",
                  Fmt(row["rows"]), "</td><td>", Fmt(row["positives"]), "</td><td>", Pct(row["alert_rate"]),
                  "</td><td>", Fmt(row["fpr"], 5), "</td><td>", Fmt(row["tpr"]), "</td><td>", Fmt(row["precision"]),
                  "</td><td>", Fmt(row["fpr_ratio"], 2), "</td><td>", Fmt(row["tpr_ratio"], 2), "</td></tr>");
      }
      h += "</table>\n";
    }
  }

  h += "<h2>Calibration</h2><table><tr><th>score bin</th><th>rows</th><th>mean score</th><th>share positive</th></tr>";
  for (const auto& b : r["calibration"]) {
    StrAppend(&h, "<tr><td>", Fmt(b["lower"], 1), " – ", Fmt(b["upper"], 1), "</td><td>", Fmt(b["count"]), "</td><td>",
              Fmt(b["mean_score"]), "</td><td>", Fmt(b["positive_rate"]), "</td></tr>");
  }
  StrAppend(&h, "</table>\n<p class='sub'>Intervals: percentile bootstrap, ", Get(mx, {"bootstrap", "resamples"}),
            " resamples of rows, seed ", Get(mx, {"bootstrap", "seed"}),
            ". Metric definitions: docs/evaluation.md. Made by vigil evaluate.</p>\n</body></html>\n");
  return h;
}

}  // namespace vigil::model
