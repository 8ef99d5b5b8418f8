#include <lakemesh/observe/trace.hpp>

namespace lakemesh::observe {

std::string_view to_string(span_kind k) noexcept {
    switch (k) {
        case span_kind::call:
            return "call";
        case span_kind::attempt:
            return "attempt";
        case span_kind::consul_request:
            return "consul_request";
    }
    return "unknown";
}

}  // namespace lakemesh::observe
