#include "base64.hpp"

#include <openssl/evp.h>

#include <cstring>
#include <limits>

namespace lakemesh::detail {

std::string base64_encode(std::string_view bytes) {
    if (bytes.empty()) {
        return {};
    }
    if (bytes.size() > static_cast<std::size_t>(std::numeric_limits<int>::max() / 4 * 3)) {
        return {};
    }
    std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
    int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                            reinterpret_cast<const unsigned char*>(bytes.data()),
                            static_cast<int>(bytes.size()));
    out.resize(static_cast<std::size_t>(n));
    return out;
}

namespace {

bool is_alphabet(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

}  // namespace

bool base64_decode_into(std::string_view text, std::string& out) {
    out.clear();
    if (text.empty()) {
        return true;
    }
    // Consul sends padded base64 without whitespace. EVP_DecodeBlock rejects every character
    // outside the alphabet, but it also skips whitespace before the text and whitespace, line
    // ends and '-' after it, and it decodes '=' anywhere as zero bits. So the length, the two ends
    // and the place of '=' are checked here, and the characters in between by OpenSSL.
    if (text.size() % 4 != 0 ||
        text.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
        return false;
    }
    const std::size_t n = text.size();
    // '=' only as the last one or two characters, and "x=" is not a valid ending.
    if (std::memchr(text.data(), '=', n - 2) != nullptr) {
        return false;
    }
    std::size_t pad = 0;
    if (text[n - 2] == '=') {
        if (text[n - 1] != '=') {
            return false;
        }
        pad = 2;
    } else if (text[n - 1] == '=') {
        pad = 1;
    }
    if (!is_alphabet(text.front()) || (pad == 0 && !is_alphabet(text.back()))) {
        return false;
    }
    out.resize(n / 4 * 3);
    const int decoded =
        EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                        reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(n));
    // Every character was used (nothing trimmed), so the length is exact.
    if (decoded != static_cast<int>(n / 4 * 3)) {
        return false;
    }
    out.resize(n / 4 * 3 - pad);
    return true;
}

std::optional<std::string> base64_decode(std::string_view text) {
    std::string out;
    if (!base64_decode_into(text, out)) {
        return std::nullopt;
    }
    return out;
}

}  // namespace lakemesh::detail
