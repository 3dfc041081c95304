#pragma once
// Workload: a closed-loop send load (each sender keeps `pipeline` sends in
// flight) and a delivery check that reads every receiver's inbox afterwards.
//
// Users are "<prefix>-s<N>" (senders) and "<prefix>-r<N>" (receivers); every
// body starts with "<prefix>:<sender>:<index>:" so each message is unique and
// traceable. Thread-safety: run() and verify() from one thread.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "tools/im-loadgen/histogram.hpp"

namespace im::loadgen {

struct WorkloadOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 7400;
  int senders = 8;
  int receivers = 8;
  std::uint64_t count = 10000;   // total sends
  double duration_s = 60;        // stop issuing sends after this long
  int pipeline = 16;             // sends in flight per sender
  std::size_t body_bytes = 100;
  std::string prefix;
  double timeout_s = 10;
};

struct RunReport {
  std::uint64_t attempted = 0;
  std::uint64_t acked = 0;
  std::uint64_t failed = 0;  // a definite error from the server or client
  std::map<std::string, std::uint64_t> errors;  // by error kind/code
  double seconds = 0;
  Histogram ack_latency_us;
  double throughput() const { return seconds > 0 ? static_cast<double>(acked) / seconds : 0; }
};

struct VerifyReport {
  std::uint64_t delivered = 0;
  std::uint64_t lost = 0;           // acked, never delivered
  std::uint64_t duplicated = 0;     // delivered more than once
  std::uint64_t unexpected = 0;     // delivered, never sent by this run
  std::uint64_t order_violations = 0;  // seqs not strictly increasing in an inbox
  std::uint64_t ack_mismatch = 0;   // delivered message differs from its ack
  std::uint64_t read_errors = 0;
  bool clean() const {
    return lost + duplicated + unexpected + order_violations + ack_mismatch + read_errors == 0;
  }
};

class Workload {
 public:
  explicit Workload(WorkloadOptions options);
  RunReport run();
  VerifyReport verify();

  std::string sender_name(int i) const;
  std::string receiver_name(int i) const;

 private:
  struct Acked {
    std::int64_t message_id = 0;
    std::int64_t seq = 0;
    int receiver = -1;
    bool acked = false;
  };
  WorkloadOptions options_;
  std::vector<std::vector<Acked>> sent_;  // [sender][index]
};

}  // namespace im::loadgen
