// im-loadgen: drives load at an im-server and checks delivery.
//
// Closed loop: --senders connections, each keeping --pipeline sends in flight,
// spread over --receivers inboxes, until --count sends or --duration seconds.
// Prints throughput (acked messages/s), errors by code and send->ack latency
// percentiles; --verify then reads every receiver's inbox from 0 and counts
// lost, duplicated, unexpected, out-of-order and ack-mismatched messages
// (exit status 1 if any is non-zero). Every loop is bounded in count and time.
#include <iostream>
#include <random>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "tools/im-loadgen/workload.hpp"

int main(int argc, char** argv) {
  CLI::App app{"im-loadgen: load generator and delivery verifier for im"};
  im::loadgen::WorkloadOptions o;
  std::string server = "127.0.0.1:7400";
  bool json = false, verify = false;
  app.add_option("--server", server, "HOST:PORT")->envname("IM_SERVER")->capture_default_str();
  app.add_option("--senders", o.senders, "sending connections (one user each)")->capture_default_str()->check(CLI::Range(1, 10000));
  app.add_option("--receivers", o.receivers, "receiving users")->capture_default_str()->check(CLI::Range(1, 1000000));
  app.add_option("--count", o.count, "total sends")->capture_default_str();
  app.add_option("--duration", o.duration_s, "stop issuing sends after SECONDS")->capture_default_str()->check(CLI::Range(0.1, 86400.0));
  app.add_option("--pipeline", o.pipeline, "sends in flight per connection")->capture_default_str()->check(CLI::Range(1, 100000));
  app.add_option("--body-bytes", o.body_bytes, "message body size")->capture_default_str();
  app.add_option("--user-prefix", o.prefix, "prefix of generated user ids (default: random)");
  app.add_option("--timeout", o.timeout_s, "seconds per request before a retry")->capture_default_str();
  app.add_flag("--verify", verify, "afterwards, read every inbox and check delivery");
  app.add_flag("--json", json, "print the report as one JSON object");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  const auto colon = server.rfind(':');
  if (colon == std::string::npos) {
    std::cerr << "im-loadgen: --server must be HOST:PORT\n";
    return 2;
  }
  o.host = server.substr(0, colon);
  o.port = static_cast<std::uint16_t>(std::stoi(server.substr(colon + 1)));
  if (o.prefix.empty()) o.prefix = fmt::format("lg{:08x}", std::random_device{}());

  im::loadgen::Workload workload(o);
  const auto run = workload.run();
  const auto& h = run.ack_latency_us;
  nlohmann::json report{
      {"senders", o.senders}, {"receivers", o.receivers}, {"pipeline", o.pipeline},
      {"body_bytes", o.body_bytes}, {"attempted", run.attempted}, {"acked", run.acked},
      {"failed", run.failed}, {"errors", run.errors}, {"seconds", run.seconds},
      {"throughput_msgs_per_s", run.throughput()},
      {"ack_latency_us", {{"p50", h.quantile(0.5)}, {"p90", h.quantile(0.9)}, {"p99", h.quantile(0.99)},
                          {"p999", h.quantile(0.999)}, {"max", h.max()}}}};
  bool clean = run.failed == 0 && run.acked == run.attempted;
  if (verify) {
    const auto v = workload.verify();
    report["verify"] = {{"delivered", v.delivered}, {"lost", v.lost}, {"duplicated", v.duplicated},
                        {"unexpected", v.unexpected}, {"order_violations", v.order_violations},
                        {"ack_mismatch", v.ack_mismatch}, {"read_errors", v.read_errors}};
    clean = clean && v.clean();
  }
  if (json) {
    std::cout << report.dump() << "\n";
  } else {
    std::cout << fmt::format("sent {} acked {} failed {} in {:.2f} s: {:.0f} msg/s\n", run.attempted,
                             run.acked, run.failed, run.seconds, run.throughput());
    for (const auto& [k, v] : run.errors) std::cout << fmt::format("  error {}: {}\n", k, v);
    std::cout << fmt::format("send->ack latency (ms): p50 {:.3f}  p90 {:.3f}  p99 {:.3f}  p99.9 {:.3f}  max {:.3f}\n",
                             static_cast<double>(h.quantile(0.5)) / 1000, static_cast<double>(h.quantile(0.9)) / 1000,
                             static_cast<double>(h.quantile(0.99)) / 1000, static_cast<double>(h.quantile(0.999)) / 1000,
                             static_cast<double>(h.max()) / 1000);
    if (verify) {
      const auto& v = report["verify"];
      std::cout << fmt::format("verify: delivered {} lost {} duplicated {} unexpected {} order {} ack_mismatch {} read_errors {}\n",
                               v["delivered"].get<std::uint64_t>(), v["lost"].get<std::uint64_t>(),
                               v["duplicated"].get<std::uint64_t>(), v["unexpected"].get<std::uint64_t>(),
                               v["order_violations"].get<std::uint64_t>(), v["ack_mismatch"].get<std::uint64_t>(),
                               v["read_errors"].get<std::uint64_t>());
    }
  }
  return clean ? 0 : 1;
}
