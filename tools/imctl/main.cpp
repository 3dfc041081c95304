// imctl: the im command-line tool.
//
//   imctl [--server HOST:PORT] [--user ID] [--token T] [--json] [--timeout SECS]
//         [--tls [--tls-ca-file PEM]] COMMAND ...
//     send TO TEXT [--client-msg-id N]     TEXT "-" reads the body from stdin
//     pull [--after SEQ] [--limit N] [--wait MS]
//     follow [--after SEQ]
//     history PEER [--before ID | --after ID] [--limit N]
//     ping
//     register | login                      password from --password-file, IM_PASSWORD or stdin;
//                                           prints a token
//     token issue --user ID --ttl DURATION [--key-id K]   needs the server's keys
//
// Global options may come before or after the command; each has an IM_*
// environment variable. Authentication: --token (IM_TOKEN); without one, when
// the deployment's keys are at hand (--auth-secret-file or IM_AUTH_SECRET, as
// for im-server), imctl signs a short-lived token for --user itself.
// Exit status: 0 success, 1 a failed request, 2 usage.
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <cstdio>
#include <iostream>
#include <iterator>
#include <thread>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "client/client.hpp"
#include "protocol/validate.hpp"
#include "auth/token.hpp"
#include "tools/imctl/format.hpp"

namespace {

using im::client::Client;
using im::client::Error;

struct Globals {
  std::string server = "127.0.0.1:7400";
  std::string user;
  std::string token;
  std::string auth_secret_file;
  bool json = false;
  double timeout_s = 5.0;
  bool tls = false;
  std::string tls_ca_file;
};

/// The deployment's keys, if given (--auth-secret-file or IM_AUTH_SECRET).
std::shared_ptr<const im::auth::KeyRing> key_ring(const Globals& g) {
  try {
    return im::auth::KeyRing::from_file_or_env(g.auth_secret_file);
  } catch (const std::invalid_argument& e) {
    throw CLI::ValidationError("--auth-secret-file", e.what());
  }
}

using im::auth::unix_now_s;

int fail(const std::string& message) {
  std::cerr << "imctl: error: " << message << "\n";
  return 1;
}

im::client::Options client_options(const Globals& g, const std::string& default_user = "") {
  im::client::Options o;
  auto servers = im::client::parse_servers(g.server);
  if (!servers) throw CLI::ValidationError("--server", servers.error().message);
  // The first is used; the others are failover endpoints of the same deployment.
  o.host = servers->front().host;
  o.port = servers->front().port;
  o.failover.assign(servers->begin() + 1, servers->end());
  // With a token the user may be left out: the token names it.
  o.user = g.user.empty() && g.token.empty() ? default_user : g.user;
  o.token = g.token;
  if (o.user.empty() && o.token.empty()) {
    throw CLI::ValidationError("--user", "is required (or set IM_USER), or give --token");
  }
  if (o.token.empty()) {
    if (auto keys = key_ring(g)) {
      if (!im::protocol::valid_user_id(o.user)) {
        throw CLI::ValidationError("--user", "'" + o.user +
                                                 "' is not a user id (1-64 of [A-Za-z0-9._-])");
      }
      // Holding the keys is holding every user's identity: sign one for --user.
      o.token_source = [keys, user = o.user] {
        return im::auth::issue_token(keys->signing_key(), user, unix_now_s() + 600);
      };
    }
  }
  o.client_name = "imctl/0.1";
  o.request_timeout = std::chrono::milliseconds(static_cast<std::int64_t>(g.timeout_s * 1000));
  o.connect_timeout = o.request_timeout;
  o.tls = g.tls || !g.tls_ca_file.empty();
  o.tls_ca_file = g.tls_ca_file;
  return o;
}

void print_messages(const Globals& g, const std::vector<im::client::MessageRecord>& messages) {
  for (const auto& m : messages) {
    if (g.json) {
      std::cout << im::imctl::message_json(m).dump() << "\n";
    } else {
      std::cout << im::imctl::message_line(m) << "\n";
    }
  }
  std::cout.flush();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"imctl: send and read im messages from the command line"};
  app.require_subcommand(1);
  Globals g;
  auto globals = [&](CLI::App* on) {
    on->add_option("--server", g.server, "server address HOST:PORT, or a comma-separated list to fail over")->envname("IM_SERVER");
    on->add_option("--user", g.user, "your user id")->envname("IM_USER");
    on->add_option("--token", g.token, "authentication token (from login, register or token issue)")
        ->envname("IM_TOKEN");
    on->add_option("--auth-secret-file", g.auth_secret_file,
                   "the deployment's signing keys (as im-server's; or IM_AUTH_SECRET): imctl "
                   "then signs its own tokens")
        ->envname("IM_AUTH_SECRET_FILE");
    on->add_flag("--json", g.json, "JSON Lines output: one object per line");
    on->add_option("--timeout", g.timeout_s, "seconds to wait for each response (default 5)")
        ->envname("IM_TIMEOUT")
        ->check(CLI::PositiveNumber);
    on->add_flag("--tls", g.tls, "connect with TLS, verifying the server's certificate")->envname("IM_TLS");
    on->add_option("--tls-ca-file", g.tls_ca_file,
                   "PEM file of CAs to trust (implies --tls; default: the system's)")
        ->envname("IM_TLS_CA_FILE");
  };
  globals(&app);

  std::string to, text;
  std::uint64_t client_msg_id = 0;
  auto* send = app.add_subcommand("send", "send TEXT to user TO; prints the message id");
  send->add_option("to", to, "receiver user id")->required();
  send->add_option("text", text, "message text, or - to read it from stdin")->required();
  send->add_option("--client-msg-id", client_msg_id,
                   "idempotency key (default: random); resending one key stores one message");

  std::int64_t after = 0;
  std::uint32_t limit = 0, wait_ms = 0;
  auto* pull = app.add_subcommand(
      "pull", "print messages in your inbox after a seq; the next cursor goes to stderr");
  pull->add_option("--after", after, "cursor: print seqs greater than this (default 0)");
  pull->add_option("--limit", limit, "at most this many (default: the server's)");
  pull->add_option("--wait", wait_ms, "long poll: wait up to MS for a message if there is none");

  auto* follow = app.add_subcommand("follow", "print messages as they arrive, until interrupted");
  follow->add_option("--after", after, "start after this seq (default 0: everything)");

  std::string peer;
  std::int64_t before = 0, hist_after = 0;
  auto* history = app.add_subcommand("history", "page through your conversation with PEER");
  history->add_option("peer", peer, "the other user id")->required();
  auto* before_opt = history->add_option("--before", before, "messages older than this message id");
  history->add_option("--after", hist_after, "messages newer than this message id")
      ->excludes(before_opt);
  history->add_option("--limit", limit, "at most this many (default: the server's)");

  auto* ping = app.add_subcommand("ping", "measure the round trip to the server");

  std::string password_file;
  auto* reg = app.add_subcommand(
      "register", "create a password account for --user; prints a token for it");
  auto* login = app.add_subcommand("login", "log in as --user with a password; prints a token");
  for (CLI::App* sub : {reg, login}) {
    sub->add_option("--password-file", password_file,
                    "read the password from this file's first line (else IM_PASSWORD, else "
                    "the first line of stdin)");
  }

  std::string ttl = "1h", key_id;
  auto* token = app.add_subcommand("token", "tokens signed with the deployment's keys");
  token->require_subcommand(1);
  auto* issue = token->add_subcommand(
      "issue", "sign a token for --user valid for --ttl (needs --auth-secret-file or IM_AUTH_SECRET)");
  issue->add_option("--ttl", ttl, "lifetime: 900s, 30m, 12h, 7d (default 1h)");
  issue->add_option("--key-id", key_id, "sign with this key (default: the first listed)");

  for (CLI::App* sub : {send, pull, follow, history, ping, reg, login, token, issue}) {
    sub->fallthrough();  // global options after the command reach the app
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }

  try {
    if (*send) {
      if (text == "-") {
        text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
        if (!text.empty() && text.back() == '\n') text.pop_back();
      }
      Client c(client_options(g));
      auto ack = c.send(to, text, client_msg_id);
      if (!ack) return fail(ack.error().to_string());
      if (g.json) {
        std::cout << nlohmann::json{{"message_id", ack->message_id},
                                    {"seq", ack->seq},
                                    {"created_at", im::imctl::rfc3339(ack->created_at_us)},
                                    {"duplicate", ack->duplicate},
                                    {"client_msg_id", ack->client_msg_id}}
                         .dump()
                  << "\n";
      } else {
        std::cout << ack->message_id << "\n";
      }
      return 0;
    }
    if (*pull) {
      Client c(client_options(g));
      auto page = c.pull(after, limit, wait_ms);
      if (!page) return fail(page.error().to_string());
      print_messages(g, page->messages);
      std::cerr << "next_after_seq=" << page->next_after_seq
                << " has_more=" << (page->has_more ? "true" : "false") << "\n";
      return 0;
    }
    if (*follow) {
      Client c(client_options(g));
      // Ctrl-C ends a follow normally; output is flushed after every message.
      std::signal(SIGINT, [](int) { std::_Exit(0); });
      std::signal(SIGTERM, [](int) { std::_Exit(0); });
      std::chrono::milliseconds backoff(100);
      for (;;) {
        auto page = c.pull(after, 0, 30000);
        if (!page) {
          std::cerr << "imctl: " << page.error().to_string() << " (retrying)\n";
          if (!page.error().retryable() && page.error().kind == Error::Kind::server) return 1;
          std::this_thread::sleep_for(backoff);
          backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
          continue;
        }
        backoff = std::chrono::milliseconds(100);
        print_messages(g, page->messages);
        after = page->next_after_seq;
      }
    }
    if (*history) {
      Client c(client_options(g));
      const bool reverse = hist_after == 0;  // --before, or neither: newest first
      auto page = c.history(peer, reverse ? before : hist_after, limit, reverse);
      if (!page) return fail(page.error().to_string());
      auto messages = page->messages;
      if (reverse && !g.json) std::reverse(messages.begin(), messages.end());  // oldest first
      print_messages(g, messages);
      std::cerr << "next_cursor=" << page->next_cursor
                << " has_more=" << (page->has_more ? "true" : "false") << "\n";
      return 0;
    }
    if (*issue) {
      if (g.user.empty()) throw CLI::ValidationError("--user", "names the user the token is for");
      const auto keys = key_ring(g);
      if (!keys) {
        throw CLI::ValidationError("--auth-secret-file",
                                   "token issue needs the keys (--auth-secret-file or IM_AUTH_SECRET)");
      }
      const auto ttl_s = im::auth::parse_duration_s(ttl);
      if (!ttl_s) throw CLI::ValidationError("--ttl", "must be a duration such as 900s, 30m, 12h, 7d");
      const im::auth::Key* key = key_id.empty() ? &keys->signing_key() : keys->find(key_id);
      if (key == nullptr) throw CLI::ValidationError("--key-id", "no key '" + key_id + "' in the keys");
      const std::int64_t expires = unix_now_s() + *ttl_s;
      std::string t;
      try {
        t = im::auth::issue_token(*key, g.user, expires);
      } catch (const std::invalid_argument& e) {
        throw CLI::ValidationError("--user", e.what());
      }
      if (g.json) {
        std::cout << nlohmann::json{{"user", g.user}, {"token", t}, {"key_id", key->id},
                                    {"expires_at", im::imctl::rfc3339(expires * 1000000)}}
                         .dump()
                  << "\n";
      } else {
        std::cout << t << "\n";
      }
      return 0;
    }
    if (*reg || *login) {
      if (g.user.empty()) throw CLI::ValidationError("--user", "names the account");
      std::string password;
      if (!password_file.empty()) {
        std::ifstream in(password_file);
        if (!in || !std::getline(in, password)) {
          throw CLI::ValidationError("--password-file", "cannot read " + password_file);
        }
      } else if (const char* p = std::getenv("IM_PASSWORD"); p != nullptr && *p) {
        password = p;
      } else if (!std::getline(std::cin, password)) {
        throw CLI::ValidationError("password", "none given (--password-file, IM_PASSWORD or stdin)");
      }
      if (!password.empty() && password.back() == '\r') password.pop_back();
      im::client::Options o = client_options(g);
      o.anonymous = true;
      o.token_source = nullptr;
      Client c(o);
      auto grant = *reg ? c.register_account(g.user, password) : c.login(g.user, password);
      if (!grant) return fail(grant.error().to_string());
      if (g.json) {
        std::cout << nlohmann::json{{"user", grant->user}, {"token", grant->token},
                                    {"expires_at", im::imctl::rfc3339(grant->expires_at_us)}}
                         .dump()
                  << "\n";
      } else {
        std::cout << grant->token << "\n";
      }
      return 0;
    }
    if (*ping) {
      Client c(client_options(g, "imctl"));
      if (auto w = c.connect(); !w) return fail(w.error().to_string());  // time only the ping
      auto rtt = c.ping();
      if (!rtt) return fail(rtt.error().to_string());
      const double ms = static_cast<double>(rtt->count()) / 1000.0;
      if (g.json) {
        std::cout << nlohmann::json{{"server", g.server}, {"rtt_ms", ms}}.dump() << "\n";
      } else {
        std::cout << fmt::format("pong from {} in {:.3f} ms\n", g.server, ms);
      }
      return 0;
    }
  } catch (const CLI::ValidationError& e) {
    std::cerr << "imctl: error: " << e.what() << "\n";
    return 2;
  }
  return 2;
}
