// Session operations: https://developer.hashicorp.com/consul/api-docs/session
#include "client_impl.hpp"
#include "go_duration.hpp"
#include "kv_codec.hpp"
#include "session_codec.hpp"

namespace lakemesh::consul::detail {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using namespace std::chrono_literals;

namespace {
constexpr std::chrono::milliseconds session_ttl_min = 10s;
constexpr std::chrono::milliseconds session_ttl_max = 86400s;
}  // namespace

error_code validate_session_options(const session_options& o, diagnostics& diag) {
    if (o.ttl.count() != 0 && (o.ttl < session_ttl_min || o.ttl > session_ttl_max)) {
        diag.set_client_message("session TTL must be 0 (none) or between 10s and 86400s, got " +
                                format_go_duration(o.ttl));
        return validation_errc::invalid_duration;
    }
    if (o.lock_delay && o.lock_delay->count() < 0) {
        diag.set_client_message("session lock delay must not be negative");
        return validation_errc::invalid_duration;
    }
    // Every text below goes into the JSON body: UTF-8 only (json::dump throws otherwise).
    error_code ec;
    if ((ec = validate_utf8("session name", o.name, diag)) ||
        (ec = validate_text("session node", o.node, diag)) ||
        (ec = validate_utf8("session node", o.node, diag))) {
        return ec;
    }
    if (o.node_checks) {
        for (const auto& id : *o.node_checks) {
            if ((ec = validate_text("session node check ID", id, diag, false)) ||
                (ec = validate_utf8("session node check ID", id, diag))) {
                return ec;
            }
        }
    }
    for (const auto& sc : o.service_checks) {
        if ((ec = validate_text("session service check ID", sc.id, diag, false)) ||
            (ec = validate_utf8("session service check ID", sc.id, diag)) ||
            (ec = validate_utf8("session service check namespace", sc.namespace_name, diag))) {
            return ec;
        }
    }
    return {};
}

std::string encode_session_create(const session_options& o) {
    json body = json::object();
    if (!o.name.empty()) {
        body["Name"] = o.name;
    }
    if (!o.node.empty()) {
        body["Node"] = o.node;
    }
    if (o.lock_delay) {
        body["LockDelay"] = format_go_duration(*o.lock_delay);
    }
    body["Behavior"] = o.behavior == session_behavior::delete_keys ? "delete" : "release";
    if (o.ttl.count() > 0) {
        body["TTL"] = format_go_duration(o.ttl);
    }
    // NodeChecks alone: Consul then drops its default legacy Checks ([serfHealth]) and uses
    // exactly this list; adding "Checks": [] would instead empty NodeChecks too.
    if (o.node_checks) {
        body["NodeChecks"] = *o.node_checks;
    }
    if (!o.service_checks.empty()) {
        json list = json::array();
        for (const auto& sc : o.service_checks) {
            json e{{"ID", sc.id}};
            if (!sc.namespace_name.empty()) {
                e["Namespace"] = sc.namespace_name;
            }
            list.push_back(std::move(e));
        }
        body["ServiceChecks"] = std::move(list);
    }
    return body.dump();
}

error_code decode_session_id(const std::string& body, std::string& out, diagnostics& diag) {
    out.clear();
    json j;
    if (auto ec = parse_json(body, j, diag)) {
        return ec;
    }
    if (auto ec = expect_object(j, diag, "session/create answer")) {
        return ec;
    }
    if (auto ec = get_string(j, "ID", out, diag, "session/create answer")) {
        return ec;
    }
    if (out.empty()) {
        diag.set_client_message("session/create answer has an empty ID");
        return decode_errc::missing_field;
    }
    return {};
}

namespace {

error_code decode_session(const json& e, session_info& s, diagnostics& diag,
                          const std::string& where) {
    if (auto ec = expect_object(e, diag, where)) {
        return ec;
    }
    std::int64_t lock_delay_ns = 0;
    std::string behavior;
    std::string ttl;
    error_code ec;
    if ((ec = get_string(e, "ID", s.id, diag, where)) ||
        (ec = get_string(e, "Name", s.name, diag, where, false)) ||
        (ec = get_string(e, "Node", s.node, diag, where, false)) ||
        (ec = get_i64(e, "LockDelay", lock_delay_ns, diag, where, false)) ||
        (ec = get_string(e, "Behavior", behavior, diag, where, false)) ||
        (ec = get_string(e, "TTL", ttl, diag, where, false)) ||
        (ec = get_string_list(e, "NodeChecks", s.node_checks, diag, where)) ||
        (ec = get_u64(e, "CreateIndex", s.create_index, diag, where, false)) ||
        (ec = get_u64(e, "ModifyIndex", s.modify_index, diag, where, false))) {
        return ec;
    }
    // LockDelay is a Go time.Duration: nanoseconds.
    s.lock_delay = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::nanoseconds(lock_delay_ns));
    if (behavior.empty() || behavior == "release") {
        s.behavior = session_behavior::release;
    } else if (behavior == "delete") {
        s.behavior = session_behavior::delete_keys;
    } else {
        diag.set_client_message("field " + where + ".Behavior is neither release nor delete");
        return decode_errc::wrong_type;
    }
    s.ttl = std::chrono::milliseconds{0};
    if (!ttl.empty()) {
        auto d = parse_go_duration(ttl);
        if (!d) {
            diag.set_client_message("field " + where + ".TTL is not a duration: " + ttl);
            return decode_errc::wrong_type;
        }
        s.ttl = std::chrono::duration_cast<std::chrono::milliseconds>(*d);
    }
    // Consul before 1.7 reports only the legacy "Checks".
    if (!e.contains("NodeChecks")) {
        if ((ec = get_string_list(e, "Checks", s.node_checks, diag, where))) {
            return ec;
        }
    }
    s.service_checks.clear();
    if (auto it = e.find("ServiceChecks"); it != e.end()) {
        const std::string inner = where + ".ServiceChecks";
        return decode_array(
            *it, s.service_checks, diag, inner, inner,
            [](const json& c, session_service_check& sc, diagnostics& d, const std::string& item) {
                error_code ec;
                if ((ec = expect_object(c, d, item)) ||
                    (ec = get_string(c, "ID", sc.id, d, item)) ||
                    (ec = get_string(c, "Namespace", sc.namespace_name, d, item, false))) {
                    return ec;
                }
                return error_code{};
            });
    }
    return {};
}

}  // namespace

error_code decode_sessions(const std::string& body, std::vector<session_info>& out,
                           diagnostics& diag) {
    out.clear();
    json j;
    if (auto ec = parse_json(body, j, diag)) {
        return ec;
    }
    return decode_array(j, out, diag, "session answer", "session", decode_session);
}

namespace {

using op_result = std::pair<error_code, http_answer>;

/// Sends one request and maps a non-2xx status; the answer's meta always lands in `meta`.
asio::awaitable<op_result> send(client_impl& impl, http_call call, query_meta& meta,
                                diagnostics& diag) {
    auto [ec, a] = co_await impl.net->exchange(std::move(call), diag);
    meta = a.meta;
    if (!ec) {
        ec = client_impl::check_status(a, diag);
    }
    co_return op_result{ec, std::move(a)};
}

}  // namespace

void run_session_create(std::shared_ptr<client_impl> impl, session_options o,
                        handler_t<std::string> h) {
    run_operation<std::string>(
        impl, std::move(h),
        [impl, o = std::move(o)]() -> asio::awaitable<std::pair<error_code, result<std::string>>> {
            result<std::string> r;
            error_code ec;
            if ((ec = validate_session_options(o, r.diag)) ||
                (ec = validate_text("datacenter", o.datacenter, r.diag))) {
                co_return std::pair{ec, std::move(r)};
            }
            // Creating twice would leave an orphan session: never resent.
            const std::string body = encode_session_create(o);
            http_call call =
                write_call(*impl, http::verb::put, "session/create", {}, body, false, o.datacenter);
            auto [sec, a] = co_await send(*impl, std::move(call), r.meta, r.diag);
            ec = sec;
            if (!ec) {
                ec = decode_session_id(a.body, r.value, r.diag);
            }
            co_return std::pair{ec, std::move(r)};
        });
}

void run_session_destroy(std::shared_ptr<client_impl> impl, std::string id, handler_t<bool> h) {
    run_operation<bool>(
        impl, std::move(h),
        [impl, id = std::move(id)]() -> asio::awaitable<std::pair<error_code, result<bool>>> {
            result<bool> r;
            if (auto ec = validate_path_segment("session ID", id, r.diag)) {
                co_return std::pair{ec, std::move(r)};
            }
            const std::string path = "session/destroy/" + id;
            // Destroying twice is harmless: idempotent. Named empty arguments: g++ 12 mishandles
            // `{}` temporaries in coroutine frames.
            const params_t no_params;
            const std::string no_body;
            http_call call = write_call(*impl, http::verb::put, path, no_params, no_body, true);
            auto [ec, a] = co_await send(*impl, std::move(call), r.meta, r.diag);
            if (!ec) {
                ec = decode_bool(a.body, r.value, r.diag);
            }
            co_return std::pair{ec, std::move(r)};
        });
}

void run_session_renew(std::shared_ptr<client_impl> impl, std::string id,
                       handler_t<session_info> h) {
    run_operation<session_info>(
        impl, std::move(h),
        [impl,
         id = std::move(id)]() -> asio::awaitable<std::pair<error_code, result<session_info>>> {
            result<session_info> r;
            if (auto ec = validate_path_segment("session ID", id, r.diag)) {
                co_return std::pair{ec, std::move(r)};
            }
            const std::string path = "session/renew/" + id;
            // Consul answers 404 for a session it no longer has: check_status maps that to
            // consul_errc::not_found, which is what a renewer must tell apart.
            const params_t no_params;
            const std::string no_body;
            http_call call = write_call(*impl, http::verb::put, path, no_params, no_body, true);
            auto [ec, a] = co_await send(*impl, std::move(call), r.meta, r.diag);
            std::vector<session_info> sessions;
            if (!ec) {
                ec = decode_sessions(a.body, sessions, r.diag);
            }
            if (!ec && sessions.empty()) {
                r.diag.set_client_message("session " + id + " not found on renewal");
                ec = consul_errc::not_found;
            }
            if (!ec) {
                r.value = std::move(sessions.front());
            }
            co_return std::pair{ec, std::move(r)};
        });
}

namespace {

/// A blocking session read (info, list, node).
asio::awaitable<std::pair<error_code, result<std::vector<session_info>>>> session_read(
    std::shared_ptr<client_impl> impl, std::string path, query_options q) {
    result<std::vector<session_info>> r;
    if (auto ec = validate_text("filter", q.filter, r.diag)) {
        co_return std::pair{ec, std::move(r)};
    }
    const params_t no_params;
    http_call call = read_call(*impl, path, no_params, q);
    auto [ec, a] = co_await send(*impl, std::move(call), r.meta, r.diag);
    if (!ec) {
        ec = decode_sessions(a.body, r.value, r.diag);
    }
    co_return std::pair{ec, std::move(r)};
}

}  // namespace

void run_session_info(std::shared_ptr<client_impl> impl, std::string id, query_options q,
                      handler_t<std::optional<session_info>> h) {
    using T = std::optional<session_info>;
    run_operation<T>(impl, std::move(h),
                     [impl, id = std::move(id),
                      q = std::move(q)]() -> asio::awaitable<std::pair<error_code, result<T>>> {
                         result<T> r;
                         if (auto ec = validate_path_segment("session ID", id, r.diag)) {
                             co_return std::pair{ec, std::move(r)};
                         }
                         const std::string path = "session/info/" + id;
                         auto [ec, list] = co_await session_read(impl, path, q);
                         r.meta = list.meta;
                         r.diag = std::move(list.diag);
                         if (!ec && !list.value.empty()) {
                             r.value = std::move(list.value.front());
                         }
                         co_return std::pair{ec, std::move(r)};
                     });
}

void run_session_list(std::shared_ptr<client_impl> impl, query_options q,
                      handler_t<std::vector<session_info>> h) {
    run_operation<std::vector<session_info>>(impl, std::move(h), [impl, q = std::move(q)] {
        return session_read(impl, "session/list", q);
    });
}

void run_session_node(std::shared_ptr<client_impl> impl, std::string node, query_options q,
                      handler_t<std::vector<session_info>> h) {
    using T = std::vector<session_info>;
    run_operation<T>(impl, std::move(h),
                     [impl, node = std::move(node),
                      q = std::move(q)]() -> asio::awaitable<std::pair<error_code, result<T>>> {
                         result<T> r;
                         if (auto ec = validate_path_segment("node name", node, r.diag)) {
                             co_return std::pair{ec, std::move(r)};
                         }
                         const std::string path = "session/node/" + node;
                         co_return co_await session_read(impl, path, q);
                     });
}

}  // namespace lakemesh::consul::detail
