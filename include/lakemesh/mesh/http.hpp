// HTTP/1.1 messages exchanged with service instances through the mesh: plain value types, no
// protocol machinery (that stays in src/mesh).
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace lakemesh::mesh {

/// An HTTP request to a service instance.
struct http_request {
    /// Any RFC 9110 token; case-sensitive, as on the wire ("GET", not "get").
    std::string method = "GET";
    /// Origin-form target, already percent-encoded: "/v1/orders?id=7".
    std::string target = "/";
    /// Extra header fields, sent in this order. Host, Content-Length, Connection and
    /// Transfer-Encoding are lakemesh's to set: such entries here are not sent. A User-Agent here
    /// replaces lakemesh's "lakemesh/0.1".
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;

    /// The value of the first header named `name` (compared case-insensitively), or empty.
    std::string_view header(std::string_view name) const noexcept;
    /// Sets header `name` to `value`: the first entry of that name (in any case) is replaced,
    /// later ones removed; appended when there is none.
    void set_header(std::string name, std::string value);
};

/// A response from a service instance. Any status, 1xx excepted (those are skipped).
struct http_response {
    unsigned status = 0;
    /// Header fields as received, in order.
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;

    /// The value of the first header named `name` (compared case-insensitively), or empty.
    std::string_view header(std::string_view name) const noexcept;
};

/// True for GET, HEAD, PUT, DELETE, OPTIONS and TRACE (RFC 9110 section 9.2.2): sending such a
/// request twice has the effect of sending it once, so a retry is safe. Method names are
/// case-sensitive: "get" is not GET.
bool is_idempotent_method(std::string_view method) noexcept;

}  // namespace lakemesh::mesh
