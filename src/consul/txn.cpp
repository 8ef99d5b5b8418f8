// Transactions: https://developer.hashicorp.com/consul/api-docs/txn
#include "client_impl.hpp"
#include "core/base64.hpp"
#include "txn_codec.hpp"

#include <algorithm>

namespace lakemesh::consul::detail {

namespace asio = boost::asio;
namespace http = boost::beast::http;

namespace {

bool takes_value(txn_kv_verb v) {
    return v == txn_kv_verb::set || v == txn_kv_verb::cas || v == txn_kv_verb::lock ||
           v == txn_kv_verb::unlock;
}
bool takes_index(txn_kv_verb v) {
    return v == txn_kv_verb::cas || v == txn_kv_verb::check_index || v == txn_kv_verb::delete_cas;
}
bool takes_session(txn_kv_verb v) {
    return v == txn_kv_verb::lock || v == txn_kv_verb::unlock || v == txn_kv_verb::check_session;
}
bool takes_prefix(txn_kv_verb v) {
    return v == txn_kv_verb::get_tree || v == txn_kv_verb::delete_tree;
}

}  // namespace

const char* txn_verb_name(txn_kv_verb v) {
    switch (v) {
        case txn_kv_verb::set:
            return "set";
        case txn_kv_verb::cas:
            return "cas";
        case txn_kv_verb::get:
            return "get";
        case txn_kv_verb::get_tree:
            return "get-tree";
        case txn_kv_verb::check_index:
            return "check-index";
        case txn_kv_verb::check_session:
            return "check-session";
        case txn_kv_verb::check_not_exists:
            return "check-not-exists";
        case txn_kv_verb::delete_key:
            return "delete";
        case txn_kv_verb::delete_tree:
            return "delete-tree";
        case txn_kv_verb::delete_cas:
            return "delete-cas";
        case txn_kv_verb::lock:
            return "lock";
        case txn_kv_verb::unlock:
            return "unlock";
    }
    return "";
}

error_code validate_txn(const std::vector<txn_kv_op>& ops, diagnostics& diag) {
    if (ops.size() > max_txn_ops) {
        diag.set_client_message("a transaction holds at most " + std::to_string(max_txn_ops) +
                                " operations, got " + std::to_string(ops.size()));
        return validation_errc::invalid_argument;
    }
    for (std::size_t i = 0; i < ops.size(); ++i) {
        const auto& op = ops[i];
        if (txn_verb_name(op.verb)[0] == '\0') {
            diag.set_client_message("operation " + std::to_string(i) + " has an unknown verb");
            return validation_errc::invalid_argument;
        }
        error_code ec;
        if ((ec = validate_key(op.key, diag, takes_prefix(op.verb))) ||
            (ec = validate_utf8("KV key", op.key, diag))) {
            diag.set_client_message("operation " + std::to_string(i) + ": " +
                                    diag.client_message());
            return ec;
        }
        if (takes_session(op.verb)) {
            if ((ec = validate_text("session ID", op.session, diag, false)) ||
                (ec = validate_utf8("session ID", op.session, diag))) {
                diag.set_client_message("operation " + std::to_string(i) + " (" +
                                        txn_verb_name(op.verb) + "): " + diag.client_message());
                return ec;
            }
        }
    }
    return {};
}

bool txn_is_read_only(const std::vector<txn_kv_op>& ops) {
    return std::all_of(ops.begin(), ops.end(), [](const txn_kv_op& op) {
        switch (op.verb) {
            case txn_kv_verb::get:
            case txn_kv_verb::get_tree:
            case txn_kv_verb::check_index:
            case txn_kv_verb::check_session:
            case txn_kv_verb::check_not_exists:
                return true;
            default:
                return false;
        }
    });
}

std::string encode_txn(const std::vector<txn_kv_op>& ops) {
    json body = json::array();
    for (const auto& op : ops) {
        json kv{{"Verb", txn_verb_name(op.verb)}, {"Key", op.key}};
        if (takes_value(op.verb)) {
            kv["Value"] = lakemesh::detail::base64_encode(op.value);
        }
        if (op.flags != 0) {
            kv["Flags"] = op.flags;
        }
        if (takes_index(op.verb)) {
            kv["Index"] = op.index;
        }
        if (takes_session(op.verb)) {
            kv["Session"] = op.session;
        }
        body.push_back(json{{"KV", std::move(kv)}});
    }
    return body.dump();
}

namespace {

error_code decode_kv(const json& e, kv_pair& p, diagnostics& diag, const std::string& where) {
    if (auto ec = expect_object(e, diag, where)) {
        return ec;
    }
    std::string value64;
    error_code ec;
    if ((ec = get_string(e, "Key", p.key, diag, where)) ||
        (ec = get_string(e, "Value", value64, diag, where, false)) ||
        (ec = get_u64(e, "Flags", p.flags, diag, where, false)) ||
        (ec = get_string(e, "Session", p.session, diag, where, false)) ||
        (ec = get_u64(e, "LockIndex", p.lock_index, diag, where, false)) ||
        (ec = get_u64(e, "CreateIndex", p.create_index, diag, where, false)) ||
        (ec = get_u64(e, "ModifyIndex", p.modify_index, diag, where, false))) {
        return ec;
    }
    auto value = lakemesh::detail::base64_decode(value64);
    if (!value) {
        diag.set_client_message("field " + where + ".Value is not valid base64");
        return decode_errc::invalid_base64;
    }
    p.value = std::move(*value);
    return {};
}

}  // namespace

error_code decode_txn_response(const std::string& body, txn_result& out, diagnostics& diag) {
    out = txn_result{};
    json j;
    if (auto ec = parse_json(body, j, diag)) {
        return ec;
    }
    if (auto ec = expect_object(j, diag, "txn answer")) {
        return ec;
    }
    error_code ec;
    if (auto results = j.find("Results"); results != j.end() && !results->is_null()) {
        if ((ec = expect_array(*results, diag, "txn answer.Results"))) {
            return ec;
        }
        for (std::size_t i = 0; i < results->size(); ++i) {
            const auto& r = (*results)[i];
            const std::string where = "Results[" + std::to_string(i) + "]";
            if ((ec = expect_object(r, diag, where))) {
                out = txn_result{};
                return ec;
            }
            auto kv = r.find("KV");
            if (kv == r.end() || kv->is_null()) {
                continue;  // a node, service or check result: not asked for by this client
            }
            kv_pair p;
            if ((ec = decode_kv(*kv, p, diag, where + ".KV"))) {
                out = txn_result{};
                return ec;
            }
            out.results.push_back(std::move(p));
        }
    }
    if (auto errors = j.find("Errors"); errors != j.end() && !errors->is_null()) {
        if ((ec = expect_array(*errors, diag, "txn answer.Errors"))) {
            out = txn_result{};
            return ec;
        }
        for (std::size_t i = 0; i < errors->size(); ++i) {
            const auto& e = (*errors)[i];
            const std::string where = "Errors[" + std::to_string(i) + "]";
            txn_op_error err;
            std::uint64_t op_index = 0;
            if ((ec = expect_object(e, diag, where)) ||
                (ec = get_u64(e, "OpIndex", op_index, diag, where)) ||
                (ec = get_string(e, "What", err.what, diag, where))) {
                out = txn_result{};
                return ec;
            }
            err.op_index = static_cast<std::size_t>(op_index);
            out.errors.push_back(std::move(err));
        }
    }
    return {};
}

void run_txn_commit(std::shared_ptr<client_impl> impl, std::vector<txn_kv_op> ops, txn_options o,
                    handler_t<txn_result> h) {
    run_operation<txn_result>(
        impl, std::move(h),
        [impl, ops = std::move(ops),
         o = std::move(o)]() -> asio::awaitable<std::pair<error_code, result<txn_result>>> {
            result<txn_result> r;
            error_code ec;
            if ((ec = validate_txn(ops, r.diag)) ||
                (ec = validate_text("datacenter", o.datacenter, r.diag))) {
                co_return std::pair{ec, std::move(r)};
            }
            const bool read_only = txn_is_read_only(ops);
            params_t params;
            // Consul ignores a consistency mode on writes; send it only where it means something.
            if (read_only) {
                switch (o.consistency.value_or(impl->cfg().consistency)) {
                    case consistency_mode::stale:
                        params.emplace_back("stale", "");
                        break;
                    case consistency_mode::consistent:
                        params.emplace_back("consistent", "");
                        break;
                    case consistency_mode::default_mode:
                        break;
                }
            }
            // A write may have been applied before a connection died: resend reads only.
            const std::string body = encode_txn(ops);
            http_call call =
                write_call(*impl, http::verb::put, "txn", params, body, read_only, o.datacenter);
            auto [xec, a] = co_await impl->net->exchange(std::move(call), r.diag);
            ec = xec;
            r.meta = a.meta;
            if (ec) {
                co_return std::pair{ec, std::move(r)};
            }
            if (a.status == 409) {
                // Rolled back: the body names the failing operations.
                r.diag.set_http_status(a.status);
                if (auto dec = decode_txn_response(a.body, r.value, r.diag); dec) {
                    r.diag.set_server_message(a.body.substr(0, 4096));
                } else {
                    std::string summary;
                    for (const auto& e : r.value.errors) {
                        summary += (summary.empty() ? "" : "; ") + std::string("op ") +
                                   std::to_string(e.op_index) + ": " + e.what;
                    }
                    r.diag.set_server_message(summary.empty() ? "transaction rolled back"
                                                              : summary);
                }
                r.value.results.clear();
                co_return std::pair{error_code(consul_errc::conflict), std::move(r)};
            }
            if ((ec = client_impl::check_status(a, r.diag))) {
                co_return std::pair{ec, std::move(r)};
            }
            ec = decode_txn_response(a.body, r.value, r.diag);
            co_return std::pair{ec, std::move(r)};
        });
}

}  // namespace lakemesh::consul::detail
