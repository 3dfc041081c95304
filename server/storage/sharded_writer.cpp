#include "server/storage/sharded_writer.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace im::server {

std::size_t writer_lane(std::string_view receiver, std::size_t lanes) {
  std::uint64_t h = 14695981039346656037ull;
  for (const char c : receiver) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  return static_cast<std::size_t>(h % lanes);
}

ShardedWriter::ShardedWriter(const GroupCommitOptions& options, std::size_t lanes,
                             CommitListener& listener) {
  if (lanes == 0) throw std::invalid_argument("a sharded writer needs at least one lane");
  lanes_.reserve(lanes);
  for (std::size_t i = 0; i < lanes; ++i) {
    GroupCommitOptions lane = options;
    // The queues together hold what one queue would (rounded up), but never
    // less than one batch each.
    lane.queue_capacity = std::max(options.batch_max, (options.queue_capacity + lanes - 1) / lanes);
    if (lanes > 1) lane.name = options.name + "-" + std::to_string(i);
    lanes_.push_back(std::make_unique<GroupCommitWriter>(std::move(lane), listener));
  }
}

void ShardedWriter::start() {
  for (auto& lane : lanes_) lane->start();
}

void ShardedWriter::stop() {
  // Close every queue first so that no lane keeps taking sends while an
  // earlier one drains; then wait for each.
  for (auto& lane : lanes_) lane->close();
  for (auto& lane : lanes_) lane->stop();
}

StoreStatus ShardedWriter::submit(SendCommand& cmd) {
  return lanes_[writer_lane(cmd.receiver, lanes_.size())]->submit(cmd);
}

WriterStats ShardedWriter::stats() const {
  WriterStats sum;
  for (const auto& lane : lanes_) sum += lane->stats();
  return sum;
}

}  // namespace im::server
