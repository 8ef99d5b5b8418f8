#include <lakemesh/config.hpp>

#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>

namespace lakemesh::consul {
namespace {

env_lookup env(std::map<std::string, std::string> vars) {
    return [vars = std::move(vars)](std::string_view n) -> std::optional<std::string> {
        auto it = vars.find(std::string(n));
        if (it == vars.end()) {
            return std::nullopt;
        }
        return it->second;
    };
}

TEST(config, defaults_point_at_local_agent) {
    error_code ec;
    diagnostics d;
    auto cfg = client_config::from_env(env({}), ec, d);
    ASSERT_FALSE(ec);
    ASSERT_EQ(cfg.addresses.size(), 1u);
    EXPECT_EQ(cfg.addresses[0].to_string(), "127.0.0.1:8500");
    EXPECT_FALSE(cfg.use_tls);
    EXPECT_TRUE(cfg.tls.verify);
    EXPECT_FALSE(cfg.validate(d));
}

TEST(config, reads_every_standard_variable) {
    error_code ec;
    diagnostics d;
    auto cfg = client_config::from_env(env({{"CONSUL_HTTP_ADDR", "https://consul.local:8501"},
                                            {"CONSUL_HTTP_TOKEN", "s3cr3t"},
                                            {"CONSUL_CACERT", "/ca.pem"},
                                            {"CONSUL_CAPATH", "/cas"},
                                            {"CONSUL_CLIENT_CERT", "/c.pem"},
                                            {"CONSUL_CLIENT_KEY", "/k.pem"},
                                            {"CONSUL_TLS_SERVER_NAME", "server.dc1.consul"},
                                            {"CONSUL_HTTP_SSL_VERIFY", "false"}}),
                                       ec, d);
    ASSERT_FALSE(ec) << d.to_string();
    EXPECT_EQ(cfg.addresses[0].host, "consul.local");
    EXPECT_EQ(cfg.addresses[0].port, 8501);
    EXPECT_TRUE(cfg.use_tls);
    EXPECT_EQ(cfg.token, "s3cr3t");
    EXPECT_EQ(cfg.tls.ca_file, "/ca.pem");
    EXPECT_EQ(cfg.tls.ca_path, "/cas");
    EXPECT_EQ(cfg.tls.cert_file, "/c.pem");
    EXPECT_EQ(cfg.tls.key_file, "/k.pem");
    EXPECT_EQ(cfg.tls.server_name, "server.dc1.consul");
    EXPECT_FALSE(cfg.tls.verify);
}

TEST(config, namespace_basic_auth_and_token_file) {
    const auto file = std::filesystem::temp_directory_path() /
                      ("lakemesh-token-" + std::to_string(::getpid()) + ".txt");
    std::ofstream(file) << "  file-token\n";
    error_code ec;
    diagnostics d;
    auto cfg = client_config::from_env(env({{"CONSUL_HTTP_TOKEN", "env-token"},
                                            {"CONSUL_HTTP_TOKEN_FILE", file.string()},
                                            {"CONSUL_HTTP_AUTH", "user:pa ss"},
                                            {"CONSUL_NAMESPACE", "team-a"}}),
                                       ec, d);
    ASSERT_FALSE(ec) << d.to_string();
    // The file wins over CONSUL_HTTP_TOKEN, trimmed, as in Consul's Go client.
    EXPECT_EQ(cfg.token, "file-token");
    EXPECT_EQ(cfg.http_auth, "user:pa ss");
    EXPECT_EQ(cfg.namespace_name, "team-a");
    EXPECT_FALSE(cfg.validate(d));

    // An empty file leaves CONSUL_HTTP_TOKEN in force.
    std::ofstream(file, std::ios::trunc) << "\n";
    cfg = client_config::from_env(
        env({{"CONSUL_HTTP_TOKEN", "env-token"}, {"CONSUL_HTTP_TOKEN_FILE", file.string()}}), ec,
        d);
    ASSERT_FALSE(ec) << d.to_string();
    EXPECT_EQ(cfg.token, "env-token");

    // A token with a control character inside is refused without echoing it.
    std::ofstream(file, std::ios::trunc) << "ab\r\nX-Evil: 1";
    client_config::from_env(env({{"CONSUL_HTTP_TOKEN_FILE", file.string()}}), ec, d);
    EXPECT_EQ(ec, validation_errc::invalid_environment);
    EXPECT_NE(d.to_string().find("CONSUL_HTTP_TOKEN_FILE"), std::string::npos);
    EXPECT_EQ(d.to_string().find("Evil"), std::string::npos);
    std::filesystem::remove(file);

    // A file that cannot be read names the variable.
    client_config::from_env(env({{"CONSUL_HTTP_TOKEN_FILE", file.string()}}), ec, d);
    EXPECT_EQ(ec, validation_errc::invalid_environment);
    EXPECT_NE(d.to_string().find("CONSUL_HTTP_TOKEN_FILE"), std::string::npos);

    client_config::from_env(env({{"CONSUL_HTTP_AUTH", "u:p\r\nX: 1"}}), ec, d);
    EXPECT_EQ(ec, validation_errc::invalid_environment);
    EXPECT_EQ(d.to_string().find("X: 1"), std::string::npos);

    client_config bad;
    bad.http_auth = "u:p\nX: 1";
    EXPECT_EQ(bad.validate(d), validation_errc::header_injection);
}

TEST(config, ssl_flag_and_address_list) {
    error_code ec;
    diagnostics d;
    auto cfg = client_config::from_env(
        env({{"CONSUL_HTTP_ADDR", "10.0.0.1:8500,[::1]:9500,host"}, {"CONSUL_HTTP_SSL", "1"}}), ec,
        d);
    ASSERT_FALSE(ec);
    ASSERT_EQ(cfg.addresses.size(), 3u);
    EXPECT_EQ(cfg.addresses[1].host, "::1");
    EXPECT_EQ(cfg.addresses[1].port, 9500);
    EXPECT_EQ(cfg.addresses[1].to_string(), "[::1]:9500");
    EXPECT_EQ(cfg.addresses[2].port, 8500);
    EXPECT_TRUE(cfg.use_tls);
}

TEST(config, malformed_values_name_the_variable) {
    struct bad {
        std::string var, value;
    };
    for (const auto& [var, value] :
         {bad{"CONSUL_HTTP_ADDR", "host:notaport"}, bad{"CONSUL_HTTP_ADDR", "unix:///tmp/sock"},
          bad{"CONSUL_HTTP_ADDR", "host:99999"}, bad{"CONSUL_HTTP_ADDR", "a b:1"},
          bad{"CONSUL_HTTP_SSL", "yes please"}, bad{"CONSUL_HTTP_SSL_VERIFY", "maybe"},
          bad{"CONSUL_CACERT", "/a\nb"}}) {
        error_code ec;
        diagnostics d;
        client_config::from_env(env({{var, value}}), ec, d);
        EXPECT_EQ(ec, validation_errc::invalid_environment) << var << "=" << value;
        EXPECT_NE(d.client_message().find(var), std::string::npos) << d.client_message();
    }
}

TEST(config, address_with_stray_bracket_is_rejected) {
    // Found by fuzz_agent_address: "[[x]" parsed to host "[x", whose to_string() "[x:8500"
    // did not parse back.
    for (std::string_view text : {"[[x]", "[[x]:80", "a[b:80", "a]b", "[a]b]:1"}) {
        EXPECT_FALSE(parse_agent_address(text)) << text;
    }
    EXPECT_EQ(parse_agent_address("[::1]:9500")->host, "::1");
}

TEST(config, token_with_control_character_is_rejected_without_echoing_it) {
    error_code ec;
    diagnostics d;
    client_config::from_env(env({{"CONSUL_HTTP_TOKEN", "abc\r\nX-Evil: 1"}}), ec, d);
    EXPECT_EQ(ec, validation_errc::invalid_environment);
    EXPECT_NE(d.client_message().find("CONSUL_HTTP_TOKEN"), std::string::npos);
    EXPECT_EQ(d.client_message().find("abc"), std::string::npos);
}

TEST(config, client_cert_needs_key) {
    error_code ec;
    diagnostics d;
    client_config::from_env(env({{"CONSUL_CLIENT_CERT", "/c.pem"}}), ec, d);
    EXPECT_EQ(ec, validation_errc::invalid_environment);
    EXPECT_NE(d.client_message().find("CONSUL_CLIENT_KEY"), std::string::npos);
}

TEST(config, throwing_overload_reports_the_variable) {
    ::setenv("CONSUL_HTTP_SSL", "nope", 1);
    try {
        (void)client_config::from_env();
        ADD_FAILURE() << "expected lakemesh::error";
    } catch (const lakemesh::error& e) {
        EXPECT_EQ(e.code(), validation_errc::invalid_environment);
        EXPECT_NE(std::string(e.what()).find("CONSUL_HTTP_SSL"), std::string::npos);
    }
    ::unsetenv("CONSUL_HTTP_SSL");
}

TEST(config, validate_catches_inconsistencies) {
    diagnostics d;
    client_config cfg;
    cfg.addresses.clear();
    EXPECT_EQ(cfg.validate(d), validation_errc::invalid_configuration);
    cfg = {};
    cfg.pool_size_per_address = 0;
    EXPECT_EQ(cfg.validate(d), validation_errc::invalid_configuration);
    cfg = {};
    cfg.token = "a\nb";
    EXPECT_EQ(cfg.validate(d), validation_errc::header_injection);
    cfg = {};
    cfg.request_timeout = std::chrono::milliseconds(-1);
    EXPECT_EQ(cfg.validate(d), validation_errc::invalid_duration);
}

}  // namespace
}  // namespace lakemesh::consul
