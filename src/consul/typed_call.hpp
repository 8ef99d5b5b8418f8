// The two shapes of a typed endpoint call: a read whose JSON answer is decoded into T, and a
// write whose answer carries nothing (agent registrations, check updates, maintenance).
#pragma once

#include "client_impl.hpp"

#include <variant>

namespace lakemesh::consul::detail {

/// Rejects control characters in the parts of query options that reach the URL.
inline error_code validate_query(const query_options& q, diagnostics& diag) {
    error_code ec;
    if ((ec = validate_text("datacenter", q.datacenter, diag)) ||
        (ec = validate_text("namespace", q.namespace_name, diag)) ||
        (ec = validate_text("filter", q.filter, diag))) {
        return ec;
    }
    return {};
}

/// Accepts every argument.
struct no_validation {
    error_code operator()(diagnostics&) const { return {}; }
};

/// GET /v1/<path> with the query options, decoded by `decode(const std::string& body, T&,
/// diagnostics&)` once `validate(diagnostics&)` and the options' own validation passed. Called
/// from plain functions: its arguments are then built outside any coroutine frame (see the
/// g++ 12 note in client.hpp).
template <class T, class Decode, class Validate = no_validation>
boost::asio::awaitable<std::pair<error_code, result<T>>> text_read(
    std::shared_ptr<client_impl> impl, std::string path, params_t params, query_options q,
    Decode decode, Validate validate = {}) {
    result<T> r;
    error_code ec;
    if ((ec = validate(r.diag)) || (ec = validate_query(q, r.diag))) {
        co_return std::pair{ec, std::move(r)};
    }
    http_call call = read_call(*impl, path, std::move(params), q);
    auto [xec, a] = co_await impl->net->exchange(std::move(call), r.diag);
    r.meta = a.meta;
    if (!(ec = xec) && !(ec = client_impl::check_status(a, r.diag)) &&
        (ec = decode(a.body, r.value, r.diag))) {
        r.value = T{};
    }
    co_return std::pair{ec, std::move(r)};
}

/// As text_read, for decoders of a parsed answer (`decode(const json&, T&, diagnostics&)`).
template <class T, class Decode, class Validate = no_validation>
boost::asio::awaitable<std::pair<error_code, result<T>>> json_read(
    std::shared_ptr<client_impl> impl, std::string path, params_t params, query_options q,
    Decode decode, Validate validate = {}) {
    auto parse_then_decode = [decode = std::move(decode)](const std::string& body, T& out,
                                                          diagnostics& diag) {
        json j;
        if (auto ec = parse_json(body, j, diag)) {
            return ec;
        }
        return error_code(decode(j, out, diag));
    };
    return text_read<T>(std::move(impl), std::move(path), std::move(params), std::move(q),
                        std::move(parse_then_decode), std::move(validate));
}

/// PUT /v1/<path>; the answer's body is ignored. Agent writes are idempotent: repeating one
/// leaves the agent in the same state.
inline boost::asio::awaitable<error_code> empty_write(client_impl& impl, std::string path,
                                                      params_t params, std::string body,
                                                      result<std::monostate>& r) {
    http_call call = write_call(impl, boost::beast::http::verb::put, path, std::move(params),
                                std::move(body), true);
    co_return co_await call_json(impl, std::move(call), r.diag, &r.meta, nullptr);
}

}  // namespace lakemesh::consul::detail
