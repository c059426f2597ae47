// A model slot swapped while threads score: every score comes from one
// whole model, requests keep the model they started with, and old models
// are freed once no reader holds them. Also built with -fsanitize=thread
// (model_slot_tsan_test).
#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "core/slot.h"
#include "gtest/gtest.h"
#include "model/forest.h"

namespace vigil::model {
namespace {

// A regression model of one split: margin = left or right leaf.
std::shared_ptr<const Forest> TwoLeafModel(float left, float right) {
  const std::string json = std::string(R"({"learner": {
    "learner_model_param": {"base_score": "0", "num_feature": "1", "num_class": "0", "num_target": "1"},
    "objective": {"name": "reg:squarederror"},
    "gradient_booster": {"name": "gbtree", "model": {"trees": [{
      "left_children": [1, -1, -1], "right_children": [2, -1, -1], "split_indices": [0, 0, 0],
      "split_conditions": [0.5, )") + std::to_string(left) + ", " + std::to_string(right) +
                           R"(], "default_left": [1, 0, 0], "sum_hessian": [2, 1, 1], "split_type": [0, 0, 0]}]}}}})";
  auto f = Forest::FromJson(json, "test");
  EXPECT_TRUE(f.ok()) << f.status();
  return *f;
}

TEST(ModelSlotTest, ReadersSeeWholeModelsWhileWriterSwaps) {
  auto a = TwoLeafModel(1, 2);
  auto b = TwoLeafModel(10, 20);
  core::Slot<Forest> slot(a);
  std::atomic<bool> stop{false};
  std::atomic<int64_t> bad{0}, scored{0}, switches{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&] {
      core::Slot<Forest>::Reader reader(slot);
      const float lo[1] = {0.0f}, hi[1] = {1.0f};
      const Forest* last = nullptr;
      while (!stop.load(std::memory_order_relaxed)) {
        // One request: both rows on the model it started with.
        std::shared_ptr<const Forest> model = reader.Get();
        const float x = model->Margin(lo), y = model->Margin(hi);
        if (!((x == 1 && y == 2) || (x == 10 && y == 20))) bad.fetch_add(1);
        if (model.get() != last) switches.fetch_add(1);
        last = model.get();
        scored.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  // Swap until the readers have scored plenty across many swaps.
  for (int i = 0; i < 2000 || scored.load() < 20000; ++i) {
    slot.Set(i % 2 ? a : b);
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
  stop = true;
  for (auto& r : readers) r.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_GT(scored.load(), 0);
  EXPECT_GT(switches.load(), 3);  // readers did see new models
}

TEST(ModelSlotTest, RequestInFlightKeepsItsModelAndOldOnesAreFreed) {
  core::Slot<Forest> slot(TwoLeafModel(1, 2));
  core::Slot<Forest>::Reader reader(slot);
  std::shared_ptr<const Forest> in_flight = reader.Get();
  std::weak_ptr<const Forest> old = in_flight;
  slot.Set(TwoLeafModel(10, 20));
  const float row[1] = {0.0f};
  EXPECT_EQ(in_flight->Margin(row), 1.0f);       // still the model it started with
  EXPECT_EQ(reader.Get()->Margin(row), 10.0f);   // the next request gets the new one
  in_flight.reset();
  EXPECT_TRUE(old.expired());                    // nobody holds the old model now
}

TEST(ModelSlotTest, EmptySlotGivesNull) {
  core::Slot<Forest> slot;
  core::Slot<Forest>::Reader reader(slot);
  EXPECT_EQ(reader.Get(), nullptr);
  slot.Set(TwoLeafModel(1, 2));
  EXPECT_NE(reader.Get(), nullptr);
}

}  // namespace
}  // namespace vigil::model
