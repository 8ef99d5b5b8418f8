// Encoder and decoders of session requests and answers, shared by the client and the fuzz targets.
#pragma once

#include <lakemesh/consul/session.hpp>

#include <string>
#include <vector>

namespace lakemesh::consul::detail {

/// Client-side checks of a create request: TTL zero or within [10s, 86400s], no negative
/// lock delay (validation_errc::invalid_duration), no control characters in the check IDs, and
/// every text in UTF-8 (the body is JSON), so that encode_session_create never throws.
error_code validate_session_options(const session_options& o, diagnostics& diag);
/// The JSON body of PUT /v1/session/create. Only fields that differ from Consul's defaults are
/// sent; node_checks goes as NodeChecks alone, which Consul takes as the exact list.
std::string encode_session_create(const session_options& o);

/// {"ID": "..."} (session/create).
error_code decode_session_id(const std::string& body, std::string& out, diagnostics& diag);
/// An array of sessions (info, list, node, renew); null gives an empty vector.
error_code decode_sessions(const std::string& body, std::vector<session_info>& out,
                           diagnostics& diag);

}  // namespace lakemesh::consul::detail
