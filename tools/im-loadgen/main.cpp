// im-loadgen: drives load at an im-server and checks delivery.
//
// Closed loop: --senders connections, each keeping --pipeline sends in flight,
// spread over --receivers inboxes, until --count sends or --duration seconds.
// Open loop (--rate R): sends leave at R per second whatever the server's pace,
// and latency counts from each send's intended time, so queueing is not hidden.
// With --receivers-follow (or --verify), one long-polling follower per inbox
// measures send->delivered. Prints throughput (acked messages/s after
// --warmup), errors by code and latency percentiles (p50 p90 p99 p99.9 max), a
// progress line every second on a terminal; --verify then reads every
// receiver's inbox from 0 and counts
// lost, duplicated, unexpected, aborted, inconsistent, skipped, regressed,
// out-of-order and ack-mismatched messages (exit status 1 if any is non-zero).
// Every loop is bounded in count and time.
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <random>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "auth/token.hpp"
#include "tools/im-loadgen/workload.hpp"

int main(int argc, char** argv) {
  CLI::App app{"im-loadgen: load generator and delivery verifier for im"};
  im::loadgen::WorkloadOptions o;
  std::string server = "127.0.0.1:7400";
  bool json = false, verify = false;
  app.add_option("--server", server, "HOST:PORT, or a comma-separated list: connections are spread over them")
      ->envname("IM_SERVER")->capture_default_str();
  app.add_option("--senders", o.senders, "sending connections (one user each)")->capture_default_str()->check(CLI::Range(1, 10000));
  app.add_option("--receivers", o.receivers, "receiving users")->capture_default_str()->check(CLI::Range(1, 1000000));
  app.add_option("--count", o.count, "total sends")->capture_default_str();
  app.add_option("--duration", o.duration_s, "stop issuing sends after SECONDS")->capture_default_str()->check(CLI::Range(0.1, 86400.0));
  app.add_option("--pipeline", o.pipeline, "sends in flight per connection")->capture_default_str()->check(CLI::Range(1, 100000));
  app.add_option("--body-bytes", o.body_bytes, "message body size")->capture_default_str();
  app.add_option("--user-prefix", o.prefix, "prefix of generated user ids (default: random)");
  app.add_option("--timeout", o.timeout_s, "seconds per request before a retry")->capture_default_str();
  app.add_option("--send-attempts", o.send_attempts, "tries per send, all with one client_msg_id")->capture_default_str()->check(CLI::Range(1, 100000));
  app.add_option("--resend-fraction", o.resend_fraction,
                 "resend this fraction of acked sends with the same id (must not duplicate)")->check(CLI::Range(0.0, 1.0));
  std::string receiver_model = "auto";
  app.add_option("--rate", o.rate, "open loop: sends per second in all (default: closed loop)")->check(CLI::Range(0.0, 1e9));
  app.add_option("--warmup", o.warmup_s, "seconds left out of throughput and latency figures")->capture_default_str()->check(CLI::Range(0.0, 3600.0));
  app.add_option("--receiver-model", receiver_model,
                 "follow: a long-polling follower per inbox (send->delivered latency); none; auto: follow with --verify")
      ->check(CLI::IsMember({"auto", "follow", "none"}))->capture_default_str();
  std::string auth_secret_file;
  app.add_option("--auth-secret-file", auth_secret_file,
                 "the deployment's signing keys (as im-server's; or IM_AUTH_SECRET): each simulated "
                 "user signs its own token; without keys, no token is sent (--auth none servers)")
      ->envname("IM_AUTH_SECRET_FILE");
  bool no_progress = false;
  app.add_flag("--no-progress", no_progress, "no progress line (it is printed only when stderr is a terminal)");
  app.add_flag("--verify", verify,
               "check delivery: followers long-poll every inbox during the load, then every inbox is read again from 0");
  app.add_flag("--json", json, "print the report as one JSON object");
  app.add_flag("--tls", o.tls, "connect with TLS, verifying the server's certificate")->envname("IM_TLS");
  app.add_option("--tls-ca-file", o.tls_ca_file, "PEM file of CAs to trust (implies --tls; default: the system's)")
      ->envname("IM_TLS_CA_FILE");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  auto servers = im::client::parse_servers(server);
  if (!servers) {
    std::cerr << "im-loadgen: --server: " << servers.error().message << "\n";
    return 2;
  }
  o.servers = std::move(servers.value());
  try {
    if (auto keys = im::auth::KeyRing::from_file_or_env(auth_secret_file)) {
      o.token_for = [keys](const std::string& user) {
        return im::auth::issue_token(keys->signing_key(), user, im::auth::unix_now_s() + 86400);
      };
    }
  } catch (const std::invalid_argument& e) {
    std::cerr << "im-loadgen: " << e.what() << "\n";
    return 2;
  }
  o.tls = o.tls || !o.tls_ca_file.empty();
  if (o.prefix.empty()) o.prefix = fmt::format("lg{:08x}", std::random_device{}());

  if (verify && receiver_model == "none") {
    std::cerr << "im-loadgen: --verify needs followers (--receiver-model follow)\n";
    return 2;
  }
  o.follow = verify || receiver_model == "follow";
  o.progress = !no_progress && isatty(STDERR_FILENO) != 0;
  im::loadgen::Workload workload(o);
  const auto run = workload.run();
  auto percentiles = [](const im::loadgen::Histogram& hist) {
    return nlohmann::json{{"p50", hist.quantile(0.5)}, {"p90", hist.quantile(0.9)}, {"p99", hist.quantile(0.99)},
                          {"p999", hist.quantile(0.999)}, {"max", hist.max()}};
  };
  nlohmann::json report{
      {"senders", o.senders}, {"receivers", o.receivers}, {"pipeline", o.pipeline},
      {"body_bytes", o.body_bytes}, {"attempted", run.attempted}, {"acked", run.acked},
      {"failed", run.failed}, {"unknown", run.unknown}, {"resends", run.resends},
      {"errors", run.errors}, {"seconds", run.seconds},
      {"mode", o.rate > 0 ? "open" : "closed"}, {"target_rate", o.rate}, {"warmup_s", o.warmup_s},
      {"shed", run.shed}, {"measured_acked", run.measured_acked}, {"measured_seconds", run.measured_seconds},
      {"throughput_msgs_per_s", run.throughput()}, {"max_ack_gap_s", run.max_ack_gap_s},
      {"availability", run.availability}, {"ack_latency_us", percentiles(run.ack_latency_us)}};
  // Without --verify a run is clean when every send was acked; with it, when
  // no failing count of the checker is above zero (faults may make sends fail).
  bool clean = run.failed == 0 && run.acked == run.attempted && run.shed == 0;
  std::string check_line;
  if (o.follow && !verify) {
    const auto delivered = workload.stop_following();
    report["delivery_latency_us"] = percentiles(delivered);
    check_line = fmt::format(
        "send->delivered latency (ms): p50 {:.3f}  p90 {:.3f}  p99 {:.3f}  p99.9 {:.3f}  max {:.3f}\n",
        static_cast<double>(delivered.quantile(0.5)) / 1000, static_cast<double>(delivered.quantile(0.9)) / 1000,
        static_cast<double>(delivered.quantile(0.99)) / 1000, static_cast<double>(delivered.quantile(0.999)) / 1000,
        static_cast<double>(delivered.max()) / 1000);
  }
  if (verify) {
    const auto v = workload.check();
    report["check"] = {{"lost", v.lost}, {"duplicated", v.duplicated}, {"unexpected", v.unexpected},
                       {"aborted_reads", v.aborted_reads}, {"inconsistent", v.inconsistent},
                       {"reader_skips", v.reader_skips}, {"reader_regressions", v.reader_regressions},
                       {"order_violations", v.order_violations}, {"ack_mismatch", v.ack_mismatch},
                       {"read_errors", v.read_errors}, {"failing", v.failing()},
                       {"delivered", v.delivered}, {"unknown_delivered", v.unknown_delivered},
                       {"delivery_latency_us", percentiles(v.delivery_latency_us)}};
    report["delivery_latency_us"] = percentiles(v.delivery_latency_us);
    clean = v.failing() == 0;
    check_line = fmt::format(
        "check: lost {} duplicated {} unexpected {} aborted_reads {} inconsistent {} reader_skips {} "
        "reader_regressions {} order_violations {} ack_mismatch {} read_errors {} => {}\n"
        "       delivered {} (unknown-outcome sends delivered: {}); send->delivered p50 {:.3f} ms p99 {:.3f} ms\n",
        v.lost, v.duplicated, v.unexpected, v.aborted_reads, v.inconsistent, v.reader_skips,
        v.reader_regressions, v.order_violations, v.ack_mismatch, v.read_errors,
        v.failing() == 0 ? "OK" : "ANOMALIES", v.delivered, v.unknown_delivered,
        static_cast<double>(v.delivery_latency_us.quantile(0.5)) / 1000,
        static_cast<double>(v.delivery_latency_us.quantile(0.99)) / 1000);
  }
  const auto& h = run.ack_latency_us;
  if (json) {
    std::cout << report.dump() << "\n";
  } else {
    std::cout << fmt::format("sent {} acked {} failed {} unknown {} in {:.2f} s: {:.0f} msg/s{}\n", run.attempted,
                             run.acked, run.failed, run.unknown, run.seconds, run.throughput(),
                             o.warmup_s > 0 ? " after the warm-up" : "");
    if (o.rate > 0) {
      std::cout << fmt::format("open loop at {:.0f}/s; shed (too many in flight) {}\n", o.rate, run.shed);
    }
    for (const auto& [k, v] : run.errors) std::cout << fmt::format("  error {}: {}\n", k, v);
    std::cout << fmt::format("send->ack latency (ms): p50 {:.3f}  p90 {:.3f}  p99 {:.3f}  p99.9 {:.3f}  max {:.3f}\n",
                             static_cast<double>(h.quantile(0.5)) / 1000, static_cast<double>(h.quantile(0.9)) / 1000,
                             static_cast<double>(h.quantile(0.99)) / 1000, static_cast<double>(h.quantile(0.999)) / 1000,
                             static_cast<double>(h.max()) / 1000);
    std::cout << fmt::format("availability {:.1f}% of 100 ms slots had an ack; longest gap {:.2f} s\n",
                             run.availability * 100, run.max_ack_gap_s);
    std::cout << check_line;
  }
  return clean ? 0 : 1;
}
