#include "base64.hpp"

#include <openssl/evp.h>

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

std::optional<std::string> base64_decode(std::string_view text) {
    if (text.empty()) {
        return std::string{};
    }
    // EVP_DecodeBlock accepts unpadded tails and surrounding whitespace; Consul always sends
    // padded base64 without whitespace, so insist on that and compute the padding ourselves.
    if (text.size() % 4 != 0 ||
        text.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
        return std::nullopt;
    }
    std::size_t pad = 0;
    if (text.back() == '=') {
        pad = text[text.size() - 2] == '=' ? 2 : 1;
    }
    for (std::size_t i = 0; i < text.size() - pad; ++i) {
        char c = text[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '+' || c == '/';
        if (!ok) {
            return std::nullopt;
        }
    }
    std::string out(text.size() / 4 * 3, '\0');
    int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                            reinterpret_cast<const unsigned char*>(text.data()),
                            static_cast<int>(text.size()));
    if (n < 0 || static_cast<std::size_t>(n) < pad) {
        return std::nullopt;
    }
    out.resize(static_cast<std::size_t>(n) - pad);
    return out;
}

}  // namespace lakemesh::detail
