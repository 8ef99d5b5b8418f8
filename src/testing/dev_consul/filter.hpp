// A subset of Consul's ?filter language (hashicorp/go-bexpr) evaluated over the JSON form of
// each result entry: `==`, `!=`, `in`, `not in`, `contains`, `not contains`, `is empty`,
// `is not empty` (not `matches`), combined with `and`, `or`, `not` and parentheses.
// https://developer.hashicorp.com/consul/api-docs/features/filtering
#pragma once

#include "store.hpp"

#include <memory>
#include <string>
#include <variant>

namespace lakemesh::testing::detail {

struct filter_node;

class filter_expression {
  public:
    /// Parses `text`; on failure returns the error message Consul's 400 answer carries.
    static std::variant<filter_expression, std::string> parse(std::string_view text);
    /// True when `entry` matches. Selectors that name no field of `entry` do not match.
    bool matches(const json& entry) const;

  private:
    std::shared_ptr<const filter_node> root_;
};

/// Applies the request's ?filter to a JSON array in place, or returns Consul's error text.
std::optional<std::string> apply_filter(const std::optional<std::string>& filter, json& entries);

}  // namespace lakemesh::testing::detail
