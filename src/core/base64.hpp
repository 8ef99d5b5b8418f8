// Standard base64 (RFC 4648, padded) through OpenSSL's EVP routines; used for KV values.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace lakemesh::detail {

std::string base64_encode(std::string_view bytes);
/// Returns nullopt on any invalid input (bad characters, bad length, bad padding).
std::optional<std::string> base64_decode(std::string_view text);
/// As base64_decode, into `out` (its storage reused); false, with `out` unspecified, on invalid
/// input.
bool base64_decode_into(std::string_view text, std::string& out);

}  // namespace lakemesh::detail
