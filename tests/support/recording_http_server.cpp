#include "recording_http_server.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include <optional>
#include <thread>

namespace lakemesh::test {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

struct recording_http_server::impl {
    asio::io_context io;
    tcp::acceptor acceptor{io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)};
    std::thread thread;
    mutable std::mutex mutex;
    std::vector<request> seen;
    std::optional<std::string> body;
    std::map<std::string, std::string> headers;
};

recording_http_server::recording_http_server() : impl_(std::make_unique<impl>()) {
    auto accept = std::make_shared<std::function<void()>>();
    *accept = [this, accept] {
        impl_->acceptor.async_accept([this, accept](boost::system::error_code ec, tcp::socket s) {
            if (ec) {
                return;
            }
            ++accepted;
            boost::beast::flat_buffer buffer;
            http::request<http::string_body> req;
            http::read(s, buffer, req, ec);
            if (!ec) {
                request r{
                    std::string(req.method_string()), std::string(req.target()), req.body(), {}};
                for (const auto& f : req) {
                    r.headers[std::string(f.name_string())] = std::string(f.value());
                }
                unsigned code = status.load();
                http::response<http::string_body> res{static_cast<http::status>(code), 11};
                {
                    std::lock_guard lock(impl_->mutex);
                    impl_->seen.push_back(std::move(r));
                    res.body() = impl_->body.value_or("body-" + std::to_string(code));
                    for (const auto& [k, v] : impl_->headers) {
                        res.set(k, v);
                    }
                }
                ++hits;
                res.keep_alive(false);
                res.prepare_payload();
                http::write(s, res, ec);
                s.shutdown(tcp::socket::shutdown_both, ec);
            }
            (*accept)();
        });
    };
    (*accept)();
    impl_->thread = std::thread([this, accept] {
        impl_->io.run();
        // Break the accept loop's self-reference once the server stops.
        *accept = nullptr;
    });
}

recording_http_server::~recording_http_server() {
    impl_->io.stop();
    impl_->thread.join();
}

std::uint16_t recording_http_server::port() const {
    return impl_->acceptor.local_endpoint().port();
}

void recording_http_server::set_body(std::string body) {
    std::lock_guard lock(impl_->mutex);
    impl_->body = std::move(body);
}

void recording_http_server::set_header(std::string name, std::string value) {
    std::lock_guard lock(impl_->mutex);
    impl_->headers[std::move(name)] = std::move(value);
}

std::vector<recording_http_server::request> recording_http_server::requests() const {
    std::lock_guard lock(impl_->mutex);
    return impl_->seen;
}

recording_http_server::request recording_http_server::last() const {
    std::lock_guard lock(impl_->mutex);
    return impl_->seen.empty() ? request{} : impl_->seen.back();
}

std::string recording_http_server::last_header(const std::string& name) const {
    auto r = last();
    auto it = r.headers.find(name);
    return it == r.headers.end() ? std::string{} : it->second;
}

}  // namespace lakemesh::test
