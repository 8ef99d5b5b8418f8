// Uses the public API the way an application would: configuration, errors, the dev agent.
#include <lakemesh/config.hpp>
#include <lakemesh/error.hpp>
#include <lakemesh/testing/dev_consul.hpp>

#include <iostream>

int main() {
    lakemesh::testing::dev_consul agent;
    lakemesh::consul::client_config cfg;
    cfg.addresses = {*lakemesh::consul::parse_agent_address(agent.address())};
    lakemesh::diagnostics diag;
    if (auto ec = cfg.validate(diag)) {
        std::cerr << "invalid config: " << ec.message() << "\n";
        return 1;
    }
    lakemesh::error_code ec = lakemesh::consul_errc::unavailable;
    if (!lakemesh::is_retryable(ec)) {
        return 1;
    }
    std::cout << "consumer ok: dev agent at " << agent.address() << "\n";
    return 0;
}
