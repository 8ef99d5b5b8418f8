#include "consul_target.hpp"

#include <lakemesh/consul/client_config.hpp>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <random>
#include <stdexcept>
#include <thread>

namespace lakemesh::test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

std::optional<std::string> http_reply::header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    if (it == headers.end()) {
        return std::nullopt;
    }
    return it->second;
}

std::uint64_t http_reply::index() const {
    auto h = header("x-consul-index");
    return h ? std::stoull(*h) : 0;
}

struct raw_http::impl {
    std::string host;
    std::uint16_t port;
    asio::io_context io;
    beast::tcp_stream stream{io};
    beast::flat_buffer buffer;
    bool connected = false;

    void connect() {
        tcp::resolver resolver(io);
        stream.connect(resolver.resolve(host, std::to_string(port)));
        stream.socket().set_option(tcp::no_delay(true));
        buffer.clear();
        connected = true;
    }
    void close() {
        beast::error_code ec;
        stream.socket().close(ec);
        connected = false;
    }
    http_reply read_reply() {
        http::response_parser<http::string_body> parser;
        parser.body_limit(256u * 1024u * 1024u);
        parser.eager(true);
        http::read(stream, buffer, parser);
        auto res = parser.release();
        http_reply out;
        out.status = res.result_int();
        out.body = res.body();
        for (const auto& f : res) {
            std::string name(f.name_string());
            std::transform(name.begin(), name.end(), name.begin(),
                           [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
            out.headers[name] = std::string(f.value());
        }
        if (!res.keep_alive()) {
            close();
        }
        return out;
    }
};

raw_http::raw_http(std::string host, std::uint16_t port, std::string token)
    : impl_(std::make_unique<impl>()), token_(std::move(token)) {
    impl_->host = std::move(host);
    impl_->port = port;
}
raw_http::~raw_http() = default;
raw_http::raw_http(raw_http&&) noexcept = default;
raw_http& raw_http::operator=(raw_http&&) noexcept = default;

void raw_http::disconnect() {
    impl_->close();
}

http_reply raw_http::request(const std::string& method, const std::string& target,
                             const std::string& body,
                             const std::map<std::string, std::string>& headers) {
    http::request<http::string_body> req{http::string_to_verb(method), target, 11};
    req.set(http::field::host, impl_->host + ":" + std::to_string(impl_->port));
    if (!token_.empty()) {
        req.set("X-Consul-Token", token_);
    }
    for (const auto& [k, v] : headers) {
        req.set(k, v);
    }
    req.body() = body;
    req.keep_alive(true);
    req.prepare_payload();
    // One transparent retry when a kept-alive connection turns out to be closed.
    for (int attempt = 0;; ++attempt) {
        try {
            if (!impl_->connected) {
                impl_->connect();
            }
            http::write(impl_->stream, req);
            return impl_->read_reply();
        } catch (const boost::system::system_error&) {
            impl_->close();
            if (attempt >= 1) {
                throw;
            }
        }
    }
}

http_reply raw_http::raw(const std::string& bytes) {
    if (!impl_->connected) {
        impl_->connect();
    }
    asio::write(impl_->stream.socket(), asio::buffer(bytes));
    return impl_->read_reply();
}

bool consul_target::real_agent() {
    const char* v = std::getenv("CONSUL_HTTP_ADDR");
    return v != nullptr && *v != '\0';
}

consul_target::consul_target(testing::dev_consul_options opts) {
    if (real_agent()) {
        // Read the variables as the library does (http:// or https://, [v6]:port, token file).
        error_code ec;
        diagnostics diag;
        auto cfg = consul::client_config::from_env(ec, diag);
        if (ec) {
            throw std::runtime_error("CONSUL_* environment: " + diag.to_string());
        }
        if (cfg.use_tls) {
            // The raw HTTP helper the tests share speaks plain HTTP; HTTPS is covered against
            // dev_consul by client_tls.
            throw std::runtime_error(
                "integration tests need the real agent's plain HTTP address "
                "(CONSUL_HTTP_ADDR=http://host:port, CONSUL_HTTP_SSL unset)");
        }
        host_ = cfg.addresses.front().host;
        port_ = cfg.addresses.front().port;
        token_ = cfg.token;
        return;
    }
    token_ = opts.acl_token;
    dev_ = std::make_unique<testing::dev_consul>(std::move(opts));
    host_ = "127.0.0.1";
    port_ = dev_->port();
}

std::string consul_target::node_name() const {
    if (dev_) {
        return dev_->node_name();
    }
    auto c = client();
    return c.get("/v1/agent/self").json_body()["Config"]["NodeName"].get<std::string>();
}

namespace {

const char* control_command() {
    const char* v = std::getenv("LAKEMESH_CONSUL_CONTROL");
    return v != nullptr && *v != '\0' ? v : nullptr;
}

void run_control(const char* verb) {
    const char* cmd = control_command();
    if (cmd == nullptr) {
        throw std::runtime_error(std::string("cannot ") + verb +
                                 " a real agent without LAKEMESH_CONSUL_CONTROL");
    }
    const std::string line = std::string(cmd) + " " + verb;
    if (std::system(line.c_str()) != 0) {
        throw std::runtime_error("agent control failed: " + line);
    }
}

}  // namespace

bool consul_target::can_control() const {
    return dev_ != nullptr || control_command() != nullptr;
}

void consul_target::stop_agent() {
    if (dev_) {
        dev_->stop();
    } else {
        run_control("stop");
    }
}

void consul_target::start_agent() {
    if (dev_) {
        dev_->start();
    } else {
        run_control("start");
    }
}

void consul_target::restart_agent(bool keep_state) {
    if (dev_) {
        dev_->restart(keep_state);
    } else {
        run_control(keep_state ? "restart" : "restart-clean");
    }
}

std::string unique_name(const std::string& stem) {
    static std::atomic<unsigned> counter{0};
    static const unsigned run = std::random_device{}() % 100000;
    std::string test = "x";
    if (const auto* info = ::testing::UnitTest::GetInstance()->current_test_info()) {
        test = std::string(info->test_suite_name()) + "-" + info->name();
    }
    std::replace_if(
        test.begin(), test.end(),
        [](char c) { return !std::isalnum(static_cast<unsigned char>(c)) && c != '-'; }, '-');
    return "lakemesh-test-" + stem + "-" + test + "-" + std::to_string(run) + "-" +
           std::to_string(counter++);
}

bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds limit) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
        if (pred()) {
            return true;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return pred();
}

}  // namespace lakemesh::test
