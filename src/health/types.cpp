#include <lakemesh/health/types.hpp>

namespace lakemesh::health {

std::string_view to_string(status s) noexcept {
    switch (s) {
        case status::passing:
            return "passing";
        case status::warning:
            return "warning";
        case status::critical:
            return "critical";
    }
    return "critical";
}

}  // namespace lakemesh::health
