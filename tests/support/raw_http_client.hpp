// Test support: a blocking HTTP/1.1 client on a plain POSIX socket to 127.0.0.1, for sending
// exactly the bytes a test wants (malformed, oversized, pipelined, slow) and reading answers
// with a deadline. Every wait is a poll() on the socket, bounded by the given limit.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace lakemesh::test {

struct raw_http_answer {
    unsigned status = 0;
    std::map<std::string, std::string> headers;  // names in lower case
    std::string body;

    /// The header's value, "" when absent (`name` in lower case).
    std::string header(const std::string& name) const;
};

class raw_http_client {
  public:
    /// Connects at once; connected() says whether it worked.
    explicit raw_http_client(std::uint16_t port);
    ~raw_http_client();
    raw_http_client(const raw_http_client&) = delete;
    raw_http_client& operator=(const raw_http_client&) = delete;

    bool connected() const noexcept { return fd_ >= 0; }
    /// Sends all of `bytes`; false when the connection is gone.
    bool send(std::string_view bytes);
    /// Reads one answer (no body for an answer to HEAD). nullopt when the connection closed or
    /// failed first, or after `limit`.
    std::optional<raw_http_answer> read_answer(
        bool to_head = false, std::chrono::milliseconds limit = std::chrono::seconds(10));
    /// Sends a GET (or another method) for `target` with extra header lines ("Name: value\r\n").
    std::optional<raw_http_answer> request(std::string_view method, std::string_view target,
                                           std::string_view extra_headers = {});
    /// Reads and drops input until the server closes the connection (true) or `limit` passes
    /// (false).
    bool wait_closed(std::chrono::milliseconds limit = std::chrono::seconds(10));
    void close();

  private:
    /// Appends what arrives before `deadline` to pending_: bytes read, 0 at the end of the
    /// stream or on an error, -1 on timeout.
    long fill(std::chrono::steady_clock::time_point deadline);

    int fd_ = -1;
    std::string pending_;
};

}  // namespace lakemesh::test
