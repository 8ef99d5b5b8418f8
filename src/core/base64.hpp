// Standard base64 (RFC 4648, padded) through OpenSSL's EVP routines; used for KV values.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace lakemesh::detail {

std::string base64_encode(std::string_view bytes);
/// Returns nullopt on any invalid input (bad characters, bad length, bad padding).
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace lakemesh::detail
