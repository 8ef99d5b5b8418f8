// consul::client over HTTPS against a dev_consul serving a throw-away certificate: a trusted CA
// works, an untrusted certificate or a wrong server name is refused before any request is sent,
// and turning verification off works but is logged loudly.
#include <lakemesh/consul/client.hpp>

#include "consul_target.hpp"
#include "run_future.hpp"
#include "test_certs.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cstdio>
#include <filesystem>
#include <mutex>

namespace lakemesh::test {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using consul::client;
using consul::client_config;

/// Keeps every line logged at warn level or above.
class capturing_sink : public observe::log_sink {
  public:
    bool enabled(observe::log_level level) const noexcept override {
        return level >= observe::log_level::warn;
    }
    void write(observe::log_level, std::string_view, std::string_view message) override {
        std::lock_guard lock(mutex_);
        lines_.emplace_back(message);
    }
    std::vector<std::string> lines() const {
        std::lock_guard lock(mutex_);
        return lines_;
    }

  private:
    mutable std::mutex mutex_;
    std::vector<std::string> lines_;
};

/// use_future that keeps the error code and the diagnostics instead of throwing.
const auto both = asio::use_future([](error_code ec, auto r) {
    return std::pair{ec, std::move(r)};
});

class client_tls : public ::testing::Test {
  protected:
    void SetUp() override {
        ASSERT_TRUE(server_cert.ok());
        ASSERT_TRUE(other_cert.ok());
        testing::dev_consul_options opts;
        opts.tls_cert_file = server_cert.cert_file();
        opts.tls_key_file = server_cert.key_file();
        server = std::make_unique<testing::dev_consul>(opts);
    }

    client_config tls_config() const {
        client_config cfg;
        cfg.addresses = {consul::agent_address{"127.0.0.1", server->port()}};
        cfg.use_tls = true;
        cfg.tls.ca_file = server_cert.cert_file();
        return cfg;
    }

    template <class F>
    auto run(F&& start) {
        return test::run_future(io, std::forward<F>(start));
    }

    self_signed_cert server_cert{"127.0.0.1"};
    self_signed_cert other_cert{"127.0.0.1"};
    std::unique_ptr<testing::dev_consul> server;
    asio::io_context io;
    std::string key = unique_name("tls");
};

TEST_F(client_tls, trusted_ca_round_trip) {
    client c(io, tls_config());
    auto [put_ec, put] = run([&] { return c.async_kv_put(key, "secret bytes", both); });
    ASSERT_FALSE(put_ec) << put_ec.message() << " " << put.diag.client_message();
    EXPECT_TRUE(put.value);
    auto [get_ec, got] = run([&] { return c.async_kv_get(key, both); });
    ASSERT_FALSE(get_ec) << get_ec.message() << " " << got.diag.client_message();
    ASSERT_TRUE(got.value.has_value());
    EXPECT_EQ(got.value->value, "secret bytes");
    // A pipelined batch over TLS: the agent knows neither check, and says so for each.
    std::vector<consul::check_update> batch{
        consul::check_update{key + "-a", consul::check_status::passing, "ok"},
        consul::check_update{key + "-b", consul::check_status::warning, "slow"}};
    auto [batch_ec, outcomes] = run([&] { return c.agent().async_check_updates(batch, both); });
    ASSERT_FALSE(batch_ec) << batch_ec.message();
    ASSERT_EQ(outcomes.value.size(), 2u);
    EXPECT_EQ(outcomes.value[0].error, consul_errc::not_found);
    EXPECT_EQ(outcomes.value[1].error, consul_errc::not_found);
    // Every call went over one kept-alive TLS connection.
    EXPECT_EQ(c.open_connections(), 1u);
}

TEST_F(client_tls, untrusted_certificate_is_refused_before_any_request) {
    auto cfg = tls_config();
    cfg.tls.ca_file = other_cert.cert_file();
    client c(io, cfg);
    const auto served = server->requests_served();
    auto [ec, r] = run([&] { return c.async_kv_put(key, "never", both); });
    EXPECT_EQ(ec, make_error_code(transport_errc::tls_verify_failed)) << ec.message();
    EXPECT_FALSE(r.diag.client_message().empty());
    EXPECT_EQ(server->requests_served(), served);
}

TEST_F(client_tls, wrong_server_name_is_refused) {
    auto cfg = tls_config();
    cfg.tls.server_name = "consul.other.example";
    client c(io, cfg);
    auto [ec, r] = run([&] { return c.async_status_leader(both); });
    EXPECT_EQ(ec, make_error_code(transport_errc::tls_verify_failed)) << ec.message();
}

TEST_F(client_tls, verification_off_connects_and_is_logged_loudly) {
    auto cfg = tls_config();
    cfg.tls.ca_file = other_cert.cert_file();
    cfg.tls.verify = false;
    auto sink = std::make_shared<capturing_sink>();
    client c(io, cfg, observe::logger(sink, "consul"));
    auto [ec, r] = run([&] { return c.async_status_leader(both); });
    ASSERT_FALSE(ec) << ec.message();
    auto lines = sink->lines();
    EXPECT_TRUE(std::any_of(lines.begin(), lines.end(), [](const std::string& l) {
        return l.find("verif") != std::string::npos;
    })) << "no warning about disabled verification";
}

TEST_F(client_tls, plain_http_to_a_tls_agent_fails_cleanly) {
    auto cfg = tls_config();
    cfg.use_tls = false;
    cfg.request_timeout = 2s;
    client c(io, cfg);
    auto [ec, r] = run([&] { return c.async_status_leader(both); });
    EXPECT_TRUE(ec) << "a plaintext request to a TLS port cannot succeed";
}

TEST_F(client_tls, missing_ca_file_is_a_clear_error) {
    auto cfg = tls_config();
    cfg.tls.ca_file = "/nonexistent/lakemesh-ca.pem";
    client c(io, cfg);
    const auto served = server->requests_served();
    auto [ec, r] = run([&] { return c.async_status_leader(both); });
    EXPECT_EQ(ec, make_error_code(validation_errc::invalid_configuration)) << ec.message();
    EXPECT_FALSE(is_retryable(ec));
    EXPECT_NE(r.diag.client_message().find("lakemesh-ca.pem"), std::string::npos)
        << r.diag.client_message();
    EXPECT_EQ(server->requests_served(), served);
}

TEST_F(client_tls, client_certificate_is_presented) {
    // This agent does not ask for a client certificate: one configured does no harm.
    auto cfg = tls_config();
    cfg.tls.cert_file = other_cert.cert_file();
    cfg.tls.key_file = other_cert.key_file();
    client c(io, cfg);
    auto [ec, r] = run([&] { return c.async_status_leader(both); });
    EXPECT_FALSE(ec) << ec.message() << " " << r.diag.client_message();
}

// An agent with verify_incoming: only a client holding a certificate its CA verifies gets an
// answer.
TEST_F(client_tls, agent_requiring_a_client_certificate_accepts_only_a_trusted_one) {
    self_signed_cert client_ca{"lakemesh-client"};
    ASSERT_TRUE(client_ca.ok());
    testing::dev_consul_options opts;
    opts.tls_cert_file = server_cert.cert_file();
    opts.tls_key_file = server_cert.key_file();
    opts.tls_client_ca_file = client_ca.cert_file();
    server = std::make_unique<testing::dev_consul>(opts);

    auto with_cert = tls_config();
    with_cert.tls.cert_file = client_ca.cert_file();
    with_cert.tls.key_file = client_ca.key_file();
    {
        client c(io, with_cert);
        auto [ec, r] = run([&] { return c.async_kv_put(key, "mtls", both); });
        EXPECT_FALSE(ec) << ec.message() << " " << r.diag.client_message();
        EXPECT_TRUE(r.value);
    }
    EXPECT_EQ(server->requests_served(), 1u);

    auto no_cert = tls_config();
    no_cert.request_timeout = 5s;
    auto wrong_cert = tls_config();
    wrong_cert.request_timeout = 5s;
    wrong_cert.tls.cert_file = other_cert.cert_file();
    wrong_cert.tls.key_file = other_cert.key_file();
    for (const auto& cfg : {no_cert, wrong_cert}) {
        client c(io, cfg);
        auto [ec, r] = run([&] { return c.async_kv_put(key, "must not land", both); });
        EXPECT_TRUE(ec);
        EXPECT_NE(ec, make_error_code(transport_errc::timeout)) << ec.message();
    }
    EXPECT_EQ(server->requests_served(), 1u);
    client c(io, with_cert);
    auto [ec, r] = run([&] { return c.async_kv_get(key, both); });
    ASSERT_FALSE(ec) << ec.message();
    ASSERT_TRUE(r.value);
    EXPECT_EQ(r.value->value, "mtls");
}

// A CA directory in OpenSSL's hashed layout (<subject hash>.0), as CONSUL_CAPATH names one.
TEST_F(client_tls, ca_directory_is_trusted_and_only_for_what_it_holds) {
    auto hashed_dir = [](const std::string& cert_file, const std::string& name) {
        auto dir = std::filesystem::temp_directory_path() / name;
        std::filesystem::create_directories(dir);
        std::FILE* f = std::fopen(cert_file.c_str(), "r");
        X509* cert = f != nullptr ? PEM_read_X509(f, nullptr, nullptr, nullptr) : nullptr;
        if (f != nullptr) {
            std::fclose(f);
        }
        char hash[16];
        std::snprintf(hash, sizeof hash, "%08lx.0", cert ? X509_subject_name_hash(cert) : 0ul);
        X509_free(cert);
        std::filesystem::copy_file(cert_file, dir / hash,
                                   std::filesystem::copy_options::overwrite_existing);
        return dir;
    };
    const auto trusted = hashed_dir(server_cert.cert_file(), unique_name("lakemesh-capath"));
    const auto other = hashed_dir(other_cert.cert_file(), unique_name("lakemesh-capath"));

    auto cfg = tls_config();
    cfg.tls.ca_file.clear();
    cfg.tls.ca_path = trusted.string();
    {
        client c(io, cfg);
        auto [ec, r] = run([&] { return c.async_status_leader(both); });
        EXPECT_FALSE(ec) << ec.message() << " " << r.diag.client_message();
    }
    cfg.tls.ca_path = other.string();
    {
        client c(io, cfg);
        auto [ec, r] = run([&] { return c.async_status_leader(both); });
        EXPECT_EQ(ec, make_error_code(transport_errc::tls_verify_failed)) << ec.message();
    }
    std::filesystem::remove_all(trusted);
    std::filesystem::remove_all(other);
}

// SNI names the agent by its DNS name; an IP literal is verified but never sent (RFC 6066).
TEST_F(client_tls, sni_carries_a_dns_server_name_and_never_an_ip_literal) {
    auto cfg = tls_config();
    cfg.tls.server_name = "localhost";  // the certificate covers it
    {
        client c(io, cfg);
        auto [ec, r] = run([&] { return c.async_status_leader(both); });
        ASSERT_FALSE(ec) << ec.message() << " " << r.diag.client_message();
    }
    EXPECT_EQ(server->last_tls_server_name(), "localhost");
    {
        client c(io, tls_config());  // 127.0.0.1
        auto [ec, r] = run([&] { return c.async_status_leader(both); });
        ASSERT_FALSE(ec) << ec.message() << " " << r.diag.client_message();
    }
    EXPECT_EQ(server->last_tls_server_name(), "");
}

TEST_F(client_tls, unreadable_client_key_is_a_clear_error) {
    auto cfg = tls_config();
    cfg.tls.cert_file = other_cert.cert_file();
    cfg.tls.key_file = "/nonexistent/lakemesh-client.key";
    client c(io, cfg);
    auto [ec, r] = run([&] { return c.async_status_leader(both); });
    EXPECT_EQ(ec, make_error_code(validation_errc::invalid_configuration)) << ec.message();
    EXPECT_NE(r.diag.client_message().find("lakemesh-client.key"), std::string::npos)
        << r.diag.client_message();
}

}  // namespace
}  // namespace lakemesh::test
