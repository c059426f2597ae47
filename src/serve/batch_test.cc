// Splitting batch and label bodies (serve/batch.h): each element as posted,
// and a byte that is not UTF-8 failing only the element that holds it.
#include "serve/batch.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vigil::serve {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(SplitBatchTest, ElementsAsPosted) {
  auto items = SplitBatch(R"( [{"a": 1,  "b":"x"},{"a":2}] )", false);
  ASSERT_TRUE(items.ok()) << items.status();
  EXPECT_THAT(*items, ElementsAre(R"({"a": 1,  "b":"x"})", R"({"a":2})"));
}

TEST(SplitBatchTest, InvalidUtf8FailsOnlyItsElement) {
  // \xC3\x28: a lead byte without its continuation; \xFF: never UTF-8.
  const std::string first = R"({"event_id":"e1","note":"caf)"
                            "\xC3\x28"
                            R"("})";
  const std::string second = R"({"event_id":"e2","note":"café"})";
  const std::string third = R"({"event_id":"e3","note":")"
                            "\xFF\xFF"
                            R"("})";
  auto items = SplitBatch("[" + first + "," + second + "," + third + "]", false);
  ASSERT_TRUE(items.ok()) << items.status();
  // The invalid bytes are still there, for the validator to refuse.
  EXPECT_THAT(*items, ElementsAre(first, second, third));

  auto lone = SplitBatch(third, /*allow_object=*/true);
  ASSERT_TRUE(lone.ok()) << lone.status();
  EXPECT_THAT(*lone, ElementsAre(third));
}

TEST(SplitBatchTest, InvalidUtf8OutsideStringsIsInvalidJson) {
  auto items = SplitBatch("[{\"a\":1}\xFF]", false);
  ASSERT_FALSE(items.ok());
  EXPECT_THAT(items.status().message(), HasSubstr("not valid JSON"));
}

TEST(IsLabelEventTest, ReadsTheTypePastInvalidUtf8) {
  EXPECT_TRUE(IsLabelEvent(R"({"note":")"
                           "\xE2\x82"
                           R"(","event_type":"label"})"));
  EXPECT_FALSE(IsLabelEvent(R"({"note":")"
                            "\xE2\x82"
                            R"(","event_type":"deposit"})"));
  EXPECT_FALSE(IsLabelEvent(R"({"event_type":"lab)"
                            "\xFF"
                            R"("})"));
}

}  // namespace
}  // namespace vigil::serve
