#include "server/storage/pg_account_store.hpp"

#include <sodium.h>

#include "auth/password.hpp"
#include "server/common/log.hpp"

namespace im::server {

PgAccountStore::PgAccountStore(AccountStoreOptions options)
    : stand_in_hash_(auth::hash_password("no such account")),
      pool_(PgJobPoolOptions{.pg = std::move(options.pg),
                             .application_name = "im-server accounts",
                             .thread_name = "im-accounts",
                             .threads = options.threads,
                             .queue_capacity = options.queue_capacity,
                             .reconnect_backoff = std::chrono::milliseconds(250),
                             .prepare = {}}) {}

PgAccountStore::~PgAccountStore() { stop(); }

void PgAccountStore::start() { pool_.start(); }

void PgAccountStore::stop() { pool_.stop(); }

StoreStatus PgAccountStore::create(std::string user, std::string password, Done done) {
  return enqueue(Job{true, std::move(user), std::move(password), std::move(done)});
}

StoreStatus PgAccountStore::authenticate(std::string user, std::string password, Done done) {
  return enqueue(Job{false, std::move(user), std::move(password), std::move(done)});
}

StoreStatus PgAccountStore::enqueue(Job job) {
  const auto submitted = pool_.submit(
      [this, job = std::move(job)](pqxx::connection* conn, const StoreStatus& status) mutable {
        run_job(conn, status, job);
      });
  switch (submitted) {
    case PgJobPool::Submitted::queued:
      return {};
    case PgJobPool::Submitted::full:
      return {StoreCode::busy, "too many password checks queued; retry later"};
    case PgJobPool::Submitted::stopped:
      break;
  }
  return {StoreCode::unavailable, "server is shutting down"};
}

void PgAccountStore::run_job(pqxx::connection* conn, StoreStatus status, Job& job) {
  AccountOutcome outcome = AccountOutcome::bad_credentials;
  if (conn) {
    try {
      outcome = run(*conn, job);
    } catch (...) {
      status = classify_pg_exception(std::current_exception());
      if (status.code == StoreCode::unavailable) conn->disconnect();  // reopened for the next job
    }
  }
  if (!status.ok()) {
    logs::pg().warn("account {} for user={} failed: {}",
                            job.create ? "registration" : "login", job.user, status.message);
  }
  sodium_memzero(job.password.data(), job.password.size());
  job.done(status, outcome);
}

AccountOutcome PgAccountStore::run(pqxx::connection& conn, const Job& job) {
  if (job.create) {
    // Hash before the transaction: the slow part holds no lock or snapshot.
    const std::string hash = auth::hash_password(job.password);
    pqxx::work tx(conn, "register");
    const pqxx::result r = tx.exec_params(
        "INSERT INTO accounts (user_id, password_hash) VALUES ($1, $2) "
        "ON CONFLICT (user_id) DO NOTHING",
        job.user, hash);
    tx.commit();
    return r.affected_rows() == 1 ? AccountOutcome::ok : AccountOutcome::exists;
  }
  std::string hash;
  {
    pqxx::read_transaction tx(conn, "login");
    const pqxx::result r =
        tx.exec_params("SELECT password_hash FROM accounts WHERE user_id = $1", job.user);
    if (!r.empty()) hash = r[0][0].as<std::string>();
  }
  if (hash.empty()) {
    auth::verify_password(stand_in_hash_, job.password);  // same cost as a real check
    return AccountOutcome::bad_credentials;
  }
  return auth::verify_password(hash, job.password) ? AccountOutcome::ok
                                                   : AccountOutcome::bad_credentials;
}

}  // namespace im::server
