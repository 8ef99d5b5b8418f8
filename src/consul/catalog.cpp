// Catalog operations: https://developer.hashicorp.com/consul/api-docs/catalog
#include "catalog_codec.hpp"
#include "client_impl.hpp"
#include "kv_codec.hpp"

#include <limits>

namespace lakemesh::consul::detail {

namespace asio = boost::asio;

namespace {

error_code get_port(const json& obj, const char* field, std::uint16_t& out, diagnostics& diag,
                    const std::string& where) {
    std::uint64_t v = 0;
    if (auto ec = get_u64(obj, field, v, diag, where, false)) {
        return ec;
    }
    if (v > std::numeric_limits<std::uint16_t>::max()) {
        diag.set_client_message("field " + where + "." + field + " is not a port number");
        return decode_errc::wrong_type;
    }
    out = static_cast<std::uint16_t>(v);
    return {};
}

/// {"Passing": n, "Warning": n}; absent or null keeps Consul's defaults (1, 1).
error_code get_weights(const json& obj, const char* field, catalog_weights& out, diagnostics& diag,
                       const std::string& where) {
    out = catalog_weights{};
    auto it = obj.find(field);
    if (it == obj.end() || it->is_null()) {
        return {};
    }
    const std::string inner = where + "." + field;
    if (auto ec = expect_object(*it, diag, inner)) {
        return ec;
    }
    error_code ec;
    if ((ec = get_i64(*it, "Passing", out.passing, diag, inner)) ||
        (ec = get_i64(*it, "Warning", out.warning, diag, inner))) {
        return ec;
    }
    return {};
}

error_code decode_node(const json& e, catalog_node& n, diagnostics& diag,
                       const std::string& where) {
    if (auto ec = expect_object(e, diag, where)) {
        return ec;
    }
    error_code ec;
    if ((ec = get_string(e, "ID", n.id, diag, where, false)) ||
        (ec = get_string(e, "Node", n.node, diag, where)) ||
        (ec = get_string(e, "Address", n.address, diag, where, false)) ||
        (ec = get_string(e, "Datacenter", n.datacenter, diag, where, false)) ||
        (ec = get_string_map(e, "TaggedAddresses", n.tagged_addresses, diag, where)) ||
        (ec = get_string_map(e, "Meta", n.meta, diag, where)) ||
        (ec = get_u64(e, "CreateIndex", n.create_index, diag, where, false)) ||
        (ec = get_u64(e, "ModifyIndex", n.modify_index, diag, where, false))) {
        return ec;
    }
    return {};
}

error_code decode_service(const json& e, catalog_service& s, diagnostics& diag,
                          const std::string& where) {
    error_code ec;
    if ((ec = expect_object(e, diag, where)) ||
        (ec = get_string(e, "ID", s.id, diag, where, false)) ||
        (ec = get_string(e, "Node", s.node, diag, where)) ||
        (ec = get_string(e, "Address", s.address, diag, where, false)) ||
        (ec = get_string(e, "Datacenter", s.datacenter, diag, where, false)) ||
        (ec = get_string_map(e, "TaggedAddresses", s.tagged_addresses, diag, where)) ||
        (ec = get_string_map(e, "NodeMeta", s.node_meta, diag, where)) ||
        (ec = get_string(e, "ServiceID", s.service_id, diag, where)) ||
        (ec = get_string(e, "ServiceName", s.service_name, diag, where)) ||
        (ec = get_string_list(e, "ServiceTags", s.service_tags, diag, where)) ||
        (ec = get_string(e, "ServiceAddress", s.service_address, diag, where, false)) ||
        (ec = get_port(e, "ServicePort", s.service_port, diag, where)) ||
        (ec = get_string_map(e, "ServiceMeta", s.service_meta, diag, where)) ||
        (ec = get_weights(e, "ServiceWeights", s.service_weights, diag, where)) ||
        (ec = get_u64(e, "CreateIndex", s.create_index, diag, where, false)) ||
        (ec = get_u64(e, "ModifyIndex", s.modify_index, diag, where, false))) {
        return ec;
    }
    return {};
}

error_code decode_node_service(const json& e, catalog_node_service& s, diagnostics& diag,
                               const std::string& where) {
    if (auto ec = expect_object(e, diag, where)) {
        return ec;
    }
    error_code ec;
    if ((ec = get_string(e, "ID", s.id, diag, where)) ||
        (ec = get_string(e, "Service", s.service, diag, where)) ||
        (ec = get_string_list(e, "Tags", s.tags, diag, where)) ||
        (ec = get_string(e, "Address", s.address, diag, where, false)) ||
        (ec = get_port(e, "Port", s.port, diag, where)) ||
        (ec = get_string_map(e, "Meta", s.meta, diag, where)) ||
        (ec = get_weights(e, "Weights", s.weights, diag, where)) ||
        (ec = get_u64(e, "CreateIndex", s.create_index, diag, where, false)) ||
        (ec = get_u64(e, "ModifyIndex", s.modify_index, diag, where, false))) {
        return ec;
    }
    return {};
}

}  // namespace

error_code decode_catalog_services(const std::string& body,
                                   std::map<std::string, std::vector<std::string>>& out,
                                   diagnostics& diag) {
    out.clear();
    json j;
    if (auto ec = parse_json(body, j, diag)) {
        return ec;
    }
    if (auto ec = expect_object(j, diag, "catalog/services answer")) {
        return ec;
    }
    for (const auto& [name, tags] : j.items()) {
        // Read the value itself: looking it up again by name.c_str() would stop at a NUL in
        // the name and read another service's tags (or none).
        std::vector<std::string> list;
        if (!tags.is_null()) {
            bool strings = tags.is_array();
            for (std::size_t i = 0; strings && i < tags.size(); ++i) {
                strings = tags[i].is_string();
            }
            if (!strings) {
                out.clear();
                diag.set_client_message("field services." + name + " is not an array of strings");
                return decode_errc::wrong_type;
            }
            list = tags.get<std::vector<std::string>>();
        }
        out.emplace(name, std::move(list));
    }
    return {};
}

error_code decode_catalog_service(const std::string& body, std::vector<catalog_service>& out,
                                  diagnostics& diag) {
    out.clear();
    json j;
    if (auto ec = parse_json(body, j, diag)) {
        return ec;
    }
    return decode_array(j, out, diag, "catalog/service answer", "service", decode_service);
}

error_code decode_catalog_nodes(const std::string& body, std::vector<catalog_node>& out,
                                diagnostics& diag) {
    out.clear();
    json j;
    if (auto ec = parse_json(body, j, diag)) {
        return ec;
    }
    return decode_array(j, out, diag, "catalog/nodes answer", "node", decode_node);
}

error_code decode_catalog_node(const std::string& body, std::optional<catalog_node_services>& out,
                               diagnostics& diag) {
    out.reset();
    json j;
    if (auto ec = parse_json(body, j, diag)) {
        return ec;
    }
    if (j.is_null()) {
        return {};  // Consul's answer for a node it does not know
    }
    if (auto ec = expect_object(j, diag, "catalog/node answer")) {
        return ec;
    }
    catalog_node_services r;
    auto node = j.find("Node");
    if (node == j.end() || node->is_null()) {
        diag.set_client_message("missing field catalog/node answer.Node");
        return decode_errc::missing_field;
    }
    if (auto ec = decode_node(*node, r.node, diag, "Node")) {
        return ec;
    }
    if (auto services = j.find("Services"); services != j.end() && !services->is_null()) {
        if (auto ec = expect_object(*services, diag, "Services")) {
            return ec;
        }
        for (const auto& [id, e] : services->items()) {
            catalog_node_service s;
            if (auto ec = decode_node_service(e, s, diag, "Services." + id)) {
                return ec;
            }
            r.services.emplace(id, std::move(s));
        }
    }
    out = std::move(r);
    return {};
}

namespace {

/// A catalog read: validates the path's name and the filter, sends, decodes.
template <class T, class Decode>
asio::awaitable<std::pair<error_code, result<T>>> catalog_read(std::shared_ptr<client_impl> impl,
                                                               std::string path, params_t params,
                                                               query_options q, bool allow_404,
                                                               Decode decode) {
    result<T> r;
    if (auto ec = validate_text("filter", q.filter, r.diag)) {
        co_return std::pair{ec, std::move(r)};
    }
    for (const auto& [k, v] : params) {
        if (auto ec = validate_text(k, v, r.diag)) {
            co_return std::pair{ec, std::move(r)};
        }
    }
    bool found = true;
    http_call call = read_call(*impl, path, std::move(params), q);
    // call_json parses JSON into a json object; the codecs take the body text (so the fuzz
    // targets see exactly what the network gave), hence the raw exchange here.
    auto [ec, a] = co_await impl->net->exchange(std::move(call), r.diag);
    r.meta = a.meta;
    if (ec) {
        co_return std::pair{ec, std::move(r)};
    }
    if (allow_404 && a.status == 404) {
        found = false;
    } else if ((ec = client_impl::check_status(a, r.diag))) {
        co_return std::pair{ec, std::move(r)};
    }
    if (found) {
        ec = decode(a.body, r.value, r.diag);
    }
    co_return std::pair{ec, std::move(r)};
}

}  // namespace

void run_catalog_services(std::shared_ptr<client_impl> impl, query_options q,
                          handler_t<std::map<std::string, std::vector<std::string>>> h) {
    using T = std::map<std::string, std::vector<std::string>>;
    run_operation<T>(impl, std::move(h), [impl, q = std::move(q)] {
        return catalog_read<T>(impl, "catalog/services", {}, q, false, decode_catalog_services);
    });
}

void run_catalog_service(std::shared_ptr<client_impl> impl, std::string name, std::string tag,
                         query_options q, handler_t<std::vector<catalog_service>> h) {
    using T = std::vector<catalog_service>;
    run_operation<T>(impl, std::move(h),
                     [impl, name = std::move(name), tag = std::move(tag),
                      q = std::move(q)]() -> asio::awaitable<std::pair<error_code, result<T>>> {
                         result<T> r;
                         if (auto ec = validate_path_segment("service name", name, r.diag)) {
                             co_return std::pair{ec, std::move(r)};
                         }
                         params_t params;
                         if (!tag.empty()) {
                             params.emplace_back("tag", tag);
                         }
                         // Named arguments: no temporaries cross into the nested coroutine (g++
                         // 12).
                         const std::string path = "catalog/service/" + name;
                         co_return co_await catalog_read<T>(impl, path, params, q, false,
                                                            decode_catalog_service);
                     });
}

void run_catalog_nodes(std::shared_ptr<client_impl> impl, query_options q,
                       handler_t<std::vector<catalog_node>> h) {
    using T = std::vector<catalog_node>;
    run_operation<T>(impl, std::move(h), [impl, q = std::move(q)] {
        return catalog_read<T>(impl, "catalog/nodes", {}, q, false, decode_catalog_nodes);
    });
}

void run_catalog_node(std::shared_ptr<client_impl> impl, std::string node, query_options q,
                      handler_t<std::optional<catalog_node_services>> h) {
    using T = std::optional<catalog_node_services>;
    run_operation<T>(impl, std::move(h),
                     [impl, node = std::move(node),
                      q = std::move(q)]() -> asio::awaitable<std::pair<error_code, result<T>>> {
                         result<T> r;
                         if (auto ec = validate_path_segment("node name", node, r.diag)) {
                             co_return std::pair{ec, std::move(r)};
                         }
                         const std::string path = "catalog/node/" + node;
                         const params_t params;
                         co_return co_await catalog_read<T>(impl, path, params, q, true,
                                                            decode_catalog_node);
                     });
}

void run_catalog_datacenters(std::shared_ptr<client_impl> impl,
                             handler_t<std::vector<std::string>> h) {
    using T = std::vector<std::string>;
    run_operation<T>(impl, std::move(h),
                     [impl]() -> asio::awaitable<std::pair<error_code, result<T>>> {
                         result<T> r;
                         http_call call;
                         call.target = client_impl::make_target("catalog/datacenters", {});
                         auto [ec, a] = co_await impl->net->exchange(std::move(call), r.diag);
                         if (!ec) {
                             ec = client_impl::check_status(a, r.diag);
                         }
                         if (!ec) {
                             ec = decode_string_array(a.body, r.value, r.diag);
                         }
                         co_return std::pair{ec, std::move(r)};
                     });
}

}  // namespace lakemesh::consul::detail
