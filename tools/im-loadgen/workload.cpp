#include "tools/im-loadgen/workload.hpp"

#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>

#include <fmt/format.h>

#include "client/client.hpp"

namespace im::loadgen {
namespace {
using Clock = std::chrono::steady_clock;

client::Options client_options(const WorkloadOptions& o, const std::string& user) {
  client::Options c;
  c.host = o.host;
  c.port = o.port;
  c.user = user;
  c.client_name = "im-loadgen/0.1";
  c.request_timeout = std::chrono::milliseconds(static_cast<std::int64_t>(o.timeout_s * 1000));
  return c;
}

// "unavailable", "timeout", ...: the part of the message before the colon.
std::string error_key(const client::Error& e) {
  const std::string s = e.to_string();
  return s.substr(0, s.find(':'));
}
}  // namespace

Workload::Workload(WorkloadOptions options) : options_(std::move(options)) {}

std::string Workload::sender_name(int i) const { return fmt::format("{}-s{}", options_.prefix, i); }
std::string Workload::receiver_name(int i) const { return fmt::format("{}-r{}", options_.prefix, i); }

RunReport Workload::run() {
  const int n = options_.senders;
  sent_.assign(static_cast<std::size_t>(n), {});
  struct Sender {
    std::mutex mu;  // the main thread starts the first sends; completions run on the client's thread
    std::unique_ptr<client::AsyncClient> client;
    std::uint64_t quota = 0, issued = 0, done = 0;
    Histogram latency;
    std::uint64_t acked = 0, failed = 0;
    std::map<std::string, std::uint64_t> errors;
  };
  std::vector<Sender> senders(static_cast<std::size_t>(n));
  std::mutex mu;
  std::condition_variable cv;
  std::atomic<int> finished{0};
  const auto start = Clock::now();
  const auto stop_issuing = start + std::chrono::milliseconds(static_cast<std::int64_t>(options_.duration_s * 1000));

  for (int s = 0; s < n; ++s) {
    Sender& st = senders[static_cast<std::size_t>(s)];
    st.quota = options_.count / static_cast<std::uint64_t>(n) +
               (static_cast<std::uint64_t>(s) < options_.count % static_cast<std::uint64_t>(n) ? 1 : 0);
    sent_[static_cast<std::size_t>(s)].resize(st.quota);
    st.client = std::make_unique<client::AsyncClient>(client_options(options_, sender_name(s)));
  }

  // Issues the next send of sender s; the caller holds that sender's mutex.
  std::function<void(int)> issue = [&](int s) {
    Sender& st = senders[static_cast<std::size_t>(s)];
    if (st.issued >= st.quota || Clock::now() >= stop_issuing) return;
    const std::uint64_t index = st.issued++;
    const int receiver = static_cast<int>((index + static_cast<std::uint64_t>(s)) %
                                          static_cast<std::uint64_t>(options_.receivers));
    std::string body = fmt::format("{}:{}:{}:", options_.prefix, s, index);
    if (body.size() < options_.body_bytes) body.append(options_.body_bytes - body.size(), 'x');
    const auto t0 = Clock::now();
    st.client->send(receiver_name(receiver), std::move(body), index + 1,
                    [&, s, index, receiver, t0](client::Result<client::SendAck> r) {
                      Sender& me = senders[static_cast<std::size_t>(s)];
                      std::unique_lock sender_lock(me.mu);
                      if (r) {
                        me.latency.record(std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count());
                        ++me.acked;
                        sent_[static_cast<std::size_t>(s)][index] = {r->message_id, r->seq, receiver, true};
                      } else {
                        ++me.failed;
                        ++me.errors[error_key(r.error())];
                        sent_[static_cast<std::size_t>(s)][index].receiver = receiver;
                      }
                      ++me.done;
                      issue(s);
                      if (me.done == me.issued && (me.issued >= me.quota || Clock::now() >= stop_issuing)) {
                        sender_lock.unlock();
                        finished.fetch_add(1);
                        std::lock_guard lock(mu);
                        cv.notify_all();
                      }
                    });
  };
  for (int s = 0; s < n; ++s) {
    Sender& st = senders[static_cast<std::size_t>(s)];
    if (st.quota == 0) {
      finished.fetch_add(1);
      continue;
    }
    // The first sends go out from this thread; later ones from completions.
    std::lock_guard lock(st.mu);
    for (int d = 0; d < options_.pipeline && st.issued < st.quota; ++d) issue(s);
  }
  {
    std::unique_lock lock(mu);
    const auto hard_deadline = stop_issuing + std::chrono::milliseconds(
                                                  static_cast<std::int64_t>(options_.timeout_s * 1000 * 6));
    cv.wait_until(lock, hard_deadline, [&] { return finished.load() >= n; });
  }
  RunReport report;
  report.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  for (Sender& st : senders) {
    st.client.reset();  // joins the client's thread: its counters are final
    report.attempted += st.issued;
    report.acked += st.acked;
    report.failed += st.failed;
    for (const auto& [k, v] : st.errors) report.errors[k] += v;
    report.ack_latency_us.merge(st.latency);
  }
  return report;
}

VerifyReport Workload::verify() {
  VerifyReport v;
  // What each receiver should hold: (sender, index) -> ack.
  for (int r = 0; r < options_.receivers; ++r) {
    client::Client c(client_options(options_, receiver_name(r)));
    std::map<std::pair<int, std::uint64_t>, int> seen;
    std::int64_t cursor = 0, last_seq = 0;
    for (int page = 0; page < 1000000; ++page) {
      auto res = c.pull(cursor, 1000, 0);
      if (!res) {
        ++v.read_errors;
        break;
      }
      for (const auto& m : res->messages) {
        if (m.seq <= last_seq) ++v.order_violations;
        last_seq = m.seq;
        ++v.delivered;
        int s = -1;
        unsigned long long index = 0;
        const std::string head = options_.prefix + ":";
        if (m.body.rfind(head, 0) != 0 ||
            std::sscanf(m.body.c_str() + head.size(), "%d:%llu:", &s, &index) != 2 || s < 0 ||
            s >= options_.senders || index >= sent_[static_cast<std::size_t>(s)].size()) {
          ++v.unexpected;
          continue;
        }
        if (++seen[{s, index}] > 1) ++v.duplicated;
        const Acked& a = sent_[static_cast<std::size_t>(s)][index];
        if (a.receiver != r) ++v.unexpected;
        if (a.acked && (a.message_id != m.message_id || a.seq != m.seq)) ++v.ack_mismatch;
      }
      cursor = res->next_after_seq;
      if (!res->has_more) break;
    }
    for (int s = 0; s < options_.senders; ++s) {
      const auto& list = sent_[static_cast<std::size_t>(s)];
      for (std::uint64_t i = 0; i < list.size(); ++i) {
        if (list[i].acked && list[i].receiver == r && !seen.count({s, i})) ++v.lost;
      }
    }
  }
  return v;
}

}  // namespace im::loadgen
