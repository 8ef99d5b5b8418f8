// PLACEHOLDER: replaced by the real endpoint group.
#include "router.hpp"
namespace lakemesh::testing::detail {
void add_session_routes(router&) {}
void sessions_tick(store&) {}
void sessions_on_check_critical(store&, const std::string&, const std::string&) {}
bool destroy_session(store&, const std::string&) {
    return false;
}
}  // namespace lakemesh::testing::detail
