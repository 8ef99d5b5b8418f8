// lakemesh::consul::client: an asynchronous Consul HTTP API client on a keep-alive connection
// pool (Boost.Beast), with TLS, ACL token, failover between agents and blocking queries.
//
// Every operation is `async_*` and takes any Asio completion token (callback, use_awaitable,
// use_future, deferred). Completion signature: void(lakemesh::error_code, result<T>).
// The templates here are thin; the work happens in compiled code.
//
// Thread safety: a client is used from its executor only (wrap it in a strand when the
//   executor is multi-threaded). Distinct clients are independent.
// Cancellation: every operation supports per-operation cancellation (terminal): bind a
//   cancellation slot (asio::bind_cancellation_slot) and emit on it, e.g. from a timer, for a
//   timeout; asio::cancel_after (Boost 1.86 and later) does exactly that. A cancelled operation
//   completes with asio::error::operation_aborted and its connection is closed, never reused.
// Errors: validation_errc before anything is sent; transport_errc for connection trouble;
//   consul_errc for non-2xx statuses (Consul's text in result::diag); decode_errc for bodies
//   that do not parse.
#pragma once

#include <lakemesh/consul/agent.hpp>
#include <lakemesh/consul/catalog.hpp>
#include <lakemesh/consul/client_config.hpp>
#include <lakemesh/consul/detail/async.hpp>
#include <lakemesh/consul/health.hpp>
#include <lakemesh/consul/observer.hpp>
#include <lakemesh/consul/session.hpp>
#include <lakemesh/consul/txn.hpp>
#include <lakemesh/consul/types.hpp>
#include <lakemesh/observe/log.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/io_context.hpp>

#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

namespace lakemesh::consul {

namespace detail {
void run_kv_get(std::shared_ptr<client_impl>, std::string key, query_options,
                handler_t<std::optional<kv_pair>>);
void run_kv_list(std::shared_ptr<client_impl>, std::string prefix, query_options,
                 handler_t<std::vector<kv_pair>>);
void run_kv_keys(std::shared_ptr<client_impl>, std::string prefix, std::string separator,
                 query_options, handler_t<std::vector<std::string>>);
void run_kv_put(std::shared_ptr<client_impl>, std::string key, std::string value, kv_put_options,
                handler_t<bool>);
void run_kv_delete(std::shared_ptr<client_impl>, std::string key, kv_delete_options,
                   handler_t<bool>);
void run_status_leader(std::shared_ptr<client_impl>, handler_t<std::string>);
void run_status_peers(std::shared_ptr<client_impl>, handler_t<std::vector<std::string>>);
void run_raw(std::shared_ptr<client_impl>, raw_request, handler_t<raw_response>);
}  // namespace detail

class client {
  public:
    using executor_type = boost::asio::any_io_executor;

    /// Validates `cfg`; throws lakemesh::error when it is inconsistent (see
    /// client_config::validate).
    client(executor_type ex, client_config cfg, observe::logger log = {});
    client(boost::asio::io_context& io, client_config cfg, observe::logger log = {});
    ~client();
    client(const client&) = delete;
    client& operator=(const client&) = delete;
    client(client&&) noexcept;
    client& operator=(client&&) noexcept;

    executor_type get_executor() const noexcept;
    const client_config& config() const noexcept;
    /// Closes idle pooled connections; operations in flight complete normally or fail.
    void shutdown();
    /// Connections open to configured address i (tests and metrics).
    std::size_t open_connections(std::size_t address_index = 0) const;
    /// Reports every request from now on to `observer` (null: none). Call on the executor.
    void set_observer(std::shared_ptr<request_observer> observer);

    // ------------------------------------------------------------------ endpoint groups
    // Cheap handles sharing this client's connections, e.g. c.agent().async_self(token).

    agent_api agent() const { return agent_api{impl_}; }
    health_api health() const { return health_api{impl_}; }
    catalog_api catalog() const { return catalog_api{impl_}; }
    session_api session() const { return session_api{impl_}; }
    txn_api txn() const { return txn_api{impl_}; }

    // ------------------------------------------------------------------ KV
    // https://developer.hashicorp.com/consul/api-docs/kv

    /// GET /v1/kv/:key. value is nullopt when the key does not exist (not an error).
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    auto async_kv_get(std::string key, const query_options& q, Token&& token = {}) {
        return initiate<std::optional<kv_pair>>(
            [impl = impl_, k = std::move(key), q = q](auto h) mutable {
                detail::run_kv_get(std::move(impl), std::move(k), std::move(q), std::move(h));
            },
            token);
    }
    /// GET /v1/kv/:prefix?recurse. An absent prefix gives an empty vector.
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    auto async_kv_list(std::string prefix, const query_options& q, Token&& token = {}) {
        return initiate<std::vector<kv_pair>>(
            [impl = impl_, p = std::move(prefix), q = q](auto h) mutable {
                detail::run_kv_list(std::move(impl), std::move(p), std::move(q), std::move(h));
            },
            token);
    }
    /// GET /v1/kv/:prefix?keys[&separator=]. An absent prefix gives an empty vector.
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    auto async_kv_keys(std::string prefix, std::string separator, const query_options& q,
                       Token&& token = {}) {
        return initiate<std::vector<std::string>>(
            [impl = impl_, p = std::move(prefix), s = std::move(separator), q = q](auto h) mutable {
                detail::run_kv_keys(std::move(impl), std::move(p), std::move(s), std::move(q),
                                    std::move(h));
            },
            token);
    }
    /// PUT /v1/kv/:key. value: true when written (false when a cas or lock condition failed).
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    auto async_kv_put(std::string key, std::string value, const kv_put_options& o,
                      Token&& token = {}) {
        return initiate<bool>(
            [impl = impl_, k = std::move(key), v = std::move(value), o = o](auto h) mutable {
                detail::run_kv_put(std::move(impl), std::move(k), std::move(v), std::move(o),
                                   std::move(h));
            },
            token);
    }
    /// DELETE /v1/kv/:key. value: true when deleted (false when a cas condition failed).
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    auto async_kv_delete(std::string key, const kv_delete_options& o, Token&& token = {}) {
        return initiate<bool>(
            [impl = impl_, k = std::move(key), o = o](auto h) mutable {
                detail::run_kv_delete(std::move(impl), std::move(k), std::move(o), std::move(h));
            },
            token);
    }

    // Overloads without options (see the note on g++ 12 at the end of this class).
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    requires(!std::is_convertible_v<Token, const query_options&>) auto async_kv_get(
        std::string key, Token&& token = {}) {
        return async_kv_get(std::move(key), query_options{}, std::forward<Token>(token));
    }
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    requires(!std::is_convertible_v<Token, const query_options&>) auto async_kv_list(
        std::string prefix, Token&& token = {}) {
        return async_kv_list(std::move(prefix), query_options{}, std::forward<Token>(token));
    }
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    requires(!std::is_convertible_v<Token, const query_options&>) auto async_kv_keys(
        std::string prefix, std::string separator, Token&& token = {}) {
        return async_kv_keys(std::move(prefix), std::move(separator), query_options{},
                             std::forward<Token>(token));
    }
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    requires(!std::is_convertible_v<Token, const kv_put_options&>) auto async_kv_put(
        std::string key, std::string value, Token&& token = {}) {
        return async_kv_put(std::move(key), std::move(value), kv_put_options{},
                            std::forward<Token>(token));
    }
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    requires(!std::is_convertible_v<Token, const kv_delete_options&>) auto async_kv_delete(
        std::string key, Token&& token = {}) {
        return async_kv_delete(std::move(key), kv_delete_options{}, std::forward<Token>(token));
    }

    // ------------------------------------------------------------------ status
    // https://developer.hashicorp.com/consul/api-docs/status

    /// GET /v1/status/leader: the leader's RPC address ("" when there is none).
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    auto async_status_leader(Token&& token = {}) {
        return initiate<std::string>(
            [impl = impl_](auto h) mutable {
                detail::run_status_leader(std::move(impl), std::move(h));
            },
            token);
    }
    /// GET /v1/status/peers: the raft peers' RPC addresses.
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    auto async_status_peers(Token&& token = {}) {
        return initiate<std::vector<std::string>>(
            [impl = impl_](auto h) mutable {
                detail::run_status_peers(std::move(impl), std::move(h));
            },
            token);
    }

    // ------------------------------------------------------------------ any endpoint

    /// Sends `req` and completes with the status and body as they came. Only transport and
    /// validation failures are errors here: a 404 is a raw_response with status 404.
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    auto async_raw(const raw_request& req, Token&& token = {}) {
        return initiate<raw_response>(
            [impl = impl_, r = req](auto h) mutable {
                detail::run_raw(std::move(impl), std::move(r), std::move(h));
            },
            token);
    }

  private:
    // Option aggregates have no default arguments and come with overloads without them:
    // g++ 12 relocates an aggregate temporary (a `{}` argument or default argument) in a
    // coroutine frame by a bitwise copy, leaving a short std::string inside it pointing at its
    // old place. Inside coroutines, pass named option variables or use the overloads.
    template <class T, class Init, class Token>
    static auto initiate(Init init, Token& token) {
        return detail::initiate<T>(std::move(init), token);
    }

    std::shared_ptr<detail::client_impl> impl_;
};

}  // namespace lakemesh::consul
