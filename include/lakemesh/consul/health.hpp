// Typed health endpoints of the Consul client, reached through client::health().
// https://developer.hashicorp.com/consul/api-docs/health
#pragma once

#include <lakemesh/consul/agent.hpp>
#include <lakemesh/consul/check.hpp>
#include <lakemesh/consul/detail/async.hpp>
#include <lakemesh/consul/types.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace lakemesh::consul {

// ------------------------------------------------------------------ types

/// The node part of a health/service entry.
struct node_info {
    /// Node UUID.
    std::string id;
    /// Node name.
    std::string node;
    std::string address;
    std::string datacenter;
    std::map<std::string, std::string> tagged_addresses;
    std::map<std::string, std::string> meta;
    std::uint64_t create_index = 0;
    std::uint64_t modify_index = 0;

    friend bool operator==(const node_info&, const node_info&) = default;
};

/// One instance of a service with its node and every check that applies to it (its own and its
/// node's, e.g. serfHealth and node maintenance).
struct service_entry {
    node_info node;
    agent_service service;
    std::vector<health_check> checks;

    /// The address to reach the instance at: the service's own, else its node's.
    const std::string& address() const noexcept {
        return service.address.empty() ? node.address : service.address;
    }
    /// aggregate_status(checks).
    check_status status() const noexcept { return aggregate_status(checks); }

    friend bool operator==(const service_entry&, const service_entry&) = default;
};

/// Selection of GET /v1/health/service/:service beyond the query_options.
struct health_service_options {
    /// ?passing: only instances whose every check (node checks included) is passing.
    bool passing_only = false;
    /// ?tag=...: only instances carrying every one of these tags.
    std::vector<std::string> tags;
};

/// The states GET /v1/health/state/:state selects by.
enum class health_state { any, passing, warning, critical };

/// "any", "passing", "warning", "critical".
std::string_view to_string(health_state s) noexcept;

// ------------------------------------------------------------------ operations

namespace detail {
void run_health_service(std::shared_ptr<client_impl>, std::string service, health_service_options,
                        query_options, handler_t<std::vector<service_entry>>);
void run_health_checks(std::shared_ptr<client_impl>, std::string service, query_options,
                       handler_t<std::vector<health_check>>);
void run_health_state(std::shared_ptr<client_impl>, health_state, query_options,
                      handler_t<std::vector<health_check>>);
void run_health_node(std::shared_ptr<client_impl>, std::string node, query_options,
                     handler_t<std::vector<health_check>>);
}  // namespace detail

/// The health endpoints. A cheap handle that shares the client's connections; valid as long as
/// the operations it starts (it keeps the client's state alive).
///
/// Every read takes query_options (blocking index and wait, consistency, datacenter,
/// namespace, filter) and fills result::meta from X-Consul-Index, X-Consul-KnownLeader and
/// X-Consul-LastContact: pass meta.index back as query_options::index to wait for the next
/// change. An unknown service or node gives an empty vector, not an error.
///
/// Completion signature: void(error_code, result<T>). Thread safety and cancellation as for
/// client.
/// Errors: validation_errc before anything is sent (a name that is empty or holds a control
///   character, named in diag); consul_errc for non-2xx answers with Consul's text in diag
///   (bad_request for an invalid filter); decode_errc for answers that do not parse.
class health_api {
  public:
    using executor_type = boost::asio::any_io_executor;
    explicit health_api(std::shared_ptr<detail::client_impl> impl) : impl_(std::move(impl)) {}

    /// GET /v1/health/service/:service: the service's instances with their nodes and checks.
    /// https://developer.hashicorp.com/consul/api-docs/health#list-service-instances-for-service
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    auto async_service(std::string service, const health_service_options& o, const query_options& q,
                       Token&& token = {}) {
        return detail::initiate<std::vector<service_entry>>(
            [impl = impl_, s = std::move(service), o = o, q = q](auto h) mutable {
                detail::run_health_service(std::move(impl), std::move(s), std::move(o),
                                           std::move(q), std::move(h));
            },
            token);
    }
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    requires(!std::is_convertible_v<Token, const query_options&>) auto async_service(
        std::string service, const health_service_options& o, Token&& token = {}) {
        return async_service(std::move(service), o, query_options{}, std::forward<Token>(token));
    }
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    requires(!std::is_convertible_v<Token, const health_service_options&>) auto async_service(
        std::string service, const query_options& q, Token&& token = {}) {
        return async_service(std::move(service), health_service_options{}, q,
                             std::forward<Token>(token));
    }
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    requires(!std::is_convertible_v<Token, const query_options&> &&
             !std::is_convertible_v<
                 Token, const health_service_options&>) auto async_service(std::string service,
                                                                           Token&& token = {}) {
        return async_service(std::move(service), health_service_options{}, query_options{},
                             std::forward<Token>(token));
    }

    /// GET /v1/health/checks/:service: the checks of every instance of the service.
    /// https://developer.hashicorp.com/consul/api-docs/health#list-checks-for-service
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    auto async_checks(std::string service, const query_options& q, Token&& token = {}) {
        return detail::initiate<std::vector<health_check>>(
            [impl = impl_, s = std::move(service), q = q](auto h) mutable {
                detail::run_health_checks(std::move(impl), std::move(s), std::move(q),
                                          std::move(h));
            },
            token);
    }
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    requires(!std::is_convertible_v<Token, const query_options&>) auto async_checks(
        std::string service, Token&& token = {}) {
        return async_checks(std::move(service), query_options{}, std::forward<Token>(token));
    }

    /// GET /v1/health/state/:state: every check in that state (any: all checks).
    /// https://developer.hashicorp.com/consul/api-docs/health#list-checks-in-state
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    auto async_state(health_state state, const query_options& q, Token&& token = {}) {
        return detail::initiate<std::vector<health_check>>(
            [impl = impl_, state, q = q](auto h) mutable {
                detail::run_health_state(std::move(impl), state, std::move(q), std::move(h));
            },
            token);
    }
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    requires(!std::is_convertible_v<Token, const query_options&>) auto async_state(
        health_state state, Token&& token = {}) {
        return async_state(state, query_options{}, std::forward<Token>(token));
    }

    /// GET /v1/health/node/:node: the checks of one node (node-level and its services').
    /// https://developer.hashicorp.com/consul/api-docs/health#list-checks-for-node
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    auto async_node(std::string node, const query_options& q, Token&& token = {}) {
        return detail::initiate<std::vector<health_check>>(
            [impl = impl_, n = std::move(node), q = q](auto h) mutable {
                detail::run_health_node(std::move(impl), std::move(n), std::move(q), std::move(h));
            },
            token);
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
