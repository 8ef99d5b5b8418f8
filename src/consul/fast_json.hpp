// The lexing shared by the tree-free readers of common Consul answers (kv.cpp, health_codec.cpp).
// Each reader accepts only a simple, common shape and gives up (returns false) on anything else,
// leaving the full JSON decoder to produce the result or explain the error.
#pragma once

#include <charconv>
#include <cstdint>
#include <string_view>
#include <system_error>
#include <utility>

namespace lakemesh::consul::detail {

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
