#include "model/dataset.h"

#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/strings.h"
#include "core/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace vigil::model {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

int64_t Ms(const char* timestamp) { return *core::ParseTimestamp(timestamp); }

// A folder for tables whose .meta.json sits beside them, removed afterwards.
class TempFolder {
 public:
  TempFolder() {
    const char* tmp = std::getenv("TMPDIR");
    std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/vigil-dataset.XXXXXX";
    if (mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
  }
  ~TempFolder() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  std::string Write(const std::string& name, const std::string& text) const {
    const std::string p = path_ + "/" + name;
    std::ofstream(p, std::ios::binary) << text;
    return p;
  }
  bool ok() const { return !path_.empty(); }

 private:
  std::string path_;
};

CsvTable Table(std::string text, std::string name = "t.csv") {
  auto t = CsvTable::FromString(std::move(text), std::move(name));
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? std::move(*t) : *CsvTable::FromString("a\n", "empty.csv");
}

std::vector<uint32_t> AllRows(const CsvTable& t) {
  std::vector<uint32_t> rows(t.rows());
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = static_cast<uint32_t>(i);
  return rows;
}

std::vector<int> Inputs(const CsvTable& t, std::initializer_list<const char*> names) {
  std::vector<int> cols;
  for (const char* n : names) cols.push_back(t.Column(n));
  return cols;
}

// ---------------------------------------------------------------- ranges

TEST(IsMissingCellTest, EmptyAndPandasNaSpellingsAreMissingOtherTextIsNot) {
  for (const char* v : {"", "NA", "N/A", "n/a", "NaN", "nan", "null", "NULL", "None", "<NA>", "#N/A"}) {
    EXPECT_TRUE(IsMissingCell(v)) << v;
  }
  for (const char* v : {"0", "abc", "na", "none", "-", " "}) EXPECT_FALSE(IsMissingCell(v)) << v;
}

TEST(InferLayoutTest, NaSpellingsKeepANumericColumnNumericAndReadAsMissing) {
  CsvTable t = Table("x,y\n1.5,0\nNA,1\nnull,0\n2,1\n", "na.csv");
  auto l = InferLayout(t, {0}, {0, 1, 2, 3}, /*numeric_only=*/true);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_FALSE(l->inputs[0].categorical);
  auto d = BuildDataset(t, *l, {0, 1, 2, 3}, 1, -1);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->row(0)[0], 1.5f);
  EXPECT_TRUE(std::isnan(d->row(1)[0]));
  EXPECT_TRUE(std::isnan(d->row(2)[0]));
}

TEST(ParseTimeRangeTest, DateAsToIncludesTheWholeDay) {
  auto r = ParseTimeRange("2018-07-25..2018-07-31");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->from_ms, Ms("2018-07-25"));
  EXPECT_EQ(r->to_ms, Ms("2018-08-01"));
  EXPECT_TRUE(r->Contains(Ms("2018-07-25T00:00:00Z")));
  EXPECT_TRUE(r->Contains(Ms("2018-07-31T23:59:59.999Z")));
  EXPECT_FALSE(r->Contains(Ms("2018-08-01T00:00:00Z")));
  EXPECT_FALSE(r->Contains(Ms("2018-07-24T23:59:59.999Z")));
  EXPECT_FALSE(r->all());
}

TEST(ParseTimeRangeTest, OneDayRangeIsThatDay) {
  auto r = ParseTimeRange("2018-07-25..2018-07-25");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->to_ms - r->from_ms, core::kMsPerDay);
}

TEST(ParseTimeRangeTest, TimestampAsToIsIncludedItself) {
  auto r = ParseTimeRange("2018-07-25T06:00:00Z..2018-07-25T12:00:00Z");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->Contains(Ms("2018-07-25T05:59:59.999Z")));
  EXPECT_TRUE(r->Contains(Ms("2018-07-25T06:00:00Z")));
  EXPECT_TRUE(r->Contains(Ms("2018-07-25T12:00:00Z")));
  EXPECT_FALSE(r->Contains(Ms("2018-07-25T12:00:00.001Z")));
}

TEST(ParseTimeRangeTest, WithoutDotsIsAnErrorShowingTheForm) {
  auto r = ParseTimeRange("2018-07-25");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("FROM..TO"));
}

TEST(ParseTimeRangeTest, MissingEndIsAnError) {
  EXPECT_EQ(ParseTimeRange("2018-07-25..").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseTimeRange("..2018-07-25").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ParseTimeRangeTest, ToBeforeFromIsAnError) {
  auto r = ParseTimeRange("2018-07-31..2018-07-25");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("before FROM"));
}

TEST(ParseTimeRangeTest, BadTimeNamesWhichEnd) {
  auto r = ParseTimeRange("2018-07-25..yesterday");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("TO"));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("yesterday"));
}

// ---------------------------------------------------------------- CsvTable

TEST(CsvTableTest, QuotedCellsKeepCommasAndUndoubleQuotes) {
  CsvTable t = Table("id,note,n\n1,\"a, b\",2\n2,\"say \"\"hi\"\"\",3\n3,\"\",4\n");
  ASSERT_EQ(t.rows(), 3u);
  std::vector<std::string_view> cells;
  std::string scratch;
  t.Split(0, &cells, &scratch);
  EXPECT_THAT(cells, ElementsAre("1", "a, b", "2"));
  t.Split(1, &cells, &scratch);
  EXPECT_THAT(cells, ElementsAre("2", "say \"hi\"", "3"));
  t.Split(2, &cells, &scratch);
  EXPECT_THAT(cells, ElementsAre("3", "", "4"));
  EXPECT_EQ(t.Cell(1, 1, &cells, &scratch), "say \"hi\"");
}

TEST(CsvTableTest, QuotedHeaderAndTrailingEmptyCell) {
  CsvTable t = Table("\"a,b\",c\nx,\n");
  ASSERT_EQ(t.header().size(), 2u);
  EXPECT_EQ(t.header()[0], "a,b");
  EXPECT_EQ(t.Column("a,b"), 0);
  EXPECT_EQ(t.Column("nope"), -1);
  std::vector<std::string_view> cells;
  std::string scratch;
  t.Split(0, &cells, &scratch);
  EXPECT_THAT(cells, ElementsAre("x", ""));
}

TEST(CsvTableTest, LinesCountTheHeaderAndBlankLines) {
  CsvTable t = Table("a,b\n1,2\n\n3,4\n");
  ASSERT_EQ(t.rows(), 2u);
  EXPECT_EQ(t.line_of(0), 2);
  EXPECT_EQ(t.line_of(1), 4);
}

TEST(CsvTableTest, WrongCellCountNamesFileAndLine) {
  auto t = CsvTable::FromString("a,b,c\n1,2,3\n4,\"5,6\"\n", "x.csv");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("x.csv:3"));
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("2 cells where the header has 3"));
}

TEST(CsvTableTest, EmptyFileIsAnError) {
  EXPECT_EQ(CsvTable::FromString("", "e.csv").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(CsvTableTest, ContentHashDependsOnTheBytes) {
  EXPECT_EQ(Table("a\n1\n").content_hash(), Table("a\n1\n").content_hash());
  EXPECT_NE(Table("a\n1\n").content_hash(), Table("a\n2\n").content_hash());
  EXPECT_EQ(Table("a\n1\n").content_hash().size(), 64u);
}

// ---------------------------------------------------------------- columns

TEST(ResolveColumnsTest, PlainCsvUsesDefaultsAndEveryOtherColumn) {
  CsvTable t = Table("event_id,event_time,amount,label,city\n1,2024-01-01,3,0,x\n");
  ColumnOptions o;
  o.label = "label";
  auto c = ResolveColumns(t, o);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->from_meta);
  EXPECT_EQ(c->id, 0);
  EXPECT_EQ(c->time, 1);
  EXPECT_EQ(c->label, 3);
  EXPECT_THAT(c->inputs, ElementsAre(2, 4));
  EXPECT_EQ(c->spec_hash, "");
}

TEST(ResolveColumnsTest, NamedColumnsAndDrop) {
  CsvTable t = Table("ref,at,amount,fraud,policy,city\nr1,2024-01-01,3,0,p,x\n");
  ColumnOptions o;
  o.id = "ref";
  o.time = "at";
  o.label = "fraud";
  o.drop = {"policy"};
  auto c = ResolveColumns(t, o);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->id, 0);
  EXPECT_EQ(c->time, 1);
  EXPECT_EQ(c->label, 3);
  EXPECT_THAT(c->inputs, ElementsAre(2, 5));
}

TEST(ResolveColumnsTest, DropOfAnUnknownColumnIsAnError) {
  CsvTable t = Table("event_id,event_time,amount,label\n1,2024-01-01,3,0\n");
  ColumnOptions o;
  o.label = "label";
  o.drop = {"amonut"};
  auto c = ResolveColumns(t, o);
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("--drop amonut"));
}

TEST(ResolveColumnsTest, MissingLabelColumnIsAnErrorListingColumns) {
  CsvTable t = Table("event_id,event_time,amount\n1,2024-01-01,3\n", "f.csv");
  ColumnOptions o;
  o.label = "is_fraud";
  auto c = ResolveColumns(t, o);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string m(c.status().message());
  EXPECT_THAT(m, HasSubstr("no label column 'is_fraud'"));
  EXPECT_THAT(m, HasSubstr("--label"));
  EXPECT_THAT(m, HasSubstr("event_id, event_time, amount"));
}

TEST(ResolveColumnsTest, MissingTimeColumnIsAnErrorUnlessOptional) {
  CsvTable t = Table("event_id,amount\n1,3\n");
  ColumnOptions o;
  auto c = ResolveColumns(t, o);
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("--time"));
  o.time_optional = true;
  c = ResolveColumns(t, o);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->time, -1);
}

TEST(ResolveColumnsTest, MetaFileNamesFeaturesIdTimeAndHashes) {
  TempFolder dir;
  ASSERT_TRUE(dir.ok());
  const std::string path = dir.Write(
      "f.csv", "tx,ts,TX_AMOUNT,f1,f2,TX_FRAUD\n1,2024-01-01,3,0.5,1,0\n");
  dir.Write("f.csv.meta.json",
            R"({"id_column": "tx", "time_column": "ts", "feature_columns": ["f2", "f1"],
                "spec_hash": "abc", "schema_hash": "def"})");
  auto t = CsvTable::Read(path);
  ASSERT_TRUE(t.ok()) << t.status();
  ColumnOptions o;
  o.label = "TX_FRAUD";
  auto c = ResolveColumns(*t, o);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->from_meta);
  EXPECT_EQ(c->id_name, "tx");
  EXPECT_EQ(c->time_name, "ts");
  EXPECT_EQ(c->id, 0);
  EXPECT_EQ(c->time, 1);
  // The meta file's features, in its order; the passthrough amount is not one.
  EXPECT_THAT(c->inputs, ElementsAre(4, 3));
  EXPECT_EQ(c->spec_hash, "abc");
  EXPECT_EQ(c->schema_hash, "def");

  o.drop = {"f1"};
  c = ResolveColumns(*t, o);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_THAT(c->inputs, ElementsAre(4));
}

// Columns of the table "event_id,event_time,f1,y" beside a .meta.json
// holding `meta`, with label y.
absl::StatusOr<TableColumns> ResolveBesideMeta(const std::string& meta) {
  TempFolder dir;
  if (!dir.ok()) return absl::InternalError("no temporary folder");
  const std::string path = dir.Write("f.csv", "event_id,event_time,f1,y\n1,2024-01-01,3,0\n");
  dir.Write("f.csv.meta.json", meta);
  VIGIL_ASSIGN_OR_RETURN(CsvTable t, CsvTable::Read(path));
  ColumnOptions o;
  o.label = "y";
  return ResolveColumns(t, o);
}

TEST(ResolveColumnsTest, MetaFeatureMissingFromTableIsAnError) {
  auto c = ResolveBesideMeta(R"({"feature_columns": ["f1", "f9"]})");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("'f9'"));
}

TEST(ResolveColumnsTest, LabelListedAsMetaFeatureIsAnError) {
  auto c = ResolveBesideMeta(R"({"feature_columns": ["f1", "y"]})");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("never a feature"));
}

TEST(ResolveColumnsTest, MalformedMetaFileIsAnError) {
  auto c = ResolveBesideMeta("{not json");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("f.csv.meta.json"));
}

// ---------------------------------------------------------------- layout

TEST(InferLayoutTest, NumericAndCategoricalColumnsCategoriesSorted) {
  // "code" holds numbers until its last row: every value is then a category.
  CsvTable t = Table(
      "amount,city,code\n"
      "1.5,paris,1\n"
      ",lyon,2\n"
      "+3,paris,\n"
      "-2e3,,x\n");
  auto l = InferLayout(t, Inputs(t, {"amount", "city", "code"}), AllRows(t), false);
  ASSERT_TRUE(l.ok()) << l.status();
  ASSERT_EQ(l->inputs.size(), 3u);
  EXPECT_FALSE(l->inputs[0].categorical);
  EXPECT_TRUE(l->inputs[1].categorical);
  EXPECT_THAT(l->inputs[1].categories, ElementsAre("lyon", "paris"));
  EXPECT_TRUE(l->inputs[2].categorical);
  EXPECT_THAT(l->inputs[2].categories, ElementsAre("1", "2", "x"));
  EXPECT_THAT(l->feature_names,
              ElementsAre("amount", "city=lyon", "city=paris", "code=1", "code=2", "code=x"));
  EXPECT_EQ(l->inputs[1].first, 1u);
  EXPECT_EQ(l->inputs[2].first, 3u);
  EXPECT_TRUE(l->has_categorical());
}

TEST(InferLayoutTest, OnlyTheGivenRowsDecideTypesAndCategories) {
  CsvTable t = Table("v,c\n1,a\n2,b\nword,z\n");
  auto l = InferLayout(t, Inputs(t, {"v", "c"}), {0, 1}, false);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_FALSE(l->inputs[0].categorical);
  EXPECT_THAT(l->inputs[1].categories, ElementsAre("a", "b"));
}

TEST(InferLayoutTest, NumericOnlyRejectsTextNamingLineColumnAndValue) {
  CsvTable t = Table("f1,f2\n1,2\n3,abc\n", "bf.csv");
  auto l = InferLayout(t, Inputs(t, {"f1", "f2"}), AllRows(t), true);
  ASSERT_FALSE(l.ok());
  EXPECT_EQ(l.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string m(l.status().message());
  EXPECT_THAT(m, HasSubstr("bf.csv:3"));
  EXPECT_THAT(m, HasSubstr("f2"));
  EXPECT_THAT(m, HasSubstr("'abc' is text in a numeric column"));
}

TEST(InferLayoutTest, UnseenAndMissingCategoriesSetNoFeature) {
  CsvTable train = Table("c,n\nb,1\na,2\n");
  auto l = InferLayout(train, Inputs(train, {"c", "n"}), AllRows(train), false);
  ASSERT_TRUE(l.ok()) << l.status();
  ASSERT_THAT(l->feature_names, ElementsAre("c=a", "c=b", "n"));
  // Scoring rows: columns in another order, a known, an unseen and a
  // missing category.
  CsvTable score = Table("n,c\n5,a\n6,zebra\n,\n");
  auto d = BuildDataset(score, *l, AllRows(score), -1, -1);
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_EQ(d->cols, 3u);
  EXPECT_EQ(d->row(0)[0], 1.0f);
  EXPECT_EQ(d->row(0)[1], 0.0f);
  EXPECT_EQ(d->row(0)[2], 5.0f);
  EXPECT_EQ(d->row(1)[0], 0.0f);
  EXPECT_EQ(d->row(1)[1], 0.0f);
  EXPECT_EQ(d->row(2)[0], 0.0f);
  EXPECT_EQ(d->row(2)[1], 0.0f);
  EXPECT_TRUE(std::isnan(d->row(2)[2]));
}

TEST(InferLayoutTest, MoreThanMaxCategoriesKeepsTheMostFrequent) {
  // kMaxCategories + 20 categories: "k000".."k019" appear 3 times, the
  // rest once, and "k999" twice; the ones that appear once lose.
  std::string csv = "c\n";
  const size_t n = kMaxCategories + 20;
  std::vector<std::string> frequent;
  for (size_t i = 0; i < n; ++i) {
    char name[16];
    std::snprintf(name, sizeof name, "k%03zu", i);
    const int times = i < 20 ? 3 : 1;
    for (int k = 0; k < times; ++k) StrAppend(&csv, name, "\n");
  }
  StrAppend(&csv, "k999\nk999\n");
  CsvTable t = Table(csv);
  auto l = InferLayout(t, Inputs(t, {"c"}), AllRows(t), false);
  ASSERT_TRUE(l.ok()) << l.status();
  const auto& cats = l->inputs[0].categories;
  ASSERT_EQ(cats.size(), kMaxCategories);
  EXPECT_TRUE(std::is_sorted(cats.begin(), cats.end()));
  for (size_t i = 0; i < 20; ++i) {
    char name[16];
    std::snprintf(name, sizeof name, "k%03zu", i);
    EXPECT_TRUE(std::binary_search(cats.begin(), cats.end(), name)) << name;
  }
  EXPECT_TRUE(std::binary_search(cats.begin(), cats.end(), "k999"));
  EXPECT_EQ(l->num_features(), kMaxCategories);
}

TEST(InferLayoutTest, JsonRoundTrip) {
  CsvTable t = Table("amount,city\n1,paris\n2,lyon\n");
  auto l = InferLayout(t, Inputs(t, {"amount", "city"}), AllRows(t), false);
  ASSERT_TRUE(l.ok()) << l.status();
  auto back = FeatureLayout::FromJson(l->ToJson());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->feature_names, l->feature_names);
  EXPECT_EQ(back->inputs[1].first, 1u);
  EXPECT_THAT(back->inputs[1].categories, ElementsAre("lyon", "paris"));
}

// ---------------------------------------------------------------- rows

TEST(SelectRowsTest, RangeAndEmptyLabels) {
  CsvTable t = Table(
      "event_time,y\n"
      "2024-01-01T10:00:00Z,0\n"
      "2024-01-02T10:00:00Z,\n"
      "2024-01-02T11:00:00Z,1\n"
      "2024-01-05T00:00:00Z,x\n");
  auto s = SelectRows(t, 0, 1, *ParseTimeRange("2024-01-02..2024-01-03"));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_THAT(s->rows, ElementsAre(2u));
  EXPECT_EQ(s->unlabelled, 1);
  EXPECT_EQ(s->first_ms, Ms("2024-01-01T10:00:00Z"));
  EXPECT_EQ(s->last_ms, Ms("2024-01-05T00:00:00Z"));
}

TEST(SelectRowsTest, BadTimeNamesLine) {
  CsvTable t = Table("event_time,y\n2024-01-01,0\nsoon,1\n", "t.csv");
  auto s = SelectRows(t, 0, 1, TimeRange{});
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("t.csv:3"));
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("'soon' is not a time"));
}

// ---------------------------------------------------------------- datasets

TEST(BuildDatasetTest, NumbersLabelsAndTimes) {
  CsvTable t = Table("event_time,x,y\n2024-01-01,1.25,1\n2024-01-02,,0.0\n2024-01-03,-7,true\n");
  const FeatureLayout l = FeatureLayout::Numeric({"x"});
  auto d = BuildDataset(t, l, {2, 0}, 2, 0);
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_EQ(d->rows, 2u);
  EXPECT_EQ(d->row(0)[0], -7.0f);
  EXPECT_EQ(d->row(1)[0], 1.25f);
  EXPECT_THAT(d->label, ElementsAre(1.0f, 1.0f));
  EXPECT_THAT(d->time_ms, ElementsAre(Ms("2024-01-03"), Ms("2024-01-01")));
  EXPECT_THAT(d->source_rows, ElementsAre(2u, 0u));
  EXPECT_EQ(d->positives(), 2u);
  auto d2 = BuildDataset(t, l, {1}, 2, -1);
  ASSERT_TRUE(d2.ok()) << d2.status();
  EXPECT_TRUE(std::isnan(d2->row(0)[0]));
  EXPECT_THAT(d2->label, ElementsAre(0.0f));
}

TEST(BuildDatasetTest, TextInNumericColumnNamesFileLineAndColumn) {
  CsvTable t = Table("x,z,y\n1,2,0\n3,abc,1\n", "s.csv");
  auto d = BuildDataset(t, FeatureLayout::Numeric({"x", "z"}), AllRows(t), 2, -1);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string m(d.status().message());
  EXPECT_THAT(m, HasSubstr("s.csv:3"));
  EXPECT_THAT(m, HasSubstr("column z"));
  EXPECT_THAT(m, HasSubstr("'abc' is text in a numeric column"));
}

TEST(BuildDatasetTest, LabelNotZeroOrOneNamesLineAndValue) {
  CsvTable t = Table("x,y\n1,0\n2,1\n3,2\n", "l.csv");
  auto d = BuildDataset(t, FeatureLayout::Numeric({"x"}), AllRows(t), 1, -1);
  ASSERT_FALSE(d.ok());
  const std::string m(d.status().message());
  EXPECT_THAT(m, HasSubstr("l.csv:4"));
  EXPECT_THAT(m, HasSubstr("'2' is not 0 or 1"));
}

TEST(BuildDatasetTest, MissingFeatureColumnIsNamed) {
  CsvTable t = Table("x,y\n1,0\n");
  auto d = BuildDataset(t, FeatureLayout::Numeric({"x", "w"}), AllRows(t), -1, -1);
  ASSERT_FALSE(d.ok());
  EXPECT_THAT(std::string(d.status().message()), HasSubstr("'w' is missing"));
}

TEST(ParseLabelTest, AcceptedSpellings) {
  float y = -1;
  for (const char* one : {"1", "1.0", "true", "True"}) {
    EXPECT_TRUE(ParseLabel(one, &y)) << one;
    EXPECT_EQ(y, 1.0f);
  }
  for (const char* zero : {"0", "0.0", "false", "False"}) {
    EXPECT_TRUE(ParseLabel(zero, &y)) << zero;
    EXPECT_EQ(y, 0.0f);
  }
  for (const char* bad : {"", "2", "yes", "-1", "0.5", " 1"}) EXPECT_FALSE(ParseLabel(bad, &y)) << bad;
}

}  // namespace
}  // namespace vigil::model
