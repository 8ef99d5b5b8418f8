// Lake failover across processes: three example_lake_node processes share a store and a Consul
// agent (dev_consul, or the real agent named by CONSUL_HTTP_ADDR); one is killed with SIGKILL
// while a writer keeps writing. Every partition must be owned again within a bound, the store's
// fence must never have admitted an older token after a newer one, and every acknowledged write
// must be in the store.
#include "consul_target.hpp"
#include "lake/lake_process.hpp"

#include <gtest/gtest.h>

#include <random>

namespace lakemesh::test {
namespace {

using namespace std::chrono_literals;

constexpr std::uint32_t P = 256;

class lake_failover_test : public ::testing::Test {
  protected:
    consul_target target;
    std::string cluster = "lake-" + std::to_string(std::random_device{}() % 1000000);
    lake::shared_store store{P};
    std::vector<lake::node_process> nodes;

    lake::cluster_settings settings() const {
        // Relaxed lease margins: this suite runs beside others on two shared cores.
        return {LAKE_NODE_BIN,
                target.address(),
                cluster,
                "127.0.0.1:" + std::to_string(store.port()),
                P,
                "relaxed"};
    }

    std::vector<const lake::node_process*> live() const {
        std::vector<const lake::node_process*> out;
        for (const auto& n : nodes) {
            if (n.proc->pid() > 0) {
                out.push_back(&n);
            }
        }
        return out;
    }

    void TearDown() override {
        for (auto& n : nodes) {
            n.proc->terminate(15s);
        }
        nodes.clear();
        // What the killed node left on the agent (its member and partition services).
        auto raw = target.client();
        auto services = raw.get("/v1/agent/services");
        const auto listing = services.status == 200 ? services.json_body() : json();
        if (listing.is_object()) {
            for (auto& [id, s] : listing.items()) {
                if (s.is_object() && s.value("Service", "").rfind(cluster, 0) == 0) {
                    raw.put("/v1/agent/service/deregister/" + id);
                }
            }
        }
        raw.del("/v1/kv/lakemesh/" + cluster + "?recurse");
    }
};

TEST_F(lake_failover_test, a_killed_node_loses_no_acknowledged_write) {
    const auto s = settings();
    for (const char* id : {"n1", "n2", "n3"}) {
        nodes.push_back(lake::start_node(s, id));
    }
    ASSERT_TRUE(lake::poll_until(
        [&] {
            auto v = lake::ask_nodes(live(), P);
            return v.all_settled && v.distinct == P && v.duplicates == 0;
        },
        60s))
        << "the three nodes did not settle";

    lake::lake_writer writer;
    writer.set_nodes({nodes[0].address(), nodes[1].address(), nodes[2].address()});
    writer.start();
    ASSERT_TRUE(lake::poll_until([&] { return writer.acknowledged() >= 200; }, 30s));

    nodes[1].proc->signal(SIGKILL);
    const auto killed_at = std::chrono::steady_clock::now();
    nodes[1].proc->wait(5s);
    writer.set_nodes({nodes[0].address(), nodes[2].address()});
    const bool reowned = lake::poll_until(
        [&] {
            auto v = lake::ask_nodes(live(), P);
            return v.all_answered && v.distinct == P;
        },
        15s);
    const auto failover = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - killed_at);
    EXPECT_TRUE(reowned) << "partitions not owned again within 15 s";
    std::cout << "failover took " << failover.count() << " ms\n";

    // Writes keep being acknowledged after the failover.
    const auto before = writer.acknowledged();
    EXPECT_TRUE(lake::poll_until([&] { return writer.acknowledged() >= before + 200; }, 30s));
    writer.stop();

    EXPECT_TRUE(lake::poll_until(
        [&] {
            auto v = lake::ask_nodes(live(), P);
            return v.all_settled && v.distinct == P && v.duplicates == 0;
        },
        30s))
        << "the two survivors did not settle";

    const auto stats = store.stats();
    EXPECT_EQ(stats.fence_violations, 0u);
    EXPECT_EQ(writer.lost_writes(store), 0u);
    EXPECT_GT(stats.writes, 0u);
    std::cout << "acknowledged=" << writer.acknowledged() << " redirects=" << writer.redirects()
              << " store_writes=" << stats.writes << " fence_rejections=" << stats.fence_rejections
              << "\n";
}

}  // namespace
}  // namespace lakemesh::test
