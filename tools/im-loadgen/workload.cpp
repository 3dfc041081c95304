#include "tools/im-loadgen/workload.hpp"

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <functional>
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

RunReport Workload::run() {
  const int n = options_.senders;
  const bool open_loop = options_.rate > 0;
  sent_.assign(static_cast<std::size_t>(n), {});
  struct Sender {
    std::mutex mu;  // sends are issued by the main (or pacing) thread; completions run on the client's thread
    std::unique_ptr<client::AsyncClient> client;
    std::uint64_t quota = 0, next = 0, outstanding = 0, resends = 0;
    Histogram latency;
    std::uint64_t acked = 0, failed = 0, unknown = 0;
    std::map<std::string, std::uint64_t> errors;
    std::vector<std::int64_t> ack_times;
    std::mt19937_64 rng{std::random_device{}()};
  };
  std::vector<Sender> senders(static_cast<std::size_t>(n));
  std::atomic<std::uint64_t> acked_total{0}, errors_total{0};
  std::atomic<bool> pacing_done{false};
  std::uint64_t shed = 0;  // open loop: sends not issued because a sender had too many in flight
  const auto start = Clock::now();
  const std::int64_t start_ns = start.time_since_epoch().count();
  const auto stop_issuing =
      start + std::chrono::milliseconds(static_cast<std::int64_t>(options_.duration_s * 1000));
  warmup_end_ns_ = start_ns + static_cast<std::int64_t>(options_.warmup_s * 1e9);

  if (options_.follow) {
    followers_ = std::vector<Follower>(static_cast<std::size_t>(options_.receivers));
    for (int r = 0; r < options_.receivers; ++r) {
      followers_[static_cast<std::size_t>(r)].thread =
          std::thread([this, r] { follow(r, followers_[static_cast<std::size_t>(r)]); });
    }
  }
  for (int s = 0; s < n; ++s) {
    Sender& st = senders[static_cast<std::size_t>(s)];
    st.quota = options_.count / static_cast<std::uint64_t>(n) +
               (static_cast<std::uint64_t>(s) < options_.count % static_cast<std::uint64_t>(n) ? 1 : 0);
    st.client = std::make_unique<client::AsyncClient>(client_options(options_, sender_name(s), s));
  }

  // Sends sender s's message `index` (again, for a resend), meant to leave at
  // intended_ns; the caller holds the sender's mutex. A resend must get the
  // first ack back, never a new message.
  std::function<void(int, std::uint64_t, bool, std::int64_t)> send_one;
  // Closed loop: issues the next send of sender s; the caller holds its mutex.
  auto issue = [&](int s) {
    Sender& st = senders[static_cast<std::size_t>(s)];
    if (open_loop || st.next >= st.quota || Clock::now() >= stop_issuing) return;
    send_one(s, st.next++, false, now_ns());
  };
  send_one = [&](int s, std::uint64_t index, bool resend, std::int64_t intended_ns) {
    Sender& st = senders[static_cast<std::size_t>(s)];
    const int receiver = static_cast<int>((index + static_cast<std::uint64_t>(s)) %
                                          static_cast<std::uint64_t>(options_.receivers));
    std::string body = fmt::format("{}:{}:{}:", options_.prefix, s, index);
    if (body.size() < options_.body_bytes) body.append(options_.body_bytes - body.size(), 'x');
    auto& list = sent_[static_cast<std::size_t>(s)];
    if (!resend) list.emplace_back();
    Sent& rec = list[index];
    if (!resend) {
      rec.receiver = receiver;
      rec.issued_ns = now_ns();
      rec.intended_ns = intended_ns;
    }
    ++st.outstanding;
    st.client->send(receiver_name(receiver), std::move(body), index + 1,
                    [&, s, index, resend](client::Result<client::SendAck> r) {
                      Sender& me = senders[static_cast<std::size_t>(s)];
                      std::unique_lock sender_lock(me.mu);
                      Sent& sent = sent_[static_cast<std::size_t>(s)][index];
                      if (resend) {
                        // The first ack stands; a different one is an ack mismatch (see check()).
                        if (r && (r->message_id != sent.message_id || r->seq != sent.seq)) sent.outcome = Outcome::failed;
                      } else if (r) {
                        const std::int64_t t = now_ns();
                        // From the intended send time: in an open loop, time spent
                        // queued behind a slow server counts (no coordinated omission).
                        if (sent.intended_ns >= warmup_end_ns_) me.latency.record((t - sent.intended_ns) / 1000);
                        me.ack_times.push_back(t);
                        ++me.acked;
                        acked_total.fetch_add(1, std::memory_order_relaxed);
                        sent.message_id = r->message_id;
                        sent.seq = r->seq;
                        sent.acked_ns = t;
                        sent.outcome = Outcome::acked;
                        if (options_.resend_fraction > 0 &&
                            std::uniform_real_distribution<double>(0, 1)(me.rng) < options_.resend_fraction) {
                          ++me.resends;
                          send_one(s, index, true, t);
                        }
                      } else {
                        ++me.errors[error_key(r.error())];
                        errors_total.fetch_add(1, std::memory_order_relaxed);
                        if (r.error().retryable()) {
                          ++me.unknown;
                          sent.outcome = Outcome::unknown;
                        } else {
                          ++me.failed;
                          sent.outcome = Outcome::failed;
                        }
                      }
                      --me.outstanding;
                      issue(s);
                    });
  };

  std::thread pacer;
  if (open_loop) {
    // Message k is due at start + k / rate, from sender k mod n, whatever the
    // server's pace; a sender with too many sends in flight sheds instead of
    // growing without bound.
    pacer = std::thread([&] {
      const double ns_per_msg = 1e9 / options_.rate;
      const std::uint64_t max_in_flight = std::max<std::uint64_t>(static_cast<std::uint64_t>(options_.pipeline), 100000);
      std::uint64_t k = 0;
      while (k < options_.count) {
        const auto now = Clock::now();
        if (now >= stop_issuing) break;
        const auto due = static_cast<std::uint64_t>(static_cast<double>((now - start).count()) / ns_per_msg) + 1;
        for (; k < due && k < options_.count; ++k) {
          const int s = static_cast<int>(k % static_cast<std::uint64_t>(n));
          Sender& st = senders[static_cast<std::size_t>(s)];
          std::lock_guard lock(st.mu);
          if (st.outstanding >= max_in_flight) {
            ++shed;
            continue;
          }
          send_one(s, st.next++, false, start_ns + static_cast<std::int64_t>(static_cast<double>(k) * ns_per_msg));
        }
        std::this_thread::sleep_for(std::chrono::microseconds(100));
      }
      pacing_done = true;
    });
  } else {
    for (int s = 0; s < n; ++s) {
      Sender& st = senders[static_cast<std::size_t>(s)];
      std::lock_guard lock(st.mu);
      for (int d = 0; d < options_.pipeline && st.next < st.quota; ++d) issue(s);
    }
  }

  auto all_done = [&] {
    if (open_loop && !pacing_done) return false;
    const bool issuing_over = Clock::now() >= stop_issuing;
    for (Sender& st : senders) {
      std::lock_guard lock(st.mu);
      if (st.outstanding > 0) return false;
      if (!open_loop && !issuing_over && st.next < st.quota) return false;
    }
    return true;
  };
  // Generous: every send may use all its attempts with the longest backoff.
  const auto hard_deadline =
      stop_issuing + std::chrono::milliseconds(static_cast<std::int64_t>(
                         (options_.timeout_s + 2.5) * 1000 * options_.send_attempts));
  auto next_progress = start + std::chrono::seconds(1);
  std::uint64_t last_acked = 0;
  while (!all_done() && Clock::now() < hard_deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (options_.progress && Clock::now() >= next_progress) {
      const std::uint64_t a = acked_total.load();
      std::fprintf(stderr, "\r[%5.0f s] acked %llu (%llu/s) errors %llu%s   ",
                   std::chrono::duration<double>(Clock::now() - start).count(),
                   static_cast<unsigned long long>(a), static_cast<unsigned long long>(a - last_acked),
                   static_cast<unsigned long long>(errors_total.load()),
                   Clock::now() < start + std::chrono::milliseconds(static_cast<std::int64_t>(options_.warmup_s * 1000))
                       ? " (warm-up)" : "");
      last_acked = a;
      next_progress += std::chrono::seconds(1);
    }
  }
  if (options_.progress) std::fprintf(stderr, "\n");
  pacing_done = true;
  if (pacer.joinable()) pacer.join();
  RunReport report;
  report.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  report.shed = shed;
  std::vector<std::int64_t> ack_times;
  for (Sender& st : senders) {
    st.client.reset();  // joins the client's thread: its counters are final
    report.attempted += st.next;
    report.acked += st.acked;
    report.failed += st.failed;
    report.unknown += st.unknown;
    report.resends += st.resends;
    for (const auto& [k, v] : st.errors) report.errors[k] += v;
    report.ack_latency_us.merge(st.latency);
    ack_times.insert(ack_times.end(), st.ack_times.begin(), st.ack_times.end());
  }
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
