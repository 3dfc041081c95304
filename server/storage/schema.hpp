#pragma once
// Versioned schema migrations, applied by every im-server at start-up.
//
// Safe to run twice and from several processes at once: each run takes a
// transaction-scoped advisory lock, then applies, in order, the migrations not
// yet recorded in im_schema_migrations. Throws pqxx exceptions on failure.

namespace pqxx {
class connection_base;
}

namespace im::server {

/// Highest migration version this build knows.
int latest_schema_version();

/// Applies missing migrations; returns how many were applied now.
int migrate(pqxx::connection_base& conn);

}  // namespace im::server
