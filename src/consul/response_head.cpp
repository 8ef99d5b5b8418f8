#include "response_head.hpp"

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/field.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <limits>

namespace lakemesh::consul::detail {

namespace beast = boost::beast;
namespace http = beast::http;

void answer_parser::on_response_impl(int code, beast::string_view, int, error_code&) {
    out_.status = static_cast<unsigned>(code);
}

void answer_parser::on_field_impl(http::field f, beast::string_view name, beast::string_view value,
                                  error_code&) {
    if (f != http::field::unknown) {
        return;
    }
    // The first occurrence of a repeated header counts.
    if (beast::iequals(name, "X-Consul-Index")) {
        if (!out_.index) {
            out_.index.emplace(value.data(), value.size());
        }
    } else if (beast::iequals(name, "X-Consul-KnownLeader")) {
        if (!out_.known_leader) {
            out_.known_leader.emplace(value.data(), value.size());
        }
    } else if (beast::iequals(name, "X-Consul-LastContact")) {
        if (!out_.last_contact) {
            out_.last_contact.emplace(value.data(), value.size());
        }
    }
}

void answer_parser::on_body_init_impl(const boost::optional<std::uint64_t>& length, error_code&) {
    // The parser has already checked the length against body_limit.
    if (length) {
        out_.body.reserve(static_cast<std::size_t>(*length));
    }
}

std::size_t answer_parser::on_body_impl(beast::string_view data, error_code&) {
    out_.body.append(data.data(), data.size());
    return data.size();
}

std::size_t answer_parser::on_chunk_body_impl(std::uint64_t, beast::string_view data, error_code&) {
    out_.body.append(data.data(), data.size());
    return data.size();
}

namespace {

enum char_class : unsigned char {
    /// RFC 9110 tchar, as Beast's field-name table.
    token = 1,
    /// What Beast takes in a reason phrase or a field value: anything but controls other than HT.
    text = 2,
};

constexpr std::array<unsigned char, 256> make_classes() {
    std::array<unsigned char, 256> t{};
    for (unsigned c = 0; c < 256; ++c) {
        if (c == '\t' || (c >= 0x20 && c != 0x7f)) {
            t[c] |= text;
        }
        const bool alnum =
            (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        if (alnum || std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) !=
                         std::string_view::npos) {
            t[c] |= token;
        }
    }
    return t;
}

constexpr auto classes = make_classes();

bool is(char c, char_class k) {
    return (classes[static_cast<unsigned char>(c)] & k) != 0;
}

std::uint64_t load8(const char* p) {
    std::uint64_t x;
    std::memcpy(&x, p, 8);
    return x;
}

/// `name` (token characters) equals `lower` (lowercase letters and '-', at least 8 bytes)
/// ignoring case: for token characters, setting bit 0x20 maps only the capital letters onto other
/// characters. Eight bytes at a time, the last eight overlapping the ones before.
bool name_is(std::string_view name, std::string_view lower) {
    constexpr std::uint64_t case_bits = 0x2020202020202020u;
    if (name.size() != lower.size()) {
        return false;
    }
    std::size_t i = 0;
    for (; i + 8 < name.size(); i += 8) {
        if ((load8(name.data() + i) | case_bits) != load8(lower.data() + i)) {
            return false;
        }
    }
    i = name.size() - 8;
    return (load8(name.data() + i) | case_bits) == load8(lower.data() + i);
}

/// A decimal as Beast's parse_dec reads a Content-Length: digits only, within 64 bits.
bool parse_length(std::string_view v, std::uint64_t& out) {
    if (v.empty()) {
        return false;
    }
    std::uint64_t n = 0;
    for (char c : v) {
        if (c < '0' || c > '9') {
            return false;
        }
        const auto digit = static_cast<std::uint64_t>(c - '0');
        if (n > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) {
            return false;
        }
        n = n * 10 + digit;
    }
    out = n;
    return true;
}

bool is_ows(char c) {
    return c == ' ' || c == '\t';
}

/// The first byte in [p, end) that is not `text`, or end. Eight bytes at a time: the lowest
/// byte below 0x20 or equal to 0x7f in a word is found exactly (no borrow reaches it from below),
/// and bytes from 0x80 up are never flagged.
const char* skip_text(const char* p, const char* end) {
    constexpr std::uint64_t ones = 0x0101010101010101u;
    constexpr std::uint64_t highs = 0x8080808080808080u;
    while (end - p >= 8) {
        const std::uint64_t x = load8(p);
        const std::uint64_t del = x ^ (ones * 0x7f);
        const std::uint64_t flagged = (((x - ones * 0x20) & ~x) | ((del - ones) & ~del)) & highs;
        if (flagged == 0) {
            p += 8;
            continue;
        }
        if constexpr (std::endian::native == std::endian::little) {
            p += std::countr_zero(flagged) / 8;
            if (*p != '\t') {
                return p;
            }
            ++p;  // HT is text
        } else {
            break;
        }
    }
    while (p != end && is(*p, text)) {
        ++p;
    }
    return p;
}

/// The first byte in [p, end) that is not a token character, or end.
const char* skip_token(const char* p, const char* end) {
    while (end - p >= 8) {
        for (int i = 0; i < 8; ++i) {
            if (!is(p[i], token)) {
                return p + i;
            }
        }
        p += 8;
    }
    while (p != end && is(*p, token)) {
        ++p;
    }
    return p;
}

}  // namespace

head_parse parse_response_head(std::string_view bytes, response_head& head) {
    head = response_head{};
    const char* const first = bytes.data();
    const char* p = first;
    const char* const end = first + std::min(bytes.size(), max_simple_head);
    // Out of bytes: wait for more, unless the head has outgrown what this parser takes.
    const head_parse more =
        bytes.size() >= max_simple_head ? head_parse::not_simple : head_parse::need_more;

    // status-line = "HTTP/1.1" SP 3DIGIT SP reason-phrase CRLF
    constexpr std::string_view version = "HTTP/1.1 ";
    const auto have = static_cast<std::size_t>(end - p);
    if (version.compare(0, std::min(have, version.size()),
                        std::string_view(p, std::min(have, version.size()))) != 0) {
        return head_parse::not_simple;
    }
    if (have < version.size() + 4) {
        for (const char* d = p + version.size(); d < end; ++d) {
            if (d == p + version.size() + 3 ? *d != ' ' : (*d < '0' || *d > '9')) {
                return head_parse::not_simple;
            }
        }
        return more;
    }
    p += version.size();
    unsigned status = 0;
    for (int i = 0; i < 3; ++i, ++p) {
        if (*p < '0' || *p > '9') {
            return head_parse::not_simple;
        }
        status = status * 10 + static_cast<unsigned>(*p - '0');
    }
    if (*p++ != ' ') {
        return head_parse::not_simple;
    }
    // Beast reads these without a body (1xx, 204, 304) whatever the headers say.
    if (status < 200 || status > 599 || status == 204 || status == 304) {
        return head_parse::not_simple;
    }
    head.status = status;
    p = skip_text(p, end);
    if (p == end || (*p == '\r' && p + 1 == end)) {
        return more;
    }
    if (p[0] != '\r' || p[1] != '\n') {
        return head_parse::not_simple;
    }
    p += 2;

    bool have_length = false;
    for (;;) {
        if (p == end) {
            return more;
        }
        if (*p == '\r') {
            if (p + 1 == end) {
                return more;
            }
            if (p[1] != '\n') {
                return head_parse::not_simple;
            }
            p += 2;
            break;
        }
        // field-line = field-name ":" OWS field-value OWS CRLF
        const char* const name_first = p;
        p = skip_token(p, end);
        if (p == end) {
            return more;
        }
        if (*p != ':' || p == name_first) {
            return head_parse::not_simple;
        }
        const std::string_view name(name_first, static_cast<std::size_t>(p - name_first));
        ++p;
        while (p != end && is_ows(*p)) {
            ++p;
        }
        const char* const value_first = p;
        p = skip_text(p, end);
        if (p == end || (*p == '\r' && p + 1 == end)) {
            return more;
        }
        if (p[0] != '\r' || p[1] != '\n') {
            return head_parse::not_simple;
        }
        const char* value_last = p;
        while (value_last != value_first && is_ows(value_last[-1])) {
            --value_last;
        }
        p += 2;
        // A line that starts with whitespace continues this one (obs-fold): Beast joins them.
        if (p != end && is_ows(*p)) {
            return head_parse::not_simple;
        }
        const std::string_view value(value_first,
                                     static_cast<std::size_t>(value_last - value_first));

        switch (name.size()) {
            case 7:
                if (beast::iequals(name, "upgrade")) {
                    return head_parse::not_simple;
                }
                break;
            case 10:
                if (name_is(name, "connection")) {
                    // One token, nothing else: lists and other options go to Beast.
                    if (beast::iequals(value, "close")) {
                        head.keep_alive = false;
                    } else if (!beast::iequals(value, "keep-alive")) {
                        return head_parse::not_simple;
                    }
                }
                break;
            case 14:
                if (name_is(name, "content-length")) {
                    if (have_length || !parse_length(value, head.content_length)) {
                        return head_parse::not_simple;
                    }
                    have_length = true;
                } else if (name_is(name, "x-consul-index") && !head.index) {
                    head.index = value;
                }
                break;
            case 16:
                if (name_is(name, "proxy-connection")) {
                    return head_parse::not_simple;
                }
                break;
            case 17:
                if (name_is(name, "transfer-encoding")) {
                    return head_parse::not_simple;
                }
                break;
            case 20:
                if (name_is(name, "x-consul-knownleader")) {
                    if (!head.known_leader) {
                        head.known_leader = value;
                    }
                } else if (name_is(name, "x-consul-lastcontact") && !head.last_contact) {
                    head.last_contact = value;
                }
                break;
            default:
                break;
        }
    }
    // Without a length the body runs to the end of the connection: Beast's case.
    if (!have_length) {
        return head_parse::not_simple;
    }
    head.size = static_cast<std::size_t>(p - first);
    return head_parse::simple;
}

}  // namespace lakemesh::consul::detail
