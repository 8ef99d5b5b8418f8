// Query pieces shared by the catalog and health endpoints.
#pragma once

#include "catalog_json.hpp"

#include <algorithm>
#include <cctype>

namespace lakemesh::testing::detail {

inline bool equal_fold(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
           });
}

/// Consul matches ?tag case-insensitively; several ?tag must all be present.
inline bool has_all_tags(const service_entry& svc, const request& req) {
    auto [first, last] = req.query.equal_range("tag");
    for (auto it = first; it != last; ++it) {
        if (std::none_of(svc.tags.begin(), svc.tags.end(),
                         [&](const std::string& t) { return equal_fold(t, it->second); })) {
            return false;
        }
    }
    return true;
}

/// Every instance of service `name` (matched case-insensitively, as Consul's lower-cased
/// service index does), in Consul's order: by node, then service ID.
inline std::vector<const service_entry*> instances_of(const store& s, const std::string& name) {
    std::vector<const service_entry*> out;
    for (const auto& [node, by_id] : s.services) {
        for (const auto& [id, svc] : by_id) {
            if (equal_fold(svc.name, name)) {
                out.push_back(&svc);
            }
        }
    }
    std::stable_sort(out.begin(), out.end(), [](const auto* a, const auto* b) {
        if (!equal_fold(a->node, b->node)) {
            return lower_less(a->node, b->node);
        }
        return lower_less(a->id, b->id);
    });
    return out;
}

/// The X-Consul-Index of a read of service `name` (Consul's maxIndexForService): the index of
/// that service's instances and their checks; for a service without instances, the index at
/// which the last instance of some service went, or the catalog tables' (checks included for
/// health reads).
inline std::uint64_t service_read_index(const store& s, const std::string& name, bool exists,
                                        bool with_checks) {
    if (exists) {
        std::string lower;
        for (char ch : name) {
            lower += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        }
        if (auto it = s.service_name_index.find(lower); it != s.service_name_index.end()) {
            return it->second;
        }
    } else if (s.service_extinction_index != 0) {
        return s.service_extinction_index;
    }
    auto idx = std::max(s.nodes_index, s.services_index);
    return with_checks ? std::max(idx, s.checks_index) : idx;
}

/// The node called `name`, matched case-insensitively as Consul does, or null.
inline const node_entry* find_node(const store& s, const std::string& name) {
    if (auto it = s.nodes.find(name); it != s.nodes.end()) {
        return &it->second;
    }
    for (const auto& [n, node] : s.nodes) {
        if (equal_fold(n, name)) {
            return &node;
        }
    }
    return nullptr;
}

}  // namespace lakemesh::testing::detail
