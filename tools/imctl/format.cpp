#include "tools/imctl/format.hpp"

#include <ctime>

#include <fmt/format.h>

namespace im::imctl {

std::string rfc3339(std::int64_t us) {
  std::int64_t secs = us / 1000000;
  std::int64_t frac = us % 1000000;
  if (frac < 0) {
    frac += 1000000;
    --secs;
  }
  const std::time_t t = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char date[32];
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
  return fmt::format("{}.{:06d}Z", date, frac);
}

nlohmann::json message_json(const client::MessageRecord& m) {
  return nlohmann::json{{"seq", m.seq},
                        {"message_id", m.message_id},
                        {"from", m.sender},
                        {"to", m.receiver},
                        {"body", m.body},
                        {"created_at", rfc3339(m.created_at_us)},
                        {"client_msg_id", m.client_msg_id}};
}

std::string message_line(const client::MessageRecord& m) {
  return fmt::format("{:>6}  {}  {} -> {}  {}", m.seq, rfc3339(m.created_at_us), m.sender, m.receiver,
                     m.body);
}

}  // namespace im::imctl
