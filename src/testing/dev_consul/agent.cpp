// PLACEHOLDER: replaced by the real endpoint group.
#include "router.hpp"
namespace lakemesh::testing::detail {
void add_agent_routes(router&) {}
}  // namespace lakemesh::testing::detail
