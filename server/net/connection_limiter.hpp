#pragma once
// ConnectionLimiter: counts open connections, in total and per source address,
// and admits a new one only while both stay under their caps. IPv4-mapped IPv6
// addresses count as their IPv4 address.
//
// Thread-safety: one mutex; the accept loop admits, sessions release from their
// own I/O threads.

#include <cstddef>
#include <mutex>
#include <unordered_map>

#include <asio/ip/address.hpp>

namespace im::server {

class ConnectionLimiter {
 public:
  enum class Admission { admitted, too_many_total, too_many_from_address };

  /// `max_per_address` 0: no per-address cap.
  ConnectionLimiter(std::size_t max_total, std::size_t max_per_address);

  /// Counts `peer` in and returns admitted, or counts nothing and says which
  /// cap it would break. Every admitted connection must be released once.
  Admission try_admit(const asio::ip::address& peer);
  void release(const asio::ip::address& peer);

  std::size_t total() const;
  std::size_t from(const asio::ip::address& peer) const;
  std::size_t max_total() const { return max_total_; }
  std::size_t max_per_address() const { return max_per_address_; }

 private:
  static asio::ip::address normalize(const asio::ip::address& a);

  const std::size_t max_total_;
  const std::size_t max_per_address_;
  mutable std::mutex mu_;
  std::size_t total_ = 0;
  std::unordered_map<asio::ip::address, std::size_t> per_address_;
};

}  // namespace im::server
