// Query pieces shared by the catalog and health endpoints.
#pragma once

#include "router.hpp"

#include <algorithm>
#include <cctype>

namespace lakemesh::testing::detail {

/// Consul matches ?tag case-insensitively; several ?tag must all be present.
inline bool has_all_tags(const service_entry& svc, const request& req) {
    auto [first, last] = req.query.equal_range("tag");
    for (auto it = first; it != last; ++it) {
        auto same = [&](const std::string& t) {
            return std::equal(t.begin(), t.end(), it->second.begin(), it->second.end(),
                              [](char a, char b) {
                                  return std::tolower(static_cast<unsigned char>(a)) ==
                                         std::tolower(static_cast<unsigned char>(b));
                              });
        };
        if (std::none_of(svc.tags.begin(), svc.tags.end(), same)) {
            return false;
        }
    }
    return true;
}

/// Every instance of service `name` in the cluster, ordered by node then service id.
inline std::vector<const service_entry*> instances_of(const store& s, const std::string& name) {
    std::vector<const service_entry*> out;
    for (const auto& [node, by_id] : s.services) {
        for (const auto& [id, svc] : by_id) {
            if (svc.name == name) {
                out.push_back(&svc);
            }
        }
    }
    return out;
}

}  // namespace lakemesh::testing::detail
