// End-to-end: authentication and authorization over a real server that checks
// tokens. Every refused Hello gets its exact error code; a refused token closes
// only its own connection, a malformed user id closes nothing; a session is
// exactly the token's user, for sends, pulls and history; password accounts
// hand out working tokens. Meanwhile a legitimate session keeps working and
// nothing is stored on behalf of a refused client.
#include <catch2/catch.hpp>

#include <set>
#include <thread>

#include "client/client.hpp"
#include "auth/token.hpp"
#include "tests/support/expect_frame.hpp"
#include "tests/support/raw_client.hpp"
#include "tests/support/test_server.hpp"

using namespace im;
using im::test::body_of;
using im::test::RawClient;
using im::test::Received;
using im::test::TestServer;
using im::test::unique_prefix;

namespace {

const std::string kKeyEntry = "current=" + std::string(48, 'c') + "\nprevious=" + std::string(40, 'p');

void with_token_auth(server::Config& c) {
  c.auth = "token";
  c.auth_secret = kKeyEntry;
}

const auth::KeyRing& keys() {
  static const auth::KeyRing ring = auth::KeyRing::parse(kKeyEntry, "test");
  return ring;
}

std::string token_for(const std::string& user, std::int64_t ttl_s = 600,
                      const std::string& key = "current") {
  return auth::issue_token(*keys().find(key), user, auth::unix_now_s() + ttl_s);
}

/// Says Hello with `token` (and `user`, which may be empty) and returns the answer.
Received hello(RawClient& c, const std::string& user, const std::string& token) {
  c.write(protocol::encode_hello(c.next_id(), user, token, "auth-test"));
  return test::expect_frame(c.read(), "Welcome or Error");
}

wire::ErrorCode error_code(const Received& r) { return test::error_code_of(r); }

std::string error_message(const Received& r) {
  const auto* m = body_of<wire::Error>(r).message();
  return m ? m->str() : "";
}

client::Options options_for(std::uint16_t port, const std::string& user, const std::string& token) {
  client::Options o;
  o.port = port;
  o.user = user;
  o.token = token;
  o.request_timeout = std::chrono::seconds(10);
  return o;
}

}  // namespace

TEST_CASE("auth: refused tokens get their exact error and close only their connection",
          "[e2e][auth]") {
  TestServer server(with_token_auth);
  const std::string alice = unique_prefix("alice"), bob = unique_prefix("bob");

  RawClient good(server.port());
  const Received welcome = hello(good, "", token_for(alice));
  const auto& w = body_of<wire::Welcome>(welcome);
  REQUIRE(w.user());
  CHECK(w.user()->str() == alice);
  CHECK(w.token_expires_at_us() > 0);
  std::uint64_t sent = 0;
  auto good_still_works = [&] {
    ++sent;
    auto r = good.send(bob, sent, "from alice " + std::to_string(sent));
    REQUIRE(r.frame()->body_type() == wire::Body::SendAck);
  };
  good_still_works();

  const std::string valid = token_for(bob);
  std::string forged = valid;
  forged.replace(forged.find(bob), bob.size(), alice);  // alice's name, bob's signature
  const auth::KeyRing stranger = auth::KeyRing::parse("current=" + std::string(48, 'x'), "test");
  struct Case {
    const char* name;
    std::string user;
    std::string token;
    wire::ErrorCode code;
    const char* says;
  };
  const Case cases[] = {
      {"no token", bob, "", wire::ErrorCode::Unauthenticated, "requires a token"},
      {"expired", bob, token_for(bob, -1), wire::ErrorCode::Unauthenticated, "expired"},
      {"forged user", alice, forged, wire::ErrorCode::Unauthenticated, "signature does not match"},
      {"same key id, other secret", bob,
       auth::issue_token(stranger.signing_key(), bob, auth::unix_now_s() + 600),
       wire::ErrorCode::Unauthenticated, "signature does not match"},
      {"unknown key id", bob,
       auth::issue_token({"retired", std::string(32, 'r')}, bob, auth::unix_now_s() + 600),
       wire::ErrorCode::Unauthenticated, "'retired'"},
      {"malformed", bob, "im1:current:" + bob, wire::ErrorCode::Unauthenticated, "malformed"},
      {"someone else's token", alice, valid, wire::ErrorCode::Forbidden, "differs"},
  };
  for (const Case& c : cases) {
    INFO(c.name);
    RawClient bad(server.port());
    const Received r = hello(bad, c.user, c.token);
    CHECK(error_code(r) == c.code);
    CHECK(error_message(r).find(c.says) != std::string::npos);
    CHECK(bad.closed_by_server());
    good_still_works();
  }

  // A request without a session is refused; the connection may still Hello.
  RawClient early(server.port());
  early.write(protocol::encode_send(early.next_id(), bob, 1, "sneaky"));
  auto r = early.read();
  REQUIRE(r);
  CHECK(error_code(*r) == wire::ErrorCode::Unauthenticated);
  CHECK(hello(early, bob, valid).frame()->body_type() == wire::Body::Welcome);

  // A token signed by the previous key still opens a session (rotation).
  RawClient rotated(server.port());
  CHECK(hello(rotated, bob, token_for(bob, 600, "previous")).frame()->body_type() ==
        wire::Body::Welcome);

  // Nothing was stored for the refused clients: bob's inbox holds alice's sends only.
  auto page = early.pull(0, 1000);
  const auto* messages = body_of<wire::PullResult>(page).messages();
  REQUIRE(messages);
  REQUIRE(messages->size() == sent);
  for (const auto* m : *messages) CHECK(m->sender()->str() == alice);
}

TEST_CASE("auth: a malformed Hello user id is bad_request before any token check and the "
          "connection stays open - another user's id is forbidden and closes",
          "[e2e][auth]") {
  TestServer server(with_token_auth);
  const std::string alice = unique_prefix("alice"), bob = unique_prefix("bob");
  const std::string alices_token = token_for(alice);

  // A malformed id is a malformed request, whatever the token: even a valid
  // token (or none) does not turn it into an authentication failure. One
  // section per case, so that each is reported on its own.
  struct Case {
    const char* name;
    std::string user;
    std::string token;
  };
  const Case cases[] = {
      {"a space, with a valid token", "a b", alices_token},
      {"65 bytes, with a valid token", std::string(65, 'a'), alices_token},
      {"non-ASCII, with a valid token", "ali\xC3\xA9", alices_token},
      {"a space, with no token", "a b", ""},
      {"a space, with a malformed token", "a b", "im1:nonsense"},
  };
  std::uint64_t client_msg_id = 0;
  for (const Case& c : cases) {
    ++client_msg_id;
    DYNAMIC_SECTION("malformed id: " << c.name) {
      RawClient raw(server.port());
      const Received r = hello(raw, c.user, c.token);
      CHECK(error_code(r) == wire::ErrorCode::BadRequest);
      CHECK(r.frame()->request_id() == 1);
      // Still open, and still without a session: a correct Hello opens one.
      const Received welcome = hello(raw, alice, alices_token);
      REQUIRE(welcome.frame()->body_type() == wire::Body::Welcome);
      CHECK(welcome.frame()->body_as_Welcome()->user()->str() == alice);
      CHECK(raw.send(bob, client_msg_id, "after a refused Hello").frame()->body_type() ==
            wire::Body::SendAck);
    }
  }

  SECTION("64 bytes, the longest valid id, gets as far as the token check") {
    RawClient longest(server.port());
    const std::string id64(64, 'z');
    CHECK(hello(longest, id64, token_for(id64)).frame()->body_type() == wire::Body::Welcome);
  }

  SECTION("a well-formed id that is not the token's user: forbidden, then closed") {
    RawClient other(server.port());
    const Received r = hello(other, bob, alices_token);
    CHECK(error_code(r) == wire::ErrorCode::Forbidden);
    CHECK(r.frame()->request_id() == 1);
    CHECK(other.closed_by_server());
  }
}

TEST_CASE("auth: a session is its token's user - own sender name, own inbox, own conversations",
          "[e2e][auth]") {
  TestServer server(with_token_auth);
  const std::string alice = unique_prefix("alice"), bob = unique_prefix("bob"),
                    carol = unique_prefix("carol");
  client::Client a(options_for(server.port(), alice, token_for(alice)));
  client::Client b(options_for(server.port(), "", token_for(bob)));
  client::Client c(options_for(server.port(), carol, token_for(carol)));
  REQUIRE(a.send(bob, "alice to bob"));
  REQUIRE(c.send(bob, "carol to bob"));
  REQUIRE(b.send(carol, "bob to carol"));

  // The sender is the session's user: nothing in Send can say otherwise.
  auto inbox = b.pull(0, 100);
  REQUIRE(inbox);
  REQUIRE(inbox->messages.size() == 2);
  CHECK(inbox->messages[0].sender == alice);
  CHECK(inbox->messages[1].sender == carol);
  for (const auto& m : inbox->messages) CHECK(m.receiver == bob);

  // Pull reads only the session's own inbox: alice's holds nothing of bob's.
  auto alices = a.pull(0, 100);
  REQUIRE(alices);
  CHECK(alices->messages.empty());

  // History is of conversations the session is part of: asking alice's
  // session about carol shows alice-carol (empty), never bob-carol.
  auto h = a.history(carol, 0, 100, true);
  REQUIRE(h);
  CHECK(h->messages.empty());
  auto hb = b.history(carol, 0, 100, true);
  REQUIRE(hb);
  CHECK(hb->messages.size() == 2);
}

TEST_CASE("auth: a session ends when its token expires", "[e2e][auth]") {
  TestServer server(with_token_auth);
  const std::string dave = unique_prefix("dave");
  RawClient c(server.port());
  // Tokens count whole seconds: this one expires at the start of the second after next.
  const std::int64_t expires = auth::unix_now_s() + 2;
  REQUIRE(hello(c, dave, auth::issue_token(keys().signing_key(), dave, expires))
              .frame()
              ->body_type() == wire::Body::Welcome);
  CHECK(c.send(dave, 1, "before expiry").frame()->body_type() == wire::Body::SendAck);
  while (auth::unix_now_s() < expires) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const Received after = c.send(dave, 2, "after expiry");
  CHECK(error_code(after) == wire::ErrorCode::Unauthenticated);
  CHECK(error_message(after).find("expired") != std::string::npos);
  CHECK(c.closed_by_server());
  // Only the first was stored.
  RawClient again(server.port());
  REQUIRE(hello(again, dave, token_for(dave)).frame()->body_type() == wire::Body::Welcome);
  auto page = again.pull(0, 10);
  CHECK(test::page_size(body_of<wire::PullResult>(page)) == 1);
}

TEST_CASE("auth: password accounts - register, log in, refusals", "[e2e][auth]") {
  TestServer server([](server::Config& c) {
    with_token_auth(c);
    c.login_token_ttl = "15m";
    c.auth_threads = 2;
  });
  const std::string erin = unique_prefix("erin");
  client::Options anon = options_for(server.port(), "", "");
  anon.anonymous = true;
  client::Client c(anon);

  auto grant = c.register_account(erin, "correct horse battery");
  REQUIRE(grant);
  CHECK(grant->user == erin);
  const auto check = auth::verify_token(keys(), grant->token, auth::unix_now_s());
  CHECK(check.status == auth::TokenCheck::Status::ok);
  CHECK(check.user == erin);
  CHECK(check.key_id == "current");  // the first key signs
  CHECK(std::abs(check.expires_at_s - (auth::unix_now_s() + 900)) <= 5);
  CHECK(grant->expires_at_us == check.expires_at_s * 1000000);

  // The token opens a session as erin.
  client::Client session(options_for(server.port(), "", grant->token));
  auto w = session.connect();
  REQUIRE(w);
  CHECK(w->user == erin);
  CHECK(session.send(erin, "note to self"));

  auto again = c.register_account(erin, "another password");
  REQUIRE_FALSE(again);
  CHECK(again.error().code == wire::ErrorCode::AlreadyExists);

  auto login = c.login(erin, "correct horse battery");
  REQUIRE(login);
  CHECK(auth::verify_token(keys(), login->token, auth::unix_now_s()).user == erin);

  // Wrong password and unknown user read the same.
  auto wrong = c.login(erin, "correct horse batterY");
  REQUIRE_FALSE(wrong);
  CHECK(wrong.error().code == wire::ErrorCode::Unauthenticated);
  auto nobody = c.login(unique_prefix("nobody"), "correct horse battery");
  REQUIRE_FALSE(nobody);
  CHECK(nobody.error().code == wire::ErrorCode::Unauthenticated);
  CHECK(nobody.error().message == wrong.error().message);

  // Bad fields are refused before any hashing.
  for (const auto& [user, password] : std::vector<std::pair<std::string, std::string>>{
           {"bad user", "long enough pw"}, {unique_prefix("short"), "1234567"},
           {unique_prefix("nul"), std::string("abcdefgh\0", 9)},
           {unique_prefix("utf8"), "abcdefgh\xC3"}}) {
    INFO(user);
    auto r = c.register_account(user, password);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == wire::ErrorCode::BadRequest);
  }

  // Guessing is slowed per user id: past the burst, attempts are refused at once.
  bool limited = false;
  for (int i = 0; i < 30 && !limited; ++i) {
    auto r = c.login(erin, "guess " + std::to_string(i));
    REQUIRE_FALSE(r);
    limited = r.error().code == wire::ErrorCode::RateLimited;
    if (limited) CHECK(r.error().retry_after_ms > 0);
  }
  CHECK(limited);
}

TEST_CASE("auth: registration can be closed, and --auth none offers no accounts", "[e2e][auth]") {
  TestServer closed([](server::Config& c) {
    with_token_auth(c);
    c.registration = "closed";
  });
  client::Options anon = options_for(closed.port(), "", "");
  anon.anonymous = true;
  client::Client c(anon);
  auto r = c.register_account(unique_prefix("frank"), "correct horse battery");
  REQUIRE_FALSE(r);
  CHECK(r.error().code == wire::ErrorCode::Forbidden);
  CHECK(r.error().message.find("closed") != std::string::npos);

  TestServer open_door;  // --auth none (test default)
  client::Options anon2 = options_for(open_door.port(), "", "");
  anon2.anonymous = true;
  client::Client c2(anon2);
  auto r2 = c2.login(unique_prefix("frank"), "correct horse battery");
  REQUIRE_FALSE(r2);
  CHECK(r2.error().code == wire::ErrorCode::Forbidden);
}
