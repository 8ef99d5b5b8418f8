// How Go's encoding/json, and so Consul, reads request bodies (for the endpoints that decode
// them without Consul's snake_case key translation: sessions, txn) and writes answers.
#pragma once

#include "store.hpp"

#include <algorithm>
#include <cctype>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace lakemesh::testing::detail {

/// `v` as Go's json.Marshal writes it (keys in the object's own order, < > & and U+2028/9
/// escaped, invalid UTF-8 as U+FFFD), or as json.MarshalIndent(v, "", "    ") followed by a
/// newline, which is how Consul answers in -dev mode and to ?pretty.
std::string go_marshal(const json& v, bool indent);
/// Appends `s` as a Go JSON string literal.
void append_go_string(std::string& out, std::string_view s);
/// Reads the first JSON value of `body` as Go's json.Decoder does (what follows it is ignored),
/// or returns encoding/json's error text: "EOF", "unexpected EOF", "invalid character ...".
std::variant<json, std::string> go_decode(std::string_view body);

/// The member of `object` called `name`, matched case-insensitively as Go does; null when
/// there is none.
inline const json* go_field(const json& object, std::string_view name) {
    for (auto it = object.begin(); it != object.end(); ++it) {
        const auto& key = it.key();
        if (key.size() == name.size() &&
            std::equal(key.begin(), key.end(), name.begin(), [](char a, char b) {
                return std::tolower(static_cast<unsigned char>(a)) ==
                       std::tolower(static_cast<unsigned char>(b));
            })) {
            return &it.value();
        }
    }
    return nullptr;
}

/// The JSON kind Consul names in its type errors ("cannot unmarshal string into ...").
inline const char* json_kind(const json& v) {
    if (v.is_string()) {
        return "string";
    }
    if (v.is_number()) {
        return "number";
    }
    if (v.is_boolean()) {
        return "bool";
    }
    if (v.is_array()) {
        return "array";
    }
    return "object";
}

}  // namespace lakemesh::testing::detail

namespace lakemesh::testing::detail {

/// The Go types request bodies are decoded into, as far as encoding/json's checks go.
enum class go_kind {
    string,        // string, or a named string type (type names it)
    int64,         // int
    uint64,        // uint64
    boolean,       // bool
    string_slice,  // []string (elem names the element type)
    string_map,    // map[string]string
    header_map,    // map[string][]string
    any,           // interface{}: anything
    object,        // a struct (nested decodes it)
    object_slice,  // a slice of structs (nested decodes each element)
    bytes,         // []byte: base64 text
};

struct go_decode_state {
    /// encoding/json keeps the first type error or unknown field and goes on...
    std::optional<std::string> saved;
    /// ...but an error from a nested UnmarshalJSON (Consul's CheckType, Session) ends decoding.
    std::optional<std::string> fatal;
    std::optional<std::string> error() const { return fatal ? fatal : saved; }
};

struct go_field_spec {
    std::string_view name;  // JSON name
    go_kind kind;
    std::string_view type;  // Go type in errors: "string", "int", "structs.Weights", ...
    std::string_view elem = {};
    /// object / object_slice: decodes one JSON object (the element, for slices).
    std::function<void(const json&, go_decode_state&)> nested = {};
};

/// Where an error is reported: "Go struct field <struct_name>.<path>". A struct decoded by its
/// own UnmarshalJSON reports the outer field (fixed_path) with the inner field's type.
struct go_error_context {
    std::string struct_name;
    std::string path;
    bool fixed_path = false;
};

/// Decodes `obj` as encoding/json decodes a JSON object into a Go struct with `fields`: keys
/// matched exactly, then case-insensitively; unknown keys refused when `disallow_unknown`; a
/// value of the wrong kind is an UnmarshalTypeError. Errors go to `st`. Returns, per field
/// index, the value given (null when absent, null or not decoded).
std::vector<const json*> go_read_struct(const json& obj, const std::vector<go_field_spec>& fields,
                                        const go_error_context& where, bool disallow_unknown,
                                        go_decode_state& st);
/// The UnmarshalTypeError text for `v` into a field `path` of type `type`.
std::string go_type_error(const json& v, const go_error_context& where, std::string_view field,
                          std::string_view type);

}  // namespace lakemesh::testing::detail
