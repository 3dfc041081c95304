// Client: the blocking wrapper over AsyncClient.
#include <future>

#include "client/client.hpp"

namespace im::client {
namespace {

template <typename T, typename Start>
Result<T> wait_for(Start start) {
  std::promise<Result<T>> promise;
  auto future = promise.get_future();
  start([&promise](Result<T> r) { promise.set_value(std::move(r)); });
  return future.get();
}

}  // namespace

Result<Welcome> Client::connect() {
  return wait_for<Welcome>([&](auto cb) { async_.connect(std::move(cb)); });
}

Result<SendAck> Client::send(const std::string& receiver, const std::string& body,
                             std::uint64_t client_msg_id) {
  return wait_for<SendAck>([&](auto cb) { async_.send(receiver, body, client_msg_id, std::move(cb)); });
}

Result<PullPage> Client::pull(std::int64_t after_seq, std::uint32_t limit, std::uint32_t wait_ms) {
  return wait_for<PullPage>([&](auto cb) { async_.pull(after_seq, limit, wait_ms, std::move(cb)); });
}

Result<HistoryPage> Client::history(const std::string& peer, std::int64_t cursor,
                                    std::uint32_t limit, bool reverse) {
  return wait_for<HistoryPage>(
      [&](auto cb) { async_.history(peer, cursor, limit, reverse, std::move(cb)); });
}

Result<std::chrono::microseconds> Client::ping() {
  return wait_for<std::chrono::microseconds>([&](auto cb) { async_.ping(std::move(cb)); });
}

}  // namespace im::client
