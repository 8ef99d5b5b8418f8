// base64_decode/base64_encode (KV values): a reference decoder written for this target decides
// what must be accepted and what it decodes to, and any bytes survive encode -> decode.
#include "core/base64.hpp"
#include "fuzz_check.hpp"

#include <optional>
#include <string>
#include <string_view>

namespace {

using lakemesh::detail::base64_decode;
using lakemesh::detail::base64_encode;

int sextet(char c) {
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '+') {
        return 62;
    }
    if (c == '/') {
        return 63;
    }
    return -1;
}

/// Padded RFC 4648 as Consul sends it; bits past the last byte are ignored, as OpenSSL does.
std::optional<std::string> reference_decode(std::string_view text) {
    if (text.size() % 4 != 0) {
        return std::nullopt;
    }
    std::size_t pad = 0;
    while (pad < text.size() && text[text.size() - 1 - pad] == '=') {
        ++pad;
    }
    if (pad > 2) {
        return std::nullopt;
    }
    std::string out;
    for (std::size_t i = 0; i < text.size(); i += 4) {
        unsigned block = 0;
        for (std::size_t k = 0; k < 4; ++k) {
            const bool is_pad = i + k >= text.size() - pad;
            const int v = is_pad ? 0 : sextet(text[i + k]);
            if (v < 0) {
                return std::nullopt;
            }
            block = (block << 6) | static_cast<unsigned>(v);
        }
        out.push_back(static_cast<char>((block >> 16) & 0xff));
        out.push_back(static_cast<char>((block >> 8) & 0xff));
        out.push_back(static_cast<char>(block & 0xff));
    }
    out.resize(out.size() - pad);
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string input = lakemesh::fuzz::as_string(data, size);

    // The input as raw bytes: encoding is canonical, decoding gives the bytes back.
    const std::string encoded =
        lakemesh::fuzz::without_throwing([&] { return base64_encode(input); });
    LAKEMESH_FUZZ_CHECK(encoded.size() == (input.size() + 2) / 3 * 4);
    const auto back = lakemesh::fuzz::without_throwing([&] { return base64_decode(encoded); });
    LAKEMESH_FUZZ_CHECK(back.has_value());
    LAKEMESH_FUZZ_CHECK(*back == input);

    // The input as text from Consul: the same verdict and bytes as the reference decoder.
    const auto decoded = lakemesh::fuzz::without_throwing([&] { return base64_decode(input); });
    const auto expected = reference_decode(input);
    LAKEMESH_FUZZ_CHECK(decoded.has_value() == expected.has_value());
    if (decoded) {
        LAKEMESH_FUZZ_CHECK(*decoded == *expected);
        // Non-canonical trailing bits may differ, but the length and the bytes may not.
        const std::string again = base64_encode(*decoded);
        LAKEMESH_FUZZ_CHECK(again.size() == input.size());
        LAKEMESH_FUZZ_CHECK(base64_decode(again) == decoded);
    }
    return 0;
}
