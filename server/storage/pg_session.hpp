#pragma once
// Helpers shared by the PostgreSQL adapters: opening a tuned connection and
// classifying libpqxx exceptions into StoreStatus values.

#include <chrono>
#include <exception>
#include <memory>
#include <string>

#include <pqxx/pqxx>

#include "server/service/store.hpp"

namespace im::server {

struct PgSessionOptions {
  std::string url;
  /// statement_timeout and idle_in_transaction_session_timeout for the
  /// session: a writer that stalls (SIGSTOP, a hung network) loses its
  /// transaction and its locks instead of blocking others forever.
  std::chrono::milliseconds statement_timeout{5000};
  std::chrono::milliseconds idle_in_transaction_timeout{5000};
};

/// Opens a connection and applies the session settings. Throws pqxx errors.
std::unique_ptr<pqxx::connection> open_pg_session(const PgSessionOptions& options,
                                                  const char* application_name);

/// Maps the exception being handled (call inside a catch block) to a status:
/// connection, timeout and resource errors are `unavailable`, the rest internal.
StoreStatus classify_pg_exception(std::exception_ptr error);

/// Microseconds since the Unix epoch, from the system clock.
std::int64_t now_us();

}  // namespace im::server
