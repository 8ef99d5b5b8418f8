// An in-memory Consul for the service-cache benchmarks (no sockets): services are generated from
// (name, version), a fetch with the current index parks until set() bumps the service, and
// parked fetches are kept per service so waking one is O(1) in the number of services.
#pragma once

#include <lakemesh/consul/health.hpp>
#include <lakemesh/discovery/service_cache.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace lakemesh::bench {

namespace asio = boost::asio;
using entries_t = std::vector<consul::service_entry>;
using fetch_handler = asio::any_completion_handler<void(error_code, entries_t, std::uint64_t)>;

class fake_service_source {
  public:
    fake_service_source(asio::io_context& io, std::size_t instances) : io_(io), n_(instances) {}

    discovery::service_source source() {
        return [this](const std::string& service, const discovery::service_query&,
                      consul::fetch_params p, fetch_handler h) {
            auto& s = services_[service];
            if (s.index == 0) {
                s.index = ++global_index_;
            }
            if (p.index > 0 && p.index >= s.index) {
                auto slot = asio::get_associated_cancellation_slot(h);
                auto held = std::make_shared<fetch_handler>(std::move(h));
                s.parked.push_back(held);
                if (slot.is_connected()) {
                    slot.assign([this, service, held](asio::cancellation_type) {
                        auto& v = services_[service].parked;
                        std::erase(v, held);
                        if (*held) {
                            deliver(std::move(*held), asio::error::operation_aborted, {}, 0);
                        }
                    });
                }
                return;
            }
            deliver(std::move(h), {}, make(service, s.version), s.index);
        };
    }

    /// Changes the instance set of `service` and wakes its parked watches.
    void bump(const std::string& service) {
        auto& s = services_[service];
        ++s.version;
        s.index = ++global_index_;
        auto parked = std::move(s.parked);
        s.parked.clear();
        for (auto& h : parked) {
            auto slot = asio::get_associated_cancellation_slot(*h);
            if (slot.is_connected()) {
                slot.clear();
            }
            deliver(std::move(*h), {}, make(service, s.version), s.index);
        }
    }

    /// Instances of version v: ids cycle over three generations so every bump changes the set.
    entries_t make(const std::string& service, std::uint64_t v) const {
        entries_t out;
        out.reserve(n_);
        for (std::size_t i = 0; i < n_; ++i) {
            consul::service_entry e;
            const std::string id = service + "-" + std::to_string(i) + "-" + std::to_string(v % 3);
            e.node.node = "node-" + std::to_string(i);
            e.node.address = "10.0." + std::to_string(i) + ".1";
            e.node.datacenter = "dc1";
            e.service.id = id;
            e.service.service = service;
            e.service.port = 8000 + static_cast<int>(v % 3);
            consul::health_check c;
            c.check_id = "serfHealth";
            c.status = consul::check_status::passing;
            e.checks.push_back(std::move(c));
            out.push_back(std::move(e));
        }
        return out;
    }

  private:
    struct state {
        std::uint64_t version = 0;
        std::uint64_t index = 0;
        std::vector<std::shared_ptr<fetch_handler>> parked;
    };
    void deliver(fetch_handler h, error_code ec, entries_t v, std::uint64_t index) {
        asio::post(io_, [h = std::move(h), ec, v = std::move(v), index]() mutable {
            std::move(h)(ec, std::move(v), index);
        });
    }

    asio::io_context& io_;
    std::size_t n_;
    std::uint64_t global_index_ = 0;
    std::unordered_map<std::string, state> services_;
};

}  // namespace lakemesh::bench
