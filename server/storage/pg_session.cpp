#include "server/storage/pg_session.hpp"

namespace im::server {

std::unique_ptr<pqxx::connection> open_pg_session(const PgSessionOptions& options,
                                                  const char* application_name) {
  auto conn = std::make_unique<pqxx::connection>(options.url);
  pqxx::nontransaction tx(*conn);
  tx.exec("SET application_name = " + tx.quote(application_name));
  tx.exec("SET statement_timeout = " + std::to_string(options.statement_timeout.count()));
  tx.exec("SET idle_in_transaction_session_timeout = " +
          std::to_string(options.idle_in_transaction_timeout.count()));
  tx.exec("SET synchronous_commit = on");
  return conn;
}

StoreStatus classify_pg_exception(std::exception_ptr error) {
  try {
    std::rethrow_exception(error);
  } catch (const pqxx::in_doubt_error& e) {
    return {StoreCode::unavailable,
            std::string("commit outcome unknown; retry with the same client_msg_id: ") + e.what()};
  } catch (const pqxx::broken_connection& e) {
    return {StoreCode::unavailable, std::string("database connection lost: ") + e.what()};
  } catch (const pqxx::sql_error& e) {
    const std::string state = e.sqlstate();
    // 08 connection, 40 rollback (serialization, deadlock), 53 resources,
    // 57 operator intervention (timeouts, shutdown), 58 system error.
    const std::string cls = state.substr(0, 2);
    if (cls == "08" || cls == "40" || cls == "53" || cls == "57" || cls == "58" || state.empty()) {
      return {StoreCode::unavailable, std::string("database unavailable: ") + e.what()};
    }
    return {StoreCode::internal, std::string("database error ") + state + ": " + e.what()};
  } catch (const pqxx::failure& e) {
    return {StoreCode::unavailable, std::string("database failure: ") + e.what()};
  } catch (const std::exception& e) {
    return {StoreCode::internal, e.what()};
  } catch (...) {
    return {StoreCode::internal, "unknown exception"};
  }
}

std::int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace im::server
