// lakemesh-bench-dev-consul-kv: keep-alive KV GET throughput of dev_consul.
//   lakemesh-bench-dev-consul-kv [--concurrency N] [--duration S] [--addr HOST:PORT]
// Without --addr it starts an embedded dev_consul (its io thread is the one core it uses) and
// loads it from a client thread; with --addr it loads an external agent. Prints one line:
//   dev_consul kv get: concurrency=N duration=Ss requests=R rps=X
#include <lakemesh/testing/dev_consul.hpp>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <optional>
#include <string>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using steady = std::chrono::steady_clock;

namespace {

struct load_conn : std::enable_shared_from_this<load_conn> {
    load_conn(asio::io_context& io, const std::string& host, const std::string& target,
              steady::time_point end, std::uint64_t& done)
        : stream(io), end(end), done(done) {
        req = {http::verb::get, target, 11};
        req.set(http::field::host, host);
        req.keep_alive(true);
    }
    void start(const tcp::endpoint& ep) {
        stream.socket().connect(ep);
        stream.socket().set_option(tcp::no_delay(true));
        send();
    }
    void send() {
        if (steady::now() >= end) {
            return;
        }
        http::async_write(
            stream, req, [self = shared_from_this()](beast::error_code ec, std::size_t) {
                if (ec) {
                    std::cerr << "write: " << ec.message() << "\n";
                    return;
                }
                self->res = {};
                http::async_read(self->stream, self->buffer, self->res,
                                 [self](beast::error_code ec2, std::size_t) {
                                     if (ec2 || self->res.result() != http::status::ok) {
                                         std::cerr << "read: " << ec2.message() << "\n";
                                         return;
                                     }
                                     ++self->done;
                                     self->send();
                                 });
            });
    }
    beast::tcp_stream stream;
    beast::flat_buffer buffer;
    http::request<http::empty_body> req;
    http::response<http::string_body> res;
    steady::time_point end;
    std::uint64_t& done;
};

}  // namespace

int main(int argc, char** argv) {
    int concurrency = 1;
    double duration = 5;
    std::string addr;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string a = argv[i];
        if (a == "--concurrency") {
            concurrency = std::atoi(argv[i + 1]);
        } else if (a == "--duration") {
            duration = std::atof(argv[i + 1]);
        } else if (a == "--addr") {
            addr = argv[i + 1];
        } else {
            std::cerr << "usage: " << argv[0]
                      << " [--concurrency N] [--duration S] [--addr HOST:PORT]\n";
            return 2;
        }
    }
    if (concurrency < 1 || duration <= 0) {
        std::cerr << "concurrency must be >= 1 and duration > 0\n";
        return 2;
    }
    std::optional<lakemesh::testing::dev_consul> dev;
    if (addr.empty()) {
        dev.emplace();
        addr = dev->address();
    }
    auto colon = addr.rfind(':');
    std::string host = addr.substr(0, colon);
    auto port = static_cast<unsigned short>(std::atoi(addr.c_str() + colon + 1));
    asio::io_context io;
    tcp::endpoint ep(asio::ip::make_address(host), port);
    {
        // Seed the key the load reads.
        beast::tcp_stream s(io);
        s.connect(ep);
        http::request<http::string_body> put{http::verb::put, "/v1/kv/bench/key", 11};
        put.set(http::field::host, addr);
        put.body() = "some value of a realistic size for a service config entry";
        put.prepare_payload();
        http::write(s, put);
        beast::flat_buffer b;
        http::response<http::string_body> r;
        http::read(s, b, r);
    }
    std::uint64_t done = 0;
    auto start = steady::now();
    auto end = start + std::chrono::duration_cast<steady::duration>(
                           std::chrono::duration<double>(duration));
    for (int i = 0; i < concurrency; ++i) {
        std::make_shared<load_conn>(io, addr, "/v1/kv/bench/key", end, done)->start(ep);
    }
    io.run();
    double secs = std::chrono::duration<double>(steady::now() - start).count();
    std::printf("dev_consul kv get: concurrency=%d duration=%.1fs requests=%llu rps=%.0f\n",
                concurrency, secs, static_cast<unsigned long long>(done), done / secs);
    return 0;
}
