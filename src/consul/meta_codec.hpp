// Decoder of the X-Consul-* response headers, shared by the transport and the fuzz targets.
#pragma once

#include <lakemesh/consul/types.hpp>

#include <optional>
#include <string_view>

namespace lakemesh::consul::detail {

/// Raw values of one answer's X-Consul-* headers; nullopt when the header is absent.
struct consul_meta_headers {
    std::optional<std::string_view> index;         ///< X-Consul-Index
    std::optional<std::string_view> known_leader;  ///< X-Consul-KnownLeader
    std::optional<std::string_view> last_contact;  ///< X-Consul-LastContact
};

/// Sets the fields of `out` whose header is present. A malformed X-Consul-Index is
/// decode_errc::invalid_header, since a watch must not block on an index it made up; a
/// malformed X-Consul-LastContact is ignored (it only informs stale reads).
error_code decode_query_meta(const consul_meta_headers& headers, query_meta& out,
                             diagnostics& diag);

}  // namespace lakemesh::consul::detail
