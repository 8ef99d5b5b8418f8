// PLACEHOLDER: replaced by the real endpoint group.
#include "router.hpp"
namespace lakemesh::testing::detail {
void add_health_routes(router&) {}
}  // namespace lakemesh::testing::detail
