#include "tls_http_server.hpp"

#include <boost/asio/ssl/stream.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include <memory>

namespace lakemesh::test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

struct tls_http_server::session : std::enable_shared_from_this<session> {
    session(tls_http_server& server, tcp::socket socket)
        : server(server), stream(std::move(socket), server.ctx_) {}

    tls_http_server& server;
    asio::ssl::stream<tcp::socket> stream;
    beast::flat_buffer buffer;
    http::request<http::string_body> req;
    http::response<http::string_body> res;

    void start() {
        stream.async_handshake(
            asio::ssl::stream_base::server, [self = shared_from_this()](error_code ec) {
                if (ec) {
                    return;  // the client refused us, or spoke plain HTTP
                }
                ++self->server.handshakes;
                const char* sni =
                    SSL_get_servername(self->stream.native_handle(), TLSEXT_NAMETYPE_host_name);
                self->server.last_sni = sni != nullptr ? sni : "";
                self->read();
            });
    }
    void read() {
        req = {};
        http::async_read(stream, buffer, req,
                         [self = shared_from_this()](error_code ec, std::size_t) {
                             if (!ec) {
                                 self->answer();
                             }
                         });
    }
    void answer() {
        server.targets.emplace_back(req.target());
        res = {};
        res.version(11);
        res.result(http::status::ok);
        res.body() = "tls:" + std::string(req.target());
        res.prepare_payload();
        http::async_write(stream, res, [self = shared_from_this()](error_code ec, std::size_t) {
            if (!ec) {
                self->read();
            }
        });
    }
};

tls_http_server::tls_http_server(asio::io_context& io, const self_signed_cert& cert)
    : acceptor_(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    ctx_.use_certificate_chain_file(cert.cert_file());
    ctx_.use_private_key_file(cert.key_file(), asio::ssl::context::pem);
    accept();
}

void tls_http_server::accept() {
    acceptor_.async_accept([this](error_code ec, tcp::socket s) {
        if (ec) {
            return;
        }
        ++accepted;
        std::make_shared<session>(*this, std::move(s))->start();
        accept();
    });
}

}  // namespace lakemesh::test
