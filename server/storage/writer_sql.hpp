#pragma once
// writer_sql: every SQL statement GroupCommitWriter sends, in one place, so a
// reviewer reads the writer's whole conversation with PostgreSQL here and the
// C++ only names the statements.
//
// The two batch statements share their text (the sends as rows, and the CTEs
// that store messages and inbox rows); it is put together at compile time
// from named fragments, so the statements PostgreSQL sees are plain text.
//
// Thread-safety: constants only; safe from any thread.

#include <cstddef>
#include <initializer_list>
#include <string_view>

namespace im::server::writer_sql {

/// SQL text put together at compile time (join); c_str() is what is sent.
struct Text {
  static constexpr std::size_t kCapacity = 2048;
  char chars[kCapacity + 1]{};
  std::size_t size = 0;

  constexpr const char* c_str() const { return chars; }
  constexpr operator std::string_view() const { return {chars, size}; }
};

consteval Text join(std::initializer_list<std::string_view> parts) {
  Text text;
  for (std::string_view part : parts) {
    // Thrown at compile time: the statement does not compile instead of being cut.
    if (part.size() > Text::kCapacity - text.size) throw "SQL text longer than Text::kCapacity";
    for (char c : part) text.chars[text.size++] = c;
  }
  return text;
}

/// A statement prepared on every writer connection, under `name`.
struct Prepared {
  const char* name;
  const char* text;
};

// The batch's sends as rows: $1..$7 are arrays of one element per send, $7
// the seq each send takes if every send is new.
inline constexpr std::string_view kInputCte = R"SQL(
WITH input AS (
  SELECT * FROM unnest($1::int[], $2::text[], $3::text[], $4::bigint[], $5::text[],
                       $6::bigint[], $7::bigint[])
    AS t(ord, sender, receiver, client_msg_id, body, created_us, seq)
))SQL";

// The messages of `source` (a CTE of sends with their seqs), stored unless
// their (sender, client_msg_id) is, and one inbox row per message stored.
// No CTE is joined to another: the planner guesses their sizes, and a nested
// loop over two batch-sized CTEs is quadratic.
consteval Text store_from(std::string_view source) {
  return join({R"SQL(, ins AS (
  INSERT INTO messages (sender, receiver, conversation, client_msg_id, body, created_at, seq)
  SELECT sender, receiver,
         CASE WHEN sender COLLATE "C" < receiver COLLATE "C"
              THEN sender || ' ' || receiver ELSE receiver || ' ' || sender END,
         client_msg_id, body, timestamptz 'epoch' + created_us * interval '1 microsecond', seq
  FROM )SQL",
               source, R"SQL( ORDER BY ord
  ON CONFLICT (sender, client_msg_id) DO NOTHING
  RETURNING id, receiver, seq
), box AS (
  INSERT INTO inbox (owner, seq, message_id)
  SELECT receiver, seq, id FROM ins
)
)SQL"});
}

// One statement per batch, optimistic: every send is taken to be new and
// takes the next seq of its receiver's range ($7, assigned in batch order).
// If one of them turns out to be stored already (a resend, or a key reused
// for another message), the insert skips it and the statement raises
// im_batch_holds_resend() (SQLSTATE kResendInBatch), so that nothing of it
// commits: a resend must not take a seq. The batch is then written by
// kInsertCheckedSql. Returns (NULL, seq, message id, receiver) for each
// message stored.
inline constexpr Text kInsertBatchSql = join({kInputCte, store_from("input"), R"SQL(SELECT NULL::int AS ord, seq, id, receiver FROM ins
UNION ALL
SELECT im_batch_holds_resend(), NULL, NULL, NULL
WHERE (SELECT count(*) FROM ins) < cardinality($1::int[])
)SQL"});

/// What im_batch_holds_resend() raises (schema.cpp defines it).
inline constexpr const char* kResendInBatch = "IMB01";

// The same batch when it holds a resend: only sends whose (sender,
// client_msg_id) is not stored yet take a seq, the lowest of their receiver's
// range ($7's least) first, in batch order; a resend takes none and leaves the
// receiver's inbox untouched. Returns (ord, seq, NULL, NULL) for each send
// that took a seq and (NULL, seq, message id, receiver) for each message
// stored: a send whose seq got no message lost its key to a concurrent writer
// between the check and the insert, and its seq is tombstoned after the
// commit. Sent unprepared, so that each run is planned for the batch's real
// size and the messages table's current one (a plan cached while the table
// was small would keep a hash anti-join over all of it).
inline constexpr Text kInsertCheckedSql = join({kInputCte, R"SQL(, fresh AS (
  SELECT f.ord, f.sender, f.receiver, f.client_msg_id, f.body, f.created_us,
         f.first_seq + row_number() OVER (PARTITION BY f.receiver ORDER BY f.ord) - 1 AS seq
  FROM (SELECT i.*, min(i.seq) OVER (PARTITION BY i.receiver) AS first_seq FROM input i) f
  WHERE NOT EXISTS (SELECT 1 FROM messages m
                    WHERE m.sender = f.sender AND m.client_msg_id = f.client_msg_id)
))SQL",
                                                store_from("fresh"), R"SQL(SELECT ord, seq, NULL::bigint AS id, NULL::text AS receiver FROM fresh
UNION ALL
SELECT NULL, seq, id, receiver FROM ins
)SQL"});

// The stored message of each resend ($1 its position in the batch): its ack,
// and its receiver and body to tell a resend from a reused key.
inline constexpr const char* kFindExistingSql = R"SQL(
SELECT i.ord, m.id, m.receiver, m.body,
       (extract(epoch FROM m.created_at) * 1000000)::bigint, m.seq
FROM unnest($1::int[], $2::text[], $3::bigint[]) AS i(ord, sender, client_msg_id)
JOIN messages m ON m.sender = i.sender AND m.client_msg_id = i.client_msg_id
)SQL";

// Each inbox's highest stored seq (NULL for an empty one), in $1's order.
inline constexpr const char* kMaxSeqSql = R"SQL(
SELECT o, (SELECT max(seq) FROM inbox WHERE owner = o) FROM unnest($1::text[]) AS o
)SQL";

// Tombstones (owner, seq) slots; one taken already (by a message or another
// tombstone) is left as it is.
inline constexpr const char* kTombstoneSql = R"SQL(
INSERT INTO inbox (owner, seq, message_id)
SELECT o, s, NULL FROM unnest($1::text[], $2::bigint[]) AS t(o, s)
ON CONFLICT DO NOTHING
)SQL";

inline constexpr Prepared kInsertBatch{"im_insert_batch", kInsertBatchSql.c_str()};
inline constexpr Prepared kFindExisting{"im_find_existing", kFindExistingSql};
inline constexpr Prepared kMaxSeq{"im_max_seq", kMaxSeqSql};
inline constexpr Prepared kTombstone{"im_tombstone", kTombstoneSql};
/// Prepared on each new connection (kInsertCheckedSql is sent unprepared).
inline constexpr Prepared kPrepared[] = {kInsertBatch, kFindExisting, kMaxSeq, kTombstone};

}  // namespace im::server::writer_sql
