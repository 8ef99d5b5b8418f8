// Decoders of KV answers, shared by the client and the fuzz targets.
#pragma once

#include <lakemesh/consul/types.hpp>

#include <string>
#include <vector>

namespace lakemesh::consul::detail {

/// A JSON array of KV entries (GET /v1/kv/...), values base64-decoded.
error_code decode_kv_entries(const std::string& body, std::vector<kv_pair>& out, diagnostics& diag);
/// A JSON array of exactly one KV entry (GET of one key); any other count is
/// decode_errc::wrong_type.
error_code decode_single_kv_entry(const std::string& body, kv_pair& out, diagnostics& diag);
/// A JSON array of strings (?keys, status/peers).
error_code decode_string_array(const std::string& body, std::vector<std::string>& out,
                               diagnostics& diag);
/// "true" / "false" (KV writes).
error_code decode_bool(const std::string& body, bool& out, diagnostics& diag);

}  // namespace lakemesh::consul::detail
