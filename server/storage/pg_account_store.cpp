#include "server/storage/pg_account_store.hpp"

#include <sodium.h>
#include <spdlog/spdlog.h>

#include "server/auth/password.hpp"

namespace im::server {

PgAccountStore::PgAccountStore(AccountStoreOptions options)
    : options_(std::move(options)), stand_in_hash_(auth::hash_password("no such account")) {}

PgAccountStore::~PgAccountStore() { stop(); }

void PgAccountStore::start() {
  for (std::size_t i = 0; i < options_.threads; ++i) threads_.emplace_back([this] { worker(); });
}

void PgAccountStore::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
  threads_.clear();
}

StoreStatus PgAccountStore::create(std::string user, std::string password, Done done) {
  return enqueue(Job{true, std::move(user), std::move(password), std::move(done)});
}

StoreStatus PgAccountStore::authenticate(std::string user, std::string password, Done done) {
  return enqueue(Job{false, std::move(user), std::move(password), std::move(done)});
}

StoreStatus PgAccountStore::enqueue(Job job) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return {StoreCode::unavailable, "server is shutting down"};
    if (jobs_.size() >= options_.queue_capacity) {
      return {StoreCode::busy, "too many password checks queued; retry later"};
    }
    jobs_.push_back(std::move(job));
  }
  cv_.notify_one();
  return {};
}

void PgAccountStore::worker() {
  std::unique_ptr<pqxx::connection> conn;
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    StoreStatus status;
    AccountOutcome outcome = AccountOutcome::bad_credentials;
    try {
      if (!conn || !conn->is_open()) conn = open_pg_session(options_.pg, "im-server accounts");
      outcome = run(*conn, job);
    } catch (...) {
      status = classify_pg_exception(std::current_exception());
      if (status.code == StoreCode::unavailable) conn.reset();
      spdlog::get("pg")->warn("account {} for user={} failed: {}",
                              job.create ? "registration" : "login", job.user, status.message);
    }
    sodium_memzero(job.password.data(), job.password.size());
    job.done(status, outcome);
  }
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
