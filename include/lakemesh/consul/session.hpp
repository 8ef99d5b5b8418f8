// Typed session endpoints of the Consul client, reached through client::session().
// https://developer.hashicorp.com/consul/api-docs/session
#pragma once

#include <lakemesh/consul/detail/async.hpp>
#include <lakemesh/consul/types.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

namespace lakemesh::consul {

/// What happens to the locks a session holds when it is invalidated (Consul's "Behavior").
enum class session_behavior {
    release,      ///< "release": the keys stay, their locks are released (Consul's default).
    delete_keys,  ///< "delete": the keys it holds are deleted.
};

/// A service check a session is linked to ("ServiceChecks" entry).
struct session_service_check {
    std::string id;
    /// Enterprise namespace of the check; empty: the default.
    std::string namespace_name;

    friend bool operator==(const session_service_check&, const session_service_check&) = default;
};

/// The body of PUT /v1/session/create. Defaults are Consul's.
struct session_options {
    /// Human-readable name; opaque to Consul.
    std::string name;
    /// Node the session belongs to; empty: the agent's own node.
    std::string node;
    /// How long a lock released by this session's invalidation stays unacquirable.
    /// nullopt: Consul's default (15s). Consul caps it at 60s. Zero disables it.
    std::optional<std::chrono::milliseconds> lock_delay;
    session_behavior behavior = session_behavior::release;
    /// Invalidate the session unless renewed within this time. Zero: no TTL. Otherwise it must
    /// lie within [10s, 86400s] (checked before sending). Consul may take up to twice the TTL to
    /// invalidate.
    std::chrono::milliseconds ttl{0};
    /// Node checks (check IDs) the session is linked to: a critical check invalidates it.
    /// nullopt: Consul's default (the node's serfHealth). Set: exactly these (empty: none), as
    /// is usual for TTL-only sessions.
    std::optional<std::vector<std::string>> node_checks;
    /// Service checks the session is linked to.
    std::vector<session_service_check> service_checks;
    /// Overrides client_config::datacenter when non-empty.
    std::string datacenter;
};

/// A session as Consul reports it (GET /v1/session/info/:uuid and the listings).
struct session_info {
    std::string id;
    std::string name;
    std::string node;
    /// Consul reports it in nanoseconds; kept to the millisecond.
    std::chrono::milliseconds lock_delay{0};
    session_behavior behavior = session_behavior::release;
    /// Zero when the session has no TTL.
    std::chrono::milliseconds ttl{0};
    /// Node checks the session is linked to (the legacy "Checks" when Consul sends only that).
    std::vector<std::string> node_checks;
    std::vector<session_service_check> service_checks;
    std::uint64_t create_index = 0;
    std::uint64_t modify_index = 0;
};

namespace detail {
void run_session_create(std::shared_ptr<client_impl>, session_options, handler_t<std::string>);
void run_session_destroy(std::shared_ptr<client_impl>, std::string id, handler_t<bool>);
void run_session_renew(std::shared_ptr<client_impl>, std::string id, handler_t<session_info>);
void run_session_info(std::shared_ptr<client_impl>, std::string id, query_options,
                      handler_t<std::optional<session_info>>);
void run_session_list(std::shared_ptr<client_impl>, query_options,
                      handler_t<std::vector<session_info>>);
void run_session_node(std::shared_ptr<client_impl>, std::string node, query_options,
                      handler_t<std::vector<session_info>>);
}  // namespace detail

/// The session endpoints. A cheap handle that shares the client's connections; valid as long as
/// the operations it starts (it keeps the client's state alive). Thread safety, cancellation
/// and errors as for client.
///
/// Completion: void(error_code, result<T>). Errors: validation_errc before anything is sent
/// (empty or malformed IDs, invalid_duration for a TTL outside [10s, 86400s]); transport_errc;
/// consul_errc with Consul's text in result::diag (Consul answers internal_error (500) for
/// "Missing node registration", a missing or critical check); decode_errc for bad answers.
/// Writes (create, destroy, renew) use client_config::datacenter.
class session_api {
  public:
    using executor_type = boost::asio::any_io_executor;
    explicit session_api(std::shared_ptr<detail::client_impl> impl) : impl_(std::move(impl)) {}

    /// PUT /v1/session/create
    /// (https://developer.hashicorp.com/consul/api-docs/session#create-session): value is the
    /// new session's ID. Not retried on a dead connection (a retry could create two sessions).
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    auto async_create(const session_options& o, Token&& token = {}) {
        return detail::initiate<std::string>(
            [impl = impl_, o = o](auto h) mutable {
                detail::run_session_create(std::move(impl), std::move(o), std::move(h));
            },
            token);
    }

    /// PUT /v1/session/destroy/:uuid
    /// (https://developer.hashicorp.com/consul/api-docs/session#delete-session): ends the
    /// session, releasing or deleting its keys per its behavior. value is Consul's answer
    /// (true); destroying an absent session is not an error.
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    auto async_destroy(std::string id, Token&& token = {}) {
        return detail::initiate<bool>(
            [impl = impl_, id = std::move(id)](auto h) mutable {
                detail::run_session_destroy(std::move(impl), std::move(id), std::move(h));
            },
            token);
    }

    /// PUT /v1/session/renew/:uuid
    /// (https://developer.hashicorp.com/consul/api-docs/session#renew-session): restarts the
    /// TTL; value is the renewed session (Consul may answer with a longer TTL than asked for).
    /// An unknown, destroyed or expired session fails with consul_errc::not_found: the caller
    /// has lost its locks and must create a new session.
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    auto async_renew(std::string id, Token&& token = {}) {
        return detail::initiate<session_info>(
            [impl = impl_, id = std::move(id)](auto h) mutable {
                detail::run_session_renew(std::move(impl), std::move(id), std::move(h));
            },
            token);
    }

    /// GET /v1/session/info/:uuid
    /// (https://developer.hashicorp.com/consul/api-docs/session#read-session): value is nullopt
    /// when there is no such session (not an error). Blocking.
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    auto async_info(std::string id, const query_options& q, Token&& token = {}) {
        return detail::initiate<std::optional<session_info>>(
            [impl = impl_, id = std::move(id), q = q](auto h) mutable {
                detail::run_session_info(std::move(impl), std::move(id), std::move(q),
                                         std::move(h));
            },
            token);
    }

    /// GET /v1/session/list
    /// (https://developer.hashicorp.com/consul/api-docs/session#list-sessions): every session
    /// of the datacenter. Blocking.
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    auto async_list(const query_options& q, Token&& token = {}) {
        return detail::initiate<std::vector<session_info>>(
            [impl = impl_, q = q](auto h) mutable {
                detail::run_session_list(std::move(impl), std::move(q), std::move(h));
            },
            token);
    }

    /// GET /v1/session/node/:node
    /// (https://developer.hashicorp.com/consul/api-docs/session#list-sessions-for-node): the
    /// sessions belonging to a node (empty for an unknown node). Blocking.
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    auto async_node(std::string node, const query_options& q, Token&& token = {}) {
        return detail::initiate<std::vector<session_info>>(
            [impl = impl_, n = std::move(node), q = q](auto h) mutable {
                detail::run_session_node(std::move(impl), std::move(n), std::move(q), std::move(h));
            },
            token);
    }

    // Overloads without options (g++ 12: see the note in client.hpp).
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    requires(!std::is_convertible_v<Token, const session_options&>) auto async_create(
        Token&& token = {}) {
        return async_create(session_options{}, std::forward<Token>(token));
    }
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    requires(!std::is_convertible_v<Token, const query_options&>) auto async_info(
        std::string id, Token&& token = {}) {
        return async_info(std::move(id), query_options{}, std::forward<Token>(token));
    }
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    requires(!std::is_convertible_v<Token, const query_options&>) auto async_list(
        Token&& token = {}) {
        return async_list(query_options{}, std::forward<Token>(token));
    }
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    requires(!std::is_convertible_v<Token, const query_options&>) auto async_node(
        std::string node, Token&& token = {}) {
        return async_node(std::move(node), query_options{}, std::forward<Token>(token));
    }

  private:
    std::shared_ptr<detail::client_impl> impl_;
};

}  // namespace lakemesh::consul
