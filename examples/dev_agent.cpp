// Starts an embedded dev Consul agent, writes and reads a key over plain HTTP, then shows the
// agent's fault injection: a lost-state restart makes the key disappear and the index go back.
#include <lakemesh/testing/dev_consul.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <iostream>
#include <string>

namespace beast = boost::beast;
namespace http = beast::http;

namespace {

http::response<http::string_body> call(const lakemesh::testing::dev_consul& agent, http::verb verb,
                                       const std::string& target, const std::string& body = {}) {
    boost::asio::io_context io;
    beast::tcp_stream stream(io);
    stream.connect(
        boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), agent.port()));
    http::request<http::string_body> req{verb, target, 11};
    req.set(http::field::host, agent.address());
    req.body() = body;
    req.prepare_payload();
    http::write(stream, req);
    beast::flat_buffer buffer;
    http::response<http::string_body> res;
    http::read(stream, buffer, res);
    return res;
}

}  // namespace

int main() {
    lakemesh::testing::dev_consul agent;
    std::cout << "dev agent " << agent.node_name() << " on " << agent.url() << "\n";

    auto put = call(agent, http::verb::put, "/v1/kv/example/greeting", "hello");
    auto get = call(agent, http::verb::get, "/v1/kv/example/greeting?raw");
    std::cout << "PUT -> " << put.body() << ", GET ?raw -> " << get.body() << " (X-Consul-Index "
              << get["X-Consul-Index"] << ")\n";
    if (get.body() != "hello") {
        return 1;
    }

    agent.restart(/*keep_state=*/false);
    auto lost = call(agent, http::verb::get, "/v1/kv/example/greeting");
    std::cout << "after a lost-state restart: HTTP " << lost.result_int() << " (X-Consul-Index "
              << lost["X-Consul-Index"] << ")\n";
    return lost.result_int() == 404 ? 0 : 1;
}
