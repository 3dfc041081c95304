#include "server/app/stats.hpp"

#include <fmt/format.h>

namespace im::server {
namespace {

/// " name=N" for each non-zero counter of an array indexed by a wire enum.
template <typename Enum, std::size_t N>
std::string by_name(const std::array<std::uint64_t, N>& counts, const char* (*name)(Enum)) {
  std::string out;
  for (std::size_t i = 0; i < N; ++i) {
    if (counts[i] == 0) continue;
    const char* n = name(static_cast<Enum>(i));
    out += fmt::format(" {}={}", n && *n ? n : std::to_string(i), counts[i]);
  }
  return out.empty() ? " none" : out;
}

}  // namespace

std::vector<std::string> format_stats(const ServerStats& s) {
  std::vector<std::string> lines;
  const auto& c = s.connections;
  lines.push_back(fmt::format(
      "stats: connections open={} accepted={} refused_max_connections={} refused_per_address={} "
      "handshake_timeouts={} frame_timeouts={} idle_timeouts={} write_timeouts={} "
      "slow_client_resets={} tls_handshake_failures={} accept_errors={}",
      c.open, c.accepted, c.refused_max_connections, c.refused_per_address, c.handshake_timeouts,
      c.frame_timeouts, c.idle_timeouts, c.write_timeouts, c.slow_client_resets,
      c.tls_handshake_failures, c.accept_errors));
  const auto& v = s.service;
  lines.push_back(fmt::format("stats: sessions open={} opened={}", v.sessions_open, v.sessions_opened));
  lines.push_back("stats: requests" + by_name<wire::Body>(v.requests, wire::EnumNameBody));
  lines.push_back("stats: errors" + by_name<wire::ErrorCode>(v.errors, wire::EnumNameErrorCode));
  lines.push_back(fmt::format("stats: sends acked={} ack_p50_us<={} ack_p99_us<={} failed{}",
                              v.sends_acked, v.send_ack_us.quantile_bound(0.5),
                              v.send_ack_us.quantile_bound(0.99),
                              by_name<wire::ErrorCode>(v.sends_failed, wire::EnumNameErrorCode)));
  const auto& l = s.long_polls;
  lines.push_back(fmt::format(
      "stats: long_polls waiting={} answered_from_commit={} answered_by_query={} quiet_starts={}",
      l.waiting, l.answered_from_commit, l.answered_by_query, l.quiet_starts));
  const auto& r = s.reads;
  lines.push_back(fmt::format(
      "stats: reads waited={} dropped={} cancelled={} busy_refusals={} response_bytes_peak={} "
      "response_bytes_capacity={} tombstones_filled={}",
      r.waited, r.dropped, r.cancelled, r.busy_refusals, r.response_bytes_peak,
      r.response_bytes_capacity, r.tombstones_filled));
  const auto& b = s.bus;
  lines.push_back(fmt::format(
      "stats: redis_bus subscriptions={} subscriptions_lost={} resyncs={} remote_notifications={} "
      "publish_failures={}",
      b.subscriptions, b.subscriptions_lost, b.resyncs, b.remote_notifications, b.publish_failures));
  const auto& w = s.writer;
  lines.push_back(fmt::format(
      "stats: batches sends_p50<={} sends_p99<={} commit_p50_us<={} commit_p99_us<={}",
      w.batch_sizes.quantile_bound(0.5), w.batch_sizes.quantile_bound(0.99),
      w.commit_us.quantile_bound(0.5), w.commit_us.quantile_bound(0.99)));
  // One key=value line, names as in WriterStats: the fault tier greps it.
  lines.push_back(fmt::format(
      "writer stats: batches_committed={} batches_failed={} counter_raises={} "
      "unique_violation_retries={} deadlock_retries={} seqs_given_back={} seqs_tombstoned={} "
      "checked_batches={}",
      w.batches_committed, w.batches_failed, w.counter_raises, w.unique_violation_retries,
      w.deadlock_retries, w.seqs_given_back, w.seqs_tombstoned, w.checked_batches));
  return lines;
}

}  // namespace im::server
