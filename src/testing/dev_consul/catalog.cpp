// PLACEHOLDER: replaced by the real endpoint group.
#include "router.hpp"
namespace lakemesh::testing::detail {
void add_catalog_routes(router&) {}
}  // namespace lakemesh::testing::detail
