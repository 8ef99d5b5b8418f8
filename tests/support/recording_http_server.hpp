// Test support: a loopback HTTP/1.1 server that answers every request with a canned response and
// records what it was sent, for checking exactly what goes over the wire (query parameters,
// headers) and how the client reads response headers. One request per connection.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace lakemesh::test {

class recording_http_server {
  public:
    struct request {
        std::string method;
        std::string target;
        std::string body;
        std::map<std::string, std::string> headers;  // names as sent
    };

    recording_http_server();
    ~recording_http_server();
    recording_http_server(const recording_http_server&) = delete;
    recording_http_server& operator=(const recording_http_server&) = delete;

    std::uint16_t port() const;

    /// Status of every answer; the body is "body-<status>" unless set_body() was called.
    std::atomic<unsigned> status{200};
    /// Requests answered so far.
    std::atomic<int> hits{0};
    /// Connections accepted so far (a request refused before sending opens none).
    std::atomic<int> accepted{0};
    void set_body(std::string body);
    void set_header(std::string name, std::string value);

    std::vector<request> requests() const;
    request last() const;
    std::string last_method() const { return last().method; }
    std::string last_target() const { return last().target; }
    std::string last_body() const { return last().body; }
    /// Value of a header of the last request, "" when absent.
    std::string last_header(const std::string& name) const;

  private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace lakemesh::test
