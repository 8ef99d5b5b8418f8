// lakemesh-dev-consul: runs the in-process Consul dev agent as a program, flags in the style of
// `consul agent -dev`. Stops cleanly on Ctrl-C (SIGINT) or SIGTERM.
#include <lakemesh/testing/dev_consul.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <charconv>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>

namespace {

/// Reads a Go flag.Bool value: empty (the flag alone) is true.
std::optional<bool> parse_bool(std::string_view v) {
    if (v.empty() || v == "1" || v == "t" || v == "T" || v == "true" || v == "TRUE" ||
        v == "True") {
        return true;
    }
    if (v == "0" || v == "f" || v == "F" || v == "false" || v == "FALSE" || v == "False") {
        return false;
    }
    return std::nullopt;
}

/// Applies the `key = value` settings of an -hcl fragment that dev_consul supports; returns
/// the error to print for anything else.
std::optional<std::string> apply_hcl(std::string_view text,
                                     lakemesh::testing::dev_consul_options& opts) {
    const auto space = [](char c) {
        return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',' || c == ';';
    };
    const auto word = [&](std::string_view& t) {
        while (!t.empty() && space(t.front())) {
            t.remove_prefix(1);
        }
        std::size_t n = 0;
        if (!t.empty() && t.front() == '"') {
            const auto end = t.find('"', 1);
            n = end == std::string_view::npos ? t.size() : end + 1;
        } else {
            while (n < t.size() && !space(t[n]) && t[n] != '=') {
                ++n;
            }
        }
        auto w = t.substr(0, n);
        t.remove_prefix(n);
        if (w.size() >= 2 && w.front() == '"' && w.back() == '"') {
            w = w.substr(1, w.size() - 2);
        }
        return w;
    };
    while (true) {
        const auto key = word(text);
        if (key.empty()) {
            return std::nullopt;
        }
        while (!text.empty() && space(text.front())) {
            text.remove_prefix(1);
        }
        if (text.empty() || text.front() != '=') {
            return "-hcl: expected \"" + std::string(key) + " = true|false\"";
        }
        text.remove_prefix(1);
        const auto value = word(text);
        bool* target = nullptr;
        if (key == "enable_script_checks") {
            target = &opts.enable_script_checks;
        } else if (key == "enable_local_script_checks") {
            target = &opts.enable_local_script_checks;
        } else {
            return "-hcl: dev_consul supports only enable_script_checks and "
                   "enable_local_script_checks, not \"" +
                   std::string(key) + "\"";
        }
        const auto b = value.empty() ? std::nullopt : parse_bool(value);
        if (!b) {
            return "-hcl: " + std::string(key) + " must be true or false, not \"" +
                   std::string(value) + "\"";
        }
        *target = *b;
    }
}

void usage() {
    std::cout << "Usage: lakemesh-dev-consul [-dev] [options]\n"
                 "  -client ADDR        address to bind the HTTP API to (default 127.0.0.1)\n"
                 "  -http-port PORT     HTTP API port (default 8500; 0 picks a free port)\n"
                 "  -datacenter NAME    datacenter name (default dc1)\n"
                 "  -node NAME          node name (default dev-<port>)\n"
                 "  -acl-token TOKEN    enforce ACLs: every request needs this token\n"
                 "  -enable-script-checks        run script checks (Args) registered over HTTP\n"
                 "  -enable-local-script-checks  accepted as Consul does (no local config here)\n"
                 "  -hcl 'SETTINGS'     Consul HCL; only enable_script_checks and\n"
                 "                      enable_local_script_checks (= true|false) are supported\n"
                 "  -tls-cert-file F    serve HTTPS with this PEM certificate chain\n"
                 "  -tls-key-file F     and this PEM private key\n"
                 "  -log-level LEVEL    trace|debug|info|warn|error (default info)\n";
}

}  // namespace

int main(int argc, char** argv) {
    lakemesh::testing::dev_consul_options opts;
    opts.port = 8500;
    auto level = lakemesh::observe::log_level::info;
    for (int i = 1; i < argc; ++i) {
        std::string_view a = argv[i];
        // Accept both -flag and --flag, and -flag=value, as Consul's flag package does.
        if (a.starts_with("--")) {
            a.remove_prefix(1);
        }
        std::string_view value;
        bool has_value = false;
        if (auto eq = a.find('='); eq != std::string_view::npos) {
            value = a.substr(eq + 1);
            a = a.substr(0, eq);
            has_value = true;
        }
        auto next = [&]() -> std::string_view {
            if (has_value) {
                return value;
            }
            if (i + 1 >= argc) {
                std::cerr << "flag needs an argument: " << a << "\n";
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "-dev") {
            continue;
        } else if (a == "-h" || a == "-help") {
            usage();
            return 0;
        } else if (a == "-client") {
            opts.bind_address = next();
        } else if (a == "-http-port") {
            auto v = next();
            unsigned port = 0;
            auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), port);
            if (ec != std::errc{} || p != v.data() + v.size() || port > 65535) {
                std::cerr << "invalid -http-port: " << v << "\n";
                return 2;
            }
            opts.port = static_cast<std::uint16_t>(port);
        } else if (a == "-datacenter") {
            opts.datacenter = next();
        } else if (a == "-node") {
            opts.node_name = next();
        } else if (a == "-enable-script-checks" || a == "-enable-local-script-checks") {
            auto b = parse_bool(has_value ? value : std::string_view{});
            if (!b) {
                std::cerr << "invalid boolean value \"" << value << "\" for " << a << "\n";
                return 2;
            }
            (a == "-enable-script-checks" ? opts.enable_script_checks
                                          : opts.enable_local_script_checks) = *b;
        } else if (a == "-hcl") {
            if (auto err = apply_hcl(next(), opts)) {
                std::cerr << "==> " << *err << "\n";
                return 1;
            }
        } else if (a == "-acl-token") {
            opts.acl_token = next();
        } else if (a == "-tls-cert-file") {
            opts.tls_cert_file = next();
        } else if (a == "-tls-key-file") {
            opts.tls_key_file = next();
        } else if (a == "-log-level") {
            auto v = next();
            using lakemesh::observe::log_level;
            if (v == "trace")
                level = log_level::trace;
            else if (v == "debug")
                level = log_level::debug;
            else if (v == "info")
                level = log_level::info;
            else if (v == "warn")
                level = log_level::warn;
            else if (v == "error")
                level = log_level::error;
            else {
                std::cerr << "invalid -log-level: " << v << "\n";
                return 2;
            }
        } else {
            std::cerr << "unknown flag: " << a << "\n";
            usage();
            return 2;
        }
    }
    opts.log = lakemesh::observe::logger(lakemesh::observe::make_spdlog_sink("dev-consul", level),
                                         "dev_consul");
    try {
        // Handle signals before announcing the address: a script that reads it and sends
        // SIGINT at once must get a clean stop, not the default disposition.
        boost::asio::io_context io;
        boost::asio::signal_set signals(io, SIGINT, SIGTERM);
        signals.async_wait([](const boost::system::error_code&, int sig) {
            std::cout << "==> caught signal " << sig << ", shutting down\n" << std::flush;
        });
        lakemesh::testing::dev_consul agent(opts);
        std::cout << "==> lakemesh dev agent running (Ctrl-C to stop)\n"
                  << "    Datacenter: " << agent.datacenter() << "\n"
                  << "          Node: " << agent.node_name() << "\n"
                  << "      HTTP API: " << agent.url() << "\n"
                  << "export CONSUL_HTTP_ADDR=" << agent.url() << "\n"
                  << std::flush;
        io.run();
    } catch (const std::exception& e) {
        std::cerr << "lakemesh-dev-consul: " << e.what() << "\n";
        return 1;
    }
    std::cout << "==> dev agent stopped\n";
    return 0;
}
