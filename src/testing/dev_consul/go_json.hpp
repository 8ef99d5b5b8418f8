// How Go's encoding/json, and so Consul, reads request bodies, for the endpoints that decode
// them without Consul's snake_case key translation (sessions, txn).
#pragma once

#include "store.hpp"

#include <algorithm>
#include <cctype>
#include <string_view>

namespace lakemesh::testing::detail {

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
