#include "model/isotonic.h"

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace vigil::model {
namespace {

using Json = nlohmann::ordered_json;

IsotonicCalibration Fitted(const std::vector<double>& scores, const std::vector<uint8_t>& labels) {
  IsotonicCalibration c;
  const absl::Status s = c.Fit(scores, labels);
  EXPECT_TRUE(s.ok()) << s;
  return c;
}

TEST(IsotonicTest, InterpolatesBetweenKnotsAndClipsOutsideThem) {
  const IsotonicCalibration c = Fitted({0.1, 0.2, 0.3, 0.4}, {0, 0, 1, 1});
  EXPECT_EQ(c.x(), (std::vector<double>{0.1, 0.2, 0.3, 0.4}));
  EXPECT_EQ(c.y(), (std::vector<double>{0, 0, 1, 1}));
  EXPECT_DOUBLE_EQ(c.Apply(0.25), 0.5);
  EXPECT_DOUBLE_EQ(c.Apply(0.3), 1);
  EXPECT_EQ(c.Apply(-5), 0);
  EXPECT_EQ(c.Apply(5), 1);
}

TEST(IsotonicTest, StaysWithinTheKnotsValuesWhereRoundingWouldOvershoot) {
  auto c = IsotonicCalibration::FromJson(Json::parse(R"({"x": [0.334, 0.889], "y": [0.438, 1]})"));
  ASSERT_TRUE(c.ok()) << c.status();
  for (double s : {0.889, 0.95, 1.0, 0.8889999999999999}) {
    EXPECT_LE(c->Apply(s), 1.0) << s;
    EXPECT_GE(c->Apply(s), 0.438) << s;
  }
  EXPECT_EQ(c->Apply(1.0), 1.0);
  EXPECT_EQ(c->Apply(0.0), 0.438);
}

TEST(IsotonicTest, PoolsAdjacentViolators) {
  // Labels 0 1 0 1: the middle pair is pooled to 0.5.
  const IsotonicCalibration c = Fitted({1, 2, 3, 4}, {0, 1, 0, 1});
  EXPECT_EQ(c.y(), (std::vector<double>{0, 0.5, 0.5, 1}));
  EXPECT_DOUBLE_EQ(c.Apply(1.5), 0.25);
  EXPECT_DOUBLE_EQ(c.Apply(2.5), 0.5);
  EXPECT_DOUBLE_EQ(c.Apply(3.5), 0.75);
}

TEST(IsotonicTest, PoolsBackwardsAcrossSeveralBlocks) {
  // 0.5 0.5 | 1 | 0 0 0: the last point pulls everything into one block.
  const IsotonicCalibration c = Fitted({1, 1, 2, 3, 3, 3}, {1, 0, 1, 0, 0, 0});
  EXPECT_EQ(c.x(), (std::vector<double>{1, 3}));
  EXPECT_DOUBLE_EQ(c.y()[0], 2. / 6);
  EXPECT_DOUBLE_EQ(c.Apply(2), 2. / 6);
}

TEST(IsotonicTest, AveragesTiedScoresBeforePooling) {
  const IsotonicCalibration c = Fitted({1, 1, 2, 2}, {1, 0, 0, 0});
  EXPECT_EQ(c.x(), (std::vector<double>{1, 2}));
  EXPECT_DOUBLE_EQ(c.Apply(1.7), 0.25);
}

TEST(IsotonicTest, DropsKnotsInsideFlatStretches) {
  const IsotonicCalibration c = Fitted({1, 2, 3, 4, 5}, {0, 1, 1, 1, 1});
  EXPECT_EQ(c.x(), (std::vector<double>{1, 2, 5}));
  EXPECT_EQ(c.y(), (std::vector<double>{0, 1, 1}));
}

TEST(IsotonicTest, IsConstantForOneDistinctScore) {
  const IsotonicCalibration c = Fitted({0.4, 0.4, 0.4}, {1, 0, 0});
  ASSERT_EQ(c.x().size(), 1u);
  EXPECT_DOUBLE_EQ(c.Apply(0), 1. / 3);
  EXPECT_DOUBLE_EQ(c.Apply(0.4), 1. / 3);
  EXPECT_DOUBLE_EQ(c.Apply(9), 1. / 3);
}

TEST(IsotonicTest, PoolsScoresWithin1e15LikeSklearn) {
  const IsotonicCalibration c = Fitted({0.5, std::nextafter(0.5, 1.0), 0.6}, {1, 0, 1});
  EXPECT_EQ(c.x(), (std::vector<double>{0.5, 0.6}));
  EXPECT_EQ(c.y(), (std::vector<double>{0.5, 1}));
}

TEST(IsotonicTest, ReturnsNaNForNaNScoreOrWhenUnfitted) {
  const IsotonicCalibration c = Fitted({1, 2}, {0, 1});
  EXPECT_TRUE(std::isnan(c.Apply(std::nan(""))));
  EXPECT_FALSE(IsotonicCalibration().fitted());
  EXPECT_TRUE(std::isnan(IsotonicCalibration().Apply(0.5)));
}

TEST(IsotonicTest, RejectsBadInputAndKeepsTheEarlierFit) {
  IsotonicCalibration c = Fitted({1, 2}, {0, 1});
  absl::Status s = c.Fit({}, {});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("no rows"), std::string::npos) << s;
  s = c.Fit(std::vector<double>{1, 2, 3}, std::vector<uint8_t>{0, 1});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("3 scores but 2 labels"), std::string::npos) << s;
  s = c.Fit(std::vector<double>{1, INFINITY, 3}, std::vector<uint8_t>{0, 1, 1});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("row 1"), std::string::npos) << s;
  EXPECT_DOUBLE_EQ(c.Apply(1.5), 0.5);
}

TEST(IsotonicTest, RefitReplacesTheEarlierFit) {
  IsotonicCalibration c = Fitted({1, 2}, {0, 1});
  ASSERT_TRUE(c.Fit(std::vector<double>{1, 2}, std::vector<uint8_t>{1, 1}).ok());
  EXPECT_DOUBLE_EQ(c.Apply(1.5), 1);
}

TEST(IsotonicJsonTest, RoundTripsExactly) {
  std::vector<double> s;
  std::vector<uint8_t> y;
  for (int i = 0; i < 200; ++i) {
    s.push_back(std::sin(i * 0.37) * 0.5 + 0.5);
    y.push_back(static_cast<uint8_t>((i * 7919) % 13 < 4 + 5 * s.back()));
  }
  const IsotonicCalibration c = Fitted(s, y);
  const Json j = c.ToJson();
  EXPECT_EQ(j.begin().key(), "x");
  auto back = IsotonicCalibration::FromJson(Json::parse(j.dump()));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->x(), c.x());
  EXPECT_EQ(back->y(), c.y());
  for (double v = -0.1; v < 1.1; v += 0.013) EXPECT_EQ(back->Apply(v), c.Apply(v)) << v;
}

TEST(IsotonicJsonTest, WritesUnfittedAsEmptyArraysWhichDoNotReadBack) {
  const Json j = IsotonicCalibration().ToJson();
  EXPECT_EQ(j.dump(), R"({"x":[],"y":[]})");
  EXPECT_EQ(IsotonicCalibration::FromJson(j).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(IsotonicJsonTest, RejectsMalformedCalibrationsNamingThePlace) {
  const struct {
    const char* json;
    const char* message;
  } cases[] = {
      {R"([1, 2])", "expected an object"},
      {R"({"x": [0, 1]})", "'y' must be a non-empty array"},
      {R"({"x": [0, 1], "y": [0, 1], "z": 1})", "unknown key 'z'"},
      {R"({"x": [0, 1], "y": [0]})", "x has 2 values but y has 1"},
      {R"({"x": [0, "a"], "y": [0, 1]})", "x[1] is not a finite number"},
      {R"({"x": [0, 1], "y": [0, null]})", "y[1] is not a finite number"},
      {R"({"x": [0, 1, 1], "y": [0, 1, 1]})", "x[2] = 1 is not above x[1]"},
      {R"({"x": [0, 1, 2], "y": [0, 1, 0.5]})", "y[2] = 0.5 is below y[1]"},
      {R"({"x": [0, 1], "y": [0.5, 1.5]})", "y[1] = 1.5 is not a probability in [0, 1]"},
      {R"({"x": [0, 1], "y": [-0.25, 1]})", "y[0] = -0.25 is not a probability in [0, 1]"},
  };
  for (const auto& c : cases) {
    const auto r = IsotonicCalibration::FromJson(Json::parse(c.json));
    ASSERT_FALSE(r.ok()) << c.json;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << c.json;
    EXPECT_NE(r.status().message().find(c.message), std::string::npos)
        << c.json << " gave " << r.status();
  }
}

}  // namespace
}  // namespace vigil::model
