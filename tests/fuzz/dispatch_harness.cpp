#include "tests/fuzz/dispatch_harness.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <asio/io_context.hpp>
#include <fmt/format.h>

#include "protocol/frame_codec.hpp"
#include "protocol/frames.hpp"
#include "protocol/validate.hpp"
#include "server/common/log.hpp"
#include "server/service/waiters.hpp"
#include "tests/fuzz/dispatch_script.hpp"
#include "tests/support/fake_connection.hpp"
#include "tests/support/memory_store.hpp"

namespace im::fuzz {
namespace {

using Clock = std::chrono::steady_clock;
using test::FakeConnection;
using test::MemoryStore;

[[noreturn]] void broken(const std::string& why) {
  std::fprintf(stderr, "dispatch invariant broken: %s\n", why.c_str());
  std::abort();
}

void expect(bool ok, const std::string& why) {
  if (!ok) broken(why);
}

// The one place the harness builds a Service (its constructor grows with the
// server; keep every argument here).
std::unique_ptr<server::Service> make_service(const server::ServiceLimits& limits,
                                              MemoryStore& store, server::Waiters& waiters) {
  // --auth none: Hello's user is taken as given, so the fuzzer can open
  // sessions; token checking is covered by tests/unit/server/token_test.cpp.
  return std::make_unique<server::Service>(limits, store, store, waiters, "im-fuzz",
                                           server::ServiceAuth{});
}

void quiet_loggers() { server::logs::set_level("off"); }

// What the harness remembers of one request until its response comes.
struct Pending {
  std::uint64_t rid = 0;
  wire::Body type = wire::Body::NONE;
  std::string user;  // the connection's user when the request was handled
  bool hello_accepted = false;
  std::string receiver, body;  // Send
  std::uint64_t client_msg_id = 0;
  std::int64_t after_seq = 0;  // Pull
  std::uint32_t wait_ms = 0;
  std::string peer;            // History
  std::int64_t cursor = 0;
  bool reverse = false;
  std::uint32_t limit = 0;     // Pull and History, as the service applies it
  std::uint64_t nonce = 0;     // Ping
  Clock::time_point at;
  // Another request with this id and type was outstanding when a response
  // for one of them came: which one was answered is unknown, so this one's
  // response cannot be checked exactly either.
  bool ambiguous = false;
};

// The request type a response type answers.
wire::Body request_for(wire::Body response) {
  switch (response) {
    case wire::Body::Welcome: return wire::Body::Hello;
    case wire::Body::SendAck: return wire::Body::Send;
    case wire::Body::PullResult: return wire::Body::Pull;
    case wire::Body::HistoryResult: return wire::Body::History;
    case wire::Body::Pong: return wire::Body::Ping;
    default: return wire::Body::NONE;
  }
}

bool text_ok(const flatbuffers::String* s) { return !s || protocol::valid_utf8(s->string_view()); }

bool messages_text_ok(const flatbuffers::Vector<flatbuffers::Offset<wire::Message>>* v) {
  if (!v) return true;
  for (const wire::Message* m : *v) {
    if (!text_ok(m->sender()) || !text_ok(m->receiver()) || !text_ok(m->body())) return false;
  }
  return true;
}

std::vector<protocol::MessageRecord> records(
    const flatbuffers::Vector<flatbuffers::Offset<wire::Message>>* v) {
  std::vector<protocol::MessageRecord> out;
  if (v) {
    for (const wire::Message* m : *v) out.push_back(protocol::to_record(*m));
  }
  return out;
}

bool same(const protocol::MessageRecord& a, const protocol::MessageRecord& b) {
  return a.seq == b.seq && a.message_id == b.message_id && a.sender == b.sender &&
         a.receiver == b.receiver && a.body == b.body && a.created_at_us == b.created_at_us &&
         a.client_msg_id == b.client_msg_id;
}

class Harness {
 public:
  Harness(std::uint8_t config, unsigned connections)
      : limits_(dispatch_service_limits(config)),
        store_(io_.get_executor(), waiters_),
        service_(make_service(limits_, store_, waiters_)) {
    for (unsigned i = 0; i < connections; ++i) {
      Conn c;
      c.conn = std::make_shared<FakeConnection>(io_.get_executor(), i + 1, service_.get());
      conns_.push_back(std::move(c));
    }
  }

  ~Harness() {
    // Pending handlers hold connections and timers: let them finish while
    // everything they reference is alive.
    service_->begin_shutdown();
    run_until_idle();
  }

  void data(unsigned c, std::span<const std::uint8_t> bytes) {
    Conn& conn = conns_[c];
    if (!conn.reading) return;
    conn.buffer.insert(conn.buffer.end(), bytes.begin(), bytes.end());
    // As server/net/session.cpp: length checked first (smaller before Hello),
    // then the whole frame verified in its own allocation, then dispatched.
    for (std::size_t frames = 0; conn.reading && frames < 4096; ++frames) {
      const std::uint32_t max = conn.conn->state().user.empty()
                                    ? std::min(kDispatchMaxFrameBytesBeforeHello, kDispatchMaxFrameBytes)
                                    : kDispatchMaxFrameBytes;
      const protocol::Decoded d = protocol::decode_frame(conn.buffer, max);
      if (d.status == protocol::DecodeStatus::need_more) break;
      if (d.status == protocol::DecodeStatus::error) {
        fail(conn, protocol::encode_error(0, d.error, d.reason));
        break;
      }
      const std::vector<std::uint8_t> frame(d.frame.begin(), d.frame.end());
      conn.buffer.erase(conn.buffer.begin(), conn.buffer.begin() + static_cast<std::ptrdiff_t>(d.consumed));
      std::string why;
      const wire::Frame* f = protocol::verify_frame(frame, protocol::VerifyLimits{}, why);
      if (!f) {
        fail(conn, protocol::encode_error(0, wire::ErrorCode::ProtocolError, why));
        break;
      }
      dispatch(conn, *f);
      // The service may close the connection itself (Connection::fail).
      if (conn.conn->failed()) conn.reading = false;
    }
  }

  /// The client half-closes (end of stream): nothing more is read, and
  /// everything that arrived whole is still answered. With `reset`, the
  /// connection is gone, as Session::close ends it: reads still queued for it
  /// are dropped, long polls let go, and requests in flight may go unanswered.
  void close(unsigned c, bool reset) {
    Conn& conn = conns_[c];
    conn.reading = false;
    conn.conn->stop_reading();
    if (!reset) return;
    conn.closed = true;
    conn.conn->close();
  }

  void fault(std::uint8_t f) {
    const unsigned count = 1 + ((f >> 2) & 3u);
    MemoryStore::Faults& faults = store_.faults();
    switch (static_cast<FaultKind>(f & 3)) {
      case FaultKind::submit_busy: faults.submit_busy = count; break;
      case FaultKind::submit_unavailable: faults.submit_unavailable = count; break;
      case FaultKind::commit_unavailable: faults.commit_unavailable = count; break;
      case FaultKind::read_unavailable: faults.read_unavailable = count; break;
    }
  }

  void shutdown() {
    service_->begin_shutdown();
    shut_down_ = true;
  }

  /// Runs every ready handler (never waits for a timer), then checks what
  /// was written.
  void run_until_idle() {
    constexpr std::size_t kMaxHandlers = 1u << 16;
    std::size_t n = 0;
    for (; n < kMaxHandlers; ++n) {
      io_.restart();
      if (io_.poll_one() == 0) break;
    }
    expect(n < kMaxHandlers, "the event loop did not go idle (a handler loop?)");
    for (Conn& conn : conns_) {
      for (FakeConnection::Written& w : conn.conn->take_written()) on_written(conn, w);
    }
  }

  /// End of the script: what is left must be long polls with nothing to
  /// deliver; shutdown ends them; then nothing may be left at all.
  DispatchStats finish() {
    run_until_idle();
    for (Conn& conn : conns_) {
      if (conn.closed) continue;  // reset: its requests may go unanswered
      for (const Pending& p : conn.outstanding) {
        // A reused request id with an Error not yet attributed: settled below.
        if (conn.deferred_errors.count(p.rid) > 0) continue;
        expect(p.type == wire::Body::Pull,
               fmt::format("request {} (type {}) has no response once idle", p.rid,
                           static_cast<int>(p.type)));
        if (!shut_down_ && !conn.conn->closing()) {
          expect(store_.inbox_size(p.user) <= p.after_seq,
                 fmt::format("long poll {} of {} after seq {} still waits while seq {} is stored",
                             p.rid, p.user, p.after_seq, store_.inbox_size(p.user)));
        }
      }
    }
    shutdown();
    run_until_idle();
    for (Conn& conn : conns_) {
      if (conn.closed) continue;  // its unanswered requests were dropped
      std::map<std::uint64_t, std::size_t> left;
      for (const Pending& p : conn.outstanding) ++left[p.rid];
      expect(left == conn.deferred_errors,
             fmt::format("connection {}: requests without exactly one response", conn.conn->id()));
      expect(conn.rid0_requests == 0, "a request with request_id 0 got no Error");
    }
    expect(waiters_.size() == 0, "a finished long poll left its waiter registered");
    // Nothing is read for a connection that has closed, and every byte a
    // read reserved is released, however its connection ended.
    expect(store_.reads_submitted_closed() == 0,
           fmt::format("{} read(s) reached the store after their connection closed",
                       store_.reads_submitted_closed()));
    expect(service_->read_gate().budget().used() == 0,
           fmt::format("{} response byte(s) still reserved once idle",
                       service_->read_gate().budget().used()));
    expect(store_.pending() == 0, "a submitted send was never committed");
    const std::string bad = store_.check();
    expect(bad.empty(), "store: " + bad);
    return stats_;
  }

 private:
  struct Conn {
    std::shared_ptr<FakeConnection> conn;
    std::vector<std::uint8_t> buffer;
    bool reading = true;
    bool closed = false;  // by the client (close): requests may go unanswered
    std::vector<Pending> outstanding;
    // Errors for a request id shared by several outstanding requests: which
    // one they answer is settled at the end, by counting.
    std::map<std::uint64_t, std::size_t> deferred_errors;
    std::size_t rid0_requests = 0;
  };

  void fail(Conn& conn, protocol::OutFrame frame) {
    conn.reading = false;
    conn.conn->fail(std::move(frame));
  }

  void dispatch(Conn& conn, const wire::Frame& f) {
    Pending p;
    p.rid = f.request_id();
    p.type = f.body_type();
    p.user = conn.conn->state().user;
    p.at = Clock::now();
    switch (p.type) {
      case wire::Body::Send: {
        const wire::Send& m = *f.body_as_Send();
        if (m.receiver()) p.receiver = m.receiver()->str();
        if (m.body()) p.body = m.body()->str();
        p.client_msg_id = m.client_msg_id();
        break;
      }
      case wire::Body::Pull: {
        const wire::Pull& m = *f.body_as_Pull();
        p.after_seq = m.after_seq();
        p.wait_ms = std::min(m.wait_ms(), limits_.max_wait_ms);
        p.limit = m.limit() == 0 ? limits_.default_pull_limit : std::min(m.limit(), limits_.max_pull_limit);
        break;
      }
      case wire::Body::History: {
        const wire::History& m = *f.body_as_History();
        if (m.peer()) p.peer = m.peer()->str();
        p.cursor = m.cursor();
        p.reverse = m.reverse();
        p.limit = m.limit() == 0 ? limits_.default_pull_limit : std::min(m.limit(), limits_.max_pull_limit);
        break;
      }
      case wire::Body::Ping: p.nonce = f.body_as_Ping()->nonce(); break;
      default: break;
    }
    const std::string before = conn.conn->state().user;
    ++stats_.requests;
    service_->on_frame(conn.conn, f);
    if (conn.conn->state().user != before) {
      const wire::Hello* hello = f.body_as_Hello();
      expect(hello && before.empty() && hello->user() &&
                 hello->user()->string_view() == conn.conn->state().user &&
                 protocol::valid_user_id(conn.conn->state().user),
             "the connection's user changed other than by a first, valid Hello");
      p.hello_accepted = true;
    }
    if (p.rid == 0) {
      ++conn.rid0_requests;
    } else {
      conn.outstanding.push_back(std::move(p));
    }
  }

  void on_written(Conn& conn, FakeConnection::Written& w) {
    // Every frame must pass the verifier a client runs on responses.
    const std::vector<std::uint8_t> bytes(w.frame.data(), w.frame.data() + w.frame.size());
    std::string why;
    const wire::Frame* f =
        protocol::verify_frame(bytes, protocol::response_verify_limits(limits_.max_pull_limit), why);
    expect(f != nullptr, "the server wrote a frame that does not verify: " + why);
    check_text(*f);
    const std::uint64_t rid = f->request_id();
    const wire::Body type = f->body_type();
    if (type == wire::Body::Error) {
      const auto code = f->body_as_Error()->code();
      expect(code > wire::ErrorCode::Unknown && code <= wire::ErrorCode::MAX,
             fmt::format("Error with code {}", static_cast<int>(code)));
      expect(f->body_as_Error()->message() && f->body_as_Error()->message()->size() > 0,
             "Error without a message");
    }
    if (w.from_fail) {
      // The connection closes after this Error: a framing error (request id
      // 0). The service ends a session only for a refused token or an expired
      // session, and under --auth none there are neither: a refused Hello
      // (a second one, a bad version, a malformed user id) leaves it open.
      expect(type == wire::Body::Error, "fail() wrote something other than an Error");
      expect(rid == 0, fmt::format("request {} was refused with a close under --auth none", rid));
      ++stats_.failures;
      return;
    }
    ++stats_.responses;
    if (rid == 0) {
      expect(type == wire::Body::Error && f->body_as_Error()->code() == wire::ErrorCode::BadRequest,
             "a response with request id 0 that is not Error{bad_request}");
      expect(conn.rid0_requests > 0, "more request-id-0 Errors than request-id-0 requests");
      --conn.rid0_requests;
      ++stats_.errors;
      return;
    }
    if (type == wire::Body::Error) return on_error(conn, rid, *f->body_as_Error());
    const wire::Body wanted = request_for(type);
    expect(wanted != wire::Body::NONE,
           fmt::format("the server answered request {} with body type {}", rid, static_cast<int>(type)));
    std::vector<std::size_t> candidates;
    for (std::size_t i = 0; i < conn.outstanding.size(); ++i) {
      if (conn.outstanding[i].rid == rid && conn.outstanding[i].type == wanted) candidates.push_back(i);
    }
    expect(!candidates.empty(), fmt::format("response type {} to request id {}, which has no such "
                                            "request outstanding", static_cast<int>(type), rid));
    // Only Ping may succeed before Hello; a Hello succeeds if it set the user.
    const auto plausible = [&](const Pending& c) {
      return type == wire::Body::Pong || !c.user.empty() || c.hello_accepted;
    };
    const auto chosen = std::find_if(candidates.begin(), candidates.end(),
                                     [&](std::size_t i) { return plausible(conn.outstanding[i]); });
    expect(chosen != candidates.end(),
           fmt::format("request {} answered with success before Hello (or a refused Hello with "
                       "Welcome)", rid));
    if (candidates.size() > 1) {
      for (const std::size_t i : candidates) conn.outstanding[i].ambiguous = true;
    }
    const Pending p = conn.outstanding[*chosen];
    conn.outstanding.erase(conn.outstanding.begin() + static_cast<std::ptrdiff_t>(*chosen));
    // With one candidate the request is known exactly; with several (a
    // reused request id), or after several, only what holds for any is checked.
    const bool exact = candidates.size() == 1 && !p.ambiguous;
    switch (type) {
      case wire::Body::Welcome: check_welcome(conn, p, *f->body_as_Welcome(), exact); break;
      case wire::Body::SendAck: check_ack(p, *f->body_as_SendAck(), exact); break;
      case wire::Body::PullResult: check_pull(conn, p, *f->body_as_PullResult(), exact); break;
      case wire::Body::HistoryResult: check_history(p, *f->body_as_HistoryResult(), exact); break;
      case wire::Body::Pong:
        expect(!exact || f->body_as_Pong()->nonce() == p.nonce, "Pong with another nonce");
        break;
      default: break;
    }
  }

  void on_error(Conn& conn, std::uint64_t rid, const wire::Error& e) {
    ++stats_.errors;
    std::vector<std::size_t> candidates;
    for (std::size_t i = 0; i < conn.outstanding.size(); ++i) {
      if (conn.outstanding[i].rid == rid) candidates.push_back(i);
    }
    expect(!candidates.empty(), fmt::format("Error for request id {}, which has none outstanding", rid));
    if (candidates.size() > 1) {
      ++conn.deferred_errors[rid];
      return;
    }
    const Pending p = conn.outstanding[candidates.front()];
    conn.outstanding.erase(conn.outstanding.begin() + static_cast<std::ptrdiff_t>(candidates.front()));
    expect(!p.hello_accepted, "a Hello that set the user was answered with an Error");
    const bool needs_user =
        p.type == wire::Body::Send || p.type == wire::Body::Pull || p.type == wire::Body::History;
    if (needs_user && p.user.empty()) {
      expect(e.code() == wire::ErrorCode::Unauthenticated,
             "a request before Hello got an Error other than unauthenticated");
    }
    // The harness's service offers no accounts (no keys): Register and Login
    // are client requests, always refused as not offered.
    const bool account = p.type == wire::Body::Register || p.type == wire::Body::Login;
    if (account) {
      expect(e.code() == wire::ErrorCode::Forbidden,
             "Register or Login on a server without accounts got an Error other than forbidden");
    }
    // Under --auth none every refused Hello is a malformed (or second) one.
    if (p.type == wire::Body::Hello) {
      expect(e.code() == wire::ErrorCode::BadRequest,
             "a refused Hello got an Error other than bad_request under --auth none");
    }
    if (p.type != wire::Body::Hello && p.type != wire::Body::Ping && !needs_user && !account) {
      expect(e.code() == wire::ErrorCode::BadRequest,
             "a frame type a client may not send got an Error other than bad_request");
    }
  }

  void check_welcome(Conn& conn, const Pending& p, const wire::Welcome& w, bool exact) {
    if (!exact) return;
    expect(p.hello_accepted, "Welcome for a Hello that did not set the user");
    expect(w.session_id() == conn.conn->id(), "Welcome with another session id");
    expect(w.protocol_version() == protocol::kProtocolVersion, "Welcome with another protocol version");
    expect(w.max_body_bytes() == limits_.max_body_bytes && w.max_pull_limit() == limits_.max_pull_limit &&
               w.max_wait_ms() == limits_.max_wait_ms,
           "Welcome announces other limits than the service applies");
  }

  void check_ack(const Pending& p, const wire::SendAck& a, bool exact) {
    expect(a.seq() >= 1 && a.message_id() >= 1, "SendAck with a seq or message id below 1");
    const protocol::MessageRecord* m = store_.find(p.user, p.client_msg_id);
    if (!exact) return;
    expect(m != nullptr, "SendAck for a send that is not stored");
    expect(m->message_id == a.message_id() && m->seq == a.seq() && m->created_at_us == a.created_at_us(),
           "SendAck differs from the stored message");
    expect(m->receiver == p.receiver && m->body == p.body,
           "SendAck for a reused client_msg_id with another receiver or body (must be an Error)");
    const auto key = std::make_pair(p.user, p.client_msg_id);
    if (!a.duplicate()) {
      expect(acked_.insert(key).second, "two SendAcks without duplicate for one client_msg_id");
    }
    acked_.insert(key);
  }

  void check_pull(Conn& conn, const Pending& p, const wire::PullResult& r, bool exact) {
    const std::vector<protocol::MessageRecord> ms = records(r.messages());
    // The store has no gaps: a page is the run right after the cursor.
    for (std::size_t i = 0; i < ms.size(); ++i) {
      const protocol::MessageRecord* stored = store_.at(p.user, ms[i].seq);
      expect(stored && same(*stored, ms[i]), "a pulled message differs from the stored one");
      if (i > 0) expect(ms[i].seq == ms[i - 1].seq + 1, "a pull's seqs are not consecutive");
    }
    if (!ms.empty()) expect(r.next_after_seq() == ms.back().seq, "next_after_seq is not the last seq");
    if (!exact) return;
    expect(ms.size() <= p.limit, "a pull returned more than its limit");
    if (!ms.empty()) expect(ms.front().seq == p.after_seq + 1, "a pull did not start right after the cursor");
    if (ms.empty()) expect(r.next_after_seq() == p.after_seq, "an empty pull moved the cursor");
    if (r.has_more()) expect(ms.size() == p.limit, "has_more on a pull that was not cut by its limit");
    if (ms.empty() && p.wait_ms > 0 && !shut_down_ && !conn.conn->closing()) {
      expect(Clock::now() - p.at >= std::chrono::milliseconds(p.wait_ms),
             "a long poll answered empty before its wait ended");
    }
  }

  void check_history(const Pending& p, const wire::HistoryResult& r, bool exact) {
    const std::vector<protocol::MessageRecord> ms = records(r.messages());
    for (const protocol::MessageRecord& m : ms) {
      expect(m.sender == p.user || m.receiver == p.user, "history holds another user's message");
      const protocol::MessageRecord* stored = store_.at(m.receiver, m.seq);
      expect(stored && same(*stored, m), "a history message differs from the stored one");
    }
    if (!exact) return;
    expect(ms.size() <= p.limit, "a history page above its limit");
    std::vector<const protocol::MessageRecord*> all = store_.conversation(p.user, p.peer);
    if (p.reverse) std::reverse(all.begin(), all.end());
    // The page is a run of the conversation in the requested direction, beyond the cursor.
    std::size_t start = 0;
    if (!ms.empty()) {
      while (start < all.size() && all[start]->message_id != ms.front().message_id) ++start;
      expect(start < all.size(), "a history message outside the conversation");
      expect(start + ms.size() <= all.size(), "a history page runs past the conversation");
      for (std::size_t i = 0; i < ms.size(); ++i) {
        expect(all[start + i]->message_id == ms[i].message_id,
               "a history page is not a run of the conversation in order");
      }
      const std::int64_t first = ms.front().message_id;
      if (p.reverse) {
        expect(p.cursor <= 0 || first < p.cursor, "reverse history at or after its cursor");
      } else {
        expect(first > p.cursor, "history at or before its cursor");
        // Newer messages only get larger ids, so the first after the cursor stays first.
        expect(start == 0 || all[start - 1]->message_id <= p.cursor,
               "forward history skipped messages after the cursor");
      }
      expect(r.next_cursor() == ms.back().message_id, "next_cursor is not the last message id");
    } else {
      expect(r.next_cursor() == p.cursor, "an empty history page moved the cursor");
    }
    if (r.has_more()) expect(ms.size() == p.limit, "has_more on a history page not cut by its limit");
  }

  void check_text(const wire::Frame& f) {
    bool ok = true;
    switch (f.body_type()) {
      case wire::Body::Welcome: ok = text_ok(f.body_as_Welcome()->server_name()); break;
      case wire::Body::Error: ok = text_ok(f.body_as_Error()->message()); break;
      case wire::Body::PullResult: ok = messages_text_ok(f.body_as_PullResult()->messages()); break;
      case wire::Body::HistoryResult: ok = messages_text_ok(f.body_as_HistoryResult()->messages()); break;
      default: break;
    }
    expect(ok, "the server wrote text that is not UTF-8");
  }

  // Destroyed last: handlers and timers refer to it.
  asio::io_context io_;
  server::ServiceLimits limits_;
  server::Waiters waiters_;
  MemoryStore store_;
  std::unique_ptr<server::Service> service_;
  std::vector<Conn> conns_;
  std::set<std::pair<std::string, std::uint64_t>> acked_;
  bool shut_down_ = false;
  DispatchStats stats_;
};

}  // namespace

server::ServiceLimits dispatch_service_limits(std::uint8_t config) {
  server::ServiceLimits l;
  l.max_frame_bytes = kDispatchMaxFrameBytes;
  l.max_body_bytes = 128;
  const bool small = (config & kConfigSmallPulls) != 0;
  l.max_pull_limit = small ? 2 : 50;
  l.default_pull_limit = small ? 1 : 10;
  // Few reads at once per connection, so that scripts often queue reads
  // behind running ones (ReadGate) and close connections with reads queued.
  l.max_reads_per_connection = 2;
  // Long polls end by a commit or at the end of the script (shutdown), never
  // by the clock while a script runs.
  l.max_wait_ms = 60000;
  // This harness cannot take service_limits(Config{}) (it builds without
  // server/app), and ServiceLimits' own values are neutral: these are the
  // page and response ceilings the committed corpus was made with.
  l.max_page_bytes = 1u << 20;
  l.max_response_bytes = 256u << 20;
  if ((config & kConfigRateLimit) != 0) {
    // A bucket of two that refills once in ~30 years: deterministic.
    l.send_rate = 1e-9;
    l.send_burst = 2;
  }
  return l;
}

DispatchStats dispatch_one_input(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return {};
  quiet_loggers();
  const std::uint8_t config = data[0];
  const unsigned connections = 1 + (config & 3u) % 3;
  Harness h(config, connections);
  std::size_t at = 1;
  while (at < size) {
    const std::uint8_t op = data[at++];
    const unsigned conn = ((op >> 3) & 3u) % connections;
    switch (op & 7u) {
      case 0: case 1: case 2: case 3: {
        if (at >= size) break;
        const std::size_t want = std::size_t{data[at++]} + 1;
        const std::size_t n = std::min(want, size - at);
        h.data(conn, {data + at, n});
        at += n;
        break;
      }
      case static_cast<unsigned>(ScriptOp::run): h.run_until_idle(); break;
      case static_cast<unsigned>(ScriptOp::close): h.close(conn, (op & kCloseReset) != 0); break;
      case static_cast<unsigned>(ScriptOp::fault):
        if (at < size) h.fault(data[at++]);
        break;
      case static_cast<unsigned>(ScriptOp::shutdown): h.shutdown(); break;
      default: break;
    }
  }
  return h.finish();
}

}  // namespace im::fuzz
