// KV operations: https://developer.hashicorp.com/consul/api-docs/kv
#include "client_impl.hpp"
#include "core/base64.hpp"
#include "fast_json.hpp"
#include "kv_codec.hpp"

#include <charconv>
#include <string_view>

namespace lakemesh::consul::detail {

namespace asio = boost::asio;
namespace http = boost::beast::http;

namespace {

/// Reads the common shape of a KV answer without building a JSON tree: an array of objects whose
/// strings are printable ASCII without escapes and whose numbers are unsigned integers. Anything
/// else (escapes, other characters, negative or fractional numbers, nested values, a missing or
/// mistyped field, bad base64, malformed JSON) makes it give up and return false, and the caller
/// decodes with the full JSON parser, which accepts every valid answer and explains every error.
/// So it only ever returns true with the result the full parser gives.
class kv_fast_reader : fast_json_cursor {
  public:
    explicit kv_fast_reader(std::string_view text) : fast_json_cursor(text) {}

    bool read(std::vector<kv_pair>& out) {
        return read_whole_array(out, [this](kv_pair& e) { return read_entry(e); });
    }

    /// An array of exactly one entry (GET of one key), read straight into `e`.
    bool read_single(kv_pair& e) {
        skip_ws();
        if (!eat('[')) {
            return false;
        }
        skip_ws();
        if (!read_entry(e)) {
            return false;
        }
        skip_ws();
        if (!eat(']')) {
            return false;
        }
        skip_ws();
        return p_ == end_;
    }

  private:
    bool read_entry(kv_pair& e) {
        if (!eat('{')) {
            return false;
        }
        std::string_view value64;
        bool have_key = false;
        bool have_create = false;
        bool have_modify = false;
        skip_ws();
        if (!eat('}')) {
            do {
                skip_ws();
                std::string_view name;
                if (!read_plain_string(name)) {
                    return false;
                }
                skip_ws();
                if (!eat(':')) {
                    return false;
                }
                skip_ws();
                // JSON null means absent, as in the full decoder.
                const bool null = eat_word("null");
                bool ok = true;
                if (name_is(name, "Key")) {
                    ok = null || read_string_into(e.key);
                    have_key = !null;
                } else if (name_is(name, "Value")) {
                    value64 = {};
                    ok = null || read_plain_string(value64);
                } else if (name_is(name, "Flags")) {
                    ok = read_u64_or_null(null, e.flags);
                } else if (name_is(name, "Session")) {
                    ok = null || read_string_into(e.session);
                    if (null) {
                        e.session.clear();
                    }
                } else if (name_is(name, "LockIndex")) {
                    ok = read_u64_or_null(null, e.lock_index);
                } else if (name_is(name, "CreateIndex")) {
                    ok = read_u64_or_null(null, e.create_index);
                    have_create = !null;
                } else if (name_is(name, "ModifyIndex")) {
                    ok = read_u64_or_null(null, e.modify_index);
                    have_modify = !null;
                } else if (!null) {
                    ok = skip_scalar();
                }
                if (!ok) {
                    return false;
                }
                skip_ws();
            } while (eat(','));
            if (!eat('}')) {
                return false;
            }
        }
        return have_key && have_create && have_modify &&
               lakemesh::detail::base64_decode_into(value64, e.value);
    }

    bool read_string_into(std::string& out) {
        std::string_view v;
        if (!read_plain_string(v)) {
            return false;
        }
        out.assign(v);
        return true;
    }
    bool read_u64_or_null(bool null, std::uint64_t& out) {
        if (null) {
            out = 0;
            return true;
        }
        return read_u64(out);
    }
    /// The value of a field the client does not use: a string, true, false or a number of the
    /// simple kind.
    bool skip_scalar() {
        std::string_view ignored;
        std::uint64_t n = 0;
        return (p_ != end_ && *p_ == '"') ? read_plain_string(ignored)
                                          : eat_word("true") || eat_word("false") || read_u64(n);
    }
};

error_code decode_kv_entries_json(const std::string& body, std::vector<kv_pair>& out,
                                  diagnostics& diag) {
    json j;
    if (auto ec = parse_json(body, j, diag)) {
        return ec;
    }
    if (!j.is_array()) {
        diag.set_client_message("KV answer is not a JSON array");
        return decode_errc::wrong_type;
    }
    out.clear();
    out.reserve(j.size());
    for (std::size_t i = 0; i < j.size(); ++i) {
        const auto& e = j[i];
        const std::string where = "KV[" + std::to_string(i) + "]";
        if (!e.is_object()) {
            diag.set_client_message(where + " is not an object");
            return decode_errc::wrong_type;
        }
        kv_pair p;
        std::string value64;
        error_code ec;
        if ((ec = get_string(e, "Key", p.key, diag, where)) ||
            (ec = get_string(e, "Value", value64, diag, where, false)) ||
            (ec = get_u64(e, "Flags", p.flags, diag, where, false)) ||
            (ec = get_string(e, "Session", p.session, diag, where, false)) ||
            (ec = get_u64(e, "LockIndex", p.lock_index, diag, where, false)) ||
            (ec = get_u64(e, "CreateIndex", p.create_index, diag, where)) ||
            (ec = get_u64(e, "ModifyIndex", p.modify_index, diag, where))) {
            return ec;
        }
        auto value = lakemesh::detail::base64_decode(value64);
        if (!value) {
            diag.set_client_message("field " + where + ".Value is not valid base64");
            return decode_errc::invalid_base64;
        }
        p.value = std::move(*value);
        out.push_back(std::move(p));
    }
    return {};
}

}  // namespace

error_code decode_kv_entries(const std::string& body, std::vector<kv_pair>& out,
                             diagnostics& diag) {
    // Every KV read goes through here; the tree-free reader makes it several times cheaper.
    out.clear();
    if (kv_fast_reader(body).read(out)) {
        return {};
    }
    out.clear();
    return decode_kv_entries_json(body, out, diag);
}

error_code decode_single_kv_entry(const std::string& body, kv_pair& out, diagnostics& diag) {
    out = kv_pair{};
    if (kv_fast_reader(body).read_single(out)) {
        return {};
    }
    std::vector<kv_pair> v;
    if (auto ec = decode_kv_entries_json(body, v, diag)) {
        out = kv_pair{};
        return ec;
    }
    if (v.size() != 1) {
        diag.set_client_message("expected exactly one KV entry, got " + std::to_string(v.size()));
        out = kv_pair{};
        return decode_errc::wrong_type;
    }
    out = std::move(v.front());
    return {};
}

error_code decode_string_array(const std::string& body, std::vector<std::string>& out,
                               diagnostics& diag) {
    json j;
    if (auto ec = parse_json(body, j, diag)) {
        return ec;
    }
    if (!j.is_array()) {
        diag.set_client_message("answer is not a JSON array");
        return decode_errc::wrong_type;
    }
    out.clear();
    for (std::size_t i = 0; i < j.size(); ++i) {
        if (!j[i].is_string()) {
            diag.set_client_message("entry [" + std::to_string(i) + "] is not a string");
            return decode_errc::wrong_type;
        }
        out.push_back(j[i].get<std::string>());
    }
    return {};
}

error_code decode_bool(const std::string& body, bool& out, diagnostics& diag) {
    // Consul answers "true" or "false", sometimes with a trailing newline.
    std::string_view b = body;
    while (!b.empty() && (b.back() == '\n' || b.back() == '\r' || b.back() == ' ')) {
        b.remove_suffix(1);
    }
    if (b == "true") {
        out = true;
        return {};
    }
    if (b == "false") {
        out = false;
        return {};
    }
    diag.set_client_message("expected true or false in the answer");
    return decode_errc::wrong_type;
}

namespace {

/// Validates a KV read and builds its call.
error_code kv_read_call(const client_impl& impl, std::string_view key, params_t params,
                        const query_options& q, bool allow_empty_key, diagnostics& diag,
                        http_call& call) {
    if (auto ec = validate_key(key, diag, allow_empty_key)) {
        return ec;
    }
    error_code ec;
    if ((ec = validate_text("filter", q.filter, diag)) ||
        (ec = validate_text("datacenter", q.datacenter, diag)) ||
        (ec = validate_text("namespace", q.namespace_name, diag))) {
        return ec;
    }
    impl.add_query_params(params, q);
    call.target = client_impl::make_target("kv/", key, params);
    call.blocking = q.index > 0;
    call.wait = q.wait;
    return {};
}

/// The answer to a KV read: 404 means "no such key", which is an empty answer rather than an
/// error.
template <class T, class Decode>
error_code kv_read_answer(error_code ec, http_answer& a, result<T>& r, Decode& decode) {
    r.meta = a.meta;
    if (ec) {
        return ec;
    }
    if (a.status == 404) {
        return {};
    }
    if ((ec = client_impl::check_status(a, r.diag))) {
        return ec;
    }
    ec = decode(a.body, r.value, r.diag);
    if (ec) {
        r.value = T{};
    }
    return ec;
}

/// A KV read as a callback-driven exchange.
template <class T, class Decode>
void run_kv_read(const std::shared_ptr<client_impl>& impl, handler_t<T> h, std::string_view key,
                 params_t params, const query_options& q, bool allow_empty_key, Decode decode) {
    run_exchange<T>(
        impl, std::move(h),
        [&](result<T>& r, http_call& call) {
            return kv_read_call(*impl, key, std::move(params), q, allow_empty_key, r.diag, call);
        },
        [decode](error_code ec, http_answer& a, result<T>& r) {
            return kv_read_answer(ec, a, r, decode);
        });
}

asio::awaitable<std::pair<error_code, result<bool>>> kv_write(std::shared_ptr<client_impl> impl,
                                                              http::verb method, std::string key,
                                                              std::string body, params_t params,
                                                              bool allow_empty_key, bool idempotent,
                                                              std::string dc, std::string ns) {
    result<bool> r;
    if (auto ec = validate_key(key, r.diag, allow_empty_key)) {
        co_return std::pair{ec, std::move(r)};
    }
    impl->add_scope(params, dc, ns);
    for (const auto& [k, v] : params) {
        if (auto ec = validate_text(k, v, r.diag)) {
            co_return std::pair{ec, std::move(r)};
        }
    }
    http_call call;
    call.method = method;
    call.target = client_impl::make_target("kv/", key, params);
    call.body = std::move(body);
    call.idempotent = idempotent;
    auto [ec, a] = co_await impl->net->exchange(std::move(call), r.diag);
    r.meta = a.meta;
    if (!ec) {
        ec = client_impl::check_status(a, r.diag);
    }
    if (!ec) {
        ec = decode_bool(a.body, r.value, r.diag);
    }
    co_return std::pair{ec, std::move(r)};
}

}  // namespace

void run_kv_get(std::shared_ptr<client_impl> impl, std::string key, query_options q,
                handler_t<std::optional<kv_pair>> h) {
    run_kv_read<std::optional<kv_pair>>(
        impl, std::move(h), key, {}, q, false,
        [](const std::string& body, std::optional<kv_pair>& out, diagnostics& diag) {
            return decode_single_kv_entry(body, out.emplace(), diag);
        });
}

void run_kv_list(std::shared_ptr<client_impl> impl, std::string prefix, query_options q,
                 handler_t<std::vector<kv_pair>> h) {
    run_kv_read<std::vector<kv_pair>>(impl, std::move(h), prefix, {{"recurse", ""}}, q, true,
                                      decode_kv_entries);
}

void run_kv_keys(std::shared_ptr<client_impl> impl, std::string prefix, std::string separator,
                 query_options q, handler_t<std::vector<std::string>> h) {
    params_t params{{"keys", ""}};
    if (!separator.empty()) {
        params.emplace_back("separator", std::move(separator));
    }
    run_kv_read<std::vector<std::string>>(impl, std::move(h), prefix, std::move(params), q, true,
                                          decode_string_array);
}

void run_kv_put(std::shared_ptr<client_impl> impl, std::string key, std::string value,
                kv_put_options o, handler_t<bool> h) {
    run_operation<bool>(impl, std::move(h),
                        [impl, key = std::move(key), value = std::move(value), o = std::move(o)] {
                            params_t params;
                            if (o.flags != 0) {
                                params.emplace_back("flags", std::to_string(o.flags));
                            }
                            if (o.cas) {
                                params.emplace_back("cas", std::to_string(*o.cas));
                            }
                            if (!o.acquire.empty()) {
                                params.emplace_back("acquire", o.acquire);
                            }
                            if (!o.release.empty()) {
                                params.emplace_back("release", o.release);
                            }
                            // A plain PUT sets the same value again: idempotent. CAS and lock
                            // operations are not: a repeat after a lost answer could report false
                            // for a write that happened.
                            bool idempotent = !o.cas && o.acquire.empty() && o.release.empty();
                            return kv_write(impl, http::verb::put, key, value, std::move(params),
                                            false, idempotent, o.datacenter, o.namespace_name);
                        });
}

void run_kv_delete(std::shared_ptr<client_impl> impl, std::string key, kv_delete_options o,
                   handler_t<bool> h) {
    run_operation<bool>(impl, std::move(h), [impl, key = std::move(key), o = std::move(o)] {
        params_t params;
        if (o.recurse) {
            params.emplace_back("recurse", "");
        }
        if (o.cas) {
            params.emplace_back("cas", std::to_string(*o.cas));
        }
        return kv_write(impl, http::verb::delete_, key, {}, std::move(params), o.recurse, !o.cas,
                        o.datacenter, o.namespace_name);
    });
}

}  // namespace lakemesh::consul::detail
