// im-bench-pull: reads one inbox from seq 0 to its end in pages, as fast as
// the server answers, and prints messages/s as JSON. bench/run fills the inbox
// first. Every loop is bounded (--max-pages).
#include <chrono>
#include <iostream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "client/client.hpp"
#include "auth/token.hpp"

int main(int argc, char** argv) {
  CLI::App app{"im-bench-pull: time reading a whole inbox by cursor"};
  std::string server = "127.0.0.1:7400", user;
  std::uint32_t page_size = 500;
  std::uint64_t max_pages = 100000;
  app.add_option("--server", server, "HOST:PORT")->capture_default_str();
  app.add_option("--user", user, "whose inbox")->required();
  app.add_option("--page", page_size, "messages per pull")->capture_default_str()->check(CLI::Range(1, 100000));
  app.add_option("--max-pages", max_pages, "stop after this many pages")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  auto servers = im::client::parse_servers(server);
  if (!servers) {
    std::cerr << "im-bench-pull: " << servers.error().message << "\n";
    return 2;
  }
  im::client::Options o;
  o.host = servers->front().host;
  o.port = servers->front().port;
  o.user = user;
  o.client_name = "im-bench-pull/0.1";
  // The deployment's keys (IM_AUTH_SECRET), when the server checks tokens.
  if (auto keys = im::auth::KeyRing::from_file_or_env("")) {
    o.token = im::auth::issue_token(keys->signing_key(), user, im::auth::unix_now_s() + 3600);
  }
  im::client::Client c(o);
  if (auto w = c.connect(); !w) {
    std::cerr << "im-bench-pull: " << w.error().to_string() << "\n";
    return 1;
  }
  const auto start = std::chrono::steady_clock::now();
  std::int64_t cursor = 0, last_seq = 0;
  std::uint64_t messages = 0, pages = 0, out_of_order = 0;
  for (; pages < max_pages; ++pages) {
    auto page = c.pull(cursor, page_size, 0);
    if (!page) {
      std::cerr << "im-bench-pull: " << page.error().to_string() << "\n";
      return 1;
    }
    for (const auto& m : page->messages) {
      if (m.seq <= last_seq) ++out_of_order;
      last_seq = m.seq;
    }
    messages += page->messages.size();
    cursor = page->next_after_seq;
    if (!page->has_more) {
      ++pages;
      break;
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << nlohmann::json{{"messages", messages},      {"pages", pages},
                              {"page_size", page_size},    {"seconds", seconds},
                              {"messages_per_s", seconds > 0 ? static_cast<double>(messages) / seconds : 0},
                              {"out_of_order", out_of_order}}
                   .dump()
            << "\n";
  return out_of_order == 0 ? 0 : 1;
}
