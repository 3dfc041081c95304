#pragma once
// submit_send: hands one send to a MessageWriter and returns a future of its
// outcome (the store's status and the ack), for the storage tests.

#include <cstdint>
#include <future>
#include <memory>
#include <string>
#include <utility>

#include "server/service/store.hpp"

namespace im::test {

using SendResult = std::pair<server::StoreStatus, protocol::SendAckRecord>;

inline std::future<SendResult> submit_send(server::MessageWriter& writer, const std::string& from,
                                           const std::string& to, std::uint64_t cmid,
                                           const std::string& body, std::int64_t received_at_us) {
  auto done = std::make_shared<std::promise<SendResult>>();
  std::future<SendResult> result = done->get_future();
  server::SendCommand cmd{from, to, body, cmid, received_at_us, {}};
  cmd.done = [done](const server::StoreStatus& s, const protocol::SendAckRecord& a) {
    done->set_value({s, a});
  };
  const server::StoreStatus queued = writer.submit(cmd);
  if (!queued.ok()) done->set_value({queued, {}});
  return result;
}

}  // namespace im::test
