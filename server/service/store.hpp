#pragma once
// The storage interfaces the request handlers see. Handlers never touch a
// socket, a PostgreSQL connection or a Redis context; the adapters in
// server/storage implement these on their own threads.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "protocol/message.hpp"
#include "server/service/committed_batch.hpp"

namespace im::server {

/// Outcome classes of a storage operation, mapped to wire error codes by the
/// service layer.
enum class StoreCode {
  ok,
  unavailable,  // PostgreSQL or Redis unreachable or failed: retry later
  busy,         // queue full: retry later
  conflict,     // client_msg_id reused for a different message
  internal,
};

struct StoreStatus {
  StoreCode code = StoreCode::ok;
  std::string message;
  bool ok() const { return code == StoreCode::ok; }
};

/// One send handed to the group-commit writer.
struct SendCommand {
  std::string sender;
  std::string receiver;
  std::string body;
  std::uint64_t client_msg_id = 0;
  std::int64_t received_at_us = 0;  // becomes the message's created_at
  /// Called exactly once, on the writer's thread, after the batch holding this
  /// send committed (ok) or failed. Must not block.
  std::function<void(const StoreStatus&, const protocol::SendAckRecord&)> done;
};

/// Accepts sends for durable storage (group commit).
class MessageWriter {
 public:
  virtual ~MessageWriter() = default;
  /// Queues `cmd`. On a full or closed queue returns busy/unavailable at once
  /// and `cmd.done` is not called; otherwise `cmd.done` is called later.
  virtual StoreStatus submit(SendCommand& cmd) = 0;
};

/// Set once the connection a read is for has closed: a read not started yet
/// is dropped (answered unavailable, which nobody receives) instead of run.
using ReadCancel = std::shared_ptr<const std::atomic<bool>>;

struct PullQuery {
  std::string owner;
  std::int64_t after_seq = 0;
  std::uint32_t limit = 0;
  /// The page is cut before the message that would take it past this many
  /// bytes (protocol::PageFill; the first message is always taken). 0: no cap.
  std::size_t max_bytes = 0;
  ReadCancel cancelled{};  // may be null
};

struct PullPage {
  std::vector<protocol::MessageRecord> messages;
  std::int64_t next_after_seq = 0;
  bool has_more = false;
  /// A seq after the cursor is missing while a later one exists (another
  /// writer has not committed yet, or a write failed and will be filled).
  bool gap_pending = false;
};

struct HistoryQuery {
  std::string user;
  std::string peer;
  std::int64_t cursor = 0;
  std::uint32_t limit = 0;
  bool reverse = false;
  std::size_t max_bytes = 0;  // as PullQuery::max_bytes
  ReadCancel cancelled{};     // may be null
};

struct HistoryPage {
  std::vector<protocol::MessageRecord> messages;
  std::int64_t next_cursor = 0;
  bool has_more = false;
};

/// Reads inboxes and conversations. Callbacks run on a storage thread.
class MessageReader {
 public:
  virtual ~MessageReader() = default;
  virtual void pull(PullQuery query, std::function<void(const StoreStatus&, PullPage&&)> done) = 0;
  virtual void history(HistoryQuery query,
                       std::function<void(const StoreStatus&, HistoryPage&&)> done) = 0;
};

/// Verdict of an account operation that reached the store.
enum class AccountOutcome {
  ok,               // registered, or the password matches
  exists,           // register: the user id is taken
  bad_credentials,  // login: no such user, or the password does not match
};

/// Password accounts (registration and login). Hashing is slow on purpose, so
/// both run on the store's own bounded pool; callbacks run on a pool thread.
class AccountStore {
 public:
  using Done = std::function<void(const StoreStatus&, AccountOutcome)>;
  virtual ~AccountStore() = default;
  /// Queue full: returns busy at once and `done` is not called.
  virtual StoreStatus create(std::string user, std::string password, Done done) = 0;
  virtual StoreStatus authenticate(std::string user, std::string password, Done done) = 0;
};

/// Commit notifications for long polls: the writer calls notify after every
/// COMMIT with the inboxes it wrote and their committed runs.
class CommitListener {
 public:
  virtual ~CommitListener() = default;
  virtual void notify(const std::shared_ptr<const CommittedBatch>& batch) = 0;
  /// Notifications may have been lost (the channel carrying them broke).
  virtual void resync() {}
};

}  // namespace im::server
