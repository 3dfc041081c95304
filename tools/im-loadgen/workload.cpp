#include "tools/im-loadgen/workload.hpp"

#include <algorithm>
#include <cstdio>
#include <limits>
#include <memory>
#include <mutex>
#include <random>
#include <set>

#include <fmt/format.h>

#include "client/client.hpp"

namespace im::loadgen {
namespace {
using Clock = std::chrono::steady_clock;

std::int64_t now_ns() { return Clock::now().time_since_epoch().count(); }

client::Options client_options(const WorkloadOptions& o, const std::string& user, int which = 0) {
  client::Options c;
  // Spread over the servers; the others are this client's failover endpoints,
  // so a retry after a lost connection or a timeout goes to another process.
  const std::size_t n = o.servers.size();
  const std::size_t first = static_cast<std::size_t>(which) % n;
  c.host = o.servers[first].host;
  c.port = o.servers[first].port;
  for (std::size_t k = 1; k < n; ++k) c.failover.push_back(o.servers[(first + k) % n]);
  c.user = user;
  if (o.token_for) c.token_source = [f = o.token_for, user] { return f(user); };
  c.client_name = "im-loadgen/0.1";
  c.request_timeout = std::chrono::milliseconds(static_cast<std::int64_t>(o.timeout_s * 1000));
  c.connect_timeout = std::min(c.request_timeout, std::chrono::milliseconds(2000));
  c.send_attempts = o.send_attempts;
  c.tls = o.tls;
  c.tls_ca_file = o.tls_ca_file;
  return c;
}

// "unavailable", "timeout", ...: the part of the message before the colon.
// How long the final read's last long poll waits for nothing to happen: longer
// than the server's gap fill delay (default 2 s).
constexpr std::uint32_t kSettleWaitMs = 3000;

std::string error_key(const client::Error& e) {
  const std::string s = e.to_string();
  return s.substr(0, s.find(':'));
}
}  // namespace

Workload::Workload(WorkloadOptions options) : options_(std::move(options)) {}

Workload::~Workload() {
  stop_following_ = true;
  for (auto& f : followers_) {
    if (f.thread.joinable()) f.thread.join();
  }
}

std::string Workload::sender_name(int i) const { return fmt::format("{}-s{}", options_.prefix, i); }
std::string Workload::receiver_name(int i) const { return fmt::format("{}-r{}", options_.prefix, i); }

bool Workload::parse_ids(const std::string& body, int& sender, std::uint64_t& index) const {
  const std::string head = options_.prefix + ":";
  unsigned long long i = 0;
  if (body.rfind(head, 0) != 0 || std::sscanf(body.c_str() + head.size(), "%d:%llu:", &sender, &i) != 2) {
    return false;
  }
  index = i;
  return sender >= 0 && sender < options_.senders;
}

bool Workload::parse_body(const std::string& body, int& sender, std::uint64_t& index) const {
  return parse_ids(body, sender, index) && index < sent_[static_cast<std::size_t>(sender)].size();
}

void Workload::follow(int receiver, Follower& f) {
  client::Options o = client_options(options_, receiver_name(receiver), receiver);
  client::Client c(o);
  while (!stop_following_.load()) {
    auto page = c.pull(f.cursor, 1000, 500);
    if (!page) {
      ++f.errors;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    const std::int64_t t = now_ns();
    for (const auto& m : page->messages) {
      if (m.seq <= f.cursor || (!f.seen.empty() && m.seq <= f.seen.back().seq)) ++f.regressions;
      int s = -1;
      std::uint64_t index = 0;
      if (!parse_ids(m.body, s, index)) s = -1;  // sent_ grows meanwhile: checked after the run
      f.seen.push_back({m.seq, m.message_id, s, index, t});
    }
    if (page->next_after_seq < f.cursor) ++f.regressions;
    f.cursor = page->next_after_seq;
  }
}

// What the senders of one run() share: its clock and the totals of the
// progress line.
struct Workload::RunState {
  bool open_loop = false;
  Clock::time_point start;
  std::int64_t start_ns = 0;
  Clock::time_point stop_issuing;  // no send is issued from then on
  std::atomic<std::uint64_t> acked_total{0};
  std::atomic<std::uint64_t> errors_total{0};
};

// One sender: its connection, its sends (Workload::sent_[index]) and its
// counters. Sends are issued by the main thread (the closed loop's first
// ones), by the pacing thread (open loop) and by the completions of earlier
// sends on the client's I/O thread (the closed loop's next one, resends), so
// all of it is under mu_. The client's callbacks use `this`: finish() closes
// the client (joining its thread) before the Sender goes.
class Workload::Sender {
 public:
  Sender(Workload& w, RunState& run, int index, std::uint64_t quota)
      : w_(w),
        run_(run),
        index_(index),
        quota_(quota),
        sent_(w.sent_[static_cast<std::size_t>(index)]),
        client_(std::make_unique<client::AsyncClient>(client_options(w.options_, w.sender_name(index), index))) {}

  /// Closed loop: the first `pipeline` sends; each answer issues the next.
  void start() {
    std::lock_guard lock(mu_);
    for (int d = 0; d < w_.options_.pipeline && next_ < quota_; ++d) next();
  }

  /// Open loop: the next send, meant to leave at intended_ns. False (shed)
  /// when max_in_flight are outstanding already.
  bool offer(std::int64_t intended_ns, std::uint64_t max_in_flight) {
    std::lock_guard lock(mu_);
    if (outstanding_ >= max_in_flight) return false;
    send(next_++, false, intended_ns);
    return true;
  }

  /// Nothing outstanding, and (closed loop, still issuing) nothing left to issue.
  bool done(bool issuing_over) {
    std::lock_guard lock(mu_);
    if (outstanding_ > 0) return false;
    return run_.open_loop || issuing_over || next_ >= quota_;
  }

  /// Closes the connection, so that the counters are final, and adds them up.
  void finish(RunReport& report, std::vector<std::int64_t>& ack_times) {
    client_.reset();  // joins the client's thread
    report.attempted += next_;
    report.acked += acked_;
    report.failed += failed_;
    report.unknown += unknown_;
    report.resends += resends_;
    for (const auto& [k, v] : errors_) report.errors[k] += v;
    report.ack_latency_us.merge(latency_);
    ack_times.insert(ack_times.end(), ack_times_.begin(), ack_times_.end());
  }

 private:
  /// Closed loop: issues the next send, if one is left and it is not too late. mu_ held.
  void next() {
    if (run_.open_loop || next_ >= quota_ || Clock::now() >= run_.stop_issuing) return;
    send(next_++, false, now_ns());
  }

  /// Sends message `index` (again, for a resend), meant to leave at
  /// intended_ns. A resend must get the first ack back, never a new message.
  /// mu_ held.
  void send(std::uint64_t index, bool resend, std::int64_t intended_ns) {
    const WorkloadOptions& o = w_.options_;
    const int receiver = static_cast<int>((index + static_cast<std::uint64_t>(index_)) %
                                          static_cast<std::uint64_t>(o.receivers));
    std::string body = fmt::format("{}:{}:{}:", o.prefix, index_, index);
    if (body.size() < o.body_bytes) body.append(o.body_bytes - body.size(), 'x');
    if (!resend) sent_.emplace_back();
    Sent& rec = sent_[index];
    if (!resend) {
      rec.receiver = receiver;
      rec.issued_ns = now_ns();
      rec.intended_ns = intended_ns;
    }
    ++outstanding_;
    client_->send(w_.receiver_name(receiver), std::move(body), index + 1,
                  [this, index, resend](client::Result<client::SendAck> r) { on_ack(index, resend, r); });
  }

  /// The answer to a send: on the client's I/O thread.
  void on_ack(std::uint64_t index, bool resend, const client::Result<client::SendAck>& r) {
    std::unique_lock lock(mu_);
    Sent& sent = sent_[index];
    if (resend) {
      // The first ack stands; a different one is an ack mismatch (see check()).
      if (r && (r->message_id != sent.message_id || r->seq != sent.seq)) sent.outcome = Outcome::failed;
    } else if (r) {
      acked(index, sent, *r);
    } else {
      failed(sent, r.error());
    }
    --outstanding_;
    next();
  }

  void acked(std::uint64_t index, Sent& sent, const client::SendAck& ack) {
    const std::int64_t t = now_ns();
    // From the intended send time: in an open loop, time spent queued behind
    // a slow server counts (no coordinated omission).
    if (sent.intended_ns >= w_.warmup_end_ns_) latency_.record((t - sent.intended_ns) / 1000);
    ack_times_.push_back(t);
    ++acked_;
    run_.acked_total.fetch_add(1, std::memory_order_relaxed);
    sent.message_id = ack.message_id;
    sent.seq = ack.seq;
    sent.acked_ns = t;
    sent.outcome = Outcome::acked;
    const double fraction = w_.options_.resend_fraction;
    if (fraction > 0 && std::uniform_real_distribution<double>(0, 1)(rng_) < fraction) {
      ++resends_;
      send(index, true, t);
    }
  }

  void failed(Sent& sent, const client::Error& e) {
    ++errors_[error_key(e)];
    run_.errors_total.fetch_add(1, std::memory_order_relaxed);
    if (e.retryable()) {
      ++unknown_;
      sent.outcome = Outcome::unknown;
    } else {
      ++failed_;
      sent.outcome = Outcome::failed;
    }
  }

  Workload& w_;
  RunState& run_;
  const int index_;
  const std::uint64_t quota_;
  std::deque<Sent>& sent_;  // grows as sends are issued; a deque keeps references valid
  std::mutex mu_;
  std::unique_ptr<client::AsyncClient> client_;
  std::uint64_t next_ = 0;  // the next message's index: how many were issued
  std::uint64_t outstanding_ = 0;
  std::uint64_t resends_ = 0;
  std::uint64_t acked_ = 0, failed_ = 0, unknown_ = 0;
  Histogram latency_;
  std::map<std::string, std::uint64_t> errors_;
  std::vector<std::int64_t> ack_times_;
  std::mt19937_64 rng_{std::random_device{}()};
};

RunReport Workload::run() {
  RunState run;
  run.open_loop = options_.rate > 0;
  run.start = Clock::now();
  run.start_ns = run.start.time_since_epoch().count();
  run.stop_issuing = run.start + std::chrono::milliseconds(static_cast<std::int64_t>(options_.duration_s * 1000));
  warmup_end_ns_ = run.start_ns + static_cast<std::int64_t>(options_.warmup_s * 1e9);
  sent_.assign(static_cast<std::size_t>(options_.senders), {});

  if (options_.follow) start_followers();
  Senders senders = start_senders(run);
  std::atomic<bool> pacing_done{false};
  std::uint64_t shed = 0;
  std::thread pacer;
  if (run.open_loop) {
    pacer = std::thread([&] {
      shed = pace(senders, run);
      pacing_done = true;
    });
  } else {
    for (auto& s : senders) s->start();
  }
  wait_for(senders, run, pacing_done);
  if (pacer.joinable()) pacer.join();
  return report(senders, run, shed);
}

void Workload::start_followers() {
  followers_ = std::vector<Follower>(static_cast<std::size_t>(options_.receivers));
  for (int r = 0; r < options_.receivers; ++r) {
    followers_[static_cast<std::size_t>(r)].thread =
        std::thread([this, r] { follow(r, followers_[static_cast<std::size_t>(r)]); });
  }
}

Workload::Senders Workload::start_senders(RunState& run) {
  const auto n = static_cast<std::uint64_t>(options_.senders);
  Senders senders;
  for (int s = 0; s < options_.senders; ++s) {
    const std::uint64_t quota = options_.count / n + (static_cast<std::uint64_t>(s) < options_.count % n ? 1 : 0);
    senders.push_back(std::make_unique<Sender>(*this, run, s, quota));
  }
  return senders;
}

std::uint64_t Workload::pace(Senders& senders, const RunState& run) {
  // Message k is due at start + k / rate, from sender k mod n, whatever the
  // server's pace; a sender with too many sends in flight sheds instead of
  // growing without bound.
  const double ns_per_msg = 1e9 / options_.rate;
  const std::uint64_t max_in_flight = std::max<std::uint64_t>(static_cast<std::uint64_t>(options_.pipeline), 100000);
  std::uint64_t shed = 0;
  std::uint64_t k = 0;
  while (k < options_.count) {
    const auto now = Clock::now();
    if (now >= run.stop_issuing) break;
    const auto due = static_cast<std::uint64_t>(static_cast<double>((now - run.start).count()) / ns_per_msg) + 1;
    for (; k < due && k < options_.count; ++k) {
      Sender& s = *senders[k % senders.size()];
      if (!s.offer(run.start_ns + static_cast<std::int64_t>(static_cast<double>(k) * ns_per_msg), max_in_flight)) {
        ++shed;
      }
    }
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  return shed;
}

void Workload::wait_for(Senders& senders, const RunState& run, const std::atomic<bool>& pacing_done) {
  auto all_done = [&] {
    if (run.open_loop && !pacing_done) return false;
    const bool issuing_over = Clock::now() >= run.stop_issuing;
    return std::all_of(senders.begin(), senders.end(), [&](auto& s) { return s->done(issuing_over); });
  };
  // Generous: every send may use all its attempts with the longest backoff.
  const auto hard_deadline =
      run.stop_issuing + std::chrono::milliseconds(static_cast<std::int64_t>(
                             (options_.timeout_s + 2.5) * 1000 * options_.send_attempts));
  const auto warmup_end = run.start + std::chrono::milliseconds(static_cast<std::int64_t>(options_.warmup_s * 1000));
  auto next_progress = run.start + std::chrono::seconds(1);
  std::uint64_t last_acked = 0;
  while (!all_done() && Clock::now() < hard_deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (options_.progress && Clock::now() >= next_progress) {
      const std::uint64_t a = run.acked_total.load();
      std::fprintf(stderr, "\r[%5.0f s] acked %llu (%llu/s) errors %llu%s   ",
                   std::chrono::duration<double>(Clock::now() - run.start).count(),
                   static_cast<unsigned long long>(a), static_cast<unsigned long long>(a - last_acked),
                   static_cast<unsigned long long>(run.errors_total.load()),
                   Clock::now() < warmup_end ? " (warm-up)" : "");
      last_acked = a;
      next_progress += std::chrono::seconds(1);
    }
  }
  if (options_.progress) std::fprintf(stderr, "\n");
}

RunReport Workload::report(Senders& senders, const RunState& run, std::uint64_t shed) {
  const std::int64_t start_ns = run.start_ns;
  RunReport report;
  report.seconds = std::chrono::duration<double>(Clock::now() - run.start).count();
  report.shed = shed;
  std::vector<std::int64_t> ack_times;
  for (auto& s : senders) s->finish(report, ack_times);
  // Sends never answered (the hard deadline passed) are unknown too.
  for (auto& list : sent_) {
    for (Sent& s : list) {
      if (s.outcome == Outcome::pending && s.receiver >= 0) {
        s.outcome = Outcome::unknown;
        ++report.unknown;
      }
    }
  }
  // Throughput: the acks after the warm-up, over the time from the warm-up's
  // end to the last ack.
  std::sort(ack_times.begin(), ack_times.end());
  const auto measured_from = std::lower_bound(ack_times.begin(), ack_times.end(), warmup_end_ns_);
  if (measured_from != ack_times.end()) {
    const double window = static_cast<double>(ack_times.back() - std::max(warmup_end_ns_, start_ns)) / 1e9;
    report.measured_acked = static_cast<std::uint64_t>(ack_times.end() - measured_from);
    report.measured_seconds = window;
  }
  // Outages: the longest time without an ack, and the share of 100 ms slots with one.
  const std::int64_t t_end = start_ns + static_cast<std::int64_t>(report.seconds * 1e9);
  std::int64_t prev = start_ns;
  std::set<std::int64_t> slots;
  for (std::int64_t t : ack_times) {
    report.max_ack_gap_s = std::max(report.max_ack_gap_s, static_cast<double>(t - prev) / 1e9);
    prev = t;
    slots.insert((t - start_ns) / 100000000);
  }
  const auto total_slots = std::max<std::int64_t>(1, (t_end - start_ns) / 100000000);
  report.availability = std::min(1.0, static_cast<double>(slots.size()) / static_cast<double>(total_slots));
  return report;
}

Histogram Workload::stop_following() {
  stop_following_ = true;
  for (auto& f : followers_) {
    if (f.thread.joinable()) f.thread.join();
  }
  Histogram delivered;
  for (const Follower& f : followers_) {
    for (const Seen& seen : f.seen) {
      if (seen.sender < 0 || seen.index >= sent_[static_cast<std::size_t>(seen.sender)].size()) continue;
      const Sent& sent = sent_[static_cast<std::size_t>(seen.sender)][seen.index];
      if (sent.intended_ns >= warmup_end_ns_ && sent.intended_ns > 0) {
        delivered.record((seen.seen_ns - sent.intended_ns) / 1000);
      }
    }
  }
  return delivered;
}

CheckReport Workload::check() {
  CheckReport v;
  v.delivery_latency_us = stop_following();
  // The final reads, one thread per inbox: from 0, following the cursor, until
  // a long poll finds nothing more. A reader that stops at an empty page could
  // miss messages behind a gap that the server fills only after gap_fill_ms
  // (a write that failed after its seq was allocated), so it waits it out.
  std::vector<std::vector<client::MessageRecord>> inboxes(static_cast<std::size_t>(options_.receivers));
  std::vector<char> complete(static_cast<std::size_t>(options_.receivers), 0);
  {
    std::vector<std::thread> readers;
    for (int r = 0; r < options_.receivers; ++r) {
      readers.emplace_back([this, r, &inboxes, &complete] {
        client::Options o = client_options(options_, receiver_name(r));
        o.request_timeout = std::chrono::milliseconds(10000);
        client::Client c(o);
        auto& inbox = inboxes[static_cast<std::size_t>(r)];
        std::int64_t cursor = 0;
        int failures = 0;
        bool more = true;
        for (int page = 0; page < 1000000 && failures < 20; ++page) {
          auto res = c.pull(cursor, 1000, more ? 0 : kSettleWaitMs);
          if (!res) {
            ++failures;  // the server may still be recovering from a fault
            std::this_thread::sleep_for(std::chrono::milliseconds(250));
            continue;
          }
          inbox.insert(inbox.end(), res->messages.begin(), res->messages.end());
          const bool advanced = res->next_after_seq != cursor;
          cursor = res->next_after_seq;
          if (!more && !advanced) {
            complete[static_cast<std::size_t>(r)] = 1;
            break;
          }
          more = res->has_more;
        }
      });
    }
    for (auto& t : readers) t.join();
  }
  for (int r = 0; r < options_.receivers; ++r) {
    const auto& inbox = inboxes[static_cast<std::size_t>(r)];
    if (!complete[static_cast<std::size_t>(r)]) ++v.read_errors;

    std::map<std::pair<int, std::uint64_t>, int> copies;
    std::map<std::int64_t, std::int64_t> id_at_seq;
    std::int64_t last_seq = 0;
    // Order: walking down the seqs, the earliest ack time seen per sender.
    std::vector<std::int64_t> min_ack_above(static_cast<std::size_t>(options_.senders),
                                            std::numeric_limits<std::int64_t>::max());
    for (const auto& m : inbox) {
      if (m.seq <= last_seq) ++v.reader_regressions;
      last_seq = m.seq;
      id_at_seq[m.seq] = m.message_id;
      ++v.delivered;
      int s = -1;
      std::uint64_t index = 0;
      if (!parse_body(m.body, s, index)) {
        ++v.unexpected;
        continue;
      }
      const Sent& sent = sent_[static_cast<std::size_t>(s)][index];
      if (sent.receiver != r) ++v.unexpected;
      if (++copies[{s, index}] > 1) ++v.duplicated;
      switch (sent.outcome) {
        case Outcome::acked:
          if (sent.message_id != m.message_id || sent.seq != m.seq) ++v.ack_mismatch;
          break;
        case Outcome::failed:
          // A definite failure that is visible; a resend with a different ack also lands here.
          if (sent.message_id != 0) ++v.ack_mismatch; else ++v.aborted_reads;
          break;
        case Outcome::unknown: ++v.unknown_delivered; break;
        case Outcome::pending: ++v.unexpected; break;
      }
    }
    for (auto it = inbox.rbegin(); it != inbox.rend(); ++it) {
      int s = -1;
      std::uint64_t index = 0;
      if (!parse_body(it->body, s, index)) continue;
      const Sent& sent = sent_[static_cast<std::size_t>(s)][index];
      auto& min_ack = min_ack_above[static_cast<std::size_t>(s)];
      if (sent.issued_ns > min_ack) ++v.order_violations;  // issued after a higher seq was acked
      if (sent.outcome == Outcome::acked) min_ack = std::min(min_ack, sent.acked_ns);
    }
    for (int s = 0; s < options_.senders; ++s) {
      const auto& list = sent_[static_cast<std::size_t>(s)];
      for (std::uint64_t i = 0; i < list.size(); ++i) {
        if (list[i].outcome == Outcome::acked && list[i].receiver == r && !copies.count({s, i})) ++v.lost;
      }
    }

    if (followers_.empty()) continue;
    // The follower against the final read.
    const Follower& f = followers_[static_cast<std::size_t>(r)];
    v.reader_regressions += f.regressions;
    std::set<std::int64_t> followed;
    for (const Seen& seen : f.seen) {
      followed.insert(seen.seq);
      const auto it = id_at_seq.find(seen.seq);
      if (it == id_at_seq.end() || it->second != seen.message_id) ++v.inconsistent;
    }
    for (const auto& m : inbox) {
      if (m.seq <= f.cursor && !followed.count(m.seq)) ++v.reader_skips;
    }
  }
  return v;
}

}  // namespace im::loadgen
