// imctl: the im command-line tool.
//
//   imctl [--server HOST:PORT] [--user ID] [--token T] [--json] [--timeout SECS]
//         [--tls [--tls-ca-file PEM]] COMMAND ...
//     send TO TEXT [--client-msg-id N]     TEXT "-" reads the body from stdin
//     pull [--after SEQ] [--limit N] [--wait MS]
//     follow [--after SEQ]
//     history PEER [--before ID | --after ID] [--limit N]
//     ping
//
// Global options may come before or after the command; each has an IM_*
// environment variable. Exit status: 0 success, 1 a failed request, 2 usage.
#include <csignal>
#include <cstdio>
#include <iostream>
#include <iterator>
#include <thread>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "client/client.hpp"
#include "tools/imctl/format.hpp"

namespace {

using im::client::Client;
using im::client::Error;

struct Globals {
  std::string server = "127.0.0.1:7400";
  std::string user;
  std::string token;
  bool json = false;
  double timeout_s = 5.0;
  bool tls = false;
  std::string tls_ca_file;
};

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
  o.user = g.user.empty() ? default_user : g.user;
  if (o.user.empty()) throw CLI::ValidationError("--user", "is required (or set IM_USER)");
  o.token = g.token;
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
    on->add_option("--token", g.token, "authentication token")->envname("IM_TOKEN");
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

  for (CLI::App* sub : {send, pull, follow, history, ping}) {
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
