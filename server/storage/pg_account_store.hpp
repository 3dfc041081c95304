#pragma once
// PgAccountStore: password accounts in PostgreSQL (table `accounts`), hashed
// with Argon2id on a small pool of its own threads, fed by a bounded queue
// (a PgJobPool of its own, apart from the readers').
//
// The pool is the cost cap: each hash takes tens of milliseconds and 64 MiB,
// so `threads` bounds the CPU and memory that registration and login can take
// whatever the request rate, and a full queue answers busy at once.
// A login for a user that does not exist still verifies a password against a
// stand-in hash, so the answer's timing does not tell which user ids exist.
//
// Thread-safety: create()/authenticate() from any thread.

#include <string>

#include "server/service/store.hpp"
#include "server/storage/pg_job_pool.hpp"

namespace im::server {

// Neutral where Config sets the field: build it with account_options(Config)
// (server/app/config.hpp), which holds the defaults.
struct AccountStoreOptions {
  PgSessionOptions pg;
  std::size_t threads = 0;
  std::size_t queue_capacity = 64;
};

class PgAccountStore final : public AccountStore {
 public:
  explicit PgAccountStore(AccountStoreOptions options);
  ~PgAccountStore() override;

  void start();
  /// Runs the queued jobs, then joins the threads.
  void stop();

  StoreStatus create(std::string user, std::string password, Done done) override;
  StoreStatus authenticate(std::string user, std::string password, Done done) override;

 private:
  struct Job {
    bool create = false;
    std::string user;
    std::string password;
    Done done;
  };
  StoreStatus enqueue(Job job);
  /// On a pool thread: runs `job` on `conn` (null: `status` says why) and answers it.
  void run_job(pqxx::connection* conn, StoreStatus status, Job& job);
  AccountOutcome run(pqxx::connection& conn, const Job& job);

  const std::string stand_in_hash_;
  PgJobPool pool_;  // last: its threads stop before the members they use go
};

}  // namespace im::server
