#include "store/journal.h"

#include <cmath>
#include <fstream>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/store_test_util.h"

namespace vigil::store {
namespace {

using ::testing::HasSubstr;
using testing::Label;
using testing::Row;
using testing::TempDir;

std::unique_ptr<Journal> MustOpen(const std::string& path) {
  auto j = Journal::Open(path);
  EXPECT_TRUE(j.ok()) << j.status();
  return j.ok() ? *std::move(j) : nullptr;
}

// Every decision of the file being replayed, in one batch size (and its
// labels in *labels).
std::vector<DecisionRow> ReplayAll(Journal& j, size_t batch_size,
                                   std::vector<size_t>* batch_sizes = nullptr,
                                   std::vector<LabelRow>* labels = nullptr) {
  std::vector<DecisionRow> out;
  const absl::Status st = j.ReplayBatches(
      batch_size,
      [&](std::span<const DecisionRow> rows) {
        if (batch_sizes) batch_sizes->push_back(rows.size());
        out.insert(out.end(), rows.begin(), rows.end());
        return absl::OkStatus();
      },
      [&](std::span<const LabelRow> rows) {
        EXPECT_LE(rows.size(), batch_size);
        if (labels) labels->insert(labels->end(), rows.begin(), rows.end());
        return absl::OkStatus();
      });
  EXPECT_TRUE(st.ok()) << st;
  return out;
}

absl::Status NoLabels(std::span<const LabelRow> rows) {
  ADD_FAILURE() << rows.size() << " labels where none were journaled";
  return absl::OkStatus();
}


TEST(JournalCodecTest, RoundTripsEveryFieldIncludingNanScoreAndBytesThatAreNotUtf8) {
  DecisionRow r = Row(7);
  r.score = 0.30000000000000004;
  r.event_time_ms = std::numeric_limits<int64_t>::min();
  r.decided_at_ms = std::numeric_limits<int64_t>::max();
  r.event_type = "caf\xc3\xa9";            // UTF-8: kept as text
  r.arm = std::string("\xff\xfe arm", 6);  // not UTF-8: base64
  r.json = std::string("{\"a\":\"line\\nbreak\"}\n") + std::string(1, '\0');
  const std::string line = DecisionToJson(r);
  EXPECT_EQ(line.find('\n'), std::string::npos) << "one line per row";
  EXPECT_THAT(line, HasSubstr("\"arm_base64\""));
  EXPECT_THAT(line, HasSubstr("caf\xc3\xa9"));

  auto back = DecisionFromJson(line);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->event_id, r.event_id);
  EXPECT_EQ(back->event_time_ms, r.event_time_ms);
  EXPECT_EQ(back->event_type, r.event_type);
  EXPECT_EQ(back->action, r.action);
  EXPECT_EQ(back->score, r.score);
  EXPECT_EQ(back->model, r.model);
  EXPECT_EQ(back->arm, r.arm);
  EXPECT_EQ(back->decided_at_ms, r.decided_at_ms);
  EXPECT_EQ(back->json, r.json);

  r.score = std::numeric_limits<double>::quiet_NaN();
  EXPECT_THAT(DecisionToJson(r), HasSubstr("\"score\":null"));
  EXPECT_TRUE(std::isnan(DecisionFromJson(DecisionToJson(r))->score));
}

TEST(JournalCodecTest, LabelRoundTripsEveryFieldAndIsToldApartFromADecision) {
  LabelRow l = Label(3, "e\xff");  // a target that is not UTF-8: base64
  l.target_key = "user_id";
  l.target_value = "u1";
  l.time_ms = std::numeric_limits<int64_t>::min();
  l.json = "{\"a\":1}\n";
  const std::string line = LabelToJson(l);
  EXPECT_EQ(line.find('\n'), std::string::npos) << "one line per row";
  EXPECT_THAT(line, HasSubstr("\"target_event_id_base64\""));
  auto back = LabelFromJson(line);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->label_id, l.label_id);
  EXPECT_EQ(back->kind, l.kind);
  EXPECT_EQ(back->time_ms, l.time_ms);
  EXPECT_EQ(back->target_event_id, l.target_event_id);
  EXPECT_EQ(back->target_key, l.target_key);
  EXPECT_EQ(back->target_value, l.target_value);
  EXPECT_EQ(back->value, l.value);
  EXPECT_EQ(back->json, l.json);

  l.value = std::numeric_limits<double>::infinity();  // JSON has none: null, read back NaN
  back = LabelFromJson(LabelToJson(l));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(std::isnan(back->value));

  EXPECT_THAT(DecisionFromJson(line).status().message(), HasSubstr("a label, not a decision"));
  EXPECT_THAT(LabelFromJson(DecisionToJson(Row(1))).status().message(),
              HasSubstr("a decision, not a label"));
  EXPECT_THAT(LabelFromJson(R"({"label_id":"x","kind":"k"})").status().message(),
              HasSubstr("missing field 'time_ms'"));
}

TEST(JournalCodecTest, MalformedLinesAreInvalidArgumentNamingTheProblem) {
  EXPECT_THAT(DecisionFromJson("{\"event_id\":").status().message(), HasSubstr("not valid JSON"));
  EXPECT_THAT(DecisionFromJson("[1,2]").status().message(), HasSubstr("not a JSON object"));
  auto st = DecisionFromJson("{\"event_time_ms\":1}").status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(st.message(), HasSubstr("'event_id'"));

  std::string line = DecisionToJson(Row(1));
  line.replace(line.find("\"event_time_ms\":"), 16, "\"event_time_ms\":\"x\",\"old\":");
  EXPECT_THAT(DecisionFromJson(line).status().message(),
              HasSubstr("'event_time_ms' is not an integer"));
  EXPECT_THAT(DecisionFromJson("{\"event_id_base64\":\"***\"}").status().message(),
              HasSubstr("not base64"));
}

TEST(JournalTest, AppendedRowsAreFoundAndSurviveReopening) {
  TempDir dir;
  const std::string path = dir.File("decisions.jsonl");
  {
    auto j = MustOpen(path);
    ASSERT_NE(j, nullptr);
    const DecisionRow rows[] = {Row(1), Row(2), Row(3)};
    ASSERT_TRUE(j->Append(rows).ok());
    EXPECT_EQ(j->pending(), 3);
    auto found = j->Find("e2");
    ASSERT_TRUE(found.has_value());
    EXPECT_EQ(found->json, Row(2).json);
    EXPECT_FALSE(j->Find("e9").has_value());
  }
  const std::string text = testing::ReadAll(path);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 3);
  auto j = MustOpen(path);
  ASSERT_NE(j, nullptr);
  EXPECT_EQ(j->pending(), 3);
  ASSERT_TRUE(j->Find("e3").has_value());
  EXPECT_EQ(j->Find("e3")->decided_at_ms, Row(3).decided_at_ms);
}

TEST(JournalTest, SecondOpenOfTheSameJournalIsFailedPrecondition) {
  TempDir dir;
  const std::string path = dir.File("decisions.jsonl");
  auto first = MustOpen(path);
  ASSERT_NE(first, nullptr);
  auto second = Journal::Open(path);
  ASSERT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(second.status().message(), HasSubstr("in use"));
  first.reset();
  EXPECT_TRUE(Journal::Open(path).ok());
}

TEST(JournalTest, ReplayTakesTheActiveFileAndNewRowsGoToAFreshOne) {
  TempDir dir;
  const std::string path = dir.File("decisions.jsonl");
  auto j = MustOpen(path);
  ASSERT_NE(j, nullptr);
  const DecisionRow rows[] = {Row(1), Row(2), Row(3), Row(4), Row(5)};
  ASSERT_TRUE(j->Append(rows).ok());
  ASSERT_TRUE(*j->BeginReplay());
  EXPECT_TRUE(testing::Exists(path + ".replay"));
  const DecisionRow later = Row(6);
  ASSERT_TRUE(j->Append(std::span(&later, 1)).ok());
  EXPECT_EQ(j->pending(), 6);
  EXPECT_TRUE(j->Find("e1").has_value());  // still pending while being replayed
  EXPECT_TRUE(j->Find("e6").has_value());

  std::vector<size_t> sizes;
  const auto replayed = ReplayAll(*j, 2, &sizes);
  ASSERT_EQ(replayed.size(), 5u);
  EXPECT_EQ(replayed[4].event_id, "e5");
  EXPECT_EQ(sizes, (std::vector<size_t>{2, 2, 1}));
  EXPECT_EQ(*j->FinishReplay(), 5);
  EXPECT_FALSE(testing::Exists(path + ".replay"));
  EXPECT_EQ(j->pending(), 1);
  EXPECT_FALSE(j->Find("e1").has_value());
  EXPECT_TRUE(j->Find("e6").has_value());
}

TEST(JournalTest, LabelsAreFoundByTheirEventAndReplayedBesideTheDecisions) {
  TempDir dir;
  const std::string path = dir.File("decisions.jsonl");
  auto j = MustOpen(path);
  ASSERT_NE(j, nullptr);
  const DecisionRow rows[] = {Row(1), Row(2)};
  ASSERT_TRUE(j->Append(rows).ok());
  LabelRow entity = Label(9, "");  // names an entity, not an event
  entity.target_key = "user_id";
  entity.target_value = "u1";
  const LabelRow labels[] = {Label(1, "e1"), Label(2, "e2"), entity};
  ASSERT_TRUE(j->Append(labels).ok());
  const LabelRow later = Label(3, "e1");
  ASSERT_TRUE(j->Append(std::span(&later, 1)).ok());
  EXPECT_EQ(j->pending(), 6);

  const auto ids = [](const std::vector<LabelRow>& ls) {
    std::vector<std::string> out;
    for (const LabelRow& l : ls) out.push_back(l.label_id);
    return out;
  };
  EXPECT_EQ(ids(j->FindLabels("e1")), (std::vector<std::string>{"lab1", "lab3"}));
  EXPECT_EQ(ids(j->FindLabels("e2")), (std::vector<std::string>{"lab2"}));
  EXPECT_TRUE(j->FindLabels("e3").empty());
  EXPECT_TRUE(j->FindLabels("").empty());
  EXPECT_TRUE(j->Find("e1").has_value()) << "the decision is still found beside its labels";

  j.reset();  // found again after reopening: the index is rebuilt from the file
  j = MustOpen(path);
  ASSERT_NE(j, nullptr);
  EXPECT_EQ(j->pending(), 6);
  EXPECT_EQ(ids(j->FindLabels("e1")), (std::vector<std::string>{"lab1", "lab3"}));

  ASSERT_TRUE(*j->BeginReplay());
  const LabelRow after = Label(4, "e1");  // to the new active file, found after the older ones
  ASSERT_TRUE(j->Append(std::span(&after, 1)).ok());
  EXPECT_EQ(ids(j->FindLabels("e1")), (std::vector<std::string>{"lab1", "lab3", "lab4"}));

  std::vector<LabelRow> replayed_labels;
  const auto replayed = ReplayAll(*j, 2, nullptr, &replayed_labels);
  EXPECT_EQ(replayed.size(), 2u);
  ASSERT_EQ(ids(replayed_labels), (std::vector<std::string>{"lab1", "lab2", "lab9", "lab3"}));
  EXPECT_EQ(replayed_labels[2].target_value, "u1");
  EXPECT_EQ(*j->FinishReplay(), 6);
  EXPECT_EQ(j->pending(), 1);
  EXPECT_EQ(ids(j->FindLabels("e1")), (std::vector<std::string>{"lab4"}));
}

TEST(JournalTest, EmptyJournalHasNothingToReplay) {
  TempDir dir;
  auto j = MustOpen(dir.File("decisions.jsonl"));
  ASSERT_NE(j, nullptr);
  EXPECT_FALSE(*j->BeginReplay());
}

TEST(JournalTest, FailedReplayKeepsTheFileAndIsRedoneFromItsStart) {
  TempDir dir;
  const std::string path = dir.File("decisions.jsonl");
  auto j = MustOpen(path);
  ASSERT_NE(j, nullptr);
  const DecisionRow rows[] = {Row(1), Row(2), Row(3)};
  ASSERT_TRUE(j->Append(rows).ok());
  ASSERT_TRUE(*j->BeginReplay());
  int calls = 0;
  const absl::Status st = j->ReplayBatches(
      1,
      [&](std::span<const DecisionRow>) {
        return ++calls == 2 ? absl::UnavailableError("store down") : absl::OkStatus();
      },
      NoLabels);
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(j->pending(), 3);
  j.reset();  // as if the process died here

  j = MustOpen(path);
  ASSERT_NE(j, nullptr);
  EXPECT_EQ(j->pending(), 3);
  ASSERT_TRUE(*j->BeginReplay());  // the leftover .replay file
  EXPECT_EQ(ReplayAll(*j, 10).size(), 3u);
  EXPECT_EQ(*j->FinishReplay(), 3);
  EXPECT_EQ(j->pending(), 0);
}

TEST(JournalTest, BadLinesAreSetAsideOnceAfterTheWholeFileIsStored) {
  TempDir dir;
  const std::string path = dir.File("decisions.jsonl");
  {
    std::ofstream out(path);
    out << DecisionToJson(Row(1)) << "\n"
        << "this is not json\n"
        << "\n"
        << "{\"event_id\":\"x\"}\n"
        << DecisionToJson(Row(2)) << "\n";
  }
  auto j = MustOpen(path);
  ASSERT_NE(j, nullptr);
  EXPECT_EQ(j->pending(), 4);  // every non-empty line until it is replayed
  ASSERT_TRUE(*j->BeginReplay());
  EXPECT_FALSE(j->ReplayBatches(10, [](auto) { return absl::UnavailableError("down"); }, NoLabels).ok());
  EXPECT_FALSE(testing::Exists(path + ".bad"));
  EXPECT_EQ(j->bad_lines(), 0);

  EXPECT_EQ(ReplayAll(*j, 10).size(), 2u);
  EXPECT_EQ(j->bad_lines(), 2);
  EXPECT_EQ(testing::ReadAll(path + ".bad"), "this is not json\n{\"event_id\":\"x\"}\n");
  EXPECT_THAT(j->last_bad_line(), HasSubstr(".replay:4: neither a decision nor a label"));
  EXPECT_EQ(*j->FinishReplay(), 4);
  EXPECT_EQ(j->pending(), 0);
}

TEST(JournalTest, LineCutByACrashGetsANewlineSoTheNextRowSurvives) {
  TempDir dir;
  const std::string path = dir.File("decisions.jsonl");
  {
    std::ofstream out(path);
    const std::string cut = DecisionToJson(Row(2));
    out << DecisionToJson(Row(1)) << "\n" << cut.substr(0, cut.size() / 2);
  }
  auto j = MustOpen(path);
  ASSERT_NE(j, nullptr);
  const DecisionRow next = Row(3);
  ASSERT_TRUE(j->Append(std::span(&next, 1)).ok());
  ASSERT_TRUE(j->Find("e3").has_value());
  ASSERT_TRUE(*j->BeginReplay());
  const auto rows = ReplayAll(*j, 10);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].event_id, "e1");
  EXPECT_EQ(rows[1].event_id, "e3");
  EXPECT_EQ(j->bad_lines(), 1);
}

TEST(JournalTest, LongRowsSpanningReadChunksComeBackWhole) {
  TempDir dir;
  const std::string path = dir.File("decisions.jsonl");
  auto j = MustOpen(path);
  ASSERT_NE(j, nullptr);
  std::vector<DecisionRow> rows;
  for (int i = 0; i < 5; ++i) {
    rows.push_back(Row(i));
    rows.back().json = std::string(700000 + i, static_cast<char>('a' + i));
  }
  ASSERT_TRUE(j->Append(rows).ok());
  j.reset();
  j = MustOpen(path);
  ASSERT_NE(j, nullptr);
  EXPECT_EQ(j->Find("e4")->json, rows[4].json);
  ASSERT_TRUE(*j->BeginReplay());
  const auto back = ReplayAll(*j, 2);
  ASSERT_EQ(back.size(), 5u);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(back[i].json, rows[i].json) << i;
}

}  // namespace
}  // namespace vigil::store
