// The admin endpoint's HTML page: its text and the Content-Security-Policy that admits exactly
// its inline style and script (by SHA-256 hash), computed once.
#pragma once

#include <string>

namespace lakemesh::observe::detail {

struct admin_page {
    std::string html;
    std::string content_security_policy;
};

const admin_page& the_admin_page();

}  // namespace lakemesh::observe::detail
