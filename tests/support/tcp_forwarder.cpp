#include "tcp_forwarder.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

#include <array>
#include <atomic>
#include <future>
#include <list>
#include <optional>
#include <thread>

namespace lakemesh::test {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;

namespace {

/// One relayed connection: two sockets and a buffer per direction.
struct relay : std::enable_shared_from_this<relay> {
    tcp::socket in;
    tcp::socket out;
    std::array<char, 16384> up{};
    std::array<char, 16384> down{};

    explicit relay(tcp::socket s) : in(std::move(s)), out(in.get_executor()) {}

    void close() {
        error_code ec;
        in.close(ec);
        out.close(ec);
    }
    void pump(tcp::socket& from, tcp::socket& to, std::array<char, 16384>& buf) {
        from.async_read_some(asio::buffer(buf), [self = shared_from_this(), &from, &to, &buf](
                                                    error_code ec, std::size_t n) {
            if (ec) {
                self->close();
                return;
            }
            asio::async_write(to, asio::buffer(buf.data(), n),
                              [self, &from, &to, &buf](error_code wec, std::size_t) {
                                  if (wec) {
                                      self->close();
                                      return;
                                  }
                                  self->pump(from, to, buf);
                              });
        });
    }
};

}  // namespace

struct tcp_forwarder::impl : std::enable_shared_from_this<impl> {
    asio::io_context io;
    tcp::endpoint target;
    std::uint16_t listen_port = 0;
    std::optional<tcp::acceptor> acceptor;
    std::list<std::weak_ptr<relay>> relays;
    std::atomic<std::uint64_t> n_accepted{0};
    std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
    std::thread thread;

    void listen() {
        tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), listen_port);
        // restore() binds the port it had again; between cut() and restore() a parallel test's
        // outgoing connection may have been given it as its local port for a moment. Retry for
        // up to 5 s rather than fail the test (a throw here would end the process).
        for (int tries = 0;; ++tries) {
            acceptor.emplace(io);
            acceptor->open(ep.protocol());
            acceptor->set_option(tcp::acceptor::reuse_address(true));
            error_code ec;
            acceptor->bind(ep, ec);
            if (!ec) {
                break;
            }
            acceptor.reset();
            if (listen_port == 0 || tries >= 250) {
                throw boost::system::system_error(ec, "tcp_forwarder: bind");
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        acceptor->listen();
        listen_port = acceptor->local_endpoint().port();
        accept();
    }
    void accept() {
        acceptor->async_accept([self = shared_from_this()](error_code ec, tcp::socket s) {
            if (ec) {
                return;  // closed by cut()
            }
            self->n_accepted.fetch_add(1);
            auto r = std::make_shared<relay>(std::move(s));
            self->relays.push_back(r);
            r->out.async_connect(self->target, [r](error_code cec) {
                if (cec) {
                    r->close();
                    return;
                }
                r->pump(r->in, r->out, r->up);
                r->pump(r->out, r->in, r->down);
            });
            self->accept();
        });
    }
    void cut() {
        error_code ec;
        if (acceptor) {
            acceptor->close(ec);
            acceptor.reset();
        }
        for (auto& w : relays) {
            if (auto r = w.lock()) {
                r->close();
            }
        }
        relays.clear();
    }
    template <class F>
    void on_thread(F f) {
        std::promise<void> done;
        asio::post(io, [&] {
            f();
            done.set_value();
        });
        done.get_future().get();
    }
};

tcp_forwarder::tcp_forwarder(std::string target_host, std::uint16_t target_port)
    : impl_(std::make_shared<impl>()) {
    impl_->target = tcp::endpoint(asio::ip::make_address(target_host), target_port);
    impl_->listen();
    impl_->work.emplace(impl_->io.get_executor());
    impl_->thread = std::thread([i = impl_.get()] { i->io.run(); });
}

tcp_forwarder::~tcp_forwarder() {
    // Closing everything lets each pending operation finish (aborted) and release what it
    // holds; then run() runs out of work and the thread ends.
    impl_->on_thread([this] {
        impl_->cut();
        impl_->work.reset();
    });
    impl_->thread.join();
}

std::uint16_t tcp_forwarder::port() const {
    return impl_->listen_port;
}

void tcp_forwarder::cut() {
    impl_->on_thread([this] { impl_->cut(); });
}

void tcp_forwarder::restore() {
    impl_->on_thread([this] {
        if (!impl_->acceptor) {
            impl_->listen();
        }
    });
}

std::uint64_t tcp_forwarder::accepted() const {
    return impl_->n_accepted.load();
}

}  // namespace lakemesh::test
