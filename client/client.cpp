// Client: the blocking wrapper over AsyncClient.
#include <algorithm>
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

Result<std::vector<Endpoint>> parse_servers(const std::string& list) {
  auto bad = [&](const std::string& why) -> Result<std::vector<Endpoint>> {
    Error e;
    e.kind = Error::Kind::protocol;
    e.message = "bad server list '" + list + "': " + why;
    return e;
  };
  std::vector<Endpoint> out;
  std::size_t start = 0;
  while (start <= list.size()) {
    const std::size_t comma = std::min(list.find(',', start), list.size());
    const std::string item = list.substr(start, comma - start);
    start = comma + 1;
    const std::size_t colon = item.rfind(':');
    if (item.empty() || colon == std::string::npos || colon == 0) return bad("expected HOST:PORT");
    std::string host = item.substr(0, colon);
    if (host.front() == '[') {
      if (host.size() < 3 || host.back() != ']') return bad("unbalanced brackets in '" + item + "'");
      host = host.substr(1, host.size() - 2);
    } else if (host.find(':') != std::string::npos) {
      return bad("put an IPv6 address in brackets: [" + host + "]:PORT");
    }
    const std::string port_text = item.substr(colon + 1);
    if (port_text.empty() || port_text.size() > 5 ||
        port_text.find_first_not_of("0123456789") != std::string::npos) {
      return bad("port must be 1-65535 in '" + item + "'");
    }
    const int port = std::stoi(port_text);
    if (port < 1 || port > 65535) return bad("port must be 1-65535 in '" + item + "'");
    out.push_back({host, static_cast<std::uint16_t>(port)});
  }
  return out;
}

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

Result<AuthGrant> Client::register_account(const std::string& user, const std::string& password) {
  return wait_for<AuthGrant>(
      [&](auto cb) { async_.register_account(user, password, std::move(cb)); });
}

Result<AuthGrant> Client::login(const std::string& user, const std::string& password) {
  return wait_for<AuthGrant>([&](auto cb) { async_.login(user, password, std::move(cb)); });
}

}  // namespace im::client
