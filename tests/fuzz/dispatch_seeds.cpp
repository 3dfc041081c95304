// Writes the seed corpus of the dispatch fuzz target (dispatch_script.hpp):
//
//   build/tests/fuzz/im_fuzz_dispatch_seeds tests/fuzz/corpus/dispatch
//
// seed-ok-* scripts are valid sessions: every request succeeds. seed-bad-*
// scripts hold at least one request the server must refuse (or a frame that
// closes the connection). The corpus replay test checks both. Files are
// overwritten; crash-* regressions in the directory are left alone.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include <flatbuffers/flatbuffers.h>

#include "protocol/frames.hpp"
#include "tests/fuzz/dispatch_script.hpp"

namespace {

using im::fuzz::DispatchScript;
using im::fuzz::FaultKind;
namespace protocol = im::protocol;
namespace wire = im::wire;

std::vector<std::uint8_t> bytes(const protocol::OutFrame& f) {
  return {f.data(), f.data() + f.size()};
}

std::vector<std::uint8_t> hello(std::uint64_t rid, std::string_view user) {
  return bytes(protocol::encode_hello(rid, user, "", "seed"));
}
std::vector<std::uint8_t> send(std::uint64_t rid, std::string_view to, std::uint64_t cmid,
                               std::string_view body) {
  return bytes(protocol::encode_send(rid, to, cmid, body));
}
std::vector<std::uint8_t> pull(std::uint64_t rid, std::int64_t after, std::uint32_t limit = 0,
                               std::uint32_t wait_ms = 0) {
  return bytes(protocol::encode_pull(rid, after, limit, wait_ms));
}
std::vector<std::uint8_t> history(std::uint64_t rid, std::string_view peer, std::int64_t cursor,
                                  std::uint32_t limit = 0, bool reverse = false) {
  return bytes(protocol::encode_history(rid, peer, cursor, limit, reverse));
}
std::vector<std::uint8_t> ping(std::uint64_t rid, std::uint64_t nonce) {
  return bytes(protocol::encode_ping(rid, nonce));
}
std::vector<std::uint8_t> hello_version(std::uint64_t rid, std::uint32_t version) {
  flatbuffers::FlatBufferBuilder b;
  const auto user = b.CreateString("alice");
  const auto body = wire::CreateHello(b, version, user);
  b.FinishSizePrefixed(wire::CreateFrame(b, rid, wire::Body::Hello, body.Union()),
                       wire::FrameIdentifier());
  return {b.GetBufferPointer(), b.GetBufferPointer() + b.GetSize()};
}
std::vector<std::uint8_t> no_body(std::uint64_t rid) {
  flatbuffers::FlatBufferBuilder b;
  b.FinishSizePrefixed(wire::CreateFrame(b, rid), wire::FrameIdentifier());
  return {b.GetBufferPointer(), b.GetBufferPointer() + b.GetSize()};
}

struct Writer {
  std::filesystem::path dir;
  int written = 0;
  void operator()(const std::string& name, const DispatchScript& s) {
    std::ofstream out(dir / name, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(s.bytes().data()),
              static_cast<std::streamsize>(s.bytes().size()));
    if (!out) {
      std::fprintf(stderr, "cannot write %s\n", (dir / name).c_str());
      std::exit(1);
    }
    ++written;
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
    return 2;
  }
  Writer w{argv[1]};
  std::filesystem::create_directories(w.dir);

  // --- valid sessions -------------------------------------------------------
  w("seed-ok-hello-ping", DispatchScript().send(0, hello(1, "alice")).send(0, ping(2, 42)).run());
  w("seed-ok-ping-before-hello", DispatchScript().send(0, ping(7, 1)).run());
  w("seed-ok-send-pull", DispatchScript()
                             .send(0, hello(1, "alice"))
                             .send(0, send(2, "bob", 1, "hi bob"))
                             .send(0, send(3, "alice", 2, "note to self"))
                             .run()
                             .send(0, pull(4, 0))
                             .send(0, pull(5, 1, 10))
                             .run());
  // bob waits; alice's send wakes him.
  w("seed-ok-long-poll", DispatchScript(2)
                             .send(0, hello(1, "bob"))
                             .send(0, pull(2, 0, 0, 30000))
                             .run()
                             .send(1, hello(1, "alice"))
                             .send(1, send(2, "bob", 7, "wake up"))
                             .run()
                             .send(0, pull(3, 1, 0, 30000))
                             .run());
  // A long poll still waiting at the end is ended by shutdown.
  w("seed-ok-poll-shutdown",
    DispatchScript().send(0, hello(1, "carol")).send(0, pull(2, 0, 5, 60000)).run().shutdown().run());
  w("seed-ok-poll-then-close", DispatchScript(2)
                                   .send(0, hello(1, "bob"))
                                   .send(0, pull(2, 0, 0, 60000))
                                   .run()
                                   .close(0)
                                   .send(1, hello(1, "alice"))
                                   .send(1, send(2, "bob", 1, "gone?"))
                                   .run());
  // Reads pipelined past the per-connection limit (2 here), then the
  // connection is reset: the queued ones must never reach the store, and
  // every byte reserved is released. Not an ok- seed: requests go unanswered.
  {
    DispatchScript s(2);
    s.send(1, hello(1, "frank")).send(1, send(2, "erin", 1, "for erin")).run();
    s.send(0, hello(1, "erin"));
    for (std::uint64_t i = 0; i < 6; ++i) s.send(0, pull(2 + i, 0));
    s.send(0, history(8, "frank", 0)).send(0, pull(9, 0, 0, 30000)).reset(0).run();
    s.send(1, pull(3, 0)).run();
    w("seed-reset-with-reads-queued", s);
  }
  {
    DispatchScript s(1, im::fuzz::kConfigSmallPulls);
    s.send(0, hello(1, "dave"));
    for (std::uint64_t i = 1; i <= 5; ++i) s.send(0, send(1 + i, "dave", i, "m" + std::to_string(i)));
    s.run().send(0, pull(10, 0)).send(0, pull(11, 0, 2)).send(0, pull(12, 2, 2)).send(0, pull(13, 4, 9));
    w("seed-ok-pull-pages", s.run());
  }
  // Limits above --max-pull-limit on an inbox (and a conversation) holding
  // more than it: each page is exactly the cap. The model checks the cap, so
  // a service that stops capping fails the replay.
  {
    DispatchScript s(2, im::fuzz::kConfigSmallPulls);  // cap 2, default 1
    s.send(0, hello(1, "dave")).send(1, hello(1, "erin"));
    for (std::uint64_t i = 1; i <= 5; ++i) s.send(1, send(1 + i, "dave", i, "e" + std::to_string(i)));
    s.run()
        .send(0, pull(2, 0, 3))
        .send(0, pull(3, 1, 0xffffffffu))
        .send(0, history(4, "erin", 0, 9))
        .send(0, history(5, "erin", 0, 9, true));
    w("seed-ok-pull-above-cap", s.run());
  }
  {
    DispatchScript s(1);  // cap 50, default 10
    s.send(0, hello(1, "fay"));
    for (std::uint64_t i = 1; i <= 60; ++i) s.send(0, send(1 + i, "fay", i, "f"));
    s.run().send(0, pull(100, 0, 1000)).send(0, pull(101, 0)).send(0, history(102, "fay", 0, 51, true));
    w("seed-ok-pull-above-default-cap", s.run());
  }
  w("seed-ok-history", DispatchScript(2)
                           .send(0, hello(1, "alice"))
                           .send(1, hello(1, "bob"))
                           .send(0, send(2, "bob", 1, "one"))
                           .send(1, send(2, "alice", 1, "two"))
                           .send(0, send(3, "bob", 2, "three"))
                           .send(0, send(4, "erin", 3, "elsewhere"))
                           .run()
                           .send(0, history(5, "bob", 0))
                           .send(0, history(6, "bob", 0, 2, true))
                           .send(1, history(3, "alice", 1, 1))
                           .send(1, history(4, "alice", 3, 5, true))
                           .run());
  // The largest cursor: nothing after it (once an int64 overflow in the readers).
  w("seed-ok-pull-after-max", DispatchScript()
                                  .send(0, hello(1, "ivan"))
                                  .send(0, send(2, "ivan", 1, "x"))
                                  .run()
                                  .send(0, pull(3, std::numeric_limits<std::int64_t>::max()))
                                  .run());
  w("seed-ok-idempotent-retry", DispatchScript()
                                    .send(0, hello(1, "alice"))
                                    .send(0, send(2, "bob", 9, "once"))
                                    .send(0, send(3, "bob", 9, "once"))  // same batch
                                    .run()
                                    .send(0, send(4, "bob", 9, "once"))  // a later batch
                                    .run());
  {
    // Frames cut at every few bytes, as a slow socket delivers them.
    DispatchScript s;
    s.send(0, hello(1, "alice"), 1).send(0, send(2, "bob", 1, "split"), 3).send(0, pull(3, 0), 2);
    w("seed-ok-split-frames", s.run());
  }
  {
    // Everything pipelined in one chunk, answered together.
    std::vector<std::uint8_t> all;
    for (const auto& f : {hello(1, "frank"), send(2, "frank", 1, "a"), send(3, "frank", 2, "b"),
                          pull(4, 0, 0, 1000), ping(5, 5), history(6, "frank", 0)}) {
      all.insert(all.end(), f.begin(), f.end());
    }
    w("seed-ok-pipeline", DispatchScript().send(0, all).run());
  }
  w("seed-ok-same-user-twice", DispatchScript(3)
                                   .send(0, hello(1, "gina"))
                                   .send(1, hello(1, "gina"))
                                   .send(2, hello(1, "hal"))
                                   .send(0, pull(2, 0, 0, 50000))
                                   .run()
                                   .send(2, send(2, "gina", 1, "to both of you"))
                                   .run()
                                   .send(1, pull(2, 0))
                                   .run());

  // --- requests the server must refuse ---------------------------------------
  w("seed-bad-before-hello", DispatchScript()
                                 .send(0, send(1, "bob", 1, "too early"))
                                 .send(0, pull(2, 0))
                                 .send(0, history(3, "bob", 0))
                                 .run());
  w("seed-bad-double-hello",
    DispatchScript().send(0, hello(1, "alice")).send(0, hello(2, "mallory")).send(0, send(3, "bob", 1, "x")).run());
  w("seed-bad-zero-request-id",
    DispatchScript().send(0, hello(0, "alice")).send(0, hello(1, "alice")).send(0, ping(0, 3)).run());
  w("seed-bad-user-ids", DispatchScript()
                             .send(0, hello(1, ""))
                             .send(0, hello(2, std::string(65, 'a')))
                             .send(0, hello(3, "a b"))
                             .send(0, hello(4, "alice"))
                             .send(0, send(5, "bob/../x", 1, "x"))
                             .send(0, send(6, "", 2, "x"))
                             .send(0, history(7, "\xc3\xa9", 0))
                             .run());
  w("seed-bad-version", DispatchScript().send(0, hello_version(1, 2)).send(0, hello(2, "alice")).run());
  w("seed-bad-oversize-body", DispatchScript()
                                  .send(0, hello(1, "alice"))
                                  .send(0, send(2, "bob", 1, std::string(129, 'x')))
                                  .send(0, send(3, "bob", 2, std::string(128, 'y')))
                                  .run());
  w("seed-bad-invalid-utf8", DispatchScript()
                                 .send(0, hello(1, "alice"))
                                 .send(0, send(2, "bob", 1, "\xff\xfe"))
                                 .send(0, send(3, "bob", 2, std::string("a\0b", 3)))
                                 .send(0, send(4, "bob", 3, "\xc0\xaf"))
                                 .send(0, send(5, "bob", 4, "\xed\xa0\x80"))
                                 .run());
  {
    const protocol::SendAckRecord ack{1, 2, 3, false};
    const std::vector<protocol::MessageRecord> none;
    DispatchScript s;
    s.send(0, hello(1, "alice"));
    s.send(0, bytes(protocol::encode_welcome(2, "evil", 1, {}, 0)));
    s.send(0, bytes(protocol::encode_send_ack(3, ack)));
    s.send(0, bytes(protocol::encode_pull_result(4, none, 0, false)));
    s.send(0, bytes(protocol::encode_history_result(5, none, 0, false)));
    s.send(0, bytes(protocol::encode_pong(6, 1, 2)));
    s.send(0, bytes(protocol::encode_error(7, wire::ErrorCode::Internal, "client error")));
    s.send(0, no_body(8));
    w("seed-bad-server-only-types", s.run());
  }
  w("seed-bad-out-of-range", DispatchScript()
                                 .send(0, hello(1, "alice"))
                                 .send(0, send(2, "bob", 0, "no client_msg_id"))
                                 .send(0, pull(3, -1))
                                 .send(0, history(4, "bob", -5))
                                 .send(0, pull(5, 0, 0xffffffffu, 0))
                                 .run());
  w("seed-bad-conflict", DispatchScript()
                             .send(0, hello(1, "alice"))
                             .send(0, send(2, "bob", 5, "first"))
                             .send(0, send(3, "bob", 5, "second"))
                             .run()
                             .send(0, send(4, "carol", 5, "first"))
                             .run());
  w("seed-bad-storage-faults", DispatchScript()
                                   .send(0, hello(1, "alice"))
                                   .fault(FaultKind::submit_busy, 1)
                                   .send(0, send(2, "bob", 1, "busy"))
                                   .fault(FaultKind::submit_unavailable, 1)
                                   .send(0, send(3, "bob", 2, "closed"))
                                   .fault(FaultKind::commit_unavailable, 1)
                                   .send(0, send(4, "bob", 3, "lost batch"))
                                   .run()
                                   .send(0, send(5, "bob", 3, "lost batch"))
                                   .run()
                                   .fault(FaultKind::read_unavailable, 2)
                                   .send(0, pull(6, 0))
                                   .send(0, history(7, "bob", 0))
                                   .run());
  w("seed-bad-rate-limit", DispatchScript(1, im::fuzz::kConfigRateLimit)
                               .send(0, hello(1, "alice"))
                               .send(0, send(2, "bob", 1, "1"))
                               .send(0, send(3, "bob", 2, "2"))
                               .send(0, send(4, "bob", 3, "3"))
                               .run());
  {
    const std::vector<std::uint8_t> huge{0x00, 0x10, 0x00, 0x00};  // 4096 > 512 before Hello
    w("seed-bad-frame-too-large", DispatchScript().send(0, huge).run());
    const std::vector<std::uint8_t> zero{0, 0, 0, 0};
    w("seed-bad-zero-length", DispatchScript().send(0, hello(1, "alice")).send(0, zero).run());
    std::vector<std::uint8_t> wrong = ping(1, 1);
    wrong[8] = 'X';  // the file identifier
    w("seed-bad-wrong-identifier", DispatchScript().send(0, wrong).run());
    std::vector<std::uint8_t> garbage{12, 0, 0, 0};
    for (std::uint8_t i = 0; i < 12; ++i) garbage.push_back(static_cast<std::uint8_t>(0xa5 ^ i));
    w("seed-bad-garbage-after-frame", DispatchScript().send(0, ping(1, 1)).send(0, garbage).run());
  }
  std::printf("wrote %d seeds to %s\n", w.written, w.dir.c_str());
  return 0;
}
