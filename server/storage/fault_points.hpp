#pragma once
// Test-only fault points in the send path, for the fault-injection suite.
//
// Compiled in only when the build sets IM_FAULT_INJECTION (scripts/test does;
// Release builds and the Docker image do not), and even then inert unless the
// IM_FAULTS environment variable names a point when the process starts:
//
//   IM_FAULTS="crash_after_insert:0.02,skip_idempotency"
//
// Each entry is a point name with an optional probability per batch (default 1).
// crash_* points kill the process with SIGKILL at that step; the others are
// negative controls that deliberately break a guarantee so the checker can
// prove it notices.
//
// Stages are the other kind of test hook: named moments of a batch at which
// the writer calls its GroupCommitOptions::stage_hook (set by in-process
// tests, per writer), so a test can hold a batch there and look around.
//
// Thread-safety: read-only after the first call; safe from any thread. A
// stage hook runs on the writer thread.

#include <functional>

namespace im::server::fault {

enum class Point {
  crash_after_seq_alloc,   // seqs allocated in Redis, nothing written
  crash_after_insert,      // rows inserted, transaction not committed (forces BEGIN ... COMMIT)
  crash_after_commit,      // committed, nobody acked
  ack_before_commit,       // negative control: ack, then roll back (loses acked messages;
                           // forces BEGIN ... COMMIT)
  skip_idempotency,        // negative control: store resends again (duplicates)
};

enum class Stage {
  before_commit,  // the batch's statements ran, COMMIT not sent yet (with no
                  // transaction block the statement has committed itself)
  before_acks,    // the commit returned, no send of the batch acked yet
  before_checked, // the optimistic statement met a stored key and rolled back;
                  // the checked one (kInsertCheckedSql) not sent yet
};
using StageHook = std::function<void(Stage)>;

#ifdef IM_FAULT_INJECTION
/// Calls `hook` (if set) with `stage`, on the caller's (the writer's) thread.
inline void at_stage(const StageHook& hook, Stage stage) {
  if (hook) hook(stage);
}
/// True when `point` is enabled and its probability draw hits.
bool fires(Point point);
/// True when `point` is enabled at all (whatever its probability).
bool enabled(Point point);
/// SIGKILLs the process if `point` fires.
void maybe_crash(Point point);
/// Names of the enabled points, for the start-up log ("" when none).
const char* describe();
#else
inline void at_stage(const StageHook&, Stage) {}
constexpr bool fires(Point) { return false; }
constexpr bool enabled(Point) { return false; }
inline void maybe_crash(Point) {}
constexpr const char* describe() { return ""; }
#endif

}  // namespace im::server::fault
