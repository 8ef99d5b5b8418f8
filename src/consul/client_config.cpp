#include <lakemesh/consul/client_config.hpp>

#include <charconv>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace lakemesh::consul {
namespace {

std::optional<bool> parse_bool(std::string_view v) {
    // The forms Go's strconv.ParseBool accepts, since Consul's CLI reads these variables with it.
    if (v == "1" || v == "t" || v == "T" || v == "true" || v == "TRUE" || v == "True") {
        return true;
    }
    if (v == "0" || v == "f" || v == "F" || v == "false" || v == "FALSE" || v == "False") {
        return false;
    }
    return std::nullopt;
}

bool has_control(std::string_view v) {
    for (char c : v) {
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
            return true;
        }
    }
    return false;
}

}  // namespace

std::string agent_address::to_string() const {
    if (host.find(':') != std::string::npos) {
        return "[" + host + "]:" + std::to_string(port);
    }
    return host + ":" + std::to_string(port);
}

std::optional<agent_address> parse_agent_address(std::string_view text, bool* tls) {
    bool is_tls = false;
    if (text.starts_with("http://")) {
        text.remove_prefix(7);
    } else if (text.starts_with("https://")) {
        text.remove_prefix(8);
        is_tls = true;
    } else if (text.find("://") != std::string_view::npos) {
        return std::nullopt;  // unix:// and other schemes are not supported
    }
    while (!text.empty() && text.back() == '/') {
        text.remove_suffix(1);
    }
    if (text.empty() || has_control(text) ||
        text.find_first_of("/?#@ ") != std::string_view::npos) {
        return std::nullopt;
    }
    agent_address out;
    std::string_view port_part;
    if (text.front() == '[') {
        auto close = text.find(']');
        if (close == std::string_view::npos || close == 1) {
            return std::nullopt;
        }
        out.host = std::string(text.substr(1, close - 1));
        auto rest = text.substr(close + 1);
        if (!rest.empty()) {
            if (rest.front() != ':') {
                return std::nullopt;
            }
            port_part = rest.substr(1);
        }
    } else {
        auto colon = text.rfind(':');
        if (colon != std::string_view::npos) {
            if (text.find(':') != colon) {
                return std::nullopt;  // bare IPv6 without brackets is ambiguous
            }
            out.host = std::string(text.substr(0, colon));
            port_part = text.substr(colon + 1);
        } else {
            out.host = std::string(text);
        }
        if (out.host.empty()) {
            return std::nullopt;
        }
    }
    // A stray bracket is no host name, and to_string() could not write it back readably.
    if (out.host.find_first_of("[]") != std::string::npos) {
        return std::nullopt;
    }
    if (!port_part.empty() || text.back() == ':') {
        unsigned port = 0;
        auto [p, ec] = std::from_chars(port_part.data(), port_part.data() + port_part.size(), port);
        if (ec != std::errc{} || p != port_part.data() + port_part.size() || port == 0 ||
            port > 65535) {
            return std::nullopt;
        }
        out.port = static_cast<std::uint16_t>(port);
    }
    if (tls != nullptr && is_tls) {
        *tls = true;
    }
    return out;
}

client_config client_config::from_env(const env_lookup& lookup, error_code& ec, diagnostics& diag) {
    ec.clear();
    diag.clear();
    client_config cfg;
    auto fail = [&](std::string_view var, std::string_view why) {
        ec = validation_errc::invalid_environment;
        diag.set_client_message(std::string(var) + ": " + std::string(why));
        return cfg;
    };

    if (auto v = lookup("CONSUL_HTTP_ADDR"); v && !v->empty()) {
        cfg.addresses.clear();
        std::string_view rest = *v;
        while (!rest.empty()) {
            auto comma = rest.find(',');
            auto item = rest.substr(0, comma);
            bool tls = false;
            auto addr = parse_agent_address(item, &tls);
            if (!addr) {
                return fail("CONSUL_HTTP_ADDR",
                            "expected host:port, http://host:port or https://host:port");
            }
            cfg.use_tls = cfg.use_tls || tls;
            cfg.addresses.push_back(std::move(*addr));
            rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
        }
    }
    if (auto v = lookup("CONSUL_HTTP_TOKEN"); v) {
        if (has_control(*v)) {
            // The value itself is a secret: never echo it.
            return fail("CONSUL_HTTP_TOKEN", "contains a control character (value not shown)");
        }
        cfg.token = *v;
    }
    if (auto v = lookup("CONSUL_HTTP_TOKEN_FILE"); v && !v->empty()) {
        std::ifstream in(*v, std::ios::binary);
        std::ostringstream text;
        if (!in || !(text << in.rdbuf())) {
            return fail("CONSUL_HTTP_TOKEN_FILE", "cannot read '" + *v + "'");
        }
        std::string token = text.str();
        const auto first = token.find_first_not_of(" \t\r\n");
        const auto last = token.find_last_not_of(" \t\r\n");
        token = first == std::string::npos ? std::string{} : token.substr(first, last - first + 1);
        if (has_control(token)) {
            return fail("CONSUL_HTTP_TOKEN_FILE",
                        "the token contains a control character (value not shown)");
        }
        if (!token.empty()) {
            cfg.token = std::move(token);
        }
    }
    if (auto v = lookup("CONSUL_HTTP_AUTH"); v && !v->empty()) {
        if (has_control(*v)) {
            return fail("CONSUL_HTTP_AUTH", "contains a control character (value not shown)");
        }
        cfg.http_auth = *v;
    }
    if (auto v = lookup("CONSUL_NAMESPACE"); v) {
        if (has_control(*v)) {
            return fail("CONSUL_NAMESPACE", "contains a control character");
        }
        cfg.namespace_name = *v;
    }
    if (auto v = lookup("CONSUL_HTTP_SSL"); v && !v->empty()) {
        auto b = parse_bool(*v);
        if (!b) {
            return fail("CONSUL_HTTP_SSL", "expected true or false, got '" + *v + "'");
        }
        cfg.use_tls = *b;
    }
    if (auto v = lookup("CONSUL_HTTP_SSL_VERIFY"); v && !v->empty()) {
        auto b = parse_bool(*v);
        if (!b) {
            return fail("CONSUL_HTTP_SSL_VERIFY", "expected true or false, got '" + *v + "'");
        }
        cfg.tls.verify = *b;
    }
    struct path_var {
        const char* name;
        std::string* target;
    };
    for (auto [name, target] :
         {path_var{"CONSUL_CACERT", &cfg.tls.ca_file}, path_var{"CONSUL_CAPATH", &cfg.tls.ca_path},
          path_var{"CONSUL_CLIENT_CERT", &cfg.tls.cert_file},
          path_var{"CONSUL_CLIENT_KEY", &cfg.tls.key_file},
          path_var{"CONSUL_TLS_SERVER_NAME", &cfg.tls.server_name}}) {
        if (auto v = lookup(name); v) {
            if (has_control(*v)) {
                return fail(name, "contains a control character");
            }
            *target = *v;
        }
    }
    if (cfg.tls.cert_file.empty() != cfg.tls.key_file.empty()) {
        return fail(cfg.tls.cert_file.empty() ? "CONSUL_CLIENT_CERT" : "CONSUL_CLIENT_KEY",
                    "CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY must be set together");
    }
    return cfg;
}

client_config client_config::from_env(error_code& ec, diagnostics& diag) {
    return from_env(
        [](std::string_view name) -> std::optional<std::string> {
            const char* v = std::getenv(std::string(name).c_str());
            if (v == nullptr) {
                return std::nullopt;
            }
            return std::string(v);
        },
        ec, diag);
}

client_config client_config::from_env() {
    error_code ec;
    diagnostics diag;
    auto cfg = from_env(ec, diag);
    if (ec) {
        throw error(ec, diag);
    }
    return cfg;
}

error_code client_config::validate(diagnostics& diag) const {
    diag.clear();
    if (addresses.empty()) {
        diag.set_client_message("client_config::addresses is empty");
        return validation_errc::invalid_configuration;
    }
    for (const auto& a : addresses) {
        if (a.host.empty() || a.port == 0 || has_control(a.host)) {
            diag.set_client_message("client_config::addresses has an invalid entry");
            return validation_errc::invalid_address;
        }
    }
    if (pool_size_per_address == 0) {
        diag.set_client_message("client_config::pool_size_per_address must be at least 1");
        return validation_errc::invalid_configuration;
    }
    if (has_control(token)) {
        diag.set_client_message("client_config::token contains a control character");
        return validation_errc::header_injection;
    }
    if (has_control(http_auth)) {
        diag.set_client_message("client_config::http_auth contains a control character");
        return validation_errc::header_injection;
    }
    if (has_control(datacenter) || has_control(namespace_name)) {
        diag.set_client_message(
            "client_config::datacenter or namespace_name has a control character");
        return validation_errc::control_character;
    }
    if (connect_timeout.count() < 0 || request_timeout.count() < 0) {
        diag.set_client_message("client_config timeouts must not be negative");
        return validation_errc::invalid_duration;
    }
    return {};
}

}  // namespace lakemesh::consul
