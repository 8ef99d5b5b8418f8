// Health operations: https://developer.hashicorp.com/consul/api-docs/health
#include "client_impl.hpp"
#include "health_codec.hpp"
#include "typed_call.hpp"

namespace lakemesh::consul::detail {

using checks_t = std::vector<health_check>;
using entries_t = std::vector<service_entry>;

namespace {

/// A checks read on /v1/health/<prefix><name>, after checking the name.
void checks_read(std::shared_ptr<client_impl> impl, const char* what, std::string prefix,
                 std::string name, query_options q, handler_t<checks_t> h) {
    run_operation<checks_t>(
        impl, std::move(h),
        [impl, what, prefix = std::move(prefix), name = std::move(name), q = std::move(q)] {
            return json_read<checks_t>(impl, prefix + name, params_t(), q,
                                       decode_health_checks_json, [what, name](diagnostics& diag) {
                                           return validate_path_segment(what, name, diag);
                                       });
        });
}

}  // namespace

void run_health_service(std::shared_ptr<client_impl> impl, std::string service,
                        health_service_options o, query_options q, handler_t<entries_t> h) {
    run_operation<entries_t>(
        impl, std::move(h),
        [impl, service = std::move(service), o = std::move(o), q = std::move(q)] {
            params_t params;
            if (o.passing_only) {
                params.emplace_back("passing", "");
            }
            for (const auto& t : o.tags) {
                params.emplace_back("tag", t);
            }
            return text_read<entries_t>(
                impl, "health/service/" + service, std::move(params), q, decode_service_entries,
                [service, tags = o.tags](diagnostics& diag) {
                    if (auto ec = validate_path_segment("service name", service, diag)) {
                        return ec;
                    }
                    for (const auto& t : tags) {
                        if (auto ec = validate_text("tag", t, diag)) {
                            return ec;
                        }
                    }
                    return error_code{};
                });
        });
}

void run_health_checks(std::shared_ptr<client_impl> impl, std::string service, query_options q,
                       handler_t<checks_t> h) {
    checks_read(std::move(impl), "service name", "health/checks/", std::move(service), std::move(q),
                std::move(h));
}

void run_health_state(std::shared_ptr<client_impl> impl, health_state state, query_options q,
                      handler_t<checks_t> h) {
    checks_read(std::move(impl), "state", "health/state/", std::string(to_string(state)),
                std::move(q), std::move(h));
}

void run_health_node(std::shared_ptr<client_impl> impl, std::string node, query_options q,
                     handler_t<checks_t> h) {
    checks_read(std::move(impl), "node name", "health/node/", std::move(node), std::move(q),
                std::move(h));
}

}  // namespace lakemesh::consul::detail
