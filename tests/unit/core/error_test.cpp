#include <lakemesh/error.hpp>

#include <gtest/gtest.h>
#include <boost/asio/error.hpp>

namespace lakemesh {
namespace {

TEST(error, http_status_maps_to_consul_errc) {
    EXPECT_FALSE(error_from_http_status(200));
    EXPECT_FALSE(error_from_http_status(204));
    EXPECT_EQ(error_from_http_status(400), consul_errc::bad_request);
    EXPECT_EQ(error_from_http_status(403), consul_errc::permission_denied);
    EXPECT_EQ(error_from_http_status(404), consul_errc::not_found);
    EXPECT_EQ(error_from_http_status(413), consul_errc::request_entity_too_large);
    EXPECT_EQ(error_from_http_status(429), consul_errc::too_many_requests);
    EXPECT_EQ(error_from_http_status(500), consul_errc::internal_error);
    EXPECT_EQ(error_from_http_status(503), consul_errc::unavailable);
    EXPECT_EQ(error_from_http_status(418), consul_errc::other_client_error);
    EXPECT_EQ(error_from_http_status(599), consul_errc::other_server_error);
    EXPECT_EQ(error_from_http_status(302), consul_errc::unexpected_status);
}

// Consul 1.10 answers these client mistakes with 500 (later versions with 400 or 404); the texts
// are the real agent's. Without the refinement they would be retried as internal errors.
TEST(error, consul_answer_texts_of_older_versions_refine_a_500) {
    EXPECT_FALSE(error_from_consul_answer(200, "true\n"));
    EXPECT_EQ(error_from_consul_answer(500,
                                       "Failed to create boolean expression evaluator: 1:18 (17): "
                                       "no match found, expected: \"-\""),
              consul_errc::bad_request);
    EXPECT_EQ(error_from_consul_answer(500, "strconv.ParseUint: parsing \"abc\": invalid syntax"),
              consul_errc::bad_request);
    EXPECT_EQ(error_from_consul_answer(
                  500, "Invalid Session TTL '5000000000', must be between [10s=24h0m0s]"),
              consul_errc::bad_request);
    EXPECT_EQ(error_from_consul_answer(500, "CheckID \"x\" does not have associated TTL"),
              consul_errc::not_found);
    EXPECT_EQ(error_from_consul_answer(500, "ServiceID \"nosuch\" does not exist"),
              consul_errc::not_found);
    // Server trouble stays retryable; other statuses map as error_from_http_status.
    EXPECT_EQ(error_from_consul_answer(500, "No cluster leader"), consul_errc::internal_error);
    EXPECT_EQ(error_from_consul_answer(500, "rpc error: ServiceID \"a\" does not exist"),
              consul_errc::internal_error);
    EXPECT_EQ(error_from_consul_answer(500, ""), consul_errc::internal_error);
    EXPECT_EQ(error_from_consul_answer(400, "Bad request: whatever"), consul_errc::bad_request);
    EXPECT_EQ(error_from_consul_answer(404, "Unknown check ID \"x\""), consul_errc::not_found);
    EXPECT_EQ(error_from_consul_answer(503, "does not have associated TTL"),
              consul_errc::unavailable);
}

TEST(error, retryable_classification) {
    EXPECT_FALSE(is_retryable(error_code{}));
    EXPECT_TRUE(is_retryable(transport_errc::connect_failed));
    EXPECT_TRUE(is_retryable(transport_errc::timeout));
    EXPECT_TRUE(is_retryable(transport_errc::connection_closed));
    EXPECT_FALSE(is_retryable(transport_errc::tls_verify_failed));
    EXPECT_TRUE(is_retryable(consul_errc::internal_error));
    EXPECT_TRUE(is_retryable(consul_errc::too_many_requests));
    EXPECT_TRUE(is_retryable(consul_errc::unavailable));
    EXPECT_FALSE(is_retryable(consul_errc::permission_denied));
    EXPECT_FALSE(is_retryable(consul_errc::not_found));
    EXPECT_FALSE(is_retryable(consul_errc::bad_request));
    EXPECT_FALSE(is_retryable(decode_errc::malformed_json));
    EXPECT_FALSE(is_retryable(validation_errc::header_injection));
    EXPECT_FALSE(is_retryable(validation_errc::unclean_path));
    EXPECT_FALSE(is_retryable(policy_errc::circuit_open));
    EXPECT_FALSE(is_retryable(boost::asio::error::operation_aborted));
    EXPECT_TRUE(is_retryable(boost::asio::error::connection_refused));
    EXPECT_TRUE(is_retryable(boost::asio::error::connection_reset));
}

TEST(error, categories_have_distinct_names_and_actionable_messages) {
    EXPECT_STREQ(transport_category().name(), "lakemesh.transport");
    EXPECT_STREQ(consul_category().name(), "lakemesh.consul");
    EXPECT_STREQ(decode_category().name(), "lakemesh.decode");
    EXPECT_STREQ(validation_category().name(), "lakemesh.validation");
    EXPECT_STREQ(policy_category().name(), "lakemesh.policy");
    EXPECT_NE(error_code(consul_errc::permission_denied).message().find("CONSUL_HTTP_TOKEN"),
              std::string::npos);
    EXPECT_NE(error_code(transport_errc::tls_verify_failed).message().find("CONSUL_CACERT"),
              std::string::npos);
    // Every enumerator has its own message, not the fallback.
    for (int i = 1; i <= 8; ++i) {
        EXPECT_EQ(error_code(i, transport_category()).message().find("unknown"), std::string::npos);
    }
    for (int i = 1; i <= 14; ++i) {
        EXPECT_EQ(error_code(i, consul_category()).message().find("unknown"), std::string::npos);
    }
    for (int i = 1; i <= 10; ++i) {
        EXPECT_EQ(error_code(i, validation_category()).message().find("unknown"),
                  std::string::npos);
    }
}

TEST(error, diagnostics_render_client_and_server_parts) {
    diagnostics d;
    EXPECT_EQ(d.to_string(), "");
    d.set_client_message("PUT /v1/kv/x");
    d.set_http_status(403);
    d.set_server_message("Permission denied");
    EXPECT_EQ(d.to_string(), "PUT /v1/kv/x; consul said (HTTP 403): Permission denied");
    lakemesh::error e(consul_errc::permission_denied, d);
    EXPECT_EQ(e.code(), consul_errc::permission_denied);
    EXPECT_EQ(e.diag().http_status(), 403u);
    EXPECT_NE(std::string(e.what()).find("Permission denied"), std::string::npos);
    d.clear();
    EXPECT_EQ(d, diagnostics{});
}

}  // namespace
}  // namespace lakemesh
