// Agent operations: https://developer.hashicorp.com/consul/api-docs/agent,
// .../agent/service and .../agent/check
#include "agent_codec.hpp"
#include "client_impl.hpp"
#include "typed_call.hpp"

namespace lakemesh::consul::detail {

namespace asio = boost::asio;
using empty = std::monostate;
using empty_result = asio::awaitable<std::pair<error_code, result<empty>>>;

namespace {

/// PUT /v1/<prefix><id>[?params] after checking the ID; no body.
void put_on_id(std::shared_ptr<client_impl> impl, const char* what, std::string prefix,
               std::string id, params_t params, handler_t<empty> h) {
    run_operation<empty>(impl, std::move(h),
                         [impl, what, prefix = std::move(prefix), id = std::move(id),
                          params = std::move(params)]() mutable -> empty_result {
                             result<empty> r;
                             if (auto ec = validate_path_segment(what, id, r.diag)) {
                                 co_return std::pair{ec, std::move(r)};
                             }
                             std::string path = prefix + id;
                             std::string body;
                             auto ec = co_await empty_write(*impl, std::move(path),
                                                            std::move(params), std::move(body), r);
                             co_return std::pair{ec, std::move(r)};
                         });
}

params_t maintenance_params(bool enable, const std::string& reason) {
    params_t params;
    params.emplace_back("enable", enable ? "true" : "false");
    if (enable && !reason.empty()) {
        params.emplace_back("reason", reason);
    }
    return params;
}

}  // namespace

void run_agent_self(std::shared_ptr<client_impl> impl, handler_t<agent_info> h) {
    run_operation<agent_info>(impl, std::move(h), [impl] {
        return json_read<agent_info>(impl, "agent/self", params_t(), query_options(),
                                     decode_agent_self_json);
    });
}

void run_agent_members(std::shared_ptr<client_impl> impl, handler_t<std::vector<agent_member>> h) {
    run_operation<std::vector<agent_member>>(impl, std::move(h), [impl] {
        return json_read<std::vector<agent_member>>(impl, "agent/members", params_t(),
                                                    query_options(), decode_agent_members_json);
    });
}

void run_agent_services(std::shared_ptr<client_impl> impl, query_options q,
                        handler_t<std::map<std::string, agent_service>> h) {
    run_operation<std::map<std::string, agent_service>>(
        impl, std::move(h), [impl, q = std::move(q)] {
            return json_read<std::map<std::string, agent_service>>(
                impl, "agent/services", params_t(), q, decode_agent_services_json);
        });
}

void run_agent_checks(std::shared_ptr<client_impl> impl, query_options q,
                      handler_t<std::map<std::string, agent_check>> h) {
    run_operation<std::map<std::string, agent_check>>(impl, std::move(h), [impl, q = std::move(q)] {
        return json_read<std::map<std::string, agent_check>>(impl, "agent/checks", params_t(), q,
                                                             decode_agent_checks_json);
    });
}

void run_agent_service_register(std::shared_ptr<client_impl> impl, service_registration reg,
                                handler_t<empty> h) {
    run_operation<empty>(impl, std::move(h), [impl, reg = std::move(reg)]() -> empty_result {
        result<empty> r;
        std::string body;
        if (auto ec = encode_service_registration(reg, body, r.diag)) {
            co_return std::pair{ec, std::move(r)};
        }
        params_t params;
        if (reg.replace_existing_checks) {
            params.emplace_back("replace-existing-checks", "true");
        }
        std::string path = "agent/service/register";
        auto ec =
            co_await empty_write(*impl, std::move(path), std::move(params), std::move(body), r);
        co_return std::pair{ec, std::move(r)};
    });
}

void run_agent_service_deregister(std::shared_ptr<client_impl> impl, std::string service_id,
                                  handler_t<empty> h) {
    put_on_id(std::move(impl), "service ID", "agent/service/deregister/", std::move(service_id),
              params_t(), std::move(h));
}

void run_agent_service_maintenance(std::shared_ptr<client_impl> impl, std::string service_id,
                                   bool enable, std::string reason, handler_t<empty> h) {
    put_on_id(std::move(impl), "service ID", "agent/service/maintenance/", std::move(service_id),
              maintenance_params(enable, reason), std::move(h));
}

void run_agent_node_maintenance(std::shared_ptr<client_impl> impl, bool enable, std::string reason,
                                handler_t<empty> h) {
    run_operation<empty>(
        impl, std::move(h), [impl, enable, reason = std::move(reason)]() -> empty_result {
            result<empty> r;
            std::string path = "agent/maintenance";
            params_t params = maintenance_params(enable, reason);
            std::string body;
            auto ec =
                co_await empty_write(*impl, std::move(path), std::move(params), std::move(body), r);
            co_return std::pair{ec, std::move(r)};
        });
}

void run_agent_check_register(std::shared_ptr<client_impl> impl, check_definition def,
                              handler_t<empty> h) {
    run_operation<empty>(impl, std::move(h), [impl, def = std::move(def)]() -> empty_result {
        result<empty> r;
        std::string body;
        if (auto ec = encode_check_definition(def, body, r.diag)) {
            co_return std::pair{ec, std::move(r)};
        }
        std::string path = "agent/check/register";
        params_t params;
        auto ec =
            co_await empty_write(*impl, std::move(path), std::move(params), std::move(body), r);
        co_return std::pair{ec, std::move(r)};
    });
}

void run_agent_check_deregister(std::shared_ptr<client_impl> impl, std::string check_id,
                                handler_t<empty> h) {
    put_on_id(std::move(impl), "check ID", "agent/check/deregister/", std::move(check_id),
              params_t(), std::move(h));
}

void run_agent_check_ttl(std::shared_ptr<client_impl> impl, std::string check_id,
                         check_status status, std::string note, handler_t<empty> h) {
    const char* prefix = status == check_status::passing   ? "agent/check/pass/"
                         : status == check_status::warning ? "agent/check/warn/"
                                                           : "agent/check/fail/";
    params_t params;
    if (!note.empty()) {
        params.emplace_back("note", std::move(note));
    }
    put_on_id(std::move(impl), "check ID", prefix, std::move(check_id), std::move(params),
              std::move(h));
}

void run_agent_check_update(std::shared_ptr<client_impl> impl, std::string check_id,
                            check_status status, std::string output, handler_t<empty> h) {
    run_operation<empty>(
        impl, std::move(h),
        [impl, id = std::move(check_id), status, output = std::move(output)]() -> empty_result {
            result<empty> r;
            std::string body;
            error_code ec;
            if ((ec = validate_path_segment("check ID", id, r.diag)) ||
                (ec = encode_check_update(status, output, body, r.diag))) {
                co_return std::pair{ec, std::move(r)};
            }
            std::string path = "agent/check/update/" + id;
            params_t params;
            ec =
                co_await empty_write(*impl, std::move(path), std::move(params), std::move(body), r);
            co_return std::pair{ec, std::move(r)};
        });
}

void run_agent_check_updates(std::shared_ptr<client_impl> impl, std::vector<check_update> updates,
                             handler_t<std::vector<check_update_outcome>> h) {
    using outcomes = std::vector<check_update_outcome>;
    run_operation<outcomes>(
        impl, std::move(h),
        [impl, updates = std::move(
                   updates)]() mutable -> asio::awaitable<std::pair<error_code, result<outcomes>>> {
            result<outcomes> r;
            r.value.resize(updates.size());
            // The valid updates go out together; slot[i] is update i's place in the batch.
            std::vector<http_call> calls;
            std::vector<std::size_t> slot;
            calls.reserve(updates.size());
            slot.reserve(updates.size());
            for (std::size_t i = 0; i < updates.size(); ++i) {
                auto& u = updates[i];
                auto& o = r.value[i];
                std::string body;
                if ((o.error = validate_path_segment("check ID", u.check_id, o.diag)) ||
                    (o.error = encode_check_update(u.status, u.output, body, o.diag))) {
                    continue;
                }
                std::string path = "agent/check/update/" + u.check_id;
                params_t params;
                calls.push_back(write_call(*impl, boost::beast::http::verb::put, path,
                                           std::move(params), std::move(body), true));
                slot.push_back(i);
            }
            std::vector<diagnostics> diags;
            auto answers = co_await impl->net->exchange_pipelined(std::move(calls), diags);
            bool aborted = false;
            for (std::size_t k = 0; k < answers.size(); ++k) {
                auto& o = r.value[slot[k]];
                o.diag = std::move(diags[k]);
                o.error = answers[k].first;
                if (!o.error) {
                    o.error = client_impl::check_status(answers[k].second, o.diag);
                }
                aborted = aborted || o.error == asio::error::operation_aborted;
            }
            error_code ec;
            if (aborted) {
                ec = asio::error::operation_aborted;
            }
            co_return std::pair{ec, std::move(r)};
        });
}

}  // namespace lakemesh::consul::detail
