// JSON of the health endpoints: https://developer.hashicorp.com/consul/api-docs/health
#include "health_codec.hpp"

#include "agent_codec.hpp"
#include "client_impl.hpp"
#include "fast_json.hpp"

#include <charconv>
#include <cstring>
#include <limits>
#include <string_view>

namespace lakemesh::consul::detail {

namespace {

error_code decode_node_object(const json& j, node_info& out, diagnostics& diag,
                              const std::string& where) {
    error_code ec;
    if ((ec = expect_object(j, diag, where)) ||
        (ec = get_string(j, "ID", out.id, diag, where, false)) ||
        (ec = get_string(j, "Node", out.node, diag, where)) ||
        (ec = get_string(j, "Address", out.address, diag, where)) ||
        (ec = get_string(j, "Datacenter", out.datacenter, diag, where, false)) ||
        (ec = get_string_map(j, "TaggedAddresses", out.tagged_addresses, diag, where)) ||
        (ec = get_string_map(j, "Meta", out.meta, diag, where)) ||
        (ec = get_u64(j, "CreateIndex", out.create_index, diag, where, false)) ||
        (ec = get_u64(j, "ModifyIndex", out.modify_index, diag, where, false))) {
        return ec;
    }
    return {};
}

error_code decode_checks_array(const json& j, std::vector<health_check>& out, diagnostics& diag,
                               const std::string& where) {
    out.clear();
    if (j.is_null()) {
        return {};  // Go encodes an empty slice as null
    }
    if (auto ec = expect_array(j, diag, where)) {
        return ec;
    }
    out.reserve(j.size());
    for (std::size_t i = 0; i < j.size(); ++i) {
        health_check c;
        if (auto ec = decode_check_object(j[i], c, diag, where + "[" + std::to_string(i) + "]")) {
            out.clear();
            return ec;
        }
        out.push_back(std::move(c));
    }
    return {};
}

/// Reads the common shape of a health/service answer without building a JSON tree: strings of
/// printable ASCII (the escapes \" \\ \/ \b \f \n \r \t allowed), unsigned integers, booleans,
/// null, and fields the client does not use holding any nesting of those. Anything else (\u
/// escapes, other bytes, signed or fractional numbers, a known field twice, a missing or
/// mistyped field, an unknown check status, malformed JSON) makes it give up and return false;
/// the caller then decodes with the full JSON parser, which explains every error. So it only
/// ever returns true with the result the full decoder gives.
class entries_fast_reader : fast_json_cursor {
  public:
    explicit entries_fast_reader(std::string_view text) : fast_json_cursor(text) {}

    bool read(std::vector<service_entry>& out) {
        return read_whole_array(out, [this](service_entry& e) { return read_entry(e); });
    }

  private:
    /// Calls field(name, is_null) for each member of an object; field reads the value unless
    /// it is null (already consumed). Fails on a known field seen twice (`seen` bit per field).
    template <class Field>
    bool read_object(Field&& field) {
        if (!eat('{')) {
            return false;
        }
        skip_ws();
        if (eat('}')) {
            return true;
        }
        do {
            skip_ws();
            std::string_view key;
            if (!read_string(key)) {
                return false;
            }
            if (key.data() == scratch_.data()) {
                name_.assign(key);  // reading the value may reuse scratch_
                key = name_;
            }
            skip_ws();
            if (!eat(':')) {
                return false;
            }
            skip_ws();
            const bool null = eat_word("null");
            if (!field(key, null)) {
                return false;
            }
            skip_ws();
        } while (eat(','));
        return eat('}');
    }

    static bool first_time(unsigned& seen, unsigned bit) {
        if ((seen & bit) != 0) {
            return false;
        }
        seen |= bit;
        return true;
    }

    bool read_entry(service_entry& e) {
        unsigned seen = 0;
        bool have_node = false;
        bool have_service = false;
        const bool ok = read_object([&](std::string_view name, bool null) {
            if (name_is(name, "Node")) {
                have_node = !null;
                return first_time(seen, 1) && (null || read_node(e.node));
            }
            if (name_is(name, "Service")) {
                have_service = !null;
                return first_time(seen, 2) && (null || read_service(e.service));
            }
            if (name_is(name, "Checks")) {
                e.checks.clear();
                return first_time(seen, 4) && (null || read_checks(e.checks));
            }
            return null || skip_value(0);
        });
        return ok && have_node && have_service;
    }

    bool read_node(node_info& n) {
        unsigned seen = 0;
        const bool ok = read_object([&](std::string_view name, bool null) {
            if (name_is(name, "ID")) {
                return first_time(seen, 1) && optional_string(null, n.id);
            }
            if (name_is(name, "Node")) {
                return first_time(seen, 2) && !null && read_string_into(n.node);
            }
            if (name_is(name, "Address")) {
                return first_time(seen, 4) && !null && read_string_into(n.address);
            }
            if (name_is(name, "Datacenter")) {
                return first_time(seen, 8) && optional_string(null, n.datacenter);
            }
            if (name_is(name, "TaggedAddresses")) {
                return first_time(seen, 16) && string_map(null, n.tagged_addresses);
            }
            if (name_is(name, "Meta")) {
                return first_time(seen, 32) && string_map(null, n.meta);
            }
            if (name_is(name, "CreateIndex")) {
                return first_time(seen, 64) && optional_u64(null, n.create_index);
            }
            if (name_is(name, "ModifyIndex")) {
                return first_time(seen, 128) && optional_u64(null, n.modify_index);
            }
            return null || skip_value(0);
        });
        return ok && (seen & (2 | 4)) == (2 | 4);
    }

    bool read_service(agent_service& s) {
        unsigned seen = 0;
        const bool ok = read_object([&](std::string_view name, bool null) {
            if (name_is(name, "ID")) {
                return first_time(seen, 1) && !null && read_string_into(s.id);
            }
            if (name_is(name, "Service")) {
                return first_time(seen, 2) && !null && read_string_into(s.service);
            }
            if (name_is(name, "Tags")) {
                return first_time(seen, 4) && string_list(null, s.tags);
            }
            if (name_is(name, "Meta")) {
                return first_time(seen, 8) && string_map(null, s.meta);
            }
            if (name_is(name, "Port")) {
                return first_time(seen, 16) && optional_int(null, s.port);
            }
            if (name_is(name, "Address")) {
                return first_time(seen, 32) && optional_string(null, s.address);
            }
            if (name_is(name, "EnableTagOverride")) {
                return first_time(seen, 64) && optional_bool(null, s.enable_tag_override);
            }
            if (name_is(name, "Kind")) {
                return first_time(seen, 128) && optional_string(null, s.kind);
            }
            if (name_is(name, "Datacenter")) {
                return first_time(seen, 256) && optional_string(null, s.datacenter);
            }
            if (name_is(name, "Namespace")) {
                return first_time(seen, 512) && optional_string(null, s.namespace_name);
            }
            if (name_is(name, "CreateIndex")) {
                return first_time(seen, 1024) && optional_u64(null, s.create_index);
            }
            if (name_is(name, "ModifyIndex")) {
                return first_time(seen, 2048) && optional_u64(null, s.modify_index);
            }
            if (name_is(name, "Weights")) {
                return first_time(seen, 4096) && (null || read_weights(s.weights));
            }
            return null || skip_value(0);
        });
        return ok && (seen & (1 | 2)) == (1 | 2);
    }

    bool read_weights(service_weights& w) {
        // In a Weights object the full decoder reads an absent or null member as 0.
        w.passing = 0;
        w.warning = 0;
        unsigned seen = 0;
        const bool ok = read_object([&](std::string_view name, bool null) {
            if (name_is(name, "Passing")) {
                return first_time(seen, 1) && optional_int(null, w.passing);
            }
            if (name_is(name, "Warning")) {
                return first_time(seen, 2) && optional_int(null, w.warning);
            }
            return null || skip_value(0);
        });
        return ok;
    }

    bool read_checks(std::vector<health_check>& out) {
        return read_array(out, [this](health_check& c) { return read_check(c); });
    }

    bool read_check(health_check& c) {
        unsigned seen = 0;
        bool have_status = false;
        const bool ok = read_object([&](std::string_view name, bool null) {
            if (name_is(name, "Node")) {
                return first_time(seen, 1) && optional_string(null, c.node);
            }
            if (name_is(name, "CheckID")) {
                return first_time(seen, 2) && !null && read_string_into(c.check_id);
            }
            if (name_is(name, "Name")) {
                return first_time(seen, 4) && optional_string(null, c.name);
            }
            if (name_is(name, "Status")) {
                std::string_view v;
                if (!first_time(seen, 8) || null || !read_string(v)) {
                    return false;
                }
                auto st = check_status_from_string(v);
                have_status = st.has_value();
                c.status = st.value_or(check_status::critical);
                return have_status;
            }
            if (name_is(name, "Notes")) {
                return first_time(seen, 16) && optional_string(null, c.notes);
            }
            if (name_is(name, "Output")) {
                return first_time(seen, 32) && optional_string(null, c.output);
            }
            if (name_is(name, "ServiceID")) {
                return first_time(seen, 64) && optional_string(null, c.service_id);
            }
            if (name_is(name, "ServiceName")) {
                return first_time(seen, 128) && optional_string(null, c.service_name);
            }
            if (name_is(name, "ServiceTags")) {
                return first_time(seen, 256) && string_list(null, c.service_tags);
            }
            if (name_is(name, "Type")) {
                return first_time(seen, 512) && optional_string(null, c.type);
            }
            if (name_is(name, "CreateIndex")) {
                return first_time(seen, 1024) && optional_u64(null, c.create_index);
            }
            if (name_is(name, "ModifyIndex")) {
                return first_time(seen, 2048) && optional_u64(null, c.modify_index);
            }
            return null || skip_value(0);
        });
        return ok && (seen & 2) != 0 && have_status;
    }

    // ---- Typed values (the output starts default-constructed, so null leaves it as is).
    bool optional_string(bool null, std::string& out) { return null || read_string_into(out); }
    bool optional_u64(bool null, std::uint64_t& out) { return null || read_u64(out); }
    bool optional_int(bool null, int& out) {
        std::uint64_t v = 0;
        if (null) {
            out = 0;
            return true;
        }
        if (!read_u64(v) || v > static_cast<std::uint64_t>(std::numeric_limits<int>::max())) {
            return false;
        }
        out = static_cast<int>(v);
        return true;
    }
    bool optional_bool(bool null, bool& out) {
        if (null) {
            out = false;
            return true;
        }
        if (eat_word("true")) {
            out = true;
            return true;
        }
        out = false;
        return eat_word("false");
    }
    bool string_list(bool null, std::vector<std::string>& out) {
        out.clear();
        return null ||
               read_array(out, [this](std::string& item) { return read_string_into(item); });
    }
    bool string_map(bool null, std::map<std::string, std::string>& out) {
        out.clear();
        if (null) {
            return true;
        }
        return read_object([&](std::string_view name, bool is_null) {
            std::string_view value;
            // A null value is not a string: the full decoder refuses it.
            if (is_null || !read_string(value)) {
                return false;
            }
            // Go writes map keys sorted: appending at the end is the common case.
            if (out.empty() || out.rbegin()->first < name) {
                out.emplace_hint(out.end(), name, value);
            } else {
                // A repeated key keeps its last value, as in the JSON tree.
                out.insert_or_assign(std::string(name), std::string(value));
            }
            return true;
        });
    }

    /// Any value of the kinds above, nested at most 32 deep.
    bool skip_value(int depth) {
        if (depth > 32 || p_ == end_) {
            return false;
        }
        if (*p_ == '"') {
            std::string_view ignored;
            return read_string(ignored);
        }
        if (*p_ == '{') {
            return read_object(
                [&](std::string_view, bool null) { return null || skip_value(depth + 1); });
        }
        if (*p_ == '[') {
            ++p_;
            skip_ws();
            if (eat(']')) {
                return true;
            }
            do {
                skip_ws();
                if (!(eat_word("null") || skip_value(depth + 1))) {
                    return false;
                }
                skip_ws();
            } while (eat(','));
            return eat(']');
        }
        std::uint64_t n = 0;
        return eat_word("true") || eat_word("false") || eat_word("null") || read_u64(n);
    }

    // ---- Lexing.
    /// A string of printable ASCII. Without escapes `out` views the body; with simple escapes
    /// it views `scratch_`, valid until the next string is read.
    bool read_string(std::string_view& out) {
        if (!eat('"')) {
            return false;
        }
        const char* start = p_;
        p_ = skip_plain(p_, end_);
        if (p_ == end_ || (*p_ != '"' && *p_ != '\\')) {
            return false;  // a control character or a byte outside ASCII
        }
        if (*p_ == '"') {
            out = std::string_view(start, static_cast<std::size_t>(p_ - start));
            ++p_;
            return true;
        }
        scratch_.assign(start, p_);
        while (p_ != end_ && *p_ != '"') {
            auto u = static_cast<unsigned char>(*p_);
            if (u < 0x20 || u > 0x7e) {
                return false;
            }
            if (u == '\\') {
                if (++p_ == end_) {
                    return false;
                }
                switch (*p_) {
                    case '"':
                        scratch_ += '"';
                        break;
                    case '\\':
                        scratch_ += '\\';
                        break;
                    case '/':
                        scratch_ += '/';
                        break;
                    case 'b':
                        scratch_ += '\b';
                        break;
                    case 'f':
                        scratch_ += '\f';
                        break;
                    case 'n':
                        scratch_ += '\n';
                        break;
                    case 'r':
                        scratch_ += '\r';
                        break;
                    case 't':
                        scratch_ += '\t';
                        break;
                    default:
                        return false;  // \u and invalid escapes: the full parser decides
                }
            } else {
                scratch_ += *p_;
            }
            ++p_;
        }
        if (p_ == end_) {
            return false;
        }
        ++p_;
        out = scratch_;
        return true;
    }
    bool read_string_into(std::string& out) {
        std::string_view v;
        if (!read_string(v)) {
            return false;
        }
        out.assign(v);
        return true;
    }

    std::string name_;     // a member name that had escapes (its text in scratch_ is reused)
    std::string scratch_;  // unescaped string contents
};

const json& member(const json& obj, const char* field) {
    static const json null_value;
    auto it = obj.find(field);
    return it == obj.end() ? null_value : *it;
}

}  // namespace

error_code decode_service_entries_json(const json& j, std::vector<service_entry>& out,
                                       diagnostics& diag) {
    out.clear();
    if (auto ec = expect_array(j, diag, "entries")) {
        return ec;
    }
    out.reserve(j.size());
    for (std::size_t i = 0; i < j.size(); ++i) {
        const std::string where = "entries[" + std::to_string(i) + "]";
        service_entry e;
        error_code ec;
        if ((ec = expect_object(j[i], diag, where))) {
            out.clear();
            return ec;
        }
        for (const char* part : {"Node", "Service"}) {
            if (member(j[i], part).is_null()) {
                diag.set_client_message("missing field " + where + "." + part);
                out.clear();
                return decode_errc::missing_field;
            }
        }
        if ((ec = decode_node_object(member(j[i], "Node"), e.node, diag, where + ".Node")) ||
            (ec = decode_service_object(member(j[i], "Service"), e.service, diag,
                                        where + ".Service")) ||
            (ec = decode_checks_array(member(j[i], "Checks"), e.checks, diag, where + ".Checks"))) {
            out.clear();
            return ec;
        }
        out.push_back(std::move(e));
    }
    return {};
}

error_code decode_service_entries(const std::string& body, std::vector<service_entry>& out,
                                  diagnostics& diag) {
    // Every watch of a service decodes this answer after each change; the tree-free reader
    // makes the common shape several times cheaper and leaves the rest to the full decoder.
    if (read_service_entries_fast(body, out)) {
        return {};
    }
    out.clear();
    return decode_service_entries_tree(body, out, diag);
}

bool read_service_entries_fast(std::string_view body, std::vector<service_entry>& out) {
    out.clear();
    return entries_fast_reader(body).read(out);
}

error_code decode_service_entries_tree(const std::string& body, std::vector<service_entry>& out,
                                       diagnostics& diag) {
    json j;
    if (auto ec = parse_json(body, j, diag)) {
        out.clear();
        return ec;
    }
    return decode_service_entries_json(j, out, diag);
}

error_code decode_health_checks_json(const json& j, std::vector<health_check>& out,
                                     diagnostics& diag) {
    if (j.is_null()) {
        out.clear();
        diag.set_client_message("checks is not a JSON array");
        return decode_errc::wrong_type;
    }
    return decode_checks_array(j, out, diag, "checks");
}

error_code decode_health_checks(const std::string& body, std::vector<health_check>& out,
                                diagnostics& diag) {
    json j;
    if (auto ec = parse_json(body, j, diag)) {
        out.clear();
        return ec;
    }
    return decode_health_checks_json(j, out, diag);
}

}  // namespace lakemesh::consul::detail
