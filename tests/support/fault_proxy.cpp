#include "fault_proxy.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <future>
#include <list>
#include <mutex>
#include <thread>

namespace lakemesh::test {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

/// Byte `i` of the garbage for `seed`: a hash of both, so any chunking gives the same bytes.
char garbage_byte(std::uint32_t seed, std::uint64_t i) {
    std::uint64_t x = (static_cast<std::uint64_t>(seed) << 32) ^ (i * 0x9E3779B97F4A7C15ull);
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return static_cast<char>(x & 0xff);
}

/// One relayed connection. Everything runs on the proxy's thread.
struct relay : std::enable_shared_from_this<relay> {
    tcp::socket in;
    tcp::socket out;
    asio::steady_timer wake;  // cancelled when the fault changes (releases a stall)
    std::shared_ptr<const proxy_fault> fault;
    std::uint64_t answered = 0;     // answer bytes taken for the client since `fault` took effect
    std::uint64_t body_offset = 0;  // answer body bytes seen since `fault` took effect
    std::string head_tail;          // last bytes of the answer head, to find "\r\n\r\n"
    bool in_body = false;
    bool closed = false;

    relay(tcp::socket s, std::shared_ptr<const proxy_fault> f)
        : in(std::move(s)),
          out(in.get_executor()),
          wake(in.get_executor(), asio::steady_timer::time_point::max()),
          fault(std::move(f)) {}

    void set_fault(std::shared_ptr<const proxy_fault> f) {
        fault = std::move(f);
        answered = 0;
        body_offset = 0;
        head_tail.clear();
        in_body = false;
        wake.cancel();
    }
    void close(bool reset) {
        if (closed) {
            return;
        }
        closed = true;
        error_code ec;
        if (reset && in.is_open()) {
            in.set_option(asio::socket_base::linger(true, 0), ec);
        }
        in.close(ec);
        out.close(ec);
        wake.cancel();
    }
};

}  // namespace

struct fault_proxy::impl : std::enable_shared_from_this<impl> {
    asio::io_context io;
    tcp::endpoint target;
    std::uint16_t listen_port = 0;
    std::optional<tcp::acceptor> acceptor;
    std::list<std::weak_ptr<relay>> relays;
    std::shared_ptr<const proxy_fault> base = std::make_shared<proxy_fault>();
    std::shared_ptr<const proxy_fault> next;
    std::size_t next_left = 0;
    std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
    std::thread thread;

    struct {
        std::atomic<std::uint64_t> accepted{0}, open{0}, bytes_up{0}, bytes_down{0}, stalled{0},
            dropped_bytes{0}, resets{0}, truncations{0}, corrupted{0}, faults_applied{0};
    } n;
    mutable std::mutex m;
    mutable std::condition_variable cv;

    void changed() {
        { std::lock_guard lock(m); }
        cv.notify_all();
    }
    void count(std::atomic<std::uint64_t>& c, std::uint64_t by = 1) {
        c.fetch_add(by);
        changed();
    }
    void applied(std::atomic<std::uint64_t>& c) {
        c.fetch_add(1);
        n.faults_applied.fetch_add(1);
        changed();
    }

    void listen() {
        tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), listen_port);
        // Listening again binds the port it had; meanwhile a parallel test's outgoing connection
        // may have been given it as its local port for a moment. Retry for up to 5 s rather than
        // fail (a throw here would end the process).
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
                throw boost::system::system_error(ec, "fault_proxy: bind");
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
                return;  // closed by refuse()
            }
            self->on_accept(std::move(s));
            if (self->acceptor) {
                self->accept();
            }
        });
    }

    void on_accept(tcp::socket s) {
        auto f = base;
        if (next_left > 0) {
            f = next;
            if (--next_left == 0) {
                next.reset();
            }
        }
        auto r = std::make_shared<relay>(std::move(s), f);
        relays.remove_if([](const std::weak_ptr<relay>& w) { return w.expired(); });
        relays.push_back(r);
        n.open.fetch_add(1);
        count(n.accepted);
        if (f->reset_on_accept) {
            // Counted before the close: a test that saw the reset reads the counter at once.
            applied(n.resets);
            finish(r, true);
            return;
        }
        auto self = shared_from_this();
        r->out.async_connect(target, [self, r](error_code ec) {
            if (ec) {
                self->finish(r, false);
                return;
            }
            asio::co_spawn(self->io, self->upstream(r), asio::detached);
            asio::co_spawn(self->io, self->downstream(r), asio::detached);
        });
    }

    void finish(const std::shared_ptr<relay>& r, bool reset) {
        if (!r->closed) {
            r->close(reset);
            n.open.fetch_sub(1);
            changed();
        }
    }

    /// Client -> target: passed on, unless the connection's fault is a blackhole.
    asio::awaitable<void> upstream(std::shared_ptr<relay> r) {
        std::array<char, 16384> buf{};
        for (;;) {
            auto [ec, len] = co_await r->in.async_read_some(asio::buffer(buf), use_tuple);
            if (ec || r->closed) {
                finish(r, false);
                co_return;
            }
            if (r->fault->blackhole) {
                n.dropped_bytes.fetch_add(len);
                applied(n.faults_applied);
                continue;
            }
            auto [wec, wn] =
                co_await asio::async_write(r->out, asio::buffer(buf.data(), len), use_tuple);
            if (wec) {
                finish(r, false);
                co_return;
            }
            count(n.bytes_up, wn);
        }
    }

    /// Waits until the fault changes (or the connection closes).
    asio::awaitable<void> wait_for_change(std::shared_ptr<relay> r) {
        r->wake.expires_at(asio::steady_timer::time_point::max());
        co_await r->wake.async_wait(use_tuple);
    }

    /// Waits `d`; ends early when the fault changes or the connection closes.
    asio::awaitable<void> pause(std::shared_ptr<relay> r, std::chrono::steady_clock::duration d) {
        r->wake.expires_after(d);
        co_await r->wake.async_wait(use_tuple);
    }

    /// Target -> client, through the connection's fault.
    asio::awaitable<void> downstream(std::shared_ptr<relay> r) {
        std::array<char, 16384> buf{};
        for (;;) {
            auto [ec, len] = co_await r->out.async_read_some(asio::buffer(buf), use_tuple);
            if (ec || r->closed) {
                finish(r, false);
                co_return;
            }
            std::string chunk(buf.data(), len);
            bool ok = co_await deliver(r, std::move(chunk));
            if (!ok) {
                co_return;
            }
        }
    }

    /// Passes one chunk of the answer on; false when the connection is done.
    asio::awaitable<bool> deliver(std::shared_ptr<relay> r, std::string chunk) {
        // Stall: hold the bytes until a fault without stall is set.
        if (r->fault->stall) {
            count(n.stalled);
            n.faults_applied.fetch_add(1);
            while (r->fault->stall && !r->closed) {
                co_await wait_for_change(r);
            }
            n.stalled.fetch_sub(1);
            changed();
        }
        if (r->closed) {
            co_return false;
        }
        if (r->fault->blackhole) {
            n.dropped_bytes.fetch_add(chunk.size());
            applied(n.faults_applied);
            co_return true;
        }
        if (r->fault->latency.count() > 0) {
            n.faults_applied.fetch_add(1);
            co_await pause(r, r->fault->latency);
            if (r->closed) {
                co_return false;
            }
        }
        // The fault may have changed while waiting; from here on it is read once per chunk.
        auto f = r->fault;
        const std::uint64_t start = r->answered;
        bool corrupted = false;
        for (std::size_t off : f->flip_offsets) {
            if (off >= start && off < start + chunk.size()) {
                chunk[off - start] = static_cast<char>(chunk[off - start] ^ 0xff);
                corrupted = true;
            }
        }
        if (f->garbage_body) {
            for (char& c : chunk) {
                if (r->in_body) {
                    c = garbage_byte(f->seed, r->body_offset++);
                    corrupted = true;
                    continue;
                }
                r->head_tail.push_back(c);
                if (r->head_tail.size() > 4) {
                    r->head_tail.erase(0, r->head_tail.size() - 4);
                }
                r->in_body = r->head_tail == "\r\n\r\n";
            }
        }
        if (corrupted) {
            applied(n.corrupted);
        }
        std::optional<std::size_t> cut;
        bool reset = false;
        if (f->reset_after && *f->reset_after < start + chunk.size()) {
            cut = *f->reset_after > start ? *f->reset_after - start : 0;
            reset = true;
        }
        if (f->truncate_after && *f->truncate_after < start + chunk.size()) {
            auto t = *f->truncate_after > start ? *f->truncate_after - start : 0;
            if (!cut || t < *cut) {
                cut = t;
                reset = false;
            }
        }
        if (cut) {
            chunk.resize(*cut);
        }
        // Counted as the chunk is taken, not once written: a fault set while this write is in
        // flight (the client may already have the bytes) counts from the next chunk on.
        r->answered = start + chunk.size();
        if (!co_await write_out(r, f, chunk)) {
            co_return false;
        }
        if (cut) {
            // Counted before the client can see the end: a test that saw it reads the counter
            // at once.
            if (reset) {
                applied(n.resets);
                finish(r, true);
            } else {
                applied(n.truncations);
                error_code ignored;
                r->in.shutdown(tcp::socket::shutdown_send, ignored);
                finish(r, false);
            }
            co_return false;
        }
        co_return true;
    }

    asio::awaitable<bool> write_out(std::shared_ptr<relay> r, std::shared_ptr<const proxy_fault> f,
                                    std::string chunk) {
        std::size_t done = 0;
        const std::size_t bps = f->bytes_per_second;
        // Throttled: slices of a twentieth of a second's worth, 50 ms apart.
        const std::size_t slice = bps == 0 ? chunk.size() : std::max<std::size_t>(1, bps / 20);
        while (done < chunk.size()) {
            std::size_t len = std::min(slice, chunk.size() - done);
            if (bps != 0) {
                n.faults_applied.fetch_add(1);
                co_await pause(r, std::chrono::nanoseconds(len * 1'000'000'000ull / bps));
                if (r->closed) {
                    co_return false;
                }
            }
            auto [ec, wn] = co_await asio::async_write(
                r->in, asio::buffer(chunk.data() + done, len), use_tuple);
            if (ec) {
                finish(r, false);
                co_return false;
            }
            done += wn;
            count(n.bytes_down, wn);
        }
        co_return true;
    }

    void set_all(std::shared_ptr<const proxy_fault> f) {
        base = f;
        for (auto& w : relays) {
            if (auto r = w.lock()) {
                r->set_fault(f);
            }
        }
    }
    void refuse() {
        error_code ec;
        if (acceptor) {
            acceptor->close(ec);
            acceptor.reset();
        }
    }
    void drop(bool reset) {
        for (auto& w : relays) {
            if (auto r = w.lock()) {
                finish(r, reset);
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

fault_proxy::fault_proxy(std::string target_host, std::uint16_t target_port)
    : impl_(std::make_shared<impl>()) {
    impl_->target = tcp::endpoint(asio::ip::make_address(target_host), target_port);
    impl_->listen();
    impl_->work.emplace(impl_->io.get_executor());
    impl_->thread = std::thread([i = impl_.get()] { i->io.run(); });
}

fault_proxy::~fault_proxy() {
    // Closing everything lets each pending operation finish (aborted) and release what it
    // holds; then run() runs out of work and the thread ends.
    impl_->on_thread([this] {
        impl_->refuse();
        impl_->drop(false);
        impl_->work.reset();
    });
    impl_->thread.join();
}

std::uint16_t fault_proxy::port() const {
    return impl_->listen_port;
}

void fault_proxy::set_fault(proxy_fault f) {
    auto sp = std::make_shared<const proxy_fault>(std::move(f));
    impl_->on_thread([&] { impl_->set_all(sp); });
}

void fault_proxy::set_fault_for_next(proxy_fault f, std::size_t k) {
    auto sp = std::make_shared<const proxy_fault>(std::move(f));
    impl_->on_thread([&] {
        impl_->next = k > 0 ? sp : nullptr;
        impl_->next_left = k;
    });
}

void fault_proxy::clear() {
    impl_->on_thread([this] {
        impl_->next.reset();
        impl_->next_left = 0;
        impl_->set_all(std::make_shared<const proxy_fault>());
    });
}

void fault_proxy::refuse() {
    impl_->on_thread([this] { impl_->refuse(); });
}

void fault_proxy::accept_again() {
    impl_->on_thread([this] {
        if (!impl_->acceptor) {
            impl_->listen();
        }
    });
}

void fault_proxy::drop_connections(bool reset) {
    impl_->on_thread([this, reset] { impl_->drop(reset); });
}

proxy_counters fault_proxy::counters() const {
    const auto& n = impl_->n;
    proxy_counters c;
    c.accepted = n.accepted.load();
    c.open = n.open.load();
    c.bytes_up = n.bytes_up.load();
    c.bytes_down = n.bytes_down.load();
    c.stalled = n.stalled.load();
    c.dropped_bytes = n.dropped_bytes.load();
    c.resets = n.resets.load();
    c.truncations = n.truncations.load();
    c.corrupted = n.corrupted.load();
    c.faults_applied = n.faults_applied.load();
    return c;
}

bool fault_proxy::wait_until(const std::function<bool(const proxy_counters&)>& pred,
                             std::chrono::milliseconds limit) const {
    std::unique_lock lock(impl_->m);
    return impl_->cv.wait_for(lock, limit, [&] { return pred(counters()); });
}

std::string fault_proxy::garbage(std::uint32_t seed, std::size_t n) {
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i) {
        s[i] = garbage_byte(seed, i);
    }
    return s;
}

}  // namespace lakemesh::test
