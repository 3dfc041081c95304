// Unit: the group-commit queue's batching rules, without services.
#include <catch2/catch.hpp>

#include <thread>

#include "server/storage/batch_queue.hpp"

using im::server::BatchQueue;
using namespace std::chrono_literals;

TEST_CASE("a full batch is taken at once, in FIFO order", "[unit][batch]") {
  BatchQueue<int> q(100, 4, std::chrono::microseconds(std::chrono::hours(1)));
  for (int i = 0; i < 10; ++i) {
    int v = i;
    REQUIRE(q.push(v) == BatchQueue<int>::PushResult::ok);
  }
  std::vector<int> batch;
  // With an hour of delay, only batch_max can release these batches.
  REQUIRE(q.pop_batch(batch));
  CHECK(batch == std::vector<int>{0, 1, 2, 3});
  REQUIRE(q.pop_batch(batch));
  CHECK(batch == std::vector<int>{4, 5, 6, 7});
  CHECK(q.size() == 2);
}

TEST_CASE("a partial batch is released by the delay", "[unit][batch]") {
  BatchQueue<int> q(100, 1000, std::chrono::microseconds(20000));
  int v = 7;
  REQUIRE(q.push(v) == BatchQueue<int>::PushResult::ok);
  std::vector<int> batch;
  REQUIRE(q.pop_batch(batch));  // returns after ~20 ms although the batch is not full
  CHECK(batch == std::vector<int>{7});
}

TEST_CASE("the queue is bounded and refuses pushes when full", "[unit][batch]") {
  BatchQueue<int> q(3, 10, std::chrono::microseconds(0));
  for (int i = 0; i < 3; ++i) {
    int v = i;
    REQUIRE(q.push(v) == BatchQueue<int>::PushResult::ok);
  }
  int extra = 99;
  CHECK(q.push(extra) == BatchQueue<int>::PushResult::full);
  CHECK(extra == 99);  // a refused item is left to the caller
  std::vector<int> batch;
  REQUIRE(q.pop_batch(batch));
  CHECK(batch.size() == 3);
  CHECK(q.push(extra) == BatchQueue<int>::PushResult::ok);
}

TEST_CASE("close drains what is queued, then ends, and refuses new items", "[unit][batch]") {
  BatchQueue<std::string> q(100, 2, std::chrono::microseconds(std::chrono::hours(1)));
  for (const char* s : {"a", "b", "c"}) {
    std::string v = s;
    q.push(v);
  }
  q.close();
  std::string late = "late";
  CHECK(q.push(late) == BatchQueue<std::string>::PushResult::closed);
  std::vector<std::string> batch, all;
  while (q.pop_batch(batch)) all.insert(all.end(), batch.begin(), batch.end());
  CHECK(all == std::vector<std::string>{"a", "b", "c"});
}

TEST_CASE("a consumer blocked on an empty queue wakes for a producer", "[unit][batch]") {
  BatchQueue<int> q(100, 1, std::chrono::microseconds(0));
  std::vector<int> batch;
  std::thread producer([&] {
    std::this_thread::sleep_for(10ms);
    int v = 5;
    q.push(v);
  });
  REQUIRE(q.pop_batch(batch));
  producer.join();
  CHECK(batch == std::vector<int>{5});
}
