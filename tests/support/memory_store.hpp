#pragma once
// MemoryStore: the storage interfaces (MessageWriter, MessageReader) over
// in-memory containers, behaving like the PostgreSQL adapters as a client sees
// them, for tests and fuzzing that drive the Service without services:
//  - sends are committed in batches (everything submitted since the previous
//    commit), each receiver's inbox gets seqs 1, 2, 3... in submit order, and
//    the CommitListener gets each batch's committed runs (as from the writer);
//  - (sender, client_msg_id) is idempotent: a repeat gets the first ack with
//    duplicate=true and stores nothing; a repeat with another receiver or body
//    gets `conflict`;
//  - pull returns the run of seqs after the cursor, up to the limit and the
//    byte cap (max_bytes), with has_more when either cut it; history pages one conversation by message
//    id, ascending after the cursor or descending before it (0: the newest).
// A read whose ReadCancel is set when it runs is dropped (unavailable).
// Failures can be scheduled (Faults) to exercise the error paths.
//
// Thread-safety: none. Every member, and every completion (posted, never run
// inside submit/pull/history), runs on the one executor given at construction.

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <asio/any_io_executor.hpp>

#include "protocol/page_size.hpp"
#include "server/service/store.hpp"

namespace im::test {

class MemoryStore final : public server::MessageWriter, public server::MessageReader {
 public:
  /// How many of the next operations of each kind fail.
  struct Faults {
    unsigned submit_busy = 0;         // submit() returns busy (queue full)
    unsigned submit_unavailable = 0;  // submit() returns unavailable (writer closed)
    unsigned commit_unavailable = 0;  // a whole batch fails to commit
    unsigned read_unavailable = 0;    // a pull or history fails
  };

  MemoryStore(asio::any_io_executor executor, server::CommitListener& listener);

  server::StoreStatus submit(server::SendCommand& cmd) override;
  void pull(server::PullQuery query,
            std::function<void(const server::StoreStatus&, server::PullPage&&)> done) override;
  void history(server::HistoryQuery query,
               std::function<void(const server::StoreStatus&, server::HistoryPage&&)> done) override;

  Faults& faults() { return faults_; }
  /// Reads dropped unrun because their connection had closed (ReadCancel set).
  std::uint64_t reads_cancelled() const { return reads_cancelled_; }
  /// Reads handed to the store when their connection had already closed:
  /// the service should have dropped them before (ReadGate::drop).
  std::uint64_t reads_submitted_closed() const { return reads_submitted_closed_; }

  /// The stored message of (sender, client_msg_id), or nullptr.
  const protocol::MessageRecord* find(std::string_view sender, std::uint64_t client_msg_id) const;
  /// The message at `seq` in `owner`'s inbox, or nullptr.
  const protocol::MessageRecord* at(std::string_view owner, std::int64_t seq) const;
  /// Seqs in `owner`'s inbox (the highest seq, as they are contiguous).
  std::int64_t inbox_size(std::string_view owner) const;
  /// The messages between `a` and `b` (either direction), by ascending id.
  std::vector<const protocol::MessageRecord*> conversation(std::string_view a,
                                                           std::string_view b) const;
  std::size_t size() const { return messages_.size(); }
  /// Sends submitted and not yet committed.
  std::size_t pending() const { return pending_.size(); }

  /// Checks the stored state: ids 1..n, every inbox's seqs contiguous from 1
  /// and holding only its own messages, each message in exactly one inbox, no
  /// two messages with one (sender, client_msg_id). Returns "" or the first
  /// violation found.
  std::string check() const;

 private:
  void commit();

  asio::any_io_executor executor_;
  server::CommitListener& listener_;
  Faults faults_;
  std::uint64_t reads_cancelled_ = 0;
  std::uint64_t reads_submitted_closed_ = 0;
  std::vector<server::SendCommand> pending_;
  bool commit_posted_ = false;
  std::vector<protocol::MessageRecord> messages_;  // messages_[id - 1]
  std::map<std::string, std::vector<std::size_t>, std::less<>> inboxes_;  // seq s at [s - 1]
  std::map<std::pair<std::string, std::uint64_t>, std::size_t> by_key_;
};

}  // namespace im::test
