#include "event/profile.h"

#include "event/event_reader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vigil::event {
namespace {

std::shared_ptr<const Schema> S() {
  auto s = Schema::LoadString(R"(
event_types:
  e:
    fields:
      x: float
      c: {type: enum, values: [a, b, c]}
      mail: {type: string, pii: hash}
)", "s.yaml");
  EXPECT_TRUE(s.ok()) << s.status();
  return *s;
}

Profile Build(const std::string& data, const PiiHasher& h) {
  auto r = EventReader::FromString(data, S(), &h);
  EXPECT_TRUE(r.ok()) << r.status();
  ProfileBuilder b(S(), &h);
  Record rec;
  Rejection rej;
  while ((*r)->Next(&rec, &rej) != EventReader::Result::kEnd) b.Add(rec);
  return b.Finish("mem");
}

std::string Events(int n) {
  std::string s;
  for (int i = 1; i <= n; ++i) {
    s += "{\"event_type\":\"e\",\"event_id\":" + std::to_string(i) + ",\"time\":" + std::to_string(i) +
         (i % 10 ? ",\"x\":" + std::to_string(i) : "") + ",\"c\":\"" + (i % 4 ? "a" : "b") +
         "\",\"mail\":\"user" + std::to_string(i % 3) + "@example.com\"}\n";
  }
  return s;
}

TEST(ProfileTest, StatisticsOfAKnownColumn) {
  PiiHasher h("k");
  const Profile p = Build(Events(1000), h);
  EXPECT_EQ(p.records, 1000);
  const ColumnStats* x = p.Find("e.x");
  ASSERT_NE(x, nullptr);
  EXPECT_EQ(x->count, 900);
  EXPECT_EQ(x->missing, 100);
  EXPECT_DOUBLE_EQ(x->missing_rate(), 0.1);
  EXPECT_EQ(x->min, 1);
  EXPECT_EQ(x->max, 999);
  EXPECT_NEAR(x->mean, 500, 1e-9);  // 1..999 without multiples of 10: symmetric about 500
  EXPECT_NEAR(x->Quantile(0.5), 500, 10);
  EXPECT_NEAR(x->distinct, 900, 30);
  const ColumnStats* c = p.Find("e.c");
  ASSERT_TRUE(c->top_complete);
  ASSERT_EQ(c->top.size(), 2u);
  EXPECT_EQ(c->top[0].value, "a");
  EXPECT_EQ(c->top[0].count, 750);
  EXPECT_EQ(c->distinct, 2);
}

TEST(ProfileTest, PiiCategoriesAreHashed) {
  PiiHasher h("k");
  const Profile p = Build(Events(30), h);
  const std::string json = p.ToJson();
  EXPECT_EQ(json.find("@example.com"), std::string::npos);
  EXPECT_NE(json.find(h.Hash("user1@example.com")), std::string::npos);
}

TEST(ProfileTest, JsonRoundTrip) {
  PiiHasher h("k");
  const Profile p = Build(Events(200), h);
  auto q = Profile::FromJson(p.ToJson(), "p.json");
  ASSERT_TRUE(q.ok()) << q.status();
  ASSERT_EQ(q->columns.size(), p.columns.size());
  const ColumnStats* a = p.Find("e.x");
  const ColumnStats* b = q->Find("e.x");
  EXPECT_EQ(a->quantiles, b->quantiles);
  EXPECT_EQ(a->count, b->count);
  EXPECT_EQ(q->Find("e.c")->top.size(), 2u);
  EXPECT_FALSE(Profile::FromJson("{\"format\":\"other\"}", "p.json").ok());
}

TEST(OutlierCheckerTest, FlagsFarValuesAndUnseenCategoriesOnly) {
  PiiHasher h("k");
  OutlierChecker check(Build(Events(1000), h), *S(), 3.0);
  auto r = EventReader::FromString(
      "{\"event_type\":\"e\",\"event_id\":1,\"time\":1,\"x\":500,\"c\":\"a\"}\n"
      "{\"event_type\":\"e\",\"event_id\":2,\"time\":1,\"x\":100000,\"c\":\"c\"}\n",
      S(), &h);
  ASSERT_TRUE(r.ok());
  Record rec;
  Rejection rej;
  std::vector<Violation> w;
  ASSERT_EQ((*r)->Next(&rec, &rej), EventReader::Result::kRecord);
  EXPECT_FALSE(check.Check(rec, (*r)->validator(), &w));
  ASSERT_EQ((*r)->Next(&rec, &rej), EventReader::Result::kRecord);
  EXPECT_TRUE(check.Check(rec, (*r)->validator(), &w));
  ASSERT_EQ(w.size(), 2u);
  EXPECT_EQ(w[0].rule, Rule::kOutlier);
  EXPECT_EQ(w[1].rule, Rule::kUnseenCategory);
}

}  // namespace
}  // namespace vigil::event
