// Encoder and decoder of transactions, shared by the client and the fuzz targets.
#pragma once

#include <lakemesh/consul/txn.hpp>

#include <string>
#include <vector>

namespace lakemesh::consul::detail {

/// Client-side checks: at most max_txn_ops operations, valid keys (a prefix may be empty for
/// get-tree and delete-tree), a session for lock, unlock and check-session; keys and sessions in
/// UTF-8 (the body is JSON), so that encode_txn never throws.
error_code validate_txn(const std::vector<txn_kv_op>& ops, diagnostics& diag);
/// True when no operation writes: the transaction may be resent and read with a consistency mode.
bool txn_is_read_only(const std::vector<txn_kv_op>& ops);
/// Consul's verb for `v` ("set", "get-tree", ...).
const char* txn_verb_name(txn_kv_verb v);
/// The JSON body of PUT /v1/txn: [{"KV": {...}}, ...], values base64-encoded.
std::string encode_txn(const std::vector<txn_kv_op>& ops);
/// {"Results": [{"KV": {...}}] | null, "Errors": [{"OpIndex": n, "What": "..."}] | null}, as
/// Consul answers both on commit (200) and on rollback (409).
error_code decode_txn_response(const std::string& body, txn_result& out, diagnostics& diag);

}  // namespace lakemesh::consul::detail
