// The lexing shared by the tree-free readers of common Consul answers (kv.cpp, health_codec.cpp).
// Each reader accepts only a simple, common shape and gives up (returns false) on anything else,
// leaving the full JSON decoder to produce the result or explain the error.
#pragma once

#include <bit>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <system_error>
#include <utility>

namespace lakemesh::consul::detail {

/// `s == lit` with the length known at compile time, so the comparison is inlined (the readers
/// compare field names once per member of every answer).
template <std::size_t N>
bool name_is(std::string_view s, const char (&lit)[N]) {
    return s.size() == N - 1 && std::memcmp(s.data(), lit, N - 1) == 0;
}

class fast_json_cursor {
  protected:
    explicit fast_json_cursor(std::string_view text) : p_(text.data()), end_(p_ + text.size()) {}

    /// A JSON array at the cursor whose elements `one(element&)` reads into out.emplace_back().
    template <class Vector, class ReadOne>
    bool read_array(Vector& out, ReadOne&& one) {
        if (!eat('[')) {
            return false;
        }
        skip_ws();
        if (eat(']')) {
            return true;
        }
        do {
            skip_ws();
            if (!one(out.emplace_back())) {
                return false;
            }
            skip_ws();
        } while (eat(','));
        return eat(']');
    }

    /// The whole text is one JSON array (as read_array); true when nothing but whitespace
    /// follows it.
    template <class Vector, class ReadOne>
    bool read_whole_array(Vector& out, ReadOne&& one) {
        skip_ws();
        if (!read_array(out, std::forward<ReadOne>(one))) {
            return false;
        }
        skip_ws();
        return p_ == end_;
    }

    /// The first byte in [p, end) that a JSON string cannot hold as it is: '"', '\\', a control
    /// character, DEL or a byte outside ASCII; end when there is none. Eight bytes at a time: in
    /// each word the lowest such byte is found exactly (a borrow only ever flags bytes above a
    /// flagged one).
    static const char* skip_plain(const char* p, const char* end) {
        constexpr std::uint64_t ones = 0x0101010101010101u;
        constexpr std::uint64_t highs = 0x8080808080808080u;
        const auto zero_bytes = [](std::uint64_t v) { return (v - ones) & ~v; };
        if constexpr (std::endian::native == std::endian::little) {
            while (end - p >= 8) {
                std::uint64_t x;
                std::memcpy(&x, p, 8);
                const std::uint64_t flagged =
                    (((x - ones * 0x20) & ~x) | x | zero_bytes(x ^ (ones * 0x7f)) |
                     zero_bytes(x ^ (ones * '"')) | zero_bytes(x ^ (ones * '\\'))) &
                    highs;
                if (flagged != 0) {
                    return p + std::countr_zero(flagged) / 8;
                }
                p += 8;
            }
        }
        while (p != end) {
            const auto u = static_cast<unsigned char>(*p);
            if (u < 0x20 || u > 0x7e || u == '"' || u == '\\') {
                break;
            }
            ++p;
        }
        return p;
    }

    /// A string of printable ASCII without escapes at the cursor; `out` views its contents.
    bool read_plain_string(std::string_view& out) {
        if (!eat('"')) {
            return false;
        }
        const char* start = p_;
        p_ = skip_plain(p_, end_);
        if (p_ == end_ || *p_ != '"') {
            return false;
        }
        out = std::string_view(start, static_cast<std::size_t>(p_ - start));
        ++p_;
        return true;
    }

    void skip_ws() {
        while (p_ != end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) {
            ++p_;
        }
    }
    bool eat(char c) {
        if (p_ != end_ && *p_ == c) {
            ++p_;
            return true;
        }
        return false;
    }
    bool eat_word(std::string_view w) {
        if (static_cast<std::size_t>(end_ - p_) >= w.size() &&
            std::string_view(p_, w.size()) == w) {
            p_ += w.size();
            return true;
        }
        return false;
    }
    /// An unsigned integer without sign, fraction, exponent or leading zeros, within 64 bits.
    bool read_u64(std::uint64_t& out) {
        const char* start = p_;
        while (p_ != end_ && *p_ >= '0' && *p_ <= '9') {
            ++p_;
        }
        const auto n = static_cast<std::size_t>(p_ - start);
        if (n == 0 || (n > 1 && *start == '0')) {
            return false;
        }
        if (p_ != end_ && (*p_ == '.' || *p_ == 'e' || *p_ == 'E')) {
            return false;
        }
        auto [q, ec] = std::from_chars(start, p_, out);
        return ec == std::errc{} && q == p_;
    }

    const char* p_;
    const char* end_;
};

}  // namespace lakemesh::consul::detail
