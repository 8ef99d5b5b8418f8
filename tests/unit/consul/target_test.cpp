// client_impl::make_target: the request target of every call. Plain text is copied as it is,
// everything else percent-encoded by Boost.URL, in the path and in query parameters alike.
#include "consul/client_impl.hpp"

#include <gtest/gtest.h>

namespace lakemesh::consul::detail {
namespace {

TEST(make_target, plain_text_is_copied_and_the_rest_percent_encoded) {
    EXPECT_EQ(client_impl::make_target("status/leader", {}), "/v1/status/leader");
    EXPECT_EQ(client_impl::make_target("kv/", "app/config-1_x.~", {}), "/v1/kv/app/config-1_x.~");
    EXPECT_EQ(client_impl::make_target("kv/", "sp ace/q?u#h%25&=+", {}),
              "/v1/kv/sp%20ace/q%3Fu%23h%2525%26%3D%2B");
    EXPECT_EQ(client_impl::make_target("kv/", "", {{"recurse", ""}}), "/v1/kv/?recurse");
    EXPECT_EQ(client_impl::make_target("kv/", "k", {{"index", "42"}, {"wait", "5000ms"}}),
              "/v1/kv/k?index=42&wait=5000ms");
    EXPECT_EQ(
        client_impl::make_target("health/service/web",
                                 {{"filter", "Service.Tags contains \"a/b\""}, {"dc", "d c"}}),
        "/v1/health/service/web?filter=Service.Tags%20contains%20%22a%2Fb%22&dc=d%20c");
    // The two forms agree.
    EXPECT_EQ(client_impl::make_target("kv/", "a b", {{"x y", "1"}}),
              client_impl::make_target("kv/a b", {{"x y", "1"}}));
}

}  // namespace
}  // namespace lakemesh::consul::detail
