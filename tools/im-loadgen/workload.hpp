#pragma once
// Workload: a closed-loop send load and a delivery checker.
//
// Senders: --senders connections, each keeping `pipeline` sends in flight,
// spread over the receivers. A send is retried (same client_msg_id, reconnecting
// as needed) until it is acked, fails definitely, or the retry budget ends: the
// outcome is then acked, failed or unknown. Every body starts with
// "<prefix>:<sender>:<index>:" so each message is unique and traceable.
//
// Checker (verify mode): one follower per receiver long-polls its inbox by
// cursor while the load runs; afterwards every inbox is read again from 0 and
// compared with what was sent, acked and followed.
//
// Thread-safety: run() and check() from one thread.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "client/client.hpp"
#include "tools/im-loadgen/histogram.hpp"

namespace im::loadgen {

using client::Endpoint;

struct WorkloadOptions {
  /// Sender i and the follower of receiver i connect to servers[i % size] and
  /// fail over to the others; the final reads start at the first.
  std::vector<Endpoint> servers{Endpoint{}};
  int senders = 8;
  int receivers = 8;
  std::uint64_t count = 10000;   // total sends
  double duration_s = 60;        // stop issuing sends after this long
  int pipeline = 16;             // sends in flight per sender
  std::size_t body_bytes = 100;
  std::string prefix;
  double timeout_s = 10;         // per request, before a retry
  int send_attempts = 5;         // per send, all with one client_msg_id
  double resend_fraction = 0;    // resend this fraction of acked sends (same id): must not duplicate
  bool follow = false;           // followers long-poll every inbox during the load
  double rate = 0;               // open loop: sends/s in all (0: closed loop, `pipeline` per sender)
  double warmup_s = 0;           // sends intended in the first seconds are left out of the figures
  bool progress = false;         // a progress line on stderr every second
  /// Signs a token for a user (from the deployment's keys); unset: no token
  /// (a server under --auth none). Called at every (re)connect.
  std::function<std::string(const std::string& user)> token_for;
  bool tls = false;              // connect with TLS (certificate verified)
  std::string tls_ca_file;       // CAs to trust (PEM); empty: the system's
};

struct RunReport {
  std::uint64_t attempted = 0;
  std::uint64_t acked = 0;
  std::uint64_t failed = 0;   // a definite error
  std::uint64_t unknown = 0;  // retries exhausted on timeouts/unavailable: may or may not be stored
  std::uint64_t resends = 0;
  std::map<std::string, std::uint64_t> errors;  // last error of each non-acked send, by kind/code
  double seconds = 0;
  double max_ack_gap_s = 0;    // longest stretch without any ack (outages)
  double availability = 1;     // fraction of 100 ms slots with at least one ack
  Histogram ack_latency_us;
  std::uint64_t shed = 0;        // open loop: not issued, too many in flight
  std::uint64_t measured_acked = 0;   // acks after the warm-up
  double measured_seconds = 0;        // from the warm-up's end to the last ack
  double throughput() const {
    return measured_seconds > 0 ? static_cast<double>(measured_acked) / measured_seconds : 0;
  }
};

/// Failing counts must all be 0; the rest is information.
struct CheckReport {
  // failing
  std::uint64_t lost = 0;              // acked, never delivered
  std::uint64_t duplicated = 0;        // one payload at two positions
  std::uint64_t unexpected = 0;        // never sent by this run, or in the wrong inbox
  std::uint64_t aborted_reads = 0;     // a definitely failed send became visible
  std::uint64_t inconsistent = 0;      // a follower and the final read disagree on a seq
  std::uint64_t reader_skips = 0;      // a message at or below a cursor a follower passed, unseen by it
  std::uint64_t reader_regressions = 0;  // a reader's seqs did not strictly increase
  std::uint64_t order_violations = 0;  // B sent after A was acked (same sender, receiver), seq(B) < seq(A)
  std::uint64_t ack_mismatch = 0;      // delivered message differs from its ack
  std::uint64_t read_errors = 0;       // the final read could not complete
  // information
  std::uint64_t delivered = 0;
  std::uint64_t unknown_delivered = 0;  // unknown-outcome sends that turned out stored
  Histogram delivery_latency_us;        // send issued -> a follower saw it
  std::uint64_t failing() const {
    return lost + duplicated + unexpected + aborted_reads + inconsistent + reader_skips +
           reader_regressions + order_violations + ack_mismatch + read_errors;
  }
};

class Workload {
 public:
  explicit Workload(WorkloadOptions options);
  ~Workload();
  RunReport run();
  /// Stops the followers; send->delivered latency (from the intended send time).
  Histogram stop_following();
  /// Stops the followers and reads every inbox from 0 (verify mode).
  CheckReport check();

  std::string sender_name(int i) const;
  std::string receiver_name(int i) const;

 private:
  enum class Outcome : std::uint8_t { pending, acked, failed, unknown };
  struct Sent {
    std::int64_t message_id = 0;
    std::int64_t seq = 0;
    std::int64_t issued_ns = 0;    // steady clock: when it was handed to the client
    std::int64_t intended_ns = 0;  // when it was meant to leave (open loop: its slot)
    std::int64_t acked_ns = 0;
    int receiver = -1;
    Outcome outcome = Outcome::pending;
  };
  struct Seen {
    std::int64_t seq;
    std::int64_t message_id;
    int sender;
    std::uint64_t index;
    std::int64_t seen_ns;
  };
  struct Follower {
    std::thread thread;
    std::vector<Seen> seen;
    std::int64_t cursor = 0;
    std::uint64_t regressions = 0;
    std::uint64_t errors = 0;
  };
  // The sending side of run(): one Sender per connection, and what they share.
  class Sender;
  struct RunState;
  using Senders = std::vector<std::unique_ptr<Sender>>;
  Senders start_senders(RunState& run);
  /// Open loop: issues every send at its time, spread over the senders, until
  /// the count or the duration is reached. Returns how many were shed.
  std::uint64_t pace(Senders& senders, const RunState& run);
  /// Until every send is answered (or the hard deadline), with the progress line.
  void wait_for(Senders& senders, const RunState& run, const std::atomic<bool>& pacing_done);
  RunReport report(Senders& senders, const RunState& run, std::uint64_t shed);

  void start_followers();
  void follow(int receiver, Follower& f);
  /// "<prefix>:<sender>:<index>:..." -> sender and index; the sender is in range.
  bool parse_ids(const std::string& body, int& sender, std::uint64_t& index) const;
  /// parse_ids, and the index was sent. Only once the senders have stopped.
  bool parse_body(const std::string& body, int& sender, std::uint64_t& index) const;

  WorkloadOptions options_;
  std::vector<std::deque<Sent>> sent_;  // [sender][index], grown as sends are issued
  std::vector<Follower> followers_;
  std::atomic<bool> stop_following_{false};
  std::int64_t warmup_end_ns_ = 0;
};

}  // namespace im::loadgen
