// Typed agent endpoints of the Consul client, reached through client::agent().
// https://developer.hashicorp.com/consul/api-docs/agent
// https://developer.hashicorp.com/consul/api-docs/agent/service
// https://developer.hashicorp.com/consul/api-docs/agent/check
#pragma once

#include <lakemesh/consul/check.hpp>
#include <lakemesh/consul/detail/async.hpp>
#include <lakemesh/consul/types.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

namespace lakemesh::consul {

// ------------------------------------------------------------------ types

/// What GET /v1/agent/self says about the agent: the part a service needs to register itself
/// and to run its checks against the right node.
struct agent_info {
    /// Config.NodeName: the node that agent/service/register and agent/check/register act on.
    std::string node_name;
    /// Config.NodeID (a UUID).
    std::string node_id;
    /// Config.Datacenter
    std::string datacenter;
    /// Config.PrimaryDatacenter (empty on agents that do not report it).
    std::string primary_datacenter;
    /// Config.Version, e.g. "1.17.0".
    std::string version;
    /// Config.Revision (the build's commit).
    std::string revision;
    /// Config.Server: true for a server agent, false for a client agent.
    bool server = false;
    /// Member.Addr: the agent's LAN gossip address, a sensible default service address.
    std::string address;
    /// Meta: the node's metadata.
    std::map<std::string, std::string> node_meta;
};

/// One LAN gossip member (GET /v1/agent/members).
struct agent_member {
    std::string name;
    std::string address;
    int port = 0;
    /// Serf tags: "role", "dc", "id", "build", ...
    std::map<std::string, std::string> tags;
    /// Serf member status: 1 alive, 2 leaving, 3 left, 4 failed (0 none).
    int status = 0;

    friend bool operator==(const agent_member&, const agent_member&) = default;
};

/// A service instance as the agent (GET /v1/agent/services) and the health endpoints report it.
struct agent_service {
    std::string id;
    /// The service name.
    std::string service;
    std::vector<std::string> tags;
    std::map<std::string, std::string> meta;
    int port = 0;
    /// Empty when the instance uses its node's address.
    std::string address;
    service_weights weights;
    bool enable_tag_override = false;
    /// "" for a typical service; "connect-proxy", "mesh-gateway", ...
    std::string kind;
    /// Reported by agent/services; empty from the health endpoints.
    std::string datacenter;
    /// Enterprise namespace; empty on Consul CE.
    std::string namespace_name;
    /// Raft indexes (health endpoints only).
    std::uint64_t create_index = 0;
    std::uint64_t modify_index = 0;

    friend bool operator==(const agent_service&, const agent_service&) = default;
};

using agent_check = health_check;

/// A check to register, alone (agent/check/register) or with a service. Set exactly one kind:
/// `ttl` (the service reports its own status), `http`, `tcp` or `grpc` (the agent probes every
/// `interval`). Durations are sent as Go duration text ("10s", "1500ms"); zero means unset and
/// negative is a validation error.
/// https://developer.hashicorp.com/consul/api-docs/agent/check#register-check
struct check_definition {
    /// CheckID. Empty: Consul uses the name (standalone) or "service:<service id>[:n]".
    std::string id;
    /// Required for agent/check/register; defaults to "Service '<name>' check" in a service.
    std::string name;
    /// Binds a standalone check to a registered service (ignored inside a registration).
    std::string service_id;
    std::string notes;
    /// Initial status; Consul's default is critical. `maintenance` is rejected.
    std::optional<check_status> status;

    /// TTL check: critical unless updated (pass/warn/fail/update) within this time.
    std::chrono::milliseconds ttl{0};

    /// HTTP check: a URL the agent GETs (or `method`s); 2xx passes, 429 warns, else critical.
    std::string http;
    /// HTTP method; empty: GET.
    std::string method;
    /// Extra request headers of an HTTP check.
    std::map<std::string, std::vector<std::string>> header;
    /// HTTP check over https without verifying the certificate.
    bool tls_skip_verify = false;

    /// TCP check: "host:port" the agent connects to.
    std::string tcp;

    /// gRPC check: "host:port[/service]" answering the gRPC health protocol.
    std::string grpc;
    bool grpc_use_tls = false;

    /// How often the agent runs an HTTP, TCP or gRPC check (required for them).
    std::chrono::milliseconds interval{0};
    /// Probe timeout; zero: Consul's default (10s).
    std::chrono::milliseconds timeout{0};
    /// Consul deregisters the service once this check has been critical this long (>= 1 min
    /// in effect: Consul's reaper runs every 30 s).
    std::chrono::milliseconds deregister_critical_service_after{0};
};

/// A service instance to register on the agent's node.
/// https://developer.hashicorp.com/consul/api-docs/agent/service#register-service
struct service_registration {
    /// Service ID, unique on the node. Empty: the name.
    std::string id;
    /// Service name (required).
    std::string name;
    std::vector<std::string> tags;
    std::map<std::string, std::string> meta;
    /// 0: no port.
    int port = 0;
    /// Empty: the node's address.
    std::string address;
    /// Unset: Consul's defaults {1, 1}.
    std::optional<service_weights> weights;
    /// Lets anti-entropy keep tags changed in the catalog by others.
    bool enable_tag_override = false;
    /// Sent as "Check": a single check gets the ID "service:<id>" by default.
    std::optional<check_definition> check;
    /// Sent as "Checks": with more than one check in all, default IDs are "service:<id>:<n>".
    std::vector<check_definition> checks;
    /// ?replace-existing-checks: drop the service's checks that this registration does not name
    /// (without it, checks registered earlier stay).
    bool replace_existing_checks = false;
};

// ------------------------------------------------------------------ operations

/// One TTL check update of a batch (agent_api::async_check_updates).
struct check_update {
    std::string check_id;
    /// passing, warning or critical (maintenance is refused for this update alone).
    check_status status = check_status::passing;
    std::string output;
};

/// What became of one update of a batch: the error (empty when the agent accepted it) and its
/// diagnostics, as async_check_update would have completed.
struct check_update_outcome {
    error_code error;
    diagnostics diag;
};

namespace detail {
void run_agent_self(std::shared_ptr<client_impl>, handler_t<agent_info>);
void run_agent_members(std::shared_ptr<client_impl>, handler_t<std::vector<agent_member>>);
void run_agent_services(std::shared_ptr<client_impl>, query_options,
                        handler_t<std::map<std::string, agent_service>>);
void run_agent_service_register(std::shared_ptr<client_impl>, service_registration,
                                handler_t<std::monostate>);
void run_agent_service_deregister(std::shared_ptr<client_impl>, std::string service_id,
                                  handler_t<std::monostate>);
void run_agent_service_maintenance(std::shared_ptr<client_impl>, std::string service_id,
                                   bool enable, std::string reason, handler_t<std::monostate>);
void run_agent_node_maintenance(std::shared_ptr<client_impl>, bool enable, std::string reason,
                                handler_t<std::monostate>);
void run_agent_checks(std::shared_ptr<client_impl>, query_options,
                      handler_t<std::map<std::string, agent_check>>);
void run_agent_check_register(std::shared_ptr<client_impl>, check_definition,
                              handler_t<std::monostate>);
void run_agent_check_deregister(std::shared_ptr<client_impl>, std::string check_id,
                                handler_t<std::monostate>);
void run_agent_check_ttl(std::shared_ptr<client_impl>, std::string check_id, check_status status,
                         std::string note, handler_t<std::monostate>);
void run_agent_check_update(std::shared_ptr<client_impl>, std::string check_id, check_status status,
                            std::string output, handler_t<std::monostate>);
void run_agent_check_updates(std::shared_ptr<client_impl>, std::vector<check_update>,
                             handler_t<std::vector<check_update_outcome>>);
}  // namespace detail

/// The agent endpoints: they act on the node of the agent the client talks to. A cheap handle
/// that shares the client's connections; valid as long as the operations it starts (it keeps the
/// client's state alive).
///
/// Completion signature: void(error_code, result<T>). Writes complete with T = std::monostate.
/// Thread safety and cancellation as for client.
/// Errors: validation_errc before anything is sent (an ID or name that is empty where required
///   or holds a control character, a negative duration, a maintenance status where a check
///   status is wanted), with the field named in diag; consul_errc for non-2xx answers with
///   Consul's text in diag (not_found for an unknown service or check ID, bad_request for a
///   definition Consul rejects); decode_errc for answers that do not parse.
class agent_api {
  public:
    using executor_type = boost::asio::any_io_executor;
    explicit agent_api(std::shared_ptr<detail::client_impl> impl) : impl_(std::move(impl)) {}

    /// GET /v1/agent/self https://developer.hashicorp.com/consul/api-docs/agent#read-configuration
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    auto async_self(Token&& token = {}) {
        return detail::initiate<agent_info>(
            [impl = impl_](auto h) mutable {
                detail::run_agent_self(std::move(impl), std::move(h));
            },
            token);
    }

    /// GET /v1/agent/members: the LAN members this agent sees.
    /// https://developer.hashicorp.com/consul/api-docs/agent#list-members
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    auto async_members(Token&& token = {}) {
        return detail::initiate<std::vector<agent_member>>(
            [impl = impl_](auto h) mutable {
                detail::run_agent_members(std::move(impl), std::move(h));
            },
            token);
    }

    /// GET /v1/agent/services: the agent's services by ID. Of `q`, filter and namespace_name
    /// apply (this endpoint does not block).
    /// https://developer.hashicorp.com/consul/api-docs/agent/service#list-services
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    auto async_services(const query_options& q, Token&& token = {}) {
        return detail::initiate<std::map<std::string, agent_service>>(
            [impl = impl_, q = q](auto h) mutable {
                detail::run_agent_services(std::move(impl), std::move(q), std::move(h));
            },
            token);
    }
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    requires(!std::is_convertible_v<Token, const query_options&>) auto async_services(
        Token&& token = {}) {
        return async_services(query_options{}, std::forward<Token>(token));
    }

    /// PUT /v1/agent/service/register[?replace-existing-checks]: adds or replaces a service
    /// instance (and its checks) on the agent's node.
    /// https://developer.hashicorp.com/consul/api-docs/agent/service#register-service
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    auto async_service_register(const service_registration& reg, Token&& token = {}) {
        return detail::initiate<std::monostate>(
            [impl = impl_, reg = reg](auto h) mutable {
                detail::run_agent_service_register(std::move(impl), std::move(reg), std::move(h));
            },
            token);
    }

    /// PUT /v1/agent/service/deregister/:service_id: removes the instance and its checks.
    /// consul_errc::not_found for an unknown ID (Consul 1.11 and later).
    /// https://developer.hashicorp.com/consul/api-docs/agent/service#deregister-service
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    auto async_service_deregister(std::string service_id, Token&& token = {}) {
        return detail::initiate<std::monostate>(
            [impl = impl_, id = std::move(service_id)](auto h) mutable {
                detail::run_agent_service_deregister(std::move(impl), std::move(id), std::move(h));
            },
            token);
    }

    /// PUT /v1/agent/service/maintenance/:service_id?enable=&reason=: while enabled, a critical
    /// "_service_maintenance:<id>" check takes the instance out of healthy results. An empty
    /// reason gets Consul's default text. consul_errc::not_found for an unknown ID.
    /// https://developer.hashicorp.com/consul/api-docs/agent/service#enable-maintenance-mode
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    auto async_service_maintenance(std::string service_id, bool enable, std::string reason,
                                   Token&& token = {}) {
        return detail::initiate<std::monostate>(
            [impl = impl_, id = std::move(service_id), enable,
             reason = std::move(reason)](auto h) mutable {
                detail::run_agent_service_maintenance(std::move(impl), std::move(id), enable,
                                                      std::move(reason), std::move(h));
            },
            token);
    }

    /// PUT /v1/agent/maintenance?enable=&reason=: node maintenance mode (every service on the
    /// node leaves healthy results).
    /// https://developer.hashicorp.com/consul/api-docs/agent#enable-maintenance-mode
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    auto async_node_maintenance(bool enable, std::string reason, Token&& token = {}) {
        return detail::initiate<std::monostate>(
            [impl = impl_, enable, reason = std::move(reason)](auto h) mutable {
                detail::run_agent_node_maintenance(std::move(impl), enable, std::move(reason),
                                                   std::move(h));
            },
            token);
    }

    /// GET /v1/agent/checks: the agent's checks by check ID. Of `q`, filter and namespace_name
    /// apply.
    /// https://developer.hashicorp.com/consul/api-docs/agent/check#list-checks
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    auto async_checks(const query_options& q, Token&& token = {}) {
        return detail::initiate<std::map<std::string, agent_check>>(
            [impl = impl_, q = q](auto h) mutable {
                detail::run_agent_checks(std::move(impl), std::move(q), std::move(h));
            },
            token);
    }
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    requires(!std::is_convertible_v<Token, const query_options&>) auto async_checks(
        Token&& token = {}) {
        return async_checks(query_options{}, std::forward<Token>(token));
    }

    /// PUT /v1/agent/check/register: adds or replaces a check (name required). With
    /// def.service_id, consul_errc::not_found when that service is not registered.
    /// https://developer.hashicorp.com/consul/api-docs/agent/check#register-check
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    auto async_check_register(const check_definition& def, Token&& token = {}) {
        return detail::initiate<std::monostate>(
            [impl = impl_, def = def](auto h) mutable {
                detail::run_agent_check_register(std::move(impl), std::move(def), std::move(h));
            },
            token);
    }

    /// PUT /v1/agent/check/deregister/:check_id. consul_errc::not_found for an unknown ID
    /// (Consul 1.11 and later; older agents answer 200).
    /// https://developer.hashicorp.com/consul/api-docs/agent/check#deregister-check
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    auto async_check_deregister(std::string check_id, Token&& token = {}) {
        return detail::initiate<std::monostate>(
            [impl = impl_, id = std::move(check_id)](auto h) mutable {
                detail::run_agent_check_deregister(std::move(impl), std::move(id), std::move(h));
            },
            token);
    }

    /// PUT /v1/agent/check/pass/:check_id?note=: sets a TTL check passing and re-arms its TTL;
    /// `note` becomes the check's output. consul_errc::not_found for an unknown ID,
    /// internal_error for a check that is not a TTL check.
    /// https://developer.hashicorp.com/consul/api-docs/agent/check#ttl-check-pass
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    auto async_check_pass(std::string check_id, std::string note, Token&& token = {}) {
        return ttl(std::move(check_id), check_status::passing, std::move(note), token);
    }
    /// PUT /v1/agent/check/warn/:check_id?note= (as async_check_pass, status warning).
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    auto async_check_warn(std::string check_id, std::string note, Token&& token = {}) {
        return ttl(std::move(check_id), check_status::warning, std::move(note), token);
    }
    /// PUT /v1/agent/check/fail/:check_id?note= (as async_check_pass, status critical).
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    auto async_check_fail(std::string check_id, std::string note, Token&& token = {}) {
        return ttl(std::move(check_id), check_status::critical, std::move(note), token);
    }

    /// PUT /v1/agent/check/update/:check_id with {"Status", "Output"}: sets a TTL check's status
    /// and output (up to 4 KiB is kept) and re-arms its TTL. `status` must not be maintenance.
    /// https://developer.hashicorp.com/consul/api-docs/agent/check#ttl-check-update
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    auto async_check_update(std::string check_id, check_status status, std::string output,
                            Token&& token = {}) {
        return detail::initiate<std::monostate>(
            [impl = impl_, id = std::move(check_id), status,
             output = std::move(output)](auto h) mutable {
                detail::run_agent_check_update(std::move(impl), std::move(id), status,
                                               std::move(output), std::move(h));
            },
            token);
    }

    /// Many TTL check updates (as async_check_update) pipelined on one keep-alive connection:
    /// every request goes out in one write and the answers are read in order, which costs this
    /// process and the agent one send and about one wake-up per batch instead of one per
    /// update. The updates are independent: the outcomes (in the order of `updates`) say which
    /// the agent accepted; an invalid one is refused alone without being sent. The operation
    /// itself fails only when cancelled (operation_aborted, every unfinished outcome too).
    /// Consul's agent, like any HTTP/1.1 server, answers pipelined requests in order; an
    /// intermediary that does not is detected as a failed connection and the unanswered
    /// updates fail with a transport error.
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    auto async_check_updates(std::vector<check_update> updates, Token&& token = {}) {
        return detail::initiate<std::vector<check_update_outcome>>(
            [impl = impl_, updates = std::move(updates)](auto h) mutable {
                detail::run_agent_check_updates(std::move(impl), std::move(updates), std::move(h));
            },
            token);
    }

  private:
    template <class Token>
    auto ttl(std::string check_id, check_status status, std::string note, Token& token) {
        return detail::initiate<std::monostate>(
            [impl = impl_, id = std::move(check_id), status,
             note = std::move(note)](auto h) mutable {
                detail::run_agent_check_ttl(std::move(impl), std::move(id), status, std::move(note),
                                            std::move(h));
            },
            token);
    }

    std::shared_ptr<detail::client_impl> impl_;
};

}  // namespace lakemesh::consul
