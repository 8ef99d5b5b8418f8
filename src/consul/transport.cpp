#include "transport.hpp"

#include "meta_codec.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <deque>
#include <optional>
#include <vector>

namespace lakemesh::consul::detail {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using asio::awaitable;
using asio::use_awaitable;

namespace {

struct connection {
    std::optional<beast::tcp_stream> plain;
    std::optional<asio::ssl::stream<beast::tcp_stream>> tls;
    beast::flat_buffer buffer;

    beast::tcp_stream& lowest() { return tls ? tls->next_layer() : *plain; }
    void close() {
        beast::error_code ec;
        lowest().socket().shutdown(tcp::socket::shutdown_both, ec);
        lowest().socket().close(ec);
    }
};

struct pool {
    agent_address address;
    std::vector<std::unique_ptr<connection>> idle;
    /// Non-blocking exchanges holding a connection from this pool.
    std::size_t busy = 0;
    /// All connections open (idle, busy and blocking).
    std::size_t open = 0;
    std::deque<std::shared_ptr<asio::steady_timer>> waiters;
};

bool is_verify_failure(const error_code& ec) {
    return ec.category() == asio::error::get_ssl_category() &&
           ERR_GET_REASON(static_cast<unsigned long>(ec.value())) ==
               SSL_R_CERTIFICATE_VERIFY_FAILED;
}

}  // namespace

struct transport::state {
    std::deque<pool> pools;  // deque: pools are neither copied nor moved once made
    std::size_t preferred = 0;
    std::unique_ptr<asio::ssl::context> tls;
    /// Why the TLS settings cannot be used (a CA or certificate file that does not load);
    /// every exchange fails with it rather than with a puzzling handshake error.
    std::string tls_error;
    bool shut_down = false;
};

transport::transport(asio::any_io_executor ex, client_config cfg, observe::logger log)
    : ex_(std::move(ex)),
      cfg_(std::move(cfg)),
      log_(std::move(log)),
      st_(std::make_unique<state>()) {
    log_.add_secret(cfg_.token);
    for (const auto& a : cfg_.addresses) {
        st_->pools.emplace_back().address = a;
    }
    if (cfg_.use_tls) {
        auto ctx = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_client);
        ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                         asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                         asio::ssl::context::no_tlsv1_1);
        error_code ec;
        if (!cfg_.tls.ca_file.empty()) {
            ctx->load_verify_file(cfg_.tls.ca_file, ec);
        } else if (cfg_.tls.ca_path.empty()) {
            ctx->set_default_verify_paths(ec);
        }
        if (ec) {
            st_->tls_error =
                cfg_.tls.ca_file.empty()
                    ? "cannot load the system's default CA paths: " + ec.message()
                    : "cannot load CA file '" + cfg_.tls.ca_file + "': " + ec.message();
        }
        if (!cfg_.tls.ca_path.empty()) {
            ctx->add_verify_path(cfg_.tls.ca_path, ec);
            if (ec) {
                st_->tls_error = "cannot use CA path '" + cfg_.tls.ca_path + "': " + ec.message();
            }
        }
        if (!cfg_.tls.cert_file.empty()) {
            ctx->use_certificate_chain_file(cfg_.tls.cert_file, ec);
            if (!ec) {
                ctx->use_private_key_file(cfg_.tls.key_file, asio::ssl::context::pem, ec);
            }
            if (ec) {
                st_->tls_error = "cannot load client certificate '" + cfg_.tls.cert_file +
                                 "' or key '" + cfg_.tls.key_file + "': " + ec.message();
            }
        }
        if (cfg_.tls.verify) {
            ctx->set_verify_mode(asio::ssl::verify_peer);
        } else {
            ctx->set_verify_mode(asio::ssl::verify_none);
            log_.warn(
                "TLS certificate verification is OFF (CONSUL_HTTP_SSL_VERIFY=false): the Consul "
                "agent's identity is not checked and the ACL token can be stolen by anyone on the "
                "path. Never use this outside a test.");
        }
        st_->tls = std::move(ctx);
        if (!st_->tls_error.empty()) {
            log_.error(st_->tls_error);
        }
    }
}

transport::~transport() {
    shutdown();
}

void transport::shutdown() {
    st_->shut_down = true;
    for (auto& p : st_->pools) {
        for (auto& c : p.idle) {
            c->close();
        }
        p.open -= p.idle.size();
        p.idle.clear();
        for (auto& w : p.waiters) {
            w->cancel();
        }
        p.waiters.clear();
    }
}

std::size_t transport::open_connections(std::size_t i) const {
    return i < st_->pools.size() ? st_->pools[i].open : 0;
}

namespace {

/// Connects (and handshakes) to one agent. On failure returns nullptr with ec and diag set.
awaitable<std::unique_ptr<connection>> connect_to(const agent_address& addr,
                                                  const client_config& cfg, asio::ssl::context* tls,
                                                  error_code& ec, diagnostics& diag) {
    auto ex = co_await asio::this_coro::executor;
    auto c = std::make_unique<connection>();
    if (tls != nullptr) {
        c->tls.emplace(ex, *tls);
    } else {
        c->plain.emplace(ex);
    }
    auto& low = c->lowest();
    tcp::resolver resolver(ex);
    auto endpoints = co_await resolver.async_resolve(addr.host, std::to_string(addr.port),
                                                     asio::redirect_error(use_awaitable, ec));
    if (ec) {
        diag.set_client_message("resolving " + addr.to_string() + ": " + ec.message());
        ec = ec == asio::error::operation_aborted ? ec : error_code(transport_errc::resolve_failed);
        co_return nullptr;
    }
    if (cfg.connect_timeout.count() > 0) {
        low.expires_after(cfg.connect_timeout);
    }
    co_await low.async_connect(endpoints, asio::redirect_error(use_awaitable, ec));
    if (ec) {
        diag.set_client_message("connecting to " + addr.to_string() + ": " + ec.message());
        if (ec == beast::error::timeout) {
            ec = transport_errc::timeout;
        } else if (ec != asio::error::operation_aborted) {
            ec = transport_errc::connect_failed;
        }
        co_return nullptr;
    }
    low.socket().set_option(tcp::no_delay(true));
    if (c->tls) {
        const std::string& name = cfg.tls.server_name.empty() ? addr.host : cfg.tls.server_name;
        if (!SSL_set_tlsext_host_name(c->tls->native_handle(), name.c_str())) {
            ec = transport_errc::tls_handshake_failed;
            diag.set_client_message("cannot set TLS server name '" + name + "'");
            co_return nullptr;
        }
        if (cfg.tls.verify) {
            c->tls->set_verify_callback(asio::ssl::host_name_verification(name));
        }
        co_await c->tls->async_handshake(asio::ssl::stream_base::client,
                                         asio::redirect_error(use_awaitable, ec));
        if (ec) {
            diag.set_client_message("TLS handshake with " + addr.to_string() + ": " + ec.message());
            if (ec == beast::error::timeout) {
                ec = transport_errc::timeout;
            } else if (ec != asio::error::operation_aborted) {
                ec = is_verify_failure(ec) ? error_code(transport_errc::tls_verify_failed)
                                           : error_code(transport_errc::tls_handshake_failed);
            }
            co_return nullptr;
        }
    }
    low.expires_never();
    co_return c;
}

template <class Stream>
awaitable<void> write_read(Stream& s, beast::flat_buffer& buffer,
                           const http::request<http::string_body>& req,
                           http::response_parser<http::string_body>& parser, bool& wrote,
                           bool& got_bytes, error_code& ec) {
    co_await http::async_write(s, req, asio::redirect_error(use_awaitable, ec));
    if (ec) {
        co_return;
    }
    wrote = true;
    auto before = buffer.size();
    co_await http::async_read_header(s, buffer, parser, asio::redirect_error(use_awaitable, ec));
    got_bytes = parser.got_some() || buffer.size() != before;
    if (ec) {
        co_return;
    }
    co_await http::async_read(s, buffer, parser, asio::redirect_error(use_awaitable, ec));
}

}  // namespace

awaitable<std::pair<error_code, http_answer>> transport::exchange(http_call call,
                                                                  diagnostics& diag) {
    auto self = shared_from_this();  // keep the pools alive across suspensions
    auto& st = *st_;
    http_answer answer;
    if (st.shut_down) {
        co_return std::pair{error_code(asio::error::operation_aborted), answer};
    }
    if (!st.tls_error.empty()) {
        diag.set_client_message(st.tls_error);
        co_return std::pair{error_code(validation_errc::invalid_configuration), answer};
    }

    http::request<http::string_body> req{call.method, call.target, 11};
    req.set(http::field::user_agent, "lakemesh/0.1");
    if (!cfg_.token.empty()) {
        req.set("X-Consul-Token", cfg_.token);
    }
    if (!call.body.empty()) {
        req.set(http::field::content_type, "application/json");
    }
    req.body() = std::move(call.body);
    req.keep_alive(true);
    req.prepare_payload();

    auto timeout = cfg_.request_timeout;
    if (call.blocking) {
        auto wait =
            call.wait.count() > 0 ? call.wait : std::chrono::milliseconds(std::chrono::minutes(5));
        timeout += wait + wait / 16;
    }

    error_code last_ec = transport_errc::all_addresses_failed;
    const std::size_t n = st.pools.size();
    for (std::size_t i = 0; i < n; ++i) {
        const std::size_t idx = (st.preferred + i) % n;
        auto& p = st.pools[idx];
        req.set(http::field::host, p.address.to_string());

        for (int attempt = 0; attempt < 2; ++attempt) {
            // Take an idle connection, or wait for the cap (non-blocking calls only).
            std::unique_ptr<connection> c;
            while (!c) {
                if (!p.idle.empty()) {
                    c = std::move(p.idle.back());
                    p.idle.pop_back();
                    break;
                }
                if (call.blocking || p.busy < cfg_.pool_size_per_address) {
                    break;
                }
                auto t = std::make_shared<asio::steady_timer>(
                    ex_, asio::steady_timer::time_point::max());
                p.waiters.push_back(t);
                error_code wec;
                co_await t->async_wait(asio::redirect_error(use_awaitable, wec));
                auto cs = co_await asio::this_coro::cancellation_state;
                if (cs.cancelled() != asio::cancellation_type::none || st.shut_down) {
                    std::erase(p.waiters, t);
                    co_return std::pair{error_code(asio::error::operation_aborted), answer};
                }
            }
            const bool reused = c != nullptr;
            if (!call.blocking) {
                ++p.busy;
            }
            // Gives the slot back and wakes one waiter whatever happens below.
            auto release = [&p, blocking = call.blocking] {
                if (!blocking) {
                    --p.busy;
                }
                if (!p.waiters.empty()) {
                    p.waiters.front()->cancel();
                    p.waiters.pop_front();
                }
            };
            if (!c) {
                error_code cec;
                c = co_await connect_to(p.address, cfg_, st.tls.get(), cec, diag);
                if (!c) {
                    release();
                    last_ec = cec;
                    if (cec == asio::error::operation_aborted) {
                        co_return std::pair{cec, answer};
                    }
                    log_.warn("Consul agent " + p.address.to_string() +
                              " unreachable: " + diag.client_message());
                    break;  // fail over to the next address
                }
                ++p.open;
            }

            if (timeout.count() > 0) {
                c->lowest().expires_after(timeout);
            }
            http::response_parser<http::string_body> parser;
            parser.body_limit(cfg_.max_response_body);
            bool wrote = false;
            bool got_bytes = false;
            error_code ec;
            if (c->tls) {
                co_await write_read(*c->tls, c->buffer, req, parser, wrote, got_bytes, ec);
            } else {
                co_await write_read(*c->plain, c->buffer, req, parser, wrote, got_bytes, ec);
            }
            if (ec) {
                c->close();
                --p.open;
                release();
                if (ec == http::error::body_limit) {
                    diag.set_client_message("response body larger than max_response_body (" +
                                            std::to_string(cfg_.max_response_body) + " bytes)");
                    co_return std::pair{error_code(decode_errc::body_too_large), answer};
                }
                if (ec == asio::error::operation_aborted) {
                    co_return std::pair{ec, answer};
                }
                // A kept-alive connection the agent had already closed: nothing came back.
                // Sending again is safe when the request is idempotent, or when it never left.
                const bool stale =
                    reused && !got_bytes &&
                    (ec == http::error::end_of_stream || ec == asio::error::eof ||
                     ec == asio::error::connection_reset || ec == asio::error::broken_pipe);
                // A blocking query is never resent: a connection lost while the agent held it
                // may mean the agent restarted and lost its state, which the caller (a watch)
                // must hear about to resynchronise instead of blocking on an index from before.
                if (stale && attempt == 0 && !call.blocking && (call.idempotent || !wrote)) {
                    continue;
                }
                diag.set_client_message(std::string(http::to_string(call.method)) + " " +
                                        p.address.to_string() + ": " + ec.message());
                if (ec == beast::error::timeout) {
                    co_return std::pair{error_code(transport_errc::timeout), answer};
                }
                if (ec == http::error::end_of_stream || ec == asio::error::eof ||
                    ec == asio::error::connection_reset || ec == asio::error::broken_pipe) {
                    co_return std::pair{error_code(transport_errc::connection_closed), answer};
                }
                if (ec.category() == error_code(http::error::bad_version).category()) {
                    co_return std::pair{error_code(transport_errc::protocol_error), answer};
                }
                co_return std::pair{error_code(transport_errc::connection_closed), answer};
            }

            auto res = parser.release();
            answer.status = res.result_int();
            answer.body = std::move(res.body());
            auto header = [&res](const char* name) -> std::optional<std::string_view> {
                if (auto it = res.find(name); it != res.end()) {
                    return std::string_view(it->value().data(), it->value().size());
                }
                return std::nullopt;
            };
            const consul_meta_headers headers{header("X-Consul-Index"),
                                              header("X-Consul-KnownLeader"),
                                              header("X-Consul-LastContact")};
            if (auto meta_ec = decode_query_meta(headers, answer.meta, diag)) {
                c->close();
                --p.open;
                release();
                co_return std::pair{meta_ec, answer};
            }
            c->lowest().expires_never();
            if (res.keep_alive() && !st.shut_down && p.idle.size() < cfg_.pool_size_per_address) {
                p.idle.push_back(std::move(c));
            } else {
                c->close();
                --p.open;
            }
            release();
            st.preferred = idx;
            co_return std::pair{error_code{}, std::move(answer)};
        }
    }
    if (n > 1 && last_ec != asio::error::operation_aborted) {
        diag.set_client_message("all " + std::to_string(n) +
                                " Consul agent addresses failed; last: " + diag.client_message());
        last_ec = transport_errc::all_addresses_failed;
    }
    co_return std::pair{last_ec, answer};
}

}  // namespace lakemesh::consul::detail
