// Reading an HTTP/1.1 answer's head: a small parser for the plain heads Consul (and the proxies
// in front of it) send, and the Beast parser it hands everything else to. Shared by the transport,
// its unit tests and the fuzz target that holds the two to the same answers.
#pragma once

#include <lakemesh/error.hpp>

#include <boost/beast/http/basic_parser.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace lakemesh::consul::detail {

/// What the client keeps of an answer, whichever parser read it.
struct received_answer {
    unsigned status = 0;
    std::string body;
    // Raw X-Consul-* values (short: no allocation), decoded by decode_query_meta.
    std::optional<std::string> index;
    std::optional<std::string> known_leader;
    std::optional<std::string> last_contact;
    bool keep_alive = false;
};

/// Beast's parser, keeping only what the client uses: status, body and the X-Consul-* headers.
/// Unlike http::response_parser it allocates nothing per header field. It writes into `out`;
/// keep_alive is left to the caller (basic_parser::keep_alive once done).
class answer_parser : public boost::beast::http::basic_parser<false> {
  public:
    explicit answer_parser(received_answer& out) : out_(out) {}

  private:
    received_answer& out_;

    void on_request_impl(boost::beast::http::verb, boost::beast::string_view,
                         boost::beast::string_view, int, error_code&) override {}
    void on_response_impl(int code, boost::beast::string_view, int, error_code&) override;
    void on_field_impl(boost::beast::http::field f, boost::beast::string_view name,
                       boost::beast::string_view value, error_code&) override;
    void on_header_impl(error_code&) override {}
    void on_body_init_impl(const boost::optional<std::uint64_t>& length, error_code&) override;
    std::size_t on_body_impl(boost::beast::string_view data, error_code&) override;
    void on_chunk_header_impl(std::uint64_t, boost::beast::string_view, error_code&) override {}
    std::size_t on_chunk_body_impl(std::uint64_t, boost::beast::string_view data,
                                   error_code&) override;
    void on_finish_impl(error_code&) override {}
};

/// A head read by parse_response_head; the views point into the parsed bytes.
struct response_head {
    unsigned status = 0;
    std::uint64_t content_length = 0;
    /// Bytes of the status line and the header lines, with the blank line that ends them.
    std::size_t size = 0;
    bool keep_alive = true;
    // First occurrence, optional whitespace trimmed, as answer_parser records them.
    std::optional<std::string_view> index;
    std::optional<std::string_view> known_leader;
    std::optional<std::string_view> last_contact;
};

enum class head_parse {
    /// Everything so far fits a simple head, but its blank line has not arrived.
    need_more,
    /// A simple head, in `head`: the body is the next content_length bytes.
    simple,
    /// Anything else (other versions, 1xx/204/304, no Content-Length, chunked, Connection other
    /// than "close" or "keep-alive", folded or malformed lines, ...): read it with answer_parser,
    /// which knows the rules or reports the error.
    not_simple,
};

/// Heads longer than this go to Beast, whose default header_limit it is.
inline constexpr std::size_t max_simple_head = 8192;

/// Parses the head at the start of `bytes`, the bytes received so far. Accepts only heads that
/// answer_parser accepts too, with the same status, length, keep-alive and X-Consul-* values.
head_parse parse_response_head(std::string_view bytes, response_head& head);

}  // namespace lakemesh::consul::detail
