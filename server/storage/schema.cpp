#include "server/storage/schema.hpp"

#include <array>

#include <pqxx/pqxx>

namespace im::server {
namespace {

struct Migration {
  int version;
  const char* description;
  const char* sql;
};

// Append only. A released migration is never edited: add a new one instead.
constexpr std::array kMigrations{
    Migration{1, "messages and inboxes",
              R"SQL(
-- One row per message, stored once whatever the number of recipients.
CREATE TABLE messages (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  sender        text        NOT NULL,
  receiver      text        NOT NULL,
  -- 'a b' with a < b: the two participants of a direct conversation.
  conversation  text        NOT NULL,
  -- The sender's idempotency key (a uint64 on the wire, stored bit-cast).
  client_msg_id bigint      NOT NULL,
  body          text        NOT NULL,
  created_at    timestamptz NOT NULL,
  -- The message's seq in the receiver's inbox (direct messages).
  seq           bigint      NOT NULL,
  CONSTRAINT messages_sender_client_msg_id UNIQUE (sender, client_msg_id)
);
CREATE INDEX messages_conversation_id ON messages (conversation, id);

-- Each user's inbox: gap-free seqs 1, 2, 3 ... A row is written once and never
-- changed. message_id NULL is a tombstone: the seq was allocated but its write
-- failed, and a reader (or the writer) filled it so that readers can move on.
CREATE TABLE inbox (
  owner      text   NOT NULL,
  seq        bigint NOT NULL,
  message_id bigint,
  PRIMARY KEY (owner, seq)
);
)SQL"},
    Migration{2, "password accounts",
              R"SQL(
-- Accounts that log in with a password (Register/Login). Users whose tokens
-- come from an external identity service need no row here.
CREATE TABLE accounts (
  user_id       text        PRIMARY KEY,
  -- Argon2id in the PHC string format: the parameters travel with the hash.
  password_hash text        NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now()
);
)SQL"},
    Migration{3, "the writer's resend signal",
              R"SQL(
-- The writer's batch statement takes every send to be new; when one is stored
-- already, it calls this, so that nothing of the statement commits (a resend
-- must take no inbox seq) and the batch is written again with a check.
CREATE FUNCTION im_batch_holds_resend() RETURNS int LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  RAISE EXCEPTION 'a send of this batch is stored already' USING ERRCODE = 'IMB01';
END
$$;
)SQL"},
};

}  // namespace

int latest_schema_version() { return kMigrations.back().version; }

int migrate(pqxx::connection_base& conn) {
  pqxx::work tx(conn, "migrate");
  // Serialises concurrent migrators; released at commit or rollback.
  tx.exec("SELECT pg_advisory_xact_lock(7400000001)");
  tx.exec(
      "CREATE TABLE IF NOT EXISTS im_schema_migrations ("
      " version int PRIMARY KEY, description text NOT NULL,"
      " applied_at timestamptz NOT NULL DEFAULT now())");
  const pqxx::result r = tx.exec("SELECT coalesce(max(version), 0) FROM im_schema_migrations");
  const int current = r[0][0].as<int>();
  int applied = 0;
  for (const Migration& m : kMigrations) {
    if (m.version <= current) continue;
    tx.exec(m.sql);
    tx.exec_params("INSERT INTO im_schema_migrations (version, description) VALUES ($1, $2)",
                   m.version, std::string(m.description));
    ++applied;
  }
  tx.commit();
  return applied;
}

}  // namespace im::server
