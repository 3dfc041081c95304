// Unit: the TLS settings (--tls-cert, --tls-key): both or neither, files that
// load and belong together, each failure naming its setting; TLS 1.2 floor.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <fstream>

#include <openssl/ssl.h>

#include "server/app/config.hpp"
#include "server/net/tls_context.hpp"
#include "tests/support/parse_args.hpp"
#include "tests/support/test_certs.hpp"

using namespace im::server;
using Catch::Matchers::Contains;

namespace {
ParseResult parse(std::vector<std::string> args, Config& c) {
  return im::test::parse_args(std::move(args), c);
}
}  // namespace

TEST_CASE("TLS is off by default and on with a matching certificate and key", "[unit][config][tls]") {
  im::test::TestCerts certs;
  Config plain;
  REQUIRE(parse({}, plain).action == ParseResult::Action::run);
  CHECK(plain.tls_cert.empty());
  CHECK(plain.tls_key.empty());

  Config c;
  REQUIRE(parse({"--tls-cert", certs.server_cert, "--tls-key", certs.server_key}, c).action ==
          ParseResult::Action::run);
  CHECK(c.tls_cert == certs.server_cert);
  CHECK(c.tls_key == certs.server_key);

  ::setenv("IM_TLS_CERT", certs.server_cert.c_str(), 1);
  ::setenv("IM_TLS_KEY", certs.server_key.c_str(), 1);
  Config e;
  const auto r = parse({}, e);
  ::unsetenv("IM_TLS_CERT");
  ::unsetenv("IM_TLS_KEY");
  REQUIRE(r.action == ParseResult::Action::run);
  CHECK(e.tls_cert == certs.server_cert);
  CHECK(e.tls_key == certs.server_key);
}

TEST_CASE("bad TLS settings stop start-up with a message naming the setting", "[unit][config][tls]") {
  im::test::TestCerts certs;
  const std::string garbage = certs.dir + "/garbage.pem";
  std::ofstream(garbage) << "not a certificate\n";
  struct Case {
    std::string cert, key, setting, why;
  };
  const std::vector<Case> cases{
      {certs.server_cert, "", "--tls-key", "together"},
      {"", certs.server_key, "--tls-cert", "together"},
      {certs.dir + "/missing.pem", certs.server_key, "--tls-cert", "cannot read"},
      {certs.server_cert, certs.dir + "/missing.key", "--tls-key", "cannot read"},
      {garbage, certs.server_key, "--tls-cert", "not a PEM certificate"},
      {certs.server_key, certs.server_key, "--tls-cert", "not a PEM certificate"},
      {certs.server_cert, garbage, "--tls-key", "not an unencrypted PEM private key"},
      {certs.server_cert, certs.server_cert, "--tls-key", "not an unencrypted PEM private key"},
      {certs.server_cert, certs.other_key, "--tls-key", "does not match the certificate"},
  };
  for (const auto& k : cases) {
    INFO("cert=" << k.cert << " key=" << k.key);
    Config c;
    c.auth = "none";
    c.tls_cert = k.cert;
    c.tls_key = k.key;
    CHECK_THROWS_WITH(validate(c), Contains(k.setting) && Contains(k.why));
    // The command line exits 2, like every other configuration error.
    std::vector<std::string> args;
    if (!k.cert.empty()) args.insert(args.end(), {"--tls-cert", k.cert});
    if (!k.key.empty()) args.insert(args.end(), {"--tls-key", k.key});
    Config p;
    const auto r = parse(args, p);
    CHECK(r.action == ParseResult::Action::exit);
    CHECK(r.exit_code == 2);
  }
}

TEST_CASE("the server's TLS context refuses anything older than TLS 1.2", "[unit][tls]") {
  im::test::TestCerts certs;
  const auto ctx = make_server_tls_context(certs.server_cert, certs.server_key);
  CHECK(SSL_CTX_get_min_proto_version(ctx->native_handle()) == TLS1_2_VERSION);
}
