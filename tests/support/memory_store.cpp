#include "tests/support/memory_store.hpp"

#include <algorithm>
#include <limits>
#include <set>

#include <asio/post.hpp>

#include "server/service/committed_batch.hpp"

namespace im::test {

using server::StoreCode;
using server::StoreStatus;

MemoryStore::MemoryStore(asio::any_io_executor executor, server::CommitListener& listener)
    : executor_(std::move(executor)), listener_(listener) {}

StoreStatus MemoryStore::submit(server::SendCommand& cmd) {
  if (faults_.submit_busy > 0) {
    --faults_.submit_busy;
    return {StoreCode::busy, "send queue full; retry later"};
  }
  if (faults_.submit_unavailable > 0) {
    --faults_.submit_unavailable;
    return {StoreCode::unavailable, "writer closed"};
  }
  pending_.push_back(std::move(cmd));
  if (!commit_posted_) {
    // Like the group-commit writer: what arrives before the batch runs joins it.
    commit_posted_ = true;
    asio::post(executor_, [this] { commit(); });
  }
  return {};
}

void MemoryStore::commit() {
  commit_posted_ = false;
  std::vector<server::SendCommand> batch;
  batch.swap(pending_);
  if (faults_.commit_unavailable > 0) {
    --faults_.commit_unavailable;
    for (server::SendCommand& c : batch) {
      if (c.done) c.done({StoreCode::unavailable, "database unavailable"}, {});
    }
    return;
  }
  // New messages per receiver, in commit order: the batch handed to the
  // waiters, as the group-commit writer builds it (no tombstones here).
  std::vector<std::pair<std::string, std::vector<protocol::MessageRecord>>> written;
  for (server::SendCommand& c : batch) {
    StoreStatus status;
    protocol::SendAckRecord ack;
    const auto key = std::make_pair(c.sender, c.client_msg_id);
    if (const auto it = by_key_.find(key); it != by_key_.end()) {
      const protocol::MessageRecord& m = messages_[it->second];
      ack = {m.message_id, m.created_at_us, m.seq, true};
      if (m.receiver != c.receiver || m.body != c.body) {
        status = {StoreCode::conflict, "client_msg_id already used for a different message"};
      }
    } else {
      std::vector<std::size_t>& inbox = inboxes_[c.receiver];
      protocol::MessageRecord m;
      m.seq = static_cast<std::int64_t>(inbox.size()) + 1;
      m.message_id = static_cast<std::int64_t>(messages_.size()) + 1;
      m.sender = c.sender;
      m.receiver = c.receiver;
      m.body = c.body;
      m.created_at_us = c.received_at_us;
      m.client_msg_id = c.client_msg_id;
      ack = {m.message_id, m.created_at_us, m.seq, false};
      inbox.push_back(messages_.size());
      by_key_.emplace(key, messages_.size());
      auto w = std::find_if(written.begin(), written.end(),
                            [&](const auto& e) { return e.first == c.receiver; });
      if (w == written.end()) w = written.insert(written.end(), {c.receiver, {}});
      w->second.push_back(m);
      messages_.push_back(std::move(m));
    }
    if (c.done) c.done(status, ack);
  }
  if (written.empty()) return;
  auto committed = std::make_shared<server::CommittedBatch>();
  for (auto& [owner, records] : written) {
    server::CommittedBatch::Inbox inbox;
    inbox.owner = owner;
    inbox.first_seq = records.front().seq;
    inbox.last_seq = records.back().seq;
    inbox.begin = static_cast<std::uint32_t>(committed->messages.size());
    for (auto& r : records) committed->messages.push_back(std::move(r));
    inbox.end = static_cast<std::uint32_t>(committed->messages.size());
    committed->inboxes.push_back(std::move(inbox));
  }
  listener_.notify(committed);
}

void MemoryStore::pull(server::PullQuery query,
                       std::function<void(const StoreStatus&, server::PullPage&&)> done) {
  if (query.cancelled && query.cancelled->load()) ++reads_submitted_closed_;
  asio::post(executor_, [this, q = std::move(query), done = std::move(done)] {
    server::PullPage page;
    page.next_after_seq = q.after_seq;
    if (faults_.read_unavailable > 0) {
      --faults_.read_unavailable;
      return done({StoreCode::unavailable, "database unavailable"}, std::move(page));
    }
    if (q.cancelled && q.cancelled->load()) {
      ++reads_cancelled_;
      return done({StoreCode::unavailable, "the connection closed"}, std::move(page));
    }
    const std::int64_t head = inbox_size(q.owner);
    protocol::PageFill fill(q.max_bytes);
    // From the cursor up, never computing after_seq + 1: a client may send
    // the largest int64 as its cursor.
    for (std::int64_t seq = std::max<std::int64_t>(q.after_seq, 0); seq < head; ++seq) {
      const protocol::MessageRecord& m = *at(q.owner, seq + 1);
      if (page.messages.size() == q.limit || !fill.take(m)) {
        page.has_more = true;
        break;
      }
      page.messages.push_back(m);
      page.next_after_seq = seq + 1;
    }
    done({}, std::move(page));
  });
}

void MemoryStore::history(server::HistoryQuery query,
                          std::function<void(const StoreStatus&, server::HistoryPage&&)> done) {
  if (query.cancelled && query.cancelled->load()) ++reads_submitted_closed_;
  asio::post(executor_, [this, q = std::move(query), done = std::move(done)] {
    server::HistoryPage page;
    page.next_cursor = q.cursor;
    if (faults_.read_unavailable > 0) {
      --faults_.read_unavailable;
      return done({StoreCode::unavailable, "database unavailable"}, std::move(page));
    }
    if (q.cancelled && q.cancelled->load()) {
      ++reads_cancelled_;
      return done({StoreCode::unavailable, "the connection closed"}, std::move(page));
    }
    std::vector<const protocol::MessageRecord*> all = conversation(q.user, q.peer);
    protocol::PageFill fill(q.max_bytes);
    if (q.reverse) std::reverse(all.begin(), all.end());
    const std::int64_t cursor =
        q.reverse && q.cursor <= 0 ? std::numeric_limits<std::int64_t>::max() : q.cursor;
    for (const protocol::MessageRecord* m : all) {
      if (q.reverse ? m->message_id >= cursor : m->message_id <= cursor) continue;
      if (page.messages.size() == q.limit || !fill.take(*m)) {
        page.has_more = true;
        break;
      }
      page.messages.push_back(*m);
      page.next_cursor = m->message_id;
    }
    done({}, std::move(page));
  });
}

const protocol::MessageRecord* MemoryStore::find(std::string_view sender,
                                                 std::uint64_t client_msg_id) const {
  const auto it = by_key_.find(std::make_pair(std::string(sender), client_msg_id));
  return it == by_key_.end() ? nullptr : &messages_[it->second];
}

const protocol::MessageRecord* MemoryStore::at(std::string_view owner, std::int64_t seq) const {
  const auto it = inboxes_.find(owner);
  if (it == inboxes_.end() || seq < 1 || seq > static_cast<std::int64_t>(it->second.size())) {
    return nullptr;
  }
  return &messages_[it->second[static_cast<std::size_t>(seq - 1)]];
}

std::int64_t MemoryStore::inbox_size(std::string_view owner) const {
  const auto it = inboxes_.find(owner);
  return it == inboxes_.end() ? 0 : static_cast<std::int64_t>(it->second.size());
}

std::vector<const protocol::MessageRecord*> MemoryStore::conversation(std::string_view a,
                                                                      std::string_view b) const {
  std::vector<const protocol::MessageRecord*> out;
  for (const protocol::MessageRecord& m : messages_) {
    if ((m.sender == a && m.receiver == b) || (m.sender == b && m.receiver == a)) out.push_back(&m);
  }
  return out;
}

std::string MemoryStore::check() const {
  for (std::size_t i = 0; i < messages_.size(); ++i) {
    if (messages_[i].message_id != static_cast<std::int64_t>(i) + 1) {
      return "message ids are not 1..n at index " + std::to_string(i);
    }
  }
  std::vector<int> in_inbox(messages_.size(), 0);
  for (const auto& [owner, inbox] : inboxes_) {
    for (std::size_t k = 0; k < inbox.size(); ++k) {
      if (inbox[k] >= messages_.size()) return "inbox " + owner + " points past the messages";
      const protocol::MessageRecord& m = messages_[inbox[k]];
      if (m.seq != static_cast<std::int64_t>(k) + 1) {
        return "inbox " + owner + ": seq " + std::to_string(m.seq) + " at position " +
               std::to_string(k + 1) + " (seqs must be contiguous from 1)";
      }
      if (m.receiver != owner) return "inbox " + owner + " holds a message for " + m.receiver;
      ++in_inbox[inbox[k]];
    }
  }
  for (std::size_t i = 0; i < messages_.size(); ++i) {
    if (in_inbox[i] != 1) {
      return "message " + std::to_string(i + 1) + " is in " + std::to_string(in_inbox[i]) +
             " inboxes";
    }
  }
  std::set<std::pair<std::string_view, std::uint64_t>> keys;
  for (const protocol::MessageRecord& m : messages_) {
    if (!keys.emplace(m.sender, m.client_msg_id).second) {
      return "two stored messages with sender " + m.sender + " and client_msg_id " +
             std::to_string(m.client_msg_id);
    }
  }
  if (by_key_.size() != messages_.size()) return "idempotency index out of step with the messages";
  return {};
}

}  // namespace im::test
