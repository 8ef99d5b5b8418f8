#include "partition/table_codec.hpp"

#include <gtest/gtest.h>

namespace lakemesh::partition::detail {
namespace {

const std::string prefix = "lakemesh/c/";

consul::kv_pair kv(std::string key, std::string value, std::uint64_t index,
                   std::string session = {}) {
    consul::kv_pair e;
    e.key = prefix + std::move(key);
    e.value = std::move(value);
    e.modify_index = index;
    e.session = std::move(session);
    return e;
}

std::string owner(const std::string& node, fencing_token token) {
    return encode(owner_value{node, "10.0.0.1", 8080, token});
}

std::string status(partition_state s, const std::string& node, fencing_token token) {
    return encode(status_value{s, node, token, "2026-12-06T00:00:00.000Z", {{"k", "v"}}});
}

void expect_same(const table_read& a, const table_read& b) {
    EXPECT_EQ(a.config, b.config);
    EXPECT_EQ(a.config_malformed, b.config_malformed);
    EXPECT_EQ(a.records, b.records);
    EXPECT_EQ(a.statuses, b.statuses);
    EXPECT_EQ(a.ignored, b.ignored);
}

TEST(table_codec, a_listing_becomes_one_record_per_partition) {
    const std::vector<consul::kv_pair> entries{
        kv("config", encode(cluster_config_value{"c", 2, 7, 1}), 5),
        kv("partitions/0/owner", owner("n1", 42), 10, "s1"),
        kv("partitions/0/status", status(partition_state::active, "n1", 42), 11),
        kv("partitions/1/status", "not json", 12),
        kv("partitions/2/owner", owner("n2", 1), 13, "s2"),  // out of range
    };
    const auto t = read_table(entries, prefix, 2);
    ASSERT_TRUE(t.config);
    EXPECT_EQ(t.config->epoch, 7u);
    ASSERT_EQ(t.records.size(), 2u);
    EXPECT_EQ(t.records[0].session, "s1");
    EXPECT_EQ(t.records[0].node, "n1");
    EXPECT_EQ(t.records[0].token, 42u);
    EXPECT_EQ(t.records[0].owner_index, 10u);
    EXPECT_EQ(t.records[0].state, partition_state::active);
    EXPECT_EQ(t.records[0].status_index, 11u);
    EXPECT_EQ(t.statuses[0].meta.at("k"), "v");
    EXPECT_EQ(t.records[1].state, partition_state::unknown);
    EXPECT_EQ(t.ignored, 2u);  // the bad status and the partition out of range
}

TEST(table_codec, a_decode_cache_gives_the_same_reads_and_follows_changed_bytes) {
    decode_cache cache;
    std::vector<consul::kv_pair> entries{
        kv("partitions/0/owner", owner("n1", 42), 10, "s1"),
        kv("partitions/0/status", status(partition_state::active, "n1", 42), 11),
        kv("partitions/1/owner", owner("n2", 43), 12, "s2"),
        kv("partitions/1/status", status(partition_state::draining, "n2", 43), 13),
    };
    expect_same(read_table(entries, prefix, 2, &cache), read_table(entries, prefix, 2));
    expect_same(read_table(entries, prefix, 2, &cache), read_table(entries, prefix, 2));

    // A move: partition 1's keys change; the index stays the same on purpose (after a Consul
    // state loss indexes start over), so only the bytes can tell the values apart.
    entries[2] = kv("partitions/1/owner", owner("n3", 44), 12, "s3");
    entries[3] = kv("partitions/1/status", status(partition_state::acquiring, "n3", 44), 13);
    const auto moved = read_table(entries, prefix, 2, &cache);
    expect_same(moved, read_table(entries, prefix, 2));
    EXPECT_EQ(moved.records[1].node, "n3");
    EXPECT_EQ(moved.records[1].token, 44u);
    EXPECT_EQ(moved.records[1].state, partition_state::acquiring);
    EXPECT_EQ(moved.statuses[1].owner, "n3");

    // A value that stops decoding is not served from the cache, nor is a key that went away.
    entries[0].value = "{";
    entries.pop_back();
    const auto broken = read_table(entries, prefix, 2, &cache);
    expect_same(broken, read_table(entries, prefix, 2));
    EXPECT_EQ(broken.records[0].token, 0u);
    EXPECT_EQ(broken.records[1].state, partition_state::unknown);
    EXPECT_EQ(broken.ignored, 1u);
}

}  // namespace
}  // namespace lakemesh::partition::detail
