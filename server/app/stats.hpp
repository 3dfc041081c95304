#pragma once
// ServerStats: every counter and gauge the server keeps, gathered by one call
// (Server::stats()) as plain data — what a metrics endpoint serves, and what
// the server logs when it stops. Each part is read from its owner's atomics on
// its own, so a snapshot taken under load need not add up across parts.

#include <cstdint>
#include <string>
#include <vector>

#include "server/common/histogram.hpp"
#include "server/service/service_stats.hpp"
#include "server/storage/group_commit_writer.hpp"
#include "server/storage/redis_commit_bus.hpp"

namespace im::server {

struct ServerStats {
  struct Connections {
    std::uint64_t open = 0;      // now
    std::uint64_t accepted = 0;  // admitted since start
    std::uint64_t refused_max_connections = 0;
    std::uint64_t refused_per_address = 0;
    std::uint64_t handshake_timeouts = 0;
    std::uint64_t frame_timeouts = 0;
    std::uint64_t idle_timeouts = 0;
    std::uint64_t write_timeouts = 0;
    std::uint64_t slow_client_resets = 0;  // outgoing queue past max_queued_bytes
    std::uint64_t tls_handshake_failures = 0;
    std::uint64_t accept_errors = 0;
  } connections;
  /// Requests by type, Errors by code, sends acked / failed and their ack
  /// latency, sessions open and opened.
  ServiceStats::Snapshot service;
  WriterStats writer;  // summed over lanes
  struct LongPolls {
    std::uint64_t waiting = 0;  // now
    std::uint64_t answered_from_commit = 0;
    std::uint64_t answered_by_query = 0;
    std::uint64_t quiet_starts = 0;  // waited without a first query
  } long_polls;
  struct Reads {
    std::uint64_t waited = 0;   // waited for their connection's room
    std::uint64_t dropped = 0;  // dropped unrun with their connection
    std::uint64_t cancelled = 0;  // cancelled unrun in the pool
    std::uint64_t busy_refusals = 0;  // refused: --max-response-bytes in use
    std::uint64_t response_bytes_peak = 0;
    std::uint64_t response_bytes_capacity = 0;
    std::uint64_t tombstones_filled = 0;  // gaps aged past --gap-fill-ms, filled by a reader
  } reads;
  RedisCommitBus::Stats bus;
};

/// The snapshot as log lines, "stats: <part> key=value ...", counters by type or
/// code listed only when non-zero; the writer's line keeps its historic form
/// ("writer stats: batches_committed=N ..."), which scripts read.
std::vector<std::string> format_stats(const ServerStats& s);

}  // namespace im::server
