#pragma once
// ShardedWriter: several group-commit writers side by side, each owning the
// inboxes whose receiver hashes to it.
//
// One writer's cycle is serial: allocate the batch's seqs in Redis, run its
// statement, wait for the WAL flush, hand out the acks. While it waits for
// the flush its PostgreSQL backend idles, and a single backend uses at most one
// core. With N lanes, N batches are in PostgreSQL at once. (On a machine with
// few cores this trades latency for throughput: see docs/design.md, "Writer lanes".)
//
// Every send to one receiver goes to the same lane, in submit order, so what
// the single writer guarantees per inbox holds per lane unchanged: the inbox's
// seqs are allocated and committed by one thread in order; a Redis counter
// behind PostgreSQL is found and raised by that thread alone; the inbox's
// commit notifications arrive in commit order. Lanes are not ordered against
// each other and need not be: no guarantee spans two inboxes, and responses may
// arrive in any order (protocol/README.md). Two things do change:
// - message ids come from one sequence that all lanes draw on, so within one
//   process ids are no longer in commit order (History pages by id; the README
//   says so, as it did for several processes);
// - a client_msg_id reused for two receivers in two lanes meets itself in the
//   (sender, client_msg_id) unique index: one insert waits for the other's
//   commit, and the later send is told the key is taken by a different
//   message (conflict), exactly as across two processes (a lock cycle between
//   two such batches is retried, see GroupCommitWriter).
//
// Thread-safety: submit() from any thread; start()/stop() from one thread.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "server/storage/group_commit_writer.hpp"

namespace im::server {

/// The lane (0 .. lanes-1) that writes `receiver`'s inbox. Stable across runs
/// and processes (FNV-1a), so a receiver's lane is predictable in tests.
std::size_t writer_lane(std::string_view receiver, std::size_t lanes);

class ShardedWriter final : public MessageWriter {
 public:
  /// `lanes` writers, each with `options` (its own PostgreSQL and Redis
  /// connections) and a 1/lanes share of `options.queue_capacity`.
  ShardedWriter(const GroupCommitOptions& options, std::size_t lanes, CommitListener& listener);

  void start();
  /// Stops every lane: each commits and acks what it has queued.
  void stop();

  StoreStatus submit(SendCommand& cmd) override;

  std::size_t lanes() const { return lanes_.size(); }
  /// Every lane's WriterStats, summed.
  WriterStats stats() const;

 private:
  std::vector<std::unique_ptr<GroupCommitWriter>> lanes_;
};

}  // namespace im::server
