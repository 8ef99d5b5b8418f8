// Go's encoding/json output, byte for byte: Consul answers with json.Marshal, or with
// json.MarshalIndent(v, "", "    ") plus a newline in -dev mode and with ?pretty.
#include "go_json.hpp"

#include <charconv>
#include <cmath>
#include <cstdio>

namespace lakemesh::testing::detail {
namespace {

/// Length of the valid UTF-8 sequence at text[i], or 0 when it is not valid (as Go's
/// utf8.DecodeRuneInString judges it: no overlongs, no surrogates, nothing above U+10FFFF).
std::size_t utf8_sequence(std::string_view text, std::size_t i, std::uint32_t& cp) {
    const auto b0 = static_cast<unsigned char>(text[i]);
    std::size_t len = 0;
    std::uint32_t min = 0;
    if ((b0 & 0xE0) == 0xC0) {
        len = 2;
        min = 0x80;
    } else if ((b0 & 0xF0) == 0xE0) {
        len = 3;
        min = 0x800;
    } else if ((b0 & 0xF8) == 0xF0) {
        len = 4;
        min = 0x10000;
    } else {
        return 0;
    }
    if (i + len > text.size()) {
        return 0;
    }
    cp = b0 & (0x7F >> len);
    for (std::size_t k = 1; k < len; ++k) {
        const auto b = static_cast<unsigned char>(text[i + k]);
        if ((b & 0xC0) != 0x80) {
            return 0;
        }
        cp = (cp << 6) | (b & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
        return 0;
    }
    return len;
}

void append_float(std::string& out, double f) {
    if (!std::isfinite(f)) {
        out += "null";  // Go refuses these; never produced here
        return;
    }
    // Go: 'f' format unless the magnitude is below 1e-6 or at least 1e21, shortest digits.
    const double abs = std::fabs(f);
    char buf[64];
    std::to_chars_result r{};
    if (abs != 0 && (abs < 1e-6 || abs >= 1e21)) {
        r = std::to_chars(buf, buf + sizeof buf, f, std::chars_format::scientific);
        std::string s(buf, r.ptr);
        // C++ writes e-07 / e+21 as Go's strconv does; Go's encoder then trims "e-07" to "e-7".
        const auto n = s.size();
        if (n >= 4 && s[n - 4] == 'e' && s[n - 3] == '-' && s[n - 2] == '0') {
            s.erase(n - 2, 1);
        }
        out += s;
        return;
    }
    r = std::to_chars(buf, buf + sizeof buf, f, std::chars_format::fixed);
    out.append(buf, r.ptr);
}

void newline(std::string& out, int depth) {
    out += '\n';
    out.append(static_cast<std::size_t>(depth) * 4, ' ');
}

void encode(std::string& out, const json& v, bool indent, int depth) {
    switch (v.type()) {
        case json::value_t::null:
        case json::value_t::discarded:
            out += "null";
            return;
        case json::value_t::boolean:
            out += v.get<bool>() ? "true" : "false";
            return;
        case json::value_t::number_integer:
            out += std::to_string(v.get<std::int64_t>());
            return;
        case json::value_t::number_unsigned:
            out += std::to_string(v.get<std::uint64_t>());
            return;
        case json::value_t::number_float:
            append_float(out, v.get<double>());
            return;
        case json::value_t::string:
            append_go_string(out, v.get_ref<const std::string&>());
            return;
        case json::value_t::binary:
            out += "null";
            return;
        case json::value_t::array: {
            if (v.empty()) {
                out += "[]";
                return;
            }
            out += '[';
            bool first = true;
            for (const auto& e : v) {
                if (!first) {
                    out += ',';
                }
                first = false;
                if (indent) {
                    newline(out, depth + 1);
                }
                encode(out, e, indent, depth + 1);
            }
            if (indent) {
                newline(out, depth);
            }
            out += ']';
            return;
        }
        case json::value_t::object: {
            if (v.empty()) {
                out += "{}";
                return;
            }
            out += '{';
            bool first = true;
            for (auto it = v.begin(); it != v.end(); ++it) {
                if (!first) {
                    out += ',';
                }
                first = false;
                if (indent) {
                    newline(out, depth + 1);
                }
                append_go_string(out, it.key());
                out += indent ? ": " : ":";
                encode(out, it.value(), indent, depth + 1);
            }
            if (indent) {
                newline(out, depth);
            }
            out += '}';
            return;
        }
    }
}

}  // namespace

void append_go_string(std::string& out, std::string_view s) {
    static constexpr char hex[] = "0123456789abcdef";
    out += '"';
    std::size_t i = 0;
    while (i < s.size()) {
        const auto b = static_cast<unsigned char>(s[i]);
        if (b < 0x80) {
            // Go escapes control characters and, for HTML safety, < > &.
            if (b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&') {
                out += static_cast<char>(b);
            } else if (b == '"' || b == '\\') {
                out += '\\';
                out += static_cast<char>(b);
            } else if (b == '\n') {
                out += "\\n";
            } else if (b == '\r') {
                out += "\\r";
            } else if (b == '\t') {
                out += "\\t";
            } else {
                out += "\\u00";
                out += hex[b >> 4];
                out += hex[b & 0xF];
            }
            ++i;
            continue;
        }
        std::uint32_t cp = 0;
        const std::size_t len = utf8_sequence(s, i, cp);
        if (len == 0) {
            out += "\\ufffd";  // each invalid byte becomes U+FFFD
            ++i;
            continue;
        }
        if (cp == 0x2028 || cp == 0x2029) {
            out += cp == 0x2028 ? "\\u2028" : "\\u2029";
        } else {
            out.append(s.substr(i, len));
        }
        i += len;
    }
    out += '"';
}

std::string go_marshal(const json& v, bool indent) {
    std::string out;
    encode(out, v, indent, 0);
    if (indent) {
        out += '\n';
    }
    return out;
}

}  // namespace lakemesh::testing::detail

// ------------------------------------------------------------------ decoding

namespace lakemesh::testing::detail {
namespace {

/// Go's quoteChar: how encoding/json names a byte in its syntax errors.
std::string quote_char(unsigned char c) {
    if (c == '\'') {
        return "'\\''";
    }
    if (c == '"') {
        return "'\"'";
    }
    std::string out = "'";
    if (c == '\\') {
        out += "\\\\";
    } else if (c == '\n') {
        out += "\\n";
    } else if (c == '\r') {
        out += "\\r";
    } else if (c == '\t') {
        out += "\\t";
    } else if (c == '\a') {
        out += "\\a";
    } else if (c == '\b') {
        out += "\\b";
    } else if (c == '\f') {
        out += "\\f";
    } else if (c == '\v') {
        out += "\\v";
    } else if (c < 0x20 || c == 0x7f) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\x%02x", c);
        out += buf;
    } else if (c < 0x80) {
        out += static_cast<char>(c);
    } else {
        // A byte above 0x7f is the rune U+0080..U+00FF to Go's scanner.
        if (c < 0xa0 || c == 0xad) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
        } else {
            out += static_cast<char>(0xC0 | (c >> 6));
            out += static_cast<char>(0x80 | (c & 0x3F));
        }
    }
    return out + "'";
}

/// encoding/json's scanner, reduced to finding the end of the first value or its error.
class go_scanner {
  public:
    explicit go_scanner(std::string_view data) : d_(data) {}

    /// Scans the first value: nullopt and `end` set on success, else Go's error text.
    std::optional<std::string> first_value(std::size_t& end) {
        skip_space();
        if (i_ >= d_.size()) {
            return std::string("EOF");
        }
        if (auto err = value()) {
            return err;
        }
        end = i_;
        return std::nullopt;
    }

  private:
    static bool space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }
    void skip_space() {
        while (i_ < d_.size() && space(d_[i_])) {
            ++i_;
        }
    }
    static std::string invalid(char c, const char* context) {
        return "invalid character " + quote_char(static_cast<unsigned char>(c)) + " " + context;
    }
    bool eof() const { return i_ >= d_.size(); }

    std::optional<std::string> value() {
        if (++depth_ > 10000) {
            return std::string("exceeded max depth");
        }
        struct leave {
            int& d;
            ~leave() { --d; }
        } guard{depth_};
        skip_space();
        if (eof()) {
            return std::string("unexpected EOF");
        }
        const char c = d_[i_];
        switch (c) {
            case '{':
                return object();
            case '[':
                return array();
            case '"':
                return string();
            case '-':
            case '0':
            case '1':
            case '2':
            case '3':
            case '4':
            case '5':
            case '6':
            case '7':
            case '8':
            case '9':
                return number();
            case 't':
                return literal("true");
            case 'f':
                return literal("false");
            case 'n':
                return literal("null");
            default:
                return invalid(c, "looking for beginning of value");
        }
    }

    std::optional<std::string> object() {
        ++i_;
        skip_space();
        if (eof()) {
            return std::string("unexpected EOF");
        }
        if (d_[i_] == '}') {
            ++i_;
            return std::nullopt;
        }
        for (;;) {
            skip_space();
            if (eof()) {
                return std::string("unexpected EOF");
            }
            if (d_[i_] != '"') {
                return invalid(d_[i_], "looking for beginning of object key string");
            }
            if (auto err = string()) {
                return err;
            }
            skip_space();
            if (eof()) {
                return std::string("unexpected EOF");
            }
            if (d_[i_] != ':') {
                return invalid(d_[i_], "after object key");
            }
            ++i_;
            if (auto err = value()) {
                return err;
            }
            skip_space();
            if (eof()) {
                return std::string("unexpected EOF");
            }
            if (d_[i_] == ',') {
                ++i_;
                continue;
            }
            if (d_[i_] == '}') {
                ++i_;
                return std::nullopt;
            }
            return invalid(d_[i_], "after object key:value pair");
        }
    }

    std::optional<std::string> array() {
        ++i_;
        skip_space();
        if (eof()) {
            return std::string("unexpected EOF");
        }
        if (d_[i_] == ']') {
            ++i_;
            return std::nullopt;
        }
        for (;;) {
            if (auto err = value()) {
                return err;
            }
            skip_space();
            if (eof()) {
                return std::string("unexpected EOF");
            }
            if (d_[i_] == ',') {
                ++i_;
                continue;
            }
            if (d_[i_] == ']') {
                ++i_;
                return std::nullopt;
            }
            return invalid(d_[i_], "after array element");
        }
    }

    static bool hex(char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    }

    std::optional<std::string> string() {
        ++i_;  // opening quote
        while (!eof()) {
            const auto c = static_cast<unsigned char>(d_[i_]);
            if (c == '"') {
                ++i_;
                return std::nullopt;
            }
            if (c < 0x20) {
                return invalid(static_cast<char>(c), "in string literal");
            }
            if (c == '\\') {
                ++i_;
                if (eof()) {
                    break;
                }
                const char e = d_[i_];
                if (e == 'u') {
                    ++i_;
                    for (int k = 0; k < 4; ++k, ++i_) {
                        if (eof()) {
                            return std::string("unexpected EOF");
                        }
                        if (!hex(d_[i_])) {
                            return invalid(d_[i_], "in \\u hexadecimal character escape");
                        }
                    }
                    continue;
                }
                if (e != 'b' && e != 'f' && e != 'n' && e != 'r' && e != 't' && e != '\\' &&
                    e != '/' && e != '"') {
                    return invalid(e, "in string escape code");
                }
            }
            ++i_;
        }
        return std::string("unexpected EOF");
    }

    static bool digit(char c) { return c >= '0' && c <= '9'; }

    std::optional<std::string> number() {
        if (d_[i_] == '-') {
            ++i_;
            if (eof()) {
                return std::string("unexpected EOF");
            }
            if (!digit(d_[i_])) {
                return invalid(d_[i_], "in numeric literal");
            }
        }
        if (d_[i_] == '0') {
            ++i_;
        } else {
            while (!eof() && digit(d_[i_])) {
                ++i_;
            }
        }
        if (!eof() && d_[i_] == '.') {
            ++i_;
            if (eof()) {
                return std::string("unexpected EOF");
            }
            if (!digit(d_[i_])) {
                return invalid(d_[i_], "after decimal point in numeric literal");
            }
            while (!eof() && digit(d_[i_])) {
                ++i_;
            }
        }
        if (!eof() && (d_[i_] == 'e' || d_[i_] == 'E')) {
            ++i_;
            if (!eof() && (d_[i_] == '+' || d_[i_] == '-')) {
                ++i_;
            }
            if (eof()) {
                return std::string("unexpected EOF");
            }
            if (!digit(d_[i_])) {
                return invalid(d_[i_], "in exponent of numeric literal");
            }
            while (!eof() && digit(d_[i_])) {
                ++i_;
            }
        }
        return std::nullopt;
    }

    std::optional<std::string> literal(std::string_view word) {
        for (std::size_t k = 0; k < word.size(); ++k, ++i_) {
            if (eof()) {
                return std::string("unexpected EOF");
            }
            if (d_[i_] != word[k]) {
                return invalid(d_[i_], ("in literal " + std::string(word) + " (expecting '" +
                                        std::string(1, word[k]) + "')")
                                           .c_str());
            }
        }
        return std::nullopt;
    }

    std::string_view d_;
    std::size_t i_ = 0;
    int depth_ = 0;
};

}  // namespace

std::variant<json, std::string> go_decode(std::string_view body) {
    std::size_t end = 0;
    go_scanner scanner(body);
    if (auto err = scanner.first_value(end)) {
        return *err;
    }
    // Go reads invalid UTF-8 in strings as U+FFFD; nlohmann refuses it, so repair it first.
    std::string text;
    text.reserve(end);
    std::size_t i = 0;
    while (i < end) {
        const auto b = static_cast<unsigned char>(body[i]);
        if (b < 0x80) {
            text += body[i++];
            continue;
        }
        std::uint32_t cp = 0;
        const auto len = utf8_sequence(body.substr(0, end), i, cp);
        if (len == 0) {
            text += "\xEF\xBF\xBD";
            ++i;
        } else {
            text.append(body.substr(i, len));
            i += len;
        }
    }
    auto j = json::parse(text, nullptr, false);
    if (j.is_discarded()) {
        return std::string("invalid character in JSON body");  // not reached: scanned above
    }
    return j;
}

}  // namespace lakemesh::testing::detail

// ------------------------------------------------------------------ struct decoding

namespace lakemesh::testing::detail {
namespace {

bool equal_fold(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
           });
}

/// Go's name of a JSON number that does not fit the target: "number 1.5".
std::string number_text(const json& v) {
    std::string out = "number ";
    if (v.is_number_float()) {
        std::string tmp;
        const double f = v.get<double>();
        char buf[64];
        auto r = std::to_chars(buf, buf + sizeof buf, f);
        out.append(buf, r.ptr);
    } else {
        out += v.dump();
    }
    return out;
}

void save(go_decode_state& st, std::string err) {
    if (!st.saved) {
        st.saved = std::move(err);
    }
}

}  // namespace

std::string go_type_error(const json& v, const go_error_context& where, std::string_view field,
                          std::string_view type) {
    std::string path = where.path;
    if (!where.fixed_path) {
        if (!path.empty()) {
            path += '.';
        }
        path += field;
    }
    return std::string("json: cannot unmarshal ") + json_kind(v) + " into Go struct field " +
           where.struct_name + "." + path + " of type " + std::string(type);
}

std::vector<const json*> go_read_struct(const json& obj, const std::vector<go_field_spec>& fields,
                                        const go_error_context& where, bool disallow_unknown,
                                        go_decode_state& st) {
    std::vector<const json*> out(fields.size(), nullptr);
    for (auto it = obj.begin(); it != obj.end() && !st.fatal; ++it) {
        const std::string& key = it.key();
        std::size_t f = fields.size();
        for (std::size_t i = 0; i < fields.size(); ++i) {
            if (fields[i].name == key) {
                f = i;
                break;
            }
        }
        if (f == fields.size()) {
            for (std::size_t i = 0; i < fields.size(); ++i) {
                if (equal_fold(fields[i].name, key)) {
                    f = i;
                    break;
                }
            }
        }
        if (f == fields.size()) {
            if (disallow_unknown) {
                std::string quoted;
                append_go_string(quoted, key);
                save(st, "json: unknown field " + quoted);
            }
            continue;
        }
        const go_field_spec& spec = fields[f];
        const json& v = it.value();
        if (v.is_null()) {
            continue;
        }
        const auto mismatch = [&](const json& bad, std::string_view type) {
            save(st, go_type_error(bad, where, spec.name, type));
        };
        bool ok = true;
        switch (spec.kind) {
            case go_kind::string:
                ok = v.is_string();
                if (!ok) {
                    mismatch(v, spec.type);
                }
                break;
            case go_kind::bytes:
                ok = v.is_string();
                if (!ok) {
                    mismatch(v, spec.type);
                }
                break;
            case go_kind::boolean:
                ok = v.is_boolean();
                if (!ok) {
                    mismatch(v, spec.type);
                }
                break;
            case go_kind::int64:
            case go_kind::uint64:
                if (!v.is_number()) {
                    ok = false;
                    mismatch(v, spec.type);
                } else if (v.is_number_float() ||
                           (spec.kind == go_kind::int64 && v.is_number_unsigned() &&
                            v.get<std::uint64_t>() > 9223372036854775807ULL) ||
                           (spec.kind == go_kind::uint64 && v.is_number_integer() &&
                            !v.is_number_unsigned() && v.get<std::int64_t>() < 0)) {
                    ok = false;
                    save(st, "json: cannot unmarshal " + number_text(v) + " into Go struct field " +
                                 where.struct_name + "." +
                                 (where.fixed_path ? where.path
                                                   : (where.path.empty() ? "" : where.path + ".") +
                                                         std::string(spec.name)) +
                                 " of type " + std::string(spec.type));
                }
                break;
            case go_kind::string_slice:
                if (!v.is_array()) {
                    ok = false;
                    mismatch(v, spec.type);
                    break;
                }
                for (const auto& e : v) {
                    if (!e.is_string() && !e.is_null()) {
                        ok = false;
                        mismatch(e, spec.elem);
                        break;
                    }
                }
                break;
            case go_kind::string_map:
                if (!v.is_object()) {
                    ok = false;
                    mismatch(v, spec.type);
                    break;
                }
                for (const auto& e : v) {
                    if (!e.is_string() && !e.is_null()) {
                        ok = false;
                        mismatch(e, spec.elem);
                        break;
                    }
                }
                break;
            case go_kind::header_map:
                if (!v.is_object()) {
                    ok = false;
                    mismatch(v, spec.type);
                    break;
                }
                for (const auto& e : v) {
                    if (e.is_null()) {
                        continue;
                    }
                    if (!e.is_array()) {
                        ok = false;
                        mismatch(e, "[]string");
                        break;
                    }
                    for (const auto& s : e) {
                        if (!s.is_string() && !s.is_null()) {
                            ok = false;
                            mismatch(s, "string");
                            break;
                        }
                    }
                    if (!ok) {
                        break;
                    }
                }
                break;
            case go_kind::any:
                if (spec.nested) {
                    spec.nested(v, st);
                }
                break;
            case go_kind::object:
                if (!v.is_object()) {
                    ok = false;
                    mismatch(v, spec.type);
                } else if (spec.nested) {
                    spec.nested(v, st);
                }
                break;
            case go_kind::object_slice:
                if (!v.is_array()) {
                    ok = false;
                    mismatch(v, spec.type);
                    break;
                }
                for (const auto& e : v) {
                    if (st.fatal) {
                        break;
                    }
                    if (e.is_null()) {
                        continue;
                    }
                    if (!e.is_object()) {
                        mismatch(e, spec.elem);
                        continue;
                    }
                    if (spec.nested) {
                        spec.nested(e, st);
                    }
                }
                break;
        }
        if (ok) {
            out[f] = &v;
        }
    }
    return out;
}

}  // namespace lakemesh::testing::detail
