#include "base64.hpp"

#include <openssl/evp.h>

#include <array>
#include <cstdint>
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

/// The value of each base64 character, -1 for anything else (including '=').
constexpr std::array<signed char, 256> make_sextets() {
    std::array<signed char, 256> t{};
    t.fill(-1);
    constexpr std::string_view alphabet =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (std::size_t i = 0; i < alphabet.size(); ++i) {
        t[static_cast<unsigned char>(alphabet[i])] = static_cast<signed char>(i);
    }
    return t;
}

constexpr auto sextets = make_sextets();

}  // namespace

// Decoded here rather than by EVP_DecodeBlock: with the checks it needed around it, OpenSSL's
// routine cost several times this loop on every KV read.
std::optional<std::string> base64_decode(std::string_view text) {
    if (text.empty()) {
        return std::string{};
    }
    // Consul always sends padded base64 without whitespace: insist on that.
    if (text.size() % 4 != 0) {
        return std::nullopt;
    }
    std::size_t pad = 0;
    if (text.back() == '=') {
        pad = text[text.size() - 2] == '=' ? 2 : 1;
    }
    const auto* in = reinterpret_cast<const unsigned char*>(text.data());
    std::string out(text.size() / 4 * 3, '\0');
    char* o = out.data();
    const std::size_t last = text.size() - 4;
    for (std::size_t i = 0; i < last; i += 4) {
        const int a = sextets[in[i]];
        const int b = sextets[in[i + 1]];
        const int c = sextets[in[i + 2]];
        const int d = sextets[in[i + 3]];
        if ((a | b | c | d) < 0) {
            return std::nullopt;
        }
        const auto v = static_cast<std::uint32_t>(a << 18 | b << 12 | c << 6 | d);
        *o++ = static_cast<char>(v >> 16);
        *o++ = static_cast<char>(v >> 8);
        *o++ = static_cast<char>(v);
    }
    // The last quad, whose padding counts as zero bits; bits past the last byte are ignored.
    std::uint32_t v = 0;
    for (std::size_t k = 0; k < 4; ++k) {
        int s = 0;
        if (k < 4 - pad) {
            s = sextets[in[last + k]];
            if (s < 0) {
                return std::nullopt;
            }
        }
        v = v << 6 | static_cast<std::uint32_t>(s);
    }
    *o++ = static_cast<char>(v >> 16);
    *o++ = static_cast<char>(v >> 8);
    *o = static_cast<char>(v);
    out.resize(out.size() - pad);
    return out;
}

}  // namespace lakemesh::detail
