// Test support: Debian's chromium, run headless as a child process, to see a page as a browser
// renders it (scripts run, fetches done) and to take a screenshot. Each run gets a fresh
// temporary profile (removed afterwards), its own process group (killed as a whole when it
// runs over the time limit), and no sandbox (tests may run as root). Blocking: run the server
// under test on another thread.
#pragma once

#include <lakemesh/error.hpp>

#include <chrono>
#include <string>

namespace lakemesh::test {

/// The chromium binary: $LAKEMESH_CHROMIUM when set, else `chromium` or `chromium-browser` on
/// PATH; "" when there is none.
std::string find_chromium();

/// Loads `url`, lets its scripts run for up to `budget` of virtual time, and returns the DOM as
/// HTML (chromium's --dump-dom). When `screenshot_path` is not empty, loads the page a second
/// time and writes a PNG of a 1200x900 window there (its folder is created). `ec` is set when
/// chromium is missing (no_such_file_or_directory), fails, or runs over `limit` (timed_out);
/// its stderr tail then goes to `log` if given.
std::string render_dom_with_chromium(const std::string& url, const std::string& screenshot_path,
                                     error_code& ec, std::string* log = nullptr,
                                     std::chrono::milliseconds budget = std::chrono::seconds(5),
                                     std::chrono::seconds limit = std::chrono::seconds(30));

}  // namespace lakemesh::test
