// Typed catalog endpoints of the Consul client, reached through client::catalog().
// https://developer.hashicorp.com/consul/api-docs/catalog
#pragma once

#include <lakemesh/consul/detail/async.hpp>
#include <lakemesh/consul/types.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

namespace lakemesh::consul {

/// Consul's load-balancing weights of a service instance ("Weights" / "ServiceWeights").
struct catalog_weights {
    std::int64_t passing = 1;
    std::int64_t warning = 1;

    friend bool operator==(const catalog_weights&, const catalog_weights&) = default;
};

/// One instance of a service as GET /v1/catalog/service/:name lists it: the node's fields and
/// the service's, flattened as Consul sends them.
struct catalog_service {
    /// The node's ID (a UUID), not the service's; that is service_id.
    std::string id;
    std::string node;
    /// The node's address; use service_address when it is non-empty.
    std::string address;
    std::string datacenter;
    std::map<std::string, std::string> tagged_addresses;
    std::map<std::string, std::string> node_meta;
    std::string service_id;
    std::string service_name;
    std::vector<std::string> service_tags;
    /// Empty when the service uses its node's address.
    std::string service_address;
    std::uint16_t service_port = 0;
    std::map<std::string, std::string> service_meta;
    catalog_weights service_weights;
    std::uint64_t create_index = 0;
    std::uint64_t modify_index = 0;
};

/// A node of the catalog (GET /v1/catalog/nodes, and the "Node" of /v1/catalog/node/:node).
struct catalog_node {
    std::string id;
    /// The node's name.
    std::string node;
    std::string address;
    std::string datacenter;
    std::map<std::string, std::string> tagged_addresses;
    std::map<std::string, std::string> meta;
    std::uint64_t create_index = 0;
    std::uint64_t modify_index = 0;
};

/// A service registered on a node, as GET /v1/catalog/node/:node lists it.
struct catalog_node_service {
    std::string id;
    /// The service's name.
    std::string service;
    std::vector<std::string> tags;
    /// Empty when the service uses its node's address.
    std::string address;
    std::uint16_t port = 0;
    std::map<std::string, std::string> meta;
    catalog_weights weights;
    std::uint64_t create_index = 0;
    std::uint64_t modify_index = 0;
};

/// GET /v1/catalog/node/:node: the node and its services keyed by service ID.
struct catalog_node_services {
    catalog_node node;
    std::map<std::string, catalog_node_service> services;
};

namespace detail {
void run_catalog_services(std::shared_ptr<client_impl>, query_options,
                          handler_t<std::map<std::string, std::vector<std::string>>>);
void run_catalog_service(std::shared_ptr<client_impl>, std::string name, std::string tag,
                         query_options, handler_t<std::vector<catalog_service>>);
void run_catalog_nodes(std::shared_ptr<client_impl>, query_options,
                       handler_t<std::vector<catalog_node>>);
void run_catalog_node(std::shared_ptr<client_impl>, std::string node, query_options,
                      handler_t<std::optional<catalog_node_services>>);
void run_catalog_datacenters(std::shared_ptr<client_impl>, handler_t<std::vector<std::string>>);
}  // namespace detail

/// The catalog endpoints. A cheap handle that shares the client's connections; valid as long as
/// the operations it starts (it keeps the client's state alive). Thread safety, cancellation
/// and errors as for client.
///
/// Every read takes query_options (blocking index and wait, consistency, dc, ns, filter) and
/// fills result::meta from Consul's X-Consul-* headers; pass meta.index back as
/// query_options::index to wait for the next change. Completion: void(error_code, result<T>).
/// Errors: validation_errc (bad name or control characters, nothing sent), transport_errc,
/// consul_errc (e.g. bad_request for an invalid filter, Consul's text in result::diag),
/// decode_errc for answers that do not parse.
class catalog_api {
  public:
    using executor_type = boost::asio::any_io_executor;
    explicit catalog_api(std::shared_ptr<detail::client_impl> impl) : impl_(std::move(impl)) {}

    /// GET /v1/catalog/services
    /// (https://developer.hashicorp.com/consul/api-docs/catalog#list-services): every service
    /// name with the union of its instances' tags.
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    auto async_services(const query_options& q, Token&& token = {}) {
        return detail::initiate<std::map<std::string, std::vector<std::string>>>(
            [impl = impl_, q = q](auto h) mutable {
                detail::run_catalog_services(std::move(impl), std::move(q), std::move(h));
            },
            token);
    }

    /// GET /v1/catalog/service/:name[?tag=]
    /// (https://developer.hashicorp.com/consul/api-docs/catalog#list-nodes-for-service): every
    /// registered instance, healthy or not (use the health endpoints for health). An unknown
    /// service gives an empty vector. `tag` empty: no tag filter.
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    auto async_service(std::string name, std::string tag, const query_options& q,
                       Token&& token = {}) {
        return detail::initiate<std::vector<catalog_service>>(
            [impl = impl_, n = std::move(name), t = std::move(tag), q = q](auto h) mutable {
                detail::run_catalog_service(std::move(impl), std::move(n), std::move(t),
                                            std::move(q), std::move(h));
            },
            token);
    }
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    auto async_service(std::string name, const query_options& q, Token&& token = {}) {
        return async_service(std::move(name), std::string{}, q, std::forward<Token>(token));
    }

    /// GET /v1/catalog/nodes (https://developer.hashicorp.com/consul/api-docs/catalog#list-nodes).
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    auto async_nodes(const query_options& q, Token&& token = {}) {
        return detail::initiate<std::vector<catalog_node>>(
            [impl = impl_, q = q](auto h) mutable {
                detail::run_catalog_nodes(std::move(impl), std::move(q), std::move(h));
            },
            token);
    }

    /// GET /v1/catalog/node/:node
    /// (https://developer.hashicorp.com/consul/api-docs/catalog#list-services-for-node): the node
    /// and its services. value is nullopt when the node is not registered (Consul answers null;
    /// not an error).
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    auto async_node(std::string node, const query_options& q, Token&& token = {}) {
        return detail::initiate<std::optional<catalog_node_services>>(
            [impl = impl_, n = std::move(node), q = q](auto h) mutable {
                detail::run_catalog_node(std::move(impl), std::move(n), std::move(q), std::move(h));
            },
            token);
    }

    /// GET /v1/catalog/datacenters
    /// (https://developer.hashicorp.com/consul/api-docs/catalog#list-datacenters): the known
    /// datacenters, nearest first. Not a blocking endpoint; result::meta stays empty.
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    auto async_datacenters(Token&& token = {}) {
        return detail::initiate<std::vector<std::string>>(
            [impl = impl_](auto h) mutable {
                detail::run_catalog_datacenters(std::move(impl), std::move(h));
            },
            token);
    }

    // Overloads without options (g++ 12: see the note in client.hpp).
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    requires(!std::is_convertible_v<Token, const query_options&>) auto async_services(
        Token&& token = {}) {
        return async_services(query_options{}, std::forward<Token>(token));
    }
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    requires(!std::is_convertible_v<Token, const query_options&> &&
             !std::is_convertible_v<Token, std::string>) auto async_service(std::string name,
                                                                            Token&& token = {}) {
        return async_service(std::move(name), std::string{}, query_options{},
                             std::forward<Token>(token));
    }
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    requires(!std::is_convertible_v<Token, const query_options&>) auto async_nodes(
        Token&& token = {}) {
        return async_nodes(query_options{}, std::forward<Token>(token));
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
