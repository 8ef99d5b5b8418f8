// PLACEHOLDER: replaced by the real check logic.
#include "router.hpp"
namespace lakemesh::testing::detail {
bool set_check_status(store& s, const std::string& node, const std::string& id,
                      const std::string& status, const std::string& output) {
    auto& c = s.checks[node][id];
    c.status = status;
    c.output = output;
    c.modify_index = s.write(table_catalog);
    return true;
}
void checks_tick(store&) {}
bool remove_service(store&, const std::string&, const std::string&) {
    return false;
}
std::vector<std::pair<std::string, std::string>> checks_due(store&) {
    return {};
}
void run_check_async(boost::asio::any_io_executor, const check_entry&,
                     std::function<void(std::string, std::string)>) {}
void check_run_finished(store&, const std::string&, const std::string&, const std::string&,
                        const std::string&) {}
}  // namespace lakemesh::testing::detail
