// PLACEHOLDER: replaced by the real endpoint group.
#include "router.hpp"
namespace lakemesh::testing::detail {
void add_txn_routes(router&) {}
}  // namespace lakemesh::testing::detail
