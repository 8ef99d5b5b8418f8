#include "raw_http_client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>

namespace lakemesh::test {

std::string raw_http_answer::header(const std::string& name) const {
    const auto it = headers.find(name);
    return it == headers.end() ? std::string{} : it->second;
}

raw_http_client::raw_http_client(std::uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) {
        return;
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
        close();
        return;
    }
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

raw_http_client::~raw_http_client() {
    close();
}

void raw_http_client::close() {
    if (fd_ >= 0) {
        ::close(fd_);
        fd_ = -1;
    }
}

bool raw_http_client::send(std::string_view bytes) {
    while (fd_ >= 0 && !bytes.empty()) {
        const auto n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return false;
        }
        bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return fd_ >= 0;
}

long raw_http_client::fill(std::chrono::steady_clock::time_point deadline) {
    if (fd_ < 0) {
        return 0;
    }
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            return -1;
        }
        pollfd p{fd_, POLLIN, 0};
        const int r = ::poll(&p, 1, static_cast<int>(left.count()));
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r == 0) {
            return -1;
        }
        char buf[16384];
        const auto n = ::recv(fd_, buf, sizeof buf, 0);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
            continue;
        }
        if (n <= 0) {
            return 0;
        }
        pending_.append(buf, static_cast<std::size_t>(n));
        return n;
    }
}

std::optional<raw_http_answer> raw_http_client::read_answer(bool to_head,
                                                            std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    std::size_t end = 0;
    while ((end = pending_.find("\r\n\r\n")) == std::string::npos) {
        if (fill(deadline) <= 0) {
            return std::nullopt;
        }
    }
    raw_http_answer a;
    const std::string head = pending_.substr(0, end);
    pending_.erase(0, end + 4);
    std::size_t line_end = head.find("\r\n");
    const std::string status_line = head.substr(0, line_end);
    // "HTTP/1.1 200 OK"
    const auto sp = status_line.find(' ');
    if (sp == std::string::npos) {
        return std::nullopt;
    }
    a.status = static_cast<unsigned>(std::atoi(status_line.c_str() + sp + 1));
    while (line_end != std::string::npos) {
        const auto start = line_end + 2;
        line_end = head.find("\r\n", start);
        const std::string line = head.substr(start, line_end - start);
        const auto colon = line.find(':');
        if (colon == std::string::npos) {
            continue;
        }
        std::string name = line.substr(0, colon);
        std::transform(name.begin(), name.end(), name.begin(),
                       [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        std::string value = line.substr(colon + 1);
        value.erase(0, value.find_first_not_of(' '));
        a.headers[name] = value;
    }
    std::size_t length = 0;
    if (!to_head && a.headers.count("content-length") != 0) {
        length = std::stoul(a.headers["content-length"]);
    }
    while (pending_.size() < length) {
        if (fill(deadline) <= 0) {
            return std::nullopt;
        }
    }
    a.body = pending_.substr(0, length);
    pending_.erase(0, length);
    return a;
}

std::optional<raw_http_answer> raw_http_client::request(std::string_view method,
                                                        std::string_view target,
                                                        std::string_view extra_headers) {
    std::string req;
    req.append(method).append(" ").append(target).append(" HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    req.append(extra_headers).append("\r\n");
    if (!send(req)) {
        return std::nullopt;
    }
    return read_answer(method == "HEAD");
}

bool raw_http_client::wait_closed(std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
        const long n = fill(deadline);
        if (n == 0) {
            return true;
        }
        if (n < 0) {
            return false;
        }
        pending_.clear();
    }
}

}  // namespace lakemesh::test
