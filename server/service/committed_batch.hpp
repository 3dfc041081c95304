#pragma once
// CommittedBatch: what one group commit wrote, handed to the long polls it
// wakes so that a waiting pull can be answered without reading PostgreSQL.
//
// The writer builds one batch per COMMIT and shares it (shared_ptr to const)
// with every waiter it wakes; nothing is copied per waiter. A batch that came
// from another process (Redis pub/sub) or from shutdown names inboxes only
// (has_run() is false) and every woken pull falls back to a query.
//
// Thread-safety: immutable once built; readable from any thread.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "protocol/message.hpp"

namespace im::server {

struct CommittedBatch {
  /// One inbox the commit wrote to.
  struct Inbox {
    std::string owner;
    /// Every seq in [first_seq, last_seq] was committed by this batch, each a
    /// message or a tombstone (a key a concurrent writer stored first). 0 when
    /// the run is unknown (a remote commit): the batch cannot answer.
    std::int64_t first_seq = 0;
    std::int64_t last_seq = 0;
    /// This inbox's messages (no tombstones) are messages[begin, end), in seq order.
    std::uint32_t begin = 0;
    std::uint32_t end = 0;
    bool has_run() const { return first_seq > 0 && last_seq >= first_seq; }
  };
  std::vector<Inbox> inboxes;
  std::vector<protocol::MessageRecord> messages;

  /// A batch that only names inboxes (their run unknown): waiters re-query.
  static std::shared_ptr<const CommittedBatch> names_only(std::vector<std::string> owners);
};

/// A pull answer taken from a batch: views into the batch's messages.
struct CommitPage {
  std::span<const protocol::MessageRecord> messages;
  std::int64_t next_after_seq = 0;
  bool has_more = false;
};

/// The answer to a pull (after_seq, limit) on `inbox` of `batch` when the batch
/// alone settles it: the cursor is exactly one below the inbox's committed run,
/// so the run is the unbroken sequence after the cursor. Takes messages up to
/// `limit` and `max_bytes` (0: no cap; see protocol::PageFill) the way the
/// query does (tombstones advance the cursor without counting; has_more when
/// the run goes on past the page). Otherwise (run
/// unknown, cursor behind it - a gap another writer holds - or inside/ahead of
/// it, limit 0) nullopt: the caller must query PostgreSQL.
std::optional<CommitPage> page_from_commit(const CommittedBatch& batch,
                                           const CommittedBatch::Inbox& inbox,
                                           std::int64_t after_seq, std::uint32_t limit,
                                           std::size_t max_bytes = 0);

}  // namespace im::server
