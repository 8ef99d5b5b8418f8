// table_codec.hpp (the partition registry's config, owner and status values, and the reading of
// a recursive listing of its prefix): every decoder refuses what it does not understand without
// throwing; whatever decodes encodes and decodes again to the same value; the listing read from
// arbitrary keys and values has one record per partition, takes an owner or status only from a
// key of a partition in range, and counts the rest as ignored; a decode cache never changes it.
// fuzz-dict: consul_json partition
#include "fuzz_check.hpp"
#include "partition/table_codec.hpp"

#include <string>
#include <vector>

namespace {

using namespace lakemesh;
using namespace lakemesh::partition::detail;

template <class Decode>
void round_trip(const std::string& body, Decode decode) {
    const auto v = fuzz::without_throwing([&] { return decode(body); });
    if (!v) {
        return;
    }
    const std::string again = fuzz::without_throwing([&] { return encode(*v); });
    const auto v2 = fuzz::without_throwing([&] { return decode(again); });
    LAKEMESH_FUZZ_CHECK(v2.has_value());
    LAKEMESH_FUZZ_CHECK(*v2 == *v);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string body = fuzz::as_string(data, size);
    round_trip(body, [](const std::string& b) { return decode_config(b); });
    round_trip(body, [](const std::string& b) { return decode_owner(b); });
    round_trip(body, [](const std::string& b) { return decode_status(b); });

    // A listing: the body as every kind of value, under keys in and out of range, and the
    // body's first line as a key of its own.
    const std::uint32_t partitions = size == 0 ? 1 : 1 + data[0] % 8;
    const std::string prefix = "lakemesh/c/";
    const std::string line = body.substr(0, body.find('\n'));
    std::vector<consul::kv_pair> entries;
    auto add = [&](std::string key, std::string session = {}) {
        consul::kv_pair kv;
        kv.key = std::move(key);
        kv.value = body;
        kv.session = std::move(session);
        kv.modify_index = entries.size() + 1;
        entries.push_back(std::move(kv));
    };
    add(prefix + "config");
    add(prefix + "partitions/0/owner", "s1");
    add(prefix + "partitions/0/status");
    add(prefix + "partitions/" + std::to_string(partitions) + "/owner", "s2");  // out of range
    add(prefix + "partitions/" + line + "/owner", "s3");
    add(prefix + "partitions/" + line);
    add(prefix + line);
    add(line);
    const auto t = fuzz::without_throwing([&] { return read_table(entries, prefix, partitions); });
    // Through a decode cache, first cold, then primed with a listing of other bytes under
    // the same keys, then warm: always the same read.
    decode_cache cache;
    auto same_as_t = [&](const table_read& c) {
        LAKEMESH_FUZZ_CHECK(c.records == t.records && c.statuses == t.statuses &&
                            c.config == t.config && c.ignored == t.ignored);
    };
    same_as_t(read_table(entries, prefix, partitions, &cache));
    auto other = entries;
    for (auto& e : other) {
        e.value = line;
    }
    read_table(other, prefix, partitions, &cache);
    same_as_t(read_table(entries, prefix, partitions, &cache));
    same_as_t(read_table(entries, prefix, partitions, &cache));
    LAKEMESH_FUZZ_CHECK(t.records.size() == partitions);
    LAKEMESH_FUZZ_CHECK(t.statuses.size() == partitions);
    // The out-of-range owner key is never taken.
    LAKEMESH_FUZZ_CHECK(t.ignored >= 1 && t.ignored <= entries.size());
    const auto config = decode_config(body);
    LAKEMESH_FUZZ_CHECK(t.config_malformed == !config.has_value());
    LAKEMESH_FUZZ_CHECK(t.config == config);
    // Partition 0's keys, unless the fuzzer's own keys name them too.
    if (line.find('0') == std::string::npos) {
        LAKEMESH_FUZZ_CHECK(t.records[0].session == "s1");
        LAKEMESH_FUZZ_CHECK(t.records[0].owner_index == 2);
        LAKEMESH_FUZZ_CHECK(t.records[0].status_index == 3);
        const auto owner = decode_owner(body);
        LAKEMESH_FUZZ_CHECK(t.records[0].token == (owner ? owner->token : 0));
        const auto status = decode_status(body);
        LAKEMESH_FUZZ_CHECK(t.records[0].state ==
                            (status ? status->state : partition::partition_state::unknown));
    }
    return 0;
}
