// parse_response_head, the transport's fast path for plain answer heads, held to Beast's parser
// (answer_parser, the fallback): whatever it accepts, Beast accepts with the same values, and it
// never answers for anything it does not know well.
#include "consul/response_head.hpp"

#include <gtest/gtest.h>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/error.hpp>

#include <cctype>
#include <string>
#include <string_view>

namespace lakemesh::consul::detail {
namespace {

namespace http = boost::beast::http;

/// Beast's reading of a head (no body limit): the error, or the head's values.
struct beast_head {
    error_code ec;
    bool done = false;
    std::size_t size = 0;
    received_answer answer;
    std::optional<std::uint64_t> content_length;
};

beast_head read_with_beast(std::string_view bytes) {
    beast_head out;
    answer_parser parser(out.answer);
    parser.eager(false);  // stop after the head
    parser.body_limit(boost::none);
    out.size = parser.put(boost::asio::buffer(bytes.data(), bytes.size()), out.ec);
    out.done = parser.is_header_done();
    if (out.done) {
        out.answer.keep_alive = parser.keep_alive();
        auto length = parser.content_length();
        if (length) {
            out.content_length = *length;
        }
    }
    return out;
}

std::optional<std::string> owned(const std::optional<std::string_view>& v) {
    return v ? std::optional<std::string>(*v) : std::nullopt;
}

/// Parses `bytes` both ways and checks they agree; returns the fast parser's verdict.
head_parse differential(std::string_view bytes) {
    response_head head;
    const auto verdict = parse_response_head(bytes, head);
    const auto beast = read_with_beast(bytes);
    if (verdict == head_parse::simple) {
        EXPECT_FALSE(beast.ec) << beast.ec.message() << " for\n" << bytes;
        EXPECT_TRUE(beast.done) << bytes;
        EXPECT_EQ(beast.size, head.size) << bytes;
        EXPECT_EQ(beast.answer.status, head.status) << bytes;
        EXPECT_EQ(beast.content_length, std::optional<std::uint64_t>(head.content_length)) << bytes;
        EXPECT_EQ(beast.answer.keep_alive, head.keep_alive) << bytes;
        EXPECT_EQ(beast.answer.index, owned(head.index)) << bytes;
        EXPECT_EQ(beast.answer.known_leader, owned(head.known_leader)) << bytes;
        EXPECT_EQ(beast.answer.last_contact, owned(head.last_contact)) << bytes;
    } else if (verdict == head_parse::need_more) {
        EXPECT_EQ(beast.ec, http::error::need_more) << bytes;
    }
    return verdict;
}

const std::string consul_head =
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: application/json\r\n"
    "Vary: Accept-Encoding\r\n"
    "X-Consul-Default-Acl-Policy: allow\r\n"
    "X-Consul-Index: 42\r\n"
    "X-Consul-Knownleader: true\r\n"
    "X-Consul-Lastcontact: 0\r\n"
    "Date: Fri, 27 Nov 2026 23:34:52 GMT\r\n"
    "Content-Length: 5\r\n"
    "\r\n";

TEST(response_head, consul_answer) {
    const std::string answer = consul_head + "[1,2]" + "HTTP/1.1 200";
    response_head head;
    ASSERT_EQ(parse_response_head(answer, head), head_parse::simple);
    EXPECT_EQ(head.status, 200u);
    EXPECT_EQ(head.content_length, 5u);
    EXPECT_EQ(head.size, consul_head.size());
    EXPECT_TRUE(head.keep_alive);
    EXPECT_EQ(head.index, "42");
    EXPECT_EQ(head.known_leader, "true");
    EXPECT_EQ(head.last_contact, "0");
    EXPECT_EQ(differential(answer), head_parse::simple);
}

TEST(response_head, every_truncation_needs_more) {
    const std::string answer = consul_head + "[1,2]";
    for (std::size_t n = 0; n < consul_head.size(); ++n) {
        response_head head;
        EXPECT_EQ(parse_response_head(std::string_view(answer).substr(0, n), head),
                  head_parse::need_more)
            << n;
        EXPECT_EQ(differential(std::string_view(answer).substr(0, n)), head_parse::need_more) << n;
    }
    for (std::size_t n = consul_head.size(); n <= answer.size(); ++n) {
        EXPECT_EQ(differential(std::string_view(answer).substr(0, n)), head_parse::simple) << n;
    }
}

TEST(response_head, nginx_answer_with_connection_keep_alive) {
    const std::string answer =
        "HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Fri, 27 Nov 2026 23:34:52 GMT\r\n"
        "Content-Type: application/json\r\nContent-Length: 166\r\n"
        "Last-Modified: Fri, 27 Nov 2026 23:34:51 GMT\r\nConnection: keep-alive\r\n"
        "ETag: \"6b0a139b-a6\"\r\nX-Consul-Index: 42\r\nX-Consul-Knownleader: true\r\n"
        "X-Consul-Lastcontact: 0\r\nX-Consul-Default-Acl-Policy: allow\r\n"
        "Vary: Accept-Encoding\r\nAccept-Ranges: bytes\r\n\r\n";
    EXPECT_EQ(differential(answer), head_parse::simple);
    response_head head;
    parse_response_head(answer, head);
    EXPECT_TRUE(head.keep_alive);
    EXPECT_EQ(head.content_length, 166u);
}

struct head_case {
    const char* what;
    std::string bytes;
    head_parse expected;
};

std::string with_fields(std::string_view status_line, std::string_view fields) {
    return std::string(status_line) + "\r\n" + std::string(fields) + "\r\n";
}

std::string ok_with(std::string_view fields) {
    return with_fields("HTTP/1.1 200 OK", fields);
}

TEST(response_head, table_agrees_with_beast) {
    using enum head_parse;
    const std::string long_value(max_simple_head, 'a');
    const head_case cases[] = {
        {"minimal", ok_with("Content-Length: 0\r\n"), simple},
        {"lowercase names",
         ok_with("content-length: 3\r\nx-consul-index: 7\r\nx-consul-knownleader: false\r\n"
                 "x-consul-lastcontact: 12\r\n"),
         simple},
        {"mixed case names", ok_with("CONTENT-length: 3\r\nX-CONSUL-INDEX: 7\r\n"), simple},
        {"repeated index: first wins",
         ok_with("X-Consul-Index: 7\r\nX-Consul-Index: 8\r\nContent-Length: 1\r\n"), simple},
        {"ows around values",
         ok_with("Content-Length: \t 12 \t\r\nX-Consul-Index:7  \r\nX-Consul-KnownLeader:\t"
                 "true\t\r\n"),
         simple},
        {"empty value", ok_with("X-Consul-Index:\r\nContent-Length: 0\r\n"), simple},
        {"whitespace-only value", ok_with("X-Consul-Index: \t \r\nContent-Length: 0\r\n"), simple},
        {"inner spaces kept", ok_with("X-Consul-LastContact: 1 2\r\nContent-Length: 0\r\n"),
         simple},
        {"empty reason", with_fields("HTTP/1.1 200 ", "Content-Length: 0\r\n"), simple},
        {"long reason", with_fields("HTTP/1.1 404 Not Found Here", "Content-Length: 0\r\n"),
         simple},
        {"obs-text in value", ok_with("X-Consul-Index: \xe2\x82\xac\r\nContent-Length: 0\r\n"),
         simple},
        {"obs-text in reason", with_fields("HTTP/1.1 200 \xc3\xa9", "Content-Length: 0\r\n"),
         simple},
        {"500", with_fields("HTTP/1.1 500 Internal Server Error", "Content-Length: 4\r\n"), simple},
        {"599", with_fields("HTTP/1.1 599 x", "Content-Length: 4\r\n"), simple},
        {"connection close", ok_with("Connection: close\r\nContent-Length: 0\r\n"), simple},
        {"connection Close", ok_with("Connection:  Close \r\nContent-Length: 0\r\n"), simple},
        {"connection keep-alive then close",
         ok_with("Connection: keep-alive\r\nConnection: close\r\nContent-Length: 0\r\n"), simple},
        {"cl leading zeros", ok_with("Content-Length: 007\r\n"), simple},
        {"cl max u64", ok_with("Content-Length: 18446744073709551615\r\n"), simple},
        {"token punctuation in names", ok_with("X!#$%&'*+-.^_`|~1: v\r\nContent-Length: 0\r\n"),
         simple},
        {"no fields at all: no length", with_fields("HTTP/1.1 200 OK", ""), not_simple},

        {"missing content-length", ok_with("X-Consul-Index: 1\r\n"), not_simple},
        {"chunked", ok_with("Transfer-Encoding: chunked\r\n"), not_simple},
        {"chunked and length", ok_with("Transfer-Encoding: chunked\r\nContent-Length: 3\r\n"),
         not_simple},
        {"transfer-encoding identity",
         ok_with("Transfer-Encoding: identity\r\nContent-Length: 3\r\n"), not_simple},
        {"connection list", ok_with("Connection: keep-alive, close\r\nContent-Length: 0\r\n"),
         not_simple},
        {"connection upgrade", ok_with("Connection: upgrade\r\nContent-Length: 0\r\n"), not_simple},
        {"connection empty", ok_with("Connection:\r\nContent-Length: 0\r\n"), not_simple},
        {"proxy-connection", ok_with("Proxy-Connection: close\r\nContent-Length: 0\r\n"),
         not_simple},
        {"upgrade", ok_with("Upgrade: h2c\r\nContent-Length: 0\r\n"), not_simple},
        {"http/1.0", with_fields("HTTP/1.0 200 OK", "Content-Length: 0\r\n"), not_simple},
        {"http/2.0", with_fields("HTTP/2.0 200 OK", "Content-Length: 0\r\n"), not_simple},
        {"lowercase version", with_fields("http/1.1 200 OK", "Content-Length: 0\r\n"), not_simple},
        {"204", with_fields("HTTP/1.1 204 No Content", "Content-Length: 4\r\n"), not_simple},
        {"304", with_fields("HTTP/1.1 304 Not Modified", "Content-Length: 4\r\n"), not_simple},
        {"100 continue", with_fields("HTTP/1.1 100 Continue", ""), not_simple},
        {"101", with_fields("HTTP/1.1 101 Switching", "Content-Length: 0\r\n"), not_simple},
        {"000", with_fields("HTTP/1.1 000 x", "Content-Length: 0\r\n"), not_simple},
        {"600", with_fields("HTTP/1.1 600 x", "Content-Length: 0\r\n"), not_simple},
        {"two-digit status", with_fields("HTTP/1.1 20 OK", "Content-Length: 0\r\n"), not_simple},
        {"four-digit status", with_fields("HTTP/1.1 2000 OK", "Content-Length: 0\r\n"), not_simple},
        {"no reason separator", with_fields("HTTP/1.1 200", "Content-Length: 0\r\n"), not_simple},
        {"two spaces after version", with_fields("HTTP/1.1  200 OK", "Content-Length: 0\r\n"),
         not_simple},
        {"obs-fold", ok_with("X-Consul-Index: 1\r\n 2\r\nContent-Length: 0\r\n"), not_simple},
        {"obs-fold with tab", ok_with("Content-Length: 0\r\nX-A: 1\r\n\t2\r\n"), not_simple},
        {"obs-fold after empty value", ok_with("X-Consul-Index:\r\n 2\r\nContent-Length: 0\r\n"),
         not_simple},
        {"bare lf in field", ok_with("Content-Length: 0\nX-A: 1\r\n"), not_simple},
        {"bare lf ends head", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\n", not_simple},
        {"bare lf status line", "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", not_simple},
        {"cr without lf", ok_with("Content-Length: 0\rX: y\r\n"), not_simple},
        {"lone cr before end", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\rx", not_simple},
        {"space before colon", ok_with("Content-Length : 0\r\n"), not_simple},
        {"empty name", ok_with(": x\r\nContent-Length: 0\r\n"), not_simple},
        {"separator in name", ok_with("X(a): x\r\nContent-Length: 0\r\n"), not_simple},
        {"no colon", ok_with("X-Consul-Index\r\nContent-Length: 0\r\n"), not_simple},
        {"obs-text in name", ok_with("X\xe9: x\r\nContent-Length: 0\r\n"), not_simple},
        {"nul in value",
         ok_with(std::string("X-Consul-Index: 1\0", 18) + "2\r\nContent-Length: 0\r\n"),
         not_simple},
        {"del in value", ok_with("X-Consul-Index: 1\x7f\r\nContent-Length: 0\r\n"), not_simple},
        {"control in reason", with_fields("HTTP/1.1 200 O\x01K", "Content-Length: 0\r\n"),
         not_simple},
        {"duplicate cl, same", ok_with("Content-Length: 3\r\nContent-Length: 3\r\n"), not_simple},
        {"duplicate cl, different", ok_with("Content-Length: 3\r\nContent-Length: 4\r\n"),
         not_simple},
        {"cl list", ok_with("Content-Length: 3, 3\r\n"), not_simple},
        {"cl plus", ok_with("Content-Length: +3\r\n"), not_simple},
        {"cl minus", ok_with("Content-Length: -3\r\n"), not_simple},
        {"cl inner space", ok_with("Content-Length: 1 2\r\n"), not_simple},
        {"cl hex", ok_with("Content-Length: 0x10\r\n"), not_simple},
        {"cl empty", ok_with("Content-Length: \r\n"), not_simple},
        {"cl overflow", ok_with("Content-Length: 18446744073709551616\r\n"), not_simple},
        {"cl huge", ok_with("Content-Length: 99999999999999999999999\r\n"), not_simple},
        {"garbage", "garbage\r\n\r\n", not_simple},
        {"head too long", ok_with("X-Big: " + long_value + "\r\nContent-Length: 0\r\n"),
         not_simple},
        {"start of garbage", "HTTP/1.1 2x", not_simple},
        {"start of http/1.0", "HTTP/1.0", not_simple},
        {"partial status line", "HTTP/1.1 20", need_more},
        {"partial field", "HTTP/1.1 200 OK\r\nContent-Len", need_more},
        {"partial value", "HTTP/1.1 200 OK\r\nContent-Length: 1", need_more},
        {"waiting for the byte after a field's crlf", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n",
         need_more},
        {"waiting for the lf of the blank line", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r",
         need_more},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.what);
        EXPECT_EQ(differential(c.bytes), c.expected);
    }
}

TEST(response_head, beast_rejects_or_reads_otherwise_what_is_not_simple) {
    // Spot checks that the fallbacks are real differences, not just caution.
    EXPECT_EQ(read_with_beast(ok_with("Content-Length: 3\r\nContent-Length: 4\r\n")).ec,
              http::error::multiple_content_length);
    EXPECT_EQ(read_with_beast(ok_with("Content-Length: +3\r\n")).ec,
              http::error::bad_content_length);
    EXPECT_EQ(read_with_beast(ok_with("Content-Length: 0\nX-A: 1\r\n")).ec, http::error::bad_value);
    EXPECT_FALSE(read_with_beast(ok_with("X-Consul-Index: 1\r\n")).answer.keep_alive);
    const auto folded =
        read_with_beast(ok_with("X-Consul-Index: 1\r\n 2\r\nContent-Length: 0\r\n"));
    EXPECT_EQ(folded.answer.index, "1 2");
}

TEST(response_head, special_bytes_at_every_offset_of_names_and_values) {
    // The scans go eight bytes at a time: put each odd byte at each place in a word.
    const std::string specials[] = {
        "\t", "\x7f", std::string(1, '\0'), "\x1f", "\r", "\n", "\x80", "\xff", " ", ":", "(", "@"};
    for (std::size_t at = 0; at < 20; ++at) {
        for (const auto& special : specials) {
            const std::string text = std::string(at, 'v') + special + "vvvvvvvvv";
            SCOPED_TRACE(testing::PrintToString(text));
            // In a value: agreement whatever the verdict, and inner bytes kept exactly.
            const std::string in_value =
                ok_with("X-Consul-Index: " + text + "\r\nContent-Length: 0\r\n");
            if (differential(in_value) == head_parse::simple && at != 0) {
                response_head head;
                parse_response_head(in_value, head);
                ASSERT_TRUE(head.index);
                EXPECT_EQ(*head.index, text);
            }
            // In a name.
            differential(ok_with(text + ": 1\r\nContent-Length: 0\r\n"));
        }
    }
}

TEST(response_head, every_byte_at_every_offset_of_a_name) {
    // The name scan runs in blocks of eight bytes with a byte-wise tail: every byte value, at
    // every place in and past the first two blocks, must get the same verdict as from Beast.
    const std::string filler = "aZ9-zA0-Mm5-x";
    for (std::size_t at = 0; at < 18; ++at) {
        for (unsigned b = 0; b < 256; ++b) {
            const char c = static_cast<char>(b);
            std::string name;
            for (std::size_t i = 0; i < at; ++i) {
                name += filler[i % filler.size()];
            }
            name += c;
            name += filler;
            SCOPED_TRACE(testing::PrintToString(name));
            const bool token =
                std::isalnum(static_cast<unsigned char>(c)) != 0 ||
                std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
            const auto verdict = differential(ok_with(name + ": 1\r\nContent-Length: 0\r\n"));
            if (token || (c == ':' && at != 0)) {
                // A token character keeps the name whole; ':' ends it early and the rest is the
                // value. Either way the fast parser must take it.
                EXPECT_EQ(verdict, head_parse::simple);
            } else {
                EXPECT_EQ(verdict, head_parse::not_simple);
            }
        }
    }
}

TEST(response_head, names_match_in_any_case_and_only_in_full) {
    const std::string name = "X-Consul-KnownLeader";
    for (std::size_t i = 0; i < name.size(); ++i) {
        std::string flipped = name;
        flipped[i] = static_cast<char>(std::isupper(static_cast<unsigned char>(flipped[i]))
                                           ? std::tolower(static_cast<unsigned char>(flipped[i]))
                                           : std::toupper(static_cast<unsigned char>(flipped[i])));
        std::string changed = name;
        changed[i] = changed[i] == '-' ? '_' : 'q';
        for (const auto& n : {flipped, changed}) {
            SCOPED_TRACE(n);
            const std::string bytes = ok_with(n + ": true\r\nContent-Length: 0\r\n");
            ASSERT_EQ(differential(bytes), head_parse::simple);
            response_head head;
            parse_response_head(bytes, head);
            EXPECT_EQ(head.known_leader.has_value(), n == flipped);
        }
    }
}

TEST(response_head, head_limit_boundary) {
    // The largest head the fast parser takes is one Beast takes too.
    const std::string base = ok_with("Content-Length: 0\r\nX-Pad: \r\n");
    const auto at = base.find("X-Pad: ") + 7;
    // (Concatenation rather than insert: g++ 12 -O2 warns falsely about insert here.)
    auto padded = [&](std::size_t n) {
        return base.substr(0, at) + std::string(n, 'p') + base.substr(at);
    };
    std::string head = padded(max_simple_head - base.size());
    ASSERT_EQ(head.size(), max_simple_head);
    EXPECT_EQ(differential(head), head_parse::simple);
    // One byte more: Beast's header_limit, so the fast parser must not take it.
    head = padded(max_simple_head - base.size() + 1);
    EXPECT_EQ(differential(head), head_parse::not_simple);
    EXPECT_EQ(differential(std::string_view(head).substr(0, max_simple_head)),
              head_parse::not_simple);
    EXPECT_EQ(differential(std::string_view(head).substr(0, max_simple_head - 1)),
              head_parse::need_more);
}

}  // namespace
}  // namespace lakemesh::consul::detail
