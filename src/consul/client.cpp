#include "client_impl.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/url/encode.hpp>
#include <boost/url/grammar/charset.hpp>
#include <boost/url/grammar/string_token.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>

#include <algorithm>
#include <cstdint>
#include <limits>

namespace lakemesh::consul {
namespace detail {

namespace asio = boost::asio;
namespace http = boost::beast::http;

client_impl::client_impl(asio::any_io_executor ex, client_config c, observe::logger l)
    : net(std::make_shared<transport>(std::move(ex), std::move(c), l)), log(std::move(l)) {}

namespace {

/// Appends `text` percent-encoded for `chars`: text that needs no encoding (a plain key or
/// name) is found so by one scan and copied, rather than measured and encoded in two passes.
template <class CharSet>
void append_encoded(std::string& out, std::string_view text, const CharSet& chars) {
    const char* end = text.data() + text.size();
    if (boost::urls::grammar::find_if_not(text.data(), end, chars) == end) {
        out.append(text);
        return;
    }
    boost::urls::encode(text, chars, {}, boost::urls::string_token::append_to(out));
}

}  // namespace

std::string client_impl::make_target(std::string_view path, const params_t& params) {
    return make_target("", path, params);
}

std::string client_impl::make_target(std::string_view plain_prefix, std::string_view path,
                                     const params_t& params) {
    // Unreserved characters and '/' stay as they are; everything else is percent-encoded, so a
    // key such as "a b/c?d" reaches Consul as the segments "a b" and "c?d".
    static constexpr auto segment_chars = boost::urls::unreserved_chars + '/';
    std::string out;
    out.reserve(4 + plain_prefix.size() + path.size() + 16 * params.size());
    out += "/v1/";
    out += plain_prefix;
    append_encoded(out, path, segment_chars);
    char sep = '?';
    for (const auto& [k, v] : params) {
        out += sep;
        append_encoded(out, k, boost::urls::unreserved_chars);
        if (!v.empty()) {
            out += '=';
            append_encoded(out, v, boost::urls::unreserved_chars);
        }
        sep = '&';
    }
    return out;
}

void client_impl::add_scope(params_t& params, const std::string& dc, const std::string& ns) const {
    if (const auto& d = dc.empty() ? cfg().datacenter : dc; !d.empty()) {
        params.emplace_back("dc", d);
    }
    if (const auto& n = ns.empty() ? cfg().namespace_name : ns; !n.empty()) {
        params.emplace_back("ns", n);
    }
}

void client_impl::add_query_params(params_t& params, const query_options& q) const {
    add_scope(params, q.datacenter, q.namespace_name);
    switch (q.consistency.value_or(cfg().consistency)) {
        case consistency_mode::stale:
            params.emplace_back("stale", "");
            break;
        case consistency_mode::consistent:
            params.emplace_back("consistent", "");
            break;
        case consistency_mode::default_mode:
            break;
    }
    if (q.index > 0) {
        params.emplace_back("index", std::to_string(q.index));
        if (q.wait.count() > 0) {
            params.emplace_back("wait", std::to_string(q.wait.count()) + "ms");
        }
    }
    if (!q.filter.empty()) {
        params.emplace_back("filter", q.filter);
    }
}

error_code client_impl::check_status(const http_answer& a, diagnostics& diag) {
    auto ec = error_from_consul_answer(a.status, a.body);
    if (ec) {
        diag.set_http_status(a.status);
        // Consul's error bodies are short text; keep a bounded amount.
        diag.set_server_message(a.body.size() > 4096 ? a.body.substr(0, 4096) + "..." : a.body);
    }
    return ec;
}

bool same_executor(const asio::any_completion_executor& ex, const asio::any_io_executor& io) {
    // Both unwrap to the io_context's executor type when they come from io_context::get_executor
    // (any_completion_executor built from an any_io_executor holds its target, not a copy of it).
    using plain = asio::io_context::executor_type;
    const auto* a = ex.target<plain>();
    const auto* b = io.target<plain>();
    return a != nullptr && b != nullptr && *a == *b;
}

error_code validate_text(std::string_view what, std::string_view text, diagnostics& diag,
                         bool allow_empty) {
    if (!allow_empty && text.empty()) {
        diag.set_client_message(std::string(what) + " must not be empty");
        return validation_errc::invalid_name;
    }
    for (char c : text) {
        auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u == 0x7f) {
            diag.set_client_message(std::string(what) + " contains a control character");
            return c == '\r' || c == '\n' ? validation_errc::header_injection
                                          : validation_errc::control_character;
        }
    }
    return {};
}

namespace {
/// Whether an HTTP server that cleans paths (Go's ServeMux: Consul) would rewrite `text` as
/// part of a URL path: a "." or ".." segment, or an empty one ("//", a leading '/'). A trailing
/// '/' (a KV folder) is kept by the cleaning and allowed.
bool has_unclean_segment(std::string_view text) {
    std::size_t start = 0;
    while (start < text.size()) {
        auto end = text.find('/', start);
        if (end == std::string_view::npos) {
            end = text.size();
        }
        const auto seg = text.substr(start, end - start);
        if (seg == "." || seg == ".." || (seg.empty() && end < text.size())) {
            return true;
        }
        start = end + 1;
    }
    return false;
}
}  // namespace

error_code validate_path_segment(std::string_view what, std::string_view text, diagnostics& diag,
                                 bool allow_empty) {
    if (auto ec = validate_text(what, text, diag, allow_empty)) {
        return ec;
    }
    if (has_unclean_segment(text)) {
        diag.set_client_message(std::string(what) + " has a '.', '..' or empty path segment: '" +
                                std::string(text) + "'");
        return validation_errc::unclean_path;
    }
    return {};
}

error_code validate_key(std::string_view key, diagnostics& diag, bool allow_empty) {
    if (!allow_empty && key.empty()) {
        diag.set_client_message("KV key must not be empty");
        return validation_errc::invalid_key;
    }
    if (!key.empty() && key.front() == '/') {
        diag.set_client_message("KV key must not start with '/': " + std::string(key));
        return validation_errc::invalid_key;
    }
    return validate_path_segment("KV key", key, diag, true);
}

error_code validate_utf8(std::string_view what, std::string_view text, diagnostics& diag) {
    std::size_t i = 0;
    while (i < text.size()) {
        const auto lead = static_cast<unsigned char>(text[i]);
        std::size_t len = 1;
        std::uint32_t cp = lead;
        std::uint32_t min = 0;
        if (lead >= 0xF0 && lead <= 0xF4) {
            len = 4, cp = lead & 0x07u, min = 0x10000;
        } else if (lead >= 0xE0 && lead <= 0xEF) {
            len = 3, cp = lead & 0x0Fu, min = 0x800;
        } else if (lead >= 0xC2 && lead <= 0xDF) {
            len = 2, cp = lead & 0x1Fu, min = 0x80;
        } else if (lead >= 0x80) {
            len = 0;  // a continuation byte, an overlong lead or beyond U+10FFFF
        }
        bool ok = len != 0 && text.size() - i >= len;
        for (std::size_t k = 1; ok && k < len; ++k) {
            const auto c = static_cast<unsigned char>(text[i + k]);
            ok = (c & 0xC0u) == 0x80u;
            cp = (cp << 6) | (c & 0x3Fu);
        }
        // Overlong forms, UTF-16 surrogates and code points past U+10FFFF are not UTF-8.
        if (!ok || cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
            diag.set_client_message(std::string(what) + " is not valid UTF-8 (byte " +
                                    std::to_string(i) + ")");
            return validation_errc::invalid_argument;
        }
        i += len;
    }
    return {};
}

error_code parse_json(const std::string& body, json& out, diagnostics& diag) {
    out = json::parse(body, nullptr, false);
    if (out.is_discarded()) {
        diag.set_client_message("response body is not valid JSON");
        return decode_errc::malformed_json;
    }
    return {};
}

error_code get_string(const json& obj, const char* field, std::string& out, diagnostics& diag,
                      const std::string& where, bool required) {
    auto it = obj.find(field);
    if (it == obj.end() || it->is_null()) {
        if (!required) {
            out.clear();
            return {};
        }
        diag.set_client_message("missing field " + where + "." + field);
        return decode_errc::missing_field;
    }
    if (!it->is_string()) {
        diag.set_client_message("field " + where + "." + field + " is not a string");
        return decode_errc::wrong_type;
    }
    out = it->get<std::string>();
    return {};
}

error_code get_u64(const json& obj, const char* field, std::uint64_t& out, diagnostics& diag,
                   const std::string& where, bool required) {
    auto it = obj.find(field);
    if (it == obj.end() || it->is_null()) {
        if (!required) {
            out = 0;
            return {};
        }
        diag.set_client_message("missing field " + where + "." + field);
        return decode_errc::missing_field;
    }
    if (!it->is_number_unsigned() && !(it->is_number_integer() && it->get<std::int64_t>() >= 0)) {
        diag.set_client_message("field " + where + "." + field + " is not a non-negative integer");
        return decode_errc::wrong_type;
    }
    out = it->get<std::uint64_t>();
    return {};
}

namespace {
const json* find_field(const json& obj, const char* field) {
    auto it = obj.find(field);
    return it == obj.end() || it->is_null() ? nullptr : &*it;
}
error_code missing(diagnostics& diag, const std::string& where, const char* field) {
    diag.set_client_message("missing field " + where + "." + field);
    return decode_errc::missing_field;
}
error_code wrong(diagnostics& diag, const std::string& where, const char* field,
                 const char* expected) {
    diag.set_client_message("field " + where + "." + field + " is not " + expected);
    return decode_errc::wrong_type;
}
}  // namespace

error_code get_bool(const json& obj, const char* field, bool& out, diagnostics& diag,
                    const std::string& where, bool required) {
    const json* v = find_field(obj, field);
    if (v == nullptr) {
        out = false;
        return required ? missing(diag, where, field) : error_code{};
    }
    if (!v->is_boolean()) {
        return wrong(diag, where, field, "a boolean");
    }
    out = v->get<bool>();
    return {};
}

error_code get_i64(const json& obj, const char* field, std::int64_t& out, diagnostics& diag,
                   const std::string& where, bool required) {
    const json* v = find_field(obj, field);
    if (v == nullptr) {
        out = 0;
        return required ? missing(diag, where, field) : error_code{};
    }
    // An unsigned above INT64_MAX would wrap to a negative value: not an int64.
    if (v->is_number_unsigned() &&
        v->get<std::uint64_t>() >
            static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        return wrong(diag, where, field, "an integer");
    }
    if (v->is_number_integer()) {
        out = v->get<std::int64_t>();
        return {};
    }
    // Go encodes some integers as floats with no fraction (e.g. durations); accept exact ones.
    // The range test comes first: converting a double outside int64 is undefined behaviour.
    if (v->is_number_float()) {
        double d = v->get<double>();
        if (d >= -0x1p63 && d < 0x1p63 && d == static_cast<double>(static_cast<std::int64_t>(d))) {
            out = static_cast<std::int64_t>(d);
            return {};
        }
    }
    return wrong(diag, where, field, "an integer");
}

error_code get_string_list(const json& obj, const char* field, std::vector<std::string>& out,
                           diagnostics& diag, const std::string& where, bool required) {
    out.clear();
    const json* v = find_field(obj, field);
    if (v == nullptr) {
        return required ? missing(diag, where, field) : error_code{};
    }
    if (!v->is_array()) {
        return wrong(diag, where, field, "an array of strings");
    }
    out.reserve(v->size());
    for (const auto& e : *v) {
        if (!e.is_string()) {
            out.clear();
            return wrong(diag, where, field, "an array of strings");
        }
        out.push_back(e.get<std::string>());
    }
    return {};
}

error_code get_string_map(const json& obj, const char* field,
                          std::map<std::string, std::string>& out, diagnostics& diag,
                          const std::string& where, bool required) {
    out.clear();
    const json* v = find_field(obj, field);
    if (v == nullptr) {
        return required ? missing(diag, where, field) : error_code{};
    }
    if (!v->is_object()) {
        return wrong(diag, where, field, "an object of strings");
    }
    for (const auto& [k, e] : v->items()) {
        if (!e.is_string()) {
            out.clear();
            return wrong(diag, where, field, "an object of strings");
        }
        out.emplace(k, e.get<std::string>());
    }
    return {};
}

error_code expect_object(const json& j, diagnostics& diag, const std::string& where) {
    if (j.is_object()) {
        return {};
    }
    diag.set_client_message(where + " is not a JSON object");
    return decode_errc::wrong_type;
}

error_code expect_array(const json& j, diagnostics& diag, const std::string& where) {
    if (j.is_array()) {
        return {};
    }
    diag.set_client_message(where + " is not a JSON array");
    return decode_errc::wrong_type;
}

asio::awaitable<error_code> call_json(client_impl& impl, http_call call, diagnostics& diag,
                                      query_meta* meta, json* body, bool allow_404, bool* found) {
    if (found != nullptr) {
        *found = true;
    }
    auto [ec, a] = co_await impl.net->exchange(std::move(call), diag);
    if (meta != nullptr) {
        *meta = a.meta;
    }
    if (ec) {
        co_return ec;
    }
    if (allow_404 && a.status == 404) {
        if (found != nullptr) {
            *found = false;
        }
        co_return error_code{};
    }
    if ((ec = client_impl::check_status(a, diag))) {
        co_return ec;
    }
    if (body != nullptr) {
        ec = parse_json(a.body, *body, diag);
    }
    co_return ec;
}

http_call read_call(const client_impl& impl, std::string_view path, params_t params,
                    const query_options& q) {
    impl.add_query_params(params, q);
    http_call call;
    call.target = client_impl::make_target(path, params);
    call.blocking = q.index > 0;
    call.wait = q.wait;
    return call;
}

http_call write_call(const client_impl& impl, http::verb method, std::string_view path,
                     params_t params, std::string body, bool idempotent, const std::string& dc) {
    impl.add_scope(params, dc, {});
    http_call call;
    call.method = method;
    call.target = client_impl::make_target(path, params);
    call.body = std::move(body);
    call.idempotent = idempotent;
    return call;
}

// ------------------------------------------------------------------ status and raw

void run_status_leader(std::shared_ptr<client_impl> impl, handler_t<std::string> h) {
    run_operation<std::string>(
        impl, std::move(h),
        [impl]() -> asio::awaitable<std::pair<error_code, result<std::string>>> {
            result<std::string> r;
            http_call call;
            call.target = client_impl::make_target("status/leader", {});
            auto [ec, a] = co_await impl->net->exchange(std::move(call), r.diag);
            if (!ec) {
                ec = client_impl::check_status(a, r.diag);
            }
            json j;
            if (!ec && !(ec = parse_json(a.body, j, r.diag))) {
                if (!j.is_string()) {
                    r.diag.set_client_message("status/leader answer is not a JSON string");
                    ec = decode_errc::wrong_type;
                } else {
                    r.value = j.get<std::string>();
                }
            }
            co_return std::pair{ec, std::move(r)};
        });
}

void run_status_peers(std::shared_ptr<client_impl> impl, handler_t<std::vector<std::string>> h) {
    run_operation<std::vector<std::string>>(
        impl, std::move(h),
        [impl]() -> asio::awaitable<std::pair<error_code, result<std::vector<std::string>>>> {
            result<std::vector<std::string>> r;
            http_call call;
            call.target = client_impl::make_target("status/peers", {});
            auto [ec, a] = co_await impl->net->exchange(std::move(call), r.diag);
            if (!ec) {
                ec = client_impl::check_status(a, r.diag);
            }
            json j;
            if (!ec && !(ec = parse_json(a.body, j, r.diag))) {
                if (!j.is_array()) {
                    r.diag.set_client_message("status/peers answer is not a JSON array");
                    ec = decode_errc::wrong_type;
                } else {
                    for (const auto& e : j) {
                        if (!e.is_string()) {
                            r.diag.set_client_message("status/peers entry is not a string");
                            ec = decode_errc::wrong_type;
                            break;
                        }
                        r.value.push_back(e.get<std::string>());
                    }
                }
            }
            co_return std::pair{ec, std::move(r)};
        });
}

void run_raw(std::shared_ptr<client_impl> impl, raw_request req, handler_t<raw_response> h) {
    run_exchange<raw_response>(
        impl, std::move(h),
        [&](result<raw_response>& r, http_call& call) -> error_code {
            call.method = http::string_to_verb(req.method);
            if (call.method == http::verb::unknown) {
                r.diag.set_client_message("unknown HTTP method '" + req.method + "'");
                return validation_errc::invalid_argument;
            }
            if (auto ec = validate_text("path", req.path, r.diag, false)) {
                return ec;
            }
            for (const auto& [k, v] : req.params) {
                if (auto ec = validate_text("query parameter " + k, k + v, r.diag)) {
                    return ec;
                }
            }
            call.target = client_impl::make_target(req.path, req.params);
            call.body = std::move(req.body);
            call.idempotent = req.idempotent.value_or(call.method == http::verb::get ||
                                                      call.method == http::verb::head);
            return {};
        },
        [](error_code ec, http_answer& a, result<raw_response>& r) {
            r.meta = a.meta;
            r.value.status = a.status;
            r.value.body = std::move(a.body);
            return ec;
        });
}

}  // namespace detail

namespace {
std::shared_ptr<detail::client_impl> make_impl(boost::asio::any_io_executor ex, client_config cfg,
                                               observe::logger log) {
    diagnostics diag;
    if (auto ec = cfg.validate(diag)) {
        throw lakemesh::error(ec, diag);
    }
    return std::make_shared<detail::client_impl>(std::move(ex), std::move(cfg), std::move(log));
}
}  // namespace

client::client(executor_type ex, client_config cfg, observe::logger log)
    : impl_(make_impl(std::move(ex), std::move(cfg), std::move(log))) {}
client::client(boost::asio::io_context& io, client_config cfg, observe::logger log)
    : client(io.get_executor(), std::move(cfg), std::move(log)) {}
client::~client() {
    if (impl_) {
        impl_->net->shutdown();
    }
}
client::client(client&&) noexcept = default;
client& client::operator=(client&&) noexcept = default;

client::executor_type client::get_executor() const noexcept {
    return impl_->net->executor();
}
const client_config& client::config() const noexcept {
    return impl_->cfg();
}
void client::shutdown() {
    impl_->net->shutdown();
}
std::size_t client::open_connections(std::size_t i) const {
    return impl_->net->open_connections(i);
}
void client::set_observer(std::shared_ptr<request_observer> observer) {
    impl_->net->set_observer(std::move(observer));
}

}  // namespace lakemesh::consul
