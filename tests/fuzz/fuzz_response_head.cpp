// parse_response_head, the transport's fast path for plain answer heads. Input: the bytes
// received so far. Checks: a head it accepts, Beast's parser (answer_parser, the fallback) accepts
// too, ending at the same byte, with the same status, Content-Length, keep-alive and X-Consul-*
// values; when it waits for more bytes, Beast waits too; and a shorter prefix of an accepted head
// is never accepted.
// fuzz-dict: http_head
#include "consul/response_head.hpp"
#include "fuzz_check.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/error.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace {

using namespace lakemesh::consul::detail;

bool same(const std::optional<std::string>& beast, const std::optional<std::string_view>& fast) {
    return beast.has_value() == fast.has_value() && (!beast || *beast == *fast);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace lakemesh;
    const std::string bytes = fuzz::as_string(data, size);

    response_head head;
    const auto verdict = fuzz::without_throwing([&] { return parse_response_head(bytes, head); });

    received_answer beast;
    answer_parser parser(beast);
    parser.eager(false);  // stop after the head
    parser.body_limit(boost::none);
    error_code ec;
    const auto used = parser.put(boost::asio::buffer(bytes.data(), bytes.size()), ec);

    if (verdict == head_parse::need_more) {
        LAKEMESH_FUZZ_CHECK(ec == boost::beast::http::error::need_more);
        return 0;
    }
    if (verdict == head_parse::not_simple) {
        return 0;
    }
    LAKEMESH_FUZZ_CHECK(!ec);
    LAKEMESH_FUZZ_CHECK(parser.is_header_done());
    LAKEMESH_FUZZ_CHECK(used == head.size);
    LAKEMESH_FUZZ_CHECK(head.size <= bytes.size() && head.size <= max_simple_head);
    LAKEMESH_FUZZ_CHECK(beast.status == head.status);
    LAKEMESH_FUZZ_CHECK(parser.content_length() == head.content_length);
    LAKEMESH_FUZZ_CHECK(parser.keep_alive() == head.keep_alive);
    LAKEMESH_FUZZ_CHECK(same(beast.index, head.index));
    LAKEMESH_FUZZ_CHECK(same(beast.known_leader, head.known_leader));
    LAKEMESH_FUZZ_CHECK(same(beast.last_contact, head.last_contact));

    // Cut short, the same head is still arriving.
    for (const std::size_t cut : {head.size - 1, head.size / 2}) {
        response_head shorter;
        LAKEMESH_FUZZ_CHECK(parse_response_head(std::string_view(bytes).substr(0, cut), shorter) ==
                            head_parse::need_more);
    }
    return 0;
}
