#include "filter.hpp"

#include "router.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>
#include <regex>
#include <set>
#include <tuple>

namespace lakemesh::testing::detail {

// ============================================================================ types

/// What go-bexpr's reflection makes of a Go type: the operators it allows and its sub-fields.
struct filter_type {
    enum kind_t {
        string,
        integer,    // int, int64
        unsigned_,  // uint64
        boolean,
        floating,
        structure,       // a struct: no operators, named sub-fields
        map,             // map[string]X: emptiness and key membership, sub-field "any"
        prim_slice,      // []string ...: membership and emptiness
        compound_slice,  // []struct: emptiness; its elements' fields are selectable (any-match)
        opaque_map,      // map[string]interface{}: emptiness and keys only
    } kind = string;
    /// struct fields in declaration order; for maps, the value type; for slices, the element.
    std::vector<std::pair<std::string, std::shared_ptr<const filter_type>>> fields;
    std::shared_ptr<const filter_type> elem;
};

namespace {

using type_ptr = std::shared_ptr<const filter_type>;

type_ptr prim(filter_type::kind_t k) {
    auto t = std::make_shared<filter_type>();
    t->kind = k;
    return t;
}

type_ptr structure(std::vector<std::pair<std::string, type_ptr>> fields) {
    auto t = std::make_shared<filter_type>();
    t->kind = filter_type::structure;
    t->fields = std::move(fields);
    return t;
}

type_ptr map_of(type_ptr value) {
    auto t = std::make_shared<filter_type>();
    t->kind = filter_type::map;
    t->elem = std::move(value);
    return t;
}

type_ptr slice_of(type_ptr elem) {
    auto t = std::make_shared<filter_type>();
    t->kind = elem->kind == filter_type::structure ? filter_type::compound_slice
                                                   : filter_type::prim_slice;
    t->elem = std::move(elem);
    return t;
}

// Consul 1.10's structs, as go-bexpr sees them (fields tagged bexpr:"-" left out: raft indexes,
// enterprise metadata, a check's Definition, a service's sidecar definition).
struct schemas {
    type_ptr str = prim(filter_type::string);
    type_ptr num = prim(filter_type::integer);
    type_ptr flag = prim(filter_type::boolean);
    type_ptr strings = slice_of(str);
    type_ptr string_map = map_of(str);
    type_ptr weights = structure({{"Passing", num}, {"Warning", num}});
    type_ptr service_address = structure({{"Address", str}, {"Port", num}});
    type_ptr mesh_gateway = structure({{"Mode", str}});
    type_ptr proxy = structure({
        {"DestinationServiceName", str},
        {"DestinationServiceID", str},
        {"LocalServiceAddress", str},
        {"LocalServicePort", num},
        {"LocalServiceSocketPath", str},
        {"Mode", str},
        {"Upstreams", slice_of(structure({{"DestinationType", str},
                                          {"DestinationNamespace", str},
                                          {"DestinationName", str},
                                          {"Datacenter", str},
                                          {"LocalBindAddress", str},
                                          {"LocalBindPort", num},
                                          {"LocalBindSocketPath", str},
                                          {"LocalBindSocketMode", str},
                                          {"MeshGateway", mesh_gateway}}))},
        {"MeshGateway", mesh_gateway},
        {"Expose", structure({{"Checks", flag},
                              {"Paths", slice_of(structure({{"ListenerPort", num},
                                                            {"Path", str},
                                                            {"LocalPathPort", num},
                                                            {"Protocol", str},
                                                            {"ParsedFromCheck", flag}}))}})},
        {"TransparentProxy", structure({{"OutboundListenerPort", num}, {"DialedDirectly", flag}})},
    });
    type_ptr connect = structure({{"Native", flag}});
    type_ptr node = structure({{"ID", str},
                               {"Node", str},
                               {"Address", str},
                               {"Datacenter", str},
                               {"TaggedAddresses", string_map},
                               {"Meta", string_map}});
    type_ptr check = structure({{"Node", str},
                                {"CheckID", str},
                                {"Name", str},
                                {"Status", str},
                                {"Notes", str},
                                {"Output", str},
                                {"ServiceID", str},
                                {"ServiceName", str},
                                {"ServiceTags", strings},
                                {"Type", str},
                                {"Interval", str},
                                {"Timeout", str},
                                {"ExposedPort", num}});
    type_ptr node_service = structure({{"Kind", str},
                                       {"ID", str},
                                       {"Service", str},
                                       {"Tags", strings},
                                       {"Address", str},
                                       {"TaggedAddresses", map_of(service_address)},
                                       {"Meta", string_map},
                                       {"Port", num},
                                       {"SocketPath", str},
                                       {"Weights", weights},
                                       {"EnableTagOverride", flag},
                                       {"Proxy", proxy},
                                       {"Connect", connect}});
    type_ptr service_node = structure({{"ID", str},
                                       {"Node", str},
                                       {"Address", str},
                                       {"Datacenter", str},
                                       {"TaggedAddresses", string_map},
                                       {"NodeMeta", string_map},
                                       {"ServiceKind", str},
                                       {"ServiceID", str},
                                       {"ServiceName", str},
                                       {"ServiceTags", strings},
                                       {"ServiceAddress", str},
                                       {"ServiceTaggedAddresses", map_of(service_address)},
                                       {"ServiceWeights", weights},
                                       {"ServiceMeta", string_map},
                                       {"ServicePort", num},
                                       {"ServiceSocketPath", str},
                                       {"ServiceEnableTagOverride", flag},
                                       {"ServiceProxy", proxy},
                                       {"ServiceConnect", connect}});
    type_ptr check_service_node =
        structure({{"Node", node}, {"Service", node_service}, {"Checks", slice_of(check)}});
    type_ptr agent_service = structure({{"Kind", str},
                                        {"ID", str},
                                        {"Service", str},
                                        {"Tags", strings},
                                        {"Meta", string_map},
                                        {"Port", num},
                                        {"Address", str},
                                        {"SocketPath", str},
                                        {"TaggedAddresses", map_of(service_address)},
                                        {"Weights", weights},
                                        {"EnableTagOverride", flag},
                                        {"Proxy", proxy},
                                        {"Connect", connect},
                                        {"Datacenter", str}});

    type_ptr of(filter_schema s) const {
        switch (s) {
            case filter_schema::health_service:
                return check_service_node;
            case filter_schema::health_check:
                return check;
            case filter_schema::service_node:
                return service_node;
            case filter_schema::node:
                return node;
            case filter_schema::node_service:
                return node_service;
            case filter_schema::agent_service:
                return agent_service;
        }
        return check;
    }
};

const schemas& all_schemas() {
    static const schemas s;
    return s;
}

}  // namespace

// ============================================================================ AST

enum class match_op { equal, not_equal, in, not_in, is_empty, is_not_empty, matches, not_matches };

const char* op_name(match_op op) {
    switch (op) {
        case match_op::equal:
            return "Equal";
        case match_op::not_equal:
            return "Not Equal";
        case match_op::in:
            return "In";
        case match_op::not_in:
            return "Not In";
        case match_op::is_empty:
            return "Is Empty";
        case match_op::is_not_empty:
            return "Is Not Empty";
        case match_op::matches:
            return "Matches";
        case match_op::not_matches:
            return "Not Matches";
    }
    return "";
}

struct filter_node {
    enum kind_t { logical_and, logical_or, logical_not, match } kind = match;
    std::shared_ptr<filter_node> left;
    std::shared_ptr<filter_node> right;
    // match
    std::vector<std::string> selector;
    match_op op = match_op::equal;
    bool has_value = false;
    std::string raw;  // the value as written (a selector value as its dotted text)
    // coerced at validation
    type_ptr leaf;  // the selected field's type
    std::string str_value;
    std::int64_t int_value = 0;
    std::uint64_t uint_value = 0;
    double float_value = 0;
    bool bool_value = false;
    std::shared_ptr<std::regex> re;
};

namespace {

// ============================================================================ parser
//
// A recursive-descent rendering of go-bexpr v0.1's PEG grammar that fails exactly as the
// pigeon-generated parser does: expectations recorded at the farthest failing position
// (inverted under `!`), predicate and action errors with their rule's display name, errors
// deduplicated.

struct position {
    int line = 1;
    int col = 1;
    std::size_t offset = 0;
};

class peg {
  public:
    explicit peg(std::string_view text) : d_(text) {}

    std::shared_ptr<filter_node> parse(std::string& error) {
        std::shared_ptr<filter_node> result;
        const bool ok = input(result);
        if (!ok && errors_.empty()) {
            std::set<std::string> unique(expected_.begin(), expected_.end());
            bool eof = unique.erase("!.") > 0;
            std::vector<std::string> list(unique.begin(), unique.end());
            if (eof) {
                list.push_back("EOF");
            }
            std::string joined;
            for (std::size_t i = 0; i < list.size(); ++i) {
                if (i > 0) {
                    joined += i + 1 == list.size() ? " or " : ", ";
                }
                joined += list[i];
            }
            add_error_at("no match found, expected: " + joined, max_fail_, false);
        }
        if (!errors_.empty()) {
            for (std::size_t i = 0; i < errors_.size(); ++i) {
                if (i > 0) {
                    error += '\n';
                }
                error += errors_[i];
            }
            return nullptr;
        }
        return result;
    }

  private:
    // ---- pigeon machinery

    /// pigeon's position of the rune at `offset` (EOF counts as one rune): read() counts
    /// columns from 1 and a newline moves to the next line at column 0.
    position pos_at(std::size_t offset) const {
        position p;
        p.line = 1;
        p.col = 0;
        std::size_t i = 0;
        for (;;) {
            p.col++;
            if (i >= d_.size()) {
                break;
            }
            if (d_[i] == '\n') {
                p.line++;
                p.col = 0;
            }
            if (i >= offset) {
                break;
            }
            i += rune_len(i);
        }
        p.offset = offset;
        return p;
    }

    std::size_t rune_len(std::size_t i) const {
        const auto b = static_cast<unsigned char>(d_[i]);
        std::size_t len = b < 0x80             ? 1
                          : (b & 0xE0) == 0xC0 ? 2
                          : (b & 0xF0) == 0xE0 ? 3
                          : (b & 0xF8) == 0xF0 ? 4
                                               : 1;
        if (i + len > d_.size()) {
            return 1;
        }
        for (std::size_t k = 1; k < len; ++k) {
            if ((static_cast<unsigned char>(d_[i + k]) & 0xC0) != 0x80) {
                return 1;
            }
        }
        return len;
    }

    bool eof() const { return pt_ >= d_.size(); }

    void fail_at(bool fail, std::size_t at, const std::string& want) {
        if (fail != invert_) {
            return;
        }
        if (at < max_fail_) {
            return;
        }
        if (at > max_fail_) {
            max_fail_ = at;
            expected_.clear();
        }
        expected_.push_back(invert_ ? "!" + want : want);
    }

    void add_error_at(const std::string& what, std::size_t at, bool with_rule) {
        const auto p = pos_at(at);
        std::string msg = std::to_string(p.line) + ":" + std::to_string(p.col) + " (" +
                          std::to_string(p.offset) + ")";
        if (with_rule && !rules_.empty()) {
            msg += std::string(": rule ") + rules_.back();
        }
        msg += ": " + what;
        if (std::find(errors_.begin(), errors_.end(), msg) == errors_.end()) {
            errors_.push_back(std::move(msg));
        }
    }

    struct rule_scope {
        peg& p;
        rule_scope(peg& parser, const char* name) : p(parser) { p.rules_.push_back(name); }
        ~rule_scope() { p.rules_.pop_back(); }
    };

    /// A literal: expectation recorded at its start.
    bool lit(std::string_view s) {
        const std::size_t start = pt_;
        std::string want = "\"";
        for (char c : s) {
            if (c == '"' || c == '\\') {
                want += '\\';
            }
            want += c;
        }
        want += '"';
        if (d_.substr(pt_, s.size()) == s) {
            pt_ += s.size();
            fail_at(true, start, want);
            return true;
        }
        fail_at(false, start, want);
        pt_ = start;
        return false;
    }

    /// A character class over ASCII ranges.
    template <class Pred>
    bool cls(const char* name, Pred pred) {
        const std::size_t start = pt_;
        if (eof()) {
            fail_at(false, start, name);
            return false;
        }
        const auto len = rune_len(pt_);
        if (len == 1 && pred(d_[pt_])) {
            pt_ += 1;
            fail_at(true, start, name);
            return true;
        }
        fail_at(false, start, name);
        return false;
    }

    bool any() {
        if (eof()) {
            fail_at(false, pt_, ".");
            return false;
        }
        const std::size_t start = pt_;
        pt_ += rune_len(pt_);
        fail_at(true, start, ".");
        return true;
    }

    template <class F>
    bool not_(F f) {
        const std::size_t at = pt_;
        invert_ = !invert_;
        const bool ok = f();
        invert_ = !invert_;
        pt_ = at;
        return !ok;
    }

    template <class F>
    bool and_(F f) {
        const std::size_t at = pt_;
        const bool ok = f();
        pt_ = at;
        return ok;
    }

    // ---- memoisation
    //
    // pigeon's parser, as generated for go-bexpr, re-parses the same sub-expression at every
    // backtrack: time exponential in the nesting of parentheses (Consul 1.10 spins on a filter
    // twenty levels deep). Remembering each expression rule's outcome per position (and per
    // inversion, which decides what a failure records) gives the same parse, expectations and
    // errors in linear time.
    struct memo_entry {
        bool ok = false;
        std::size_t end = 0;
        std::shared_ptr<filter_node> node;
    };
    std::map<std::tuple<int, std::size_t, bool>, memo_entry> memo_;

    template <class Rule>
    bool memoized(int id, std::shared_ptr<filter_node>& out, Rule rule) {
        const auto key = std::make_tuple(id, pt_, invert_);
        if (auto it = memo_.find(key); it != memo_.end()) {
            pt_ = it->second.end;
            out = it->second.node;
            return it->second.ok;
        }
        const bool ok = rule(out);
        memo_[key] = memo_entry{ok, pt_, ok ? out : nullptr};
        return ok;
    }
    bool or_expr(std::shared_ptr<filter_node>& out) {
        return memoized(0, out, [this](auto& o) { return or_expr_rule(o); });
    }
    bool and_expr(std::shared_ptr<filter_node>& out) {
        return memoized(1, out, [this](auto& o) { return and_expr_rule(o); });
    }
    bool not_expr(std::shared_ptr<filter_node>& out) {
        return memoized(2, out, [this](auto& o) { return not_expr_rule(o); });
    }

    // ---- rules

    static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

    /// _ "whitespace" <- [ \t\r\n]+
    bool ws() {
        rule_scope r(*this, "\"whitespace\"");
        if (!cls("[ \\t\\r\\n]", is_space)) {
            return false;
        }
        while (cls("[ \\t\\r\\n]", is_space)) {
        }
        return true;
    }
    void opt_ws() {
        const auto at = pt_;
        if (!ws()) {
            pt_ = at;
        }
    }

    bool eof_rule() {
        return not_([this] { return any(); });
    }

    bool input(std::shared_ptr<filter_node>& out) {
        rule_scope r(*this, "Input");
        const auto start = pt_;
        {
            opt_ws();
            std::shared_ptr<filter_node> e;
            if (lit("(")) {
                opt_ws();
                if (or_expr(e)) {
                    opt_ws();
                    if (lit(")")) {
                        opt_ws();
                        if (eof_rule()) {
                            out = e;
                            return true;
                        }
                    }
                }
            }
        }
        pt_ = start;
        opt_ws();
        std::shared_ptr<filter_node> e;
        if (or_expr(e)) {
            opt_ws();
            if (eof_rule()) {
                out = e;
                return true;
            }
        }
        pt_ = start;
        return false;
    }

    bool or_expr_rule(std::shared_ptr<filter_node>& out) {
        rule_scope r(*this, "OrExpression");
        const auto start = pt_;
        std::shared_ptr<filter_node> left;
        std::shared_ptr<filter_node> right;
        if (and_expr(left) && ws() && lit("or") && ws() && or_expr(right)) {
            out = std::make_shared<filter_node>();
            out->kind = filter_node::logical_or;
            out->left = left;
            out->right = right;
            return true;
        }
        pt_ = start;
        if (and_expr(out)) {
            return true;
        }
        pt_ = start;
        return false;
    }

    bool and_expr_rule(std::shared_ptr<filter_node>& out) {
        rule_scope r(*this, "AndExpression");
        const auto start = pt_;
        std::shared_ptr<filter_node> left;
        std::shared_ptr<filter_node> right;
        if (not_expr(left) && ws() && lit("and") && ws() && and_expr(right)) {
            out = std::make_shared<filter_node>();
            out->kind = filter_node::logical_and;
            out->left = left;
            out->right = right;
            return true;
        }
        pt_ = start;
        if (not_expr(out)) {
            return true;
        }
        pt_ = start;
        return false;
    }

    bool not_expr_rule(std::shared_ptr<filter_node>& out) {
        rule_scope r(*this, "NotExpression");
        if (++depth_ > max_depth) {
            // pigeon recurses without bound; a C++ stack does not, so refuse what no one writes.
            --depth_;
            add_error_at("expression nested too deeply", pt_, false);
            return false;
        }
        struct leave {
            int& d;
            ~leave() { --d; }
        } guard{depth_};
        const auto start = pt_;
        std::shared_ptr<filter_node> inner;
        if (lit("not") && ws() && not_expr(inner)) {
            if (inner->kind == filter_node::logical_not) {
                out = inner->left;  // not not x == x
            } else {
                out = std::make_shared<filter_node>();
                out->kind = filter_node::logical_not;
                out->left = inner;
            }
            return true;
        }
        pt_ = start;
        if (paren_expr(out)) {
            return true;
        }
        pt_ = start;
        return false;
    }

    bool paren_expr(std::shared_ptr<filter_node>& out) {
        rule_scope r(*this, "\"grouping\"");
        const auto start = pt_;
        {
            std::shared_ptr<filter_node> e;
            if (lit("(")) {
                opt_ws();
                if (or_expr(e)) {
                    opt_ws();
                    if (lit(")")) {
                        out = e;
                        return true;
                    }
                }
            }
        }
        pt_ = start;
        if (match_expr(out)) {
            return true;
        }
        pt_ = start;
        {
            std::shared_ptr<filter_node> e;
            if (lit("(")) {
                opt_ws();
                if (or_expr(e)) {
                    opt_ws();
                    if (not_([this] { return lit(")"); })) {
                        add_error_at("Unmatched parentheses", pt_, true);
                    }
                }
            }
        }
        pt_ = start;
        return false;
    }

    bool match_expr(std::shared_ptr<filter_node>& out) {
        rule_scope r(*this, "\"match\"");
        const auto start = pt_;
        if (match_selector_op_value(out)) {
            return true;
        }
        pt_ = start;
        if (match_selector_op(out)) {
            return true;
        }
        pt_ = start;
        if (match_value_op_selector(out)) {
            return true;
        }
        pt_ = start;
        return false;
    }

    bool match_selector_op_value(std::shared_ptr<filter_node>& out) {
        rule_scope r(*this, "\"match\"");
        const auto start = pt_;
        std::vector<std::string> sel;
        match_op op{};
        std::string value;
        if (!selector(sel)) {
            pt_ = start;
            return false;
        }
        const auto at = pt_;
        bool got = false;
        for (auto [fn, o] : {std::pair{&peg::op_equal, match_op::equal},
                             std::pair{&peg::op_not_equal, match_op::not_equal},
                             std::pair{&peg::op_contains, match_op::in},
                             std::pair{&peg::op_not_contains, match_op::not_in},
                             std::pair{&peg::op_matches, match_op::matches},
                             std::pair{&peg::op_not_matches, match_op::not_matches}}) {
            pt_ = at;
            if ((this->*fn)()) {
                op = o;
                got = true;
                break;
            }
        }
        if (!got || !value_rule(value)) {
            pt_ = start;
            return false;
        }
        out = std::make_shared<filter_node>();
        out->selector = std::move(sel);
        out->op = op;
        out->has_value = true;
        out->raw = std::move(value);
        return true;
    }

    bool match_selector_op(std::shared_ptr<filter_node>& out) {
        rule_scope r(*this, "\"match\"");
        const auto start = pt_;
        std::vector<std::string> sel;
        if (!selector(sel)) {
            pt_ = start;
            return false;
        }
        const auto at = pt_;
        match_op op{};
        if (op_is_empty()) {
            op = match_op::is_empty;
        } else {
            pt_ = at;
            if (op_is_not_empty()) {
                op = match_op::is_not_empty;
            } else {
                pt_ = start;
                return false;
            }
        }
        out = std::make_shared<filter_node>();
        out->selector = std::move(sel);
        out->op = op;
        return true;
    }

    bool in_op(match_op& op) {
        const auto at = pt_;
        if (op_in()) {
            op = match_op::in;
            return true;
        }
        pt_ = at;
        if (op_not_in()) {
            op = match_op::not_in;
            return true;
        }
        pt_ = at;
        return false;
    }

    bool match_value_op_selector(std::shared_ptr<filter_node>& out) {
        rule_scope r(*this, "\"match\"");
        const auto start = pt_;
        {
            std::string value;
            match_op op{};
            std::vector<std::string> sel;
            if (value_rule(value) && in_op(op) && selector(sel)) {
                out = std::make_shared<filter_node>();
                out->selector = std::move(sel);
                out->op = op;
                out->has_value = true;
                out->raw = std::move(value);
                return true;
            }
        }
        pt_ = start;
        {
            std::string value;
            match_op op{};
            if (value_rule(value) && in_op(op)) {
                std::vector<std::string> ignored;
                if (not_([&] { return selector(ignored); })) {
                    add_error_at("Invalid selector", pt_, true);
                }
            }
        }
        pt_ = start;
        return false;
    }

    bool seq_ws_word(std::initializer_list<std::string_view> words, bool lead_optional, bool trail,
                     bool trail_optional) {
        const auto start = pt_;
        bool first = true;
        for (auto w : words) {
            if (first && lead_optional) {
                opt_ws();
            } else if (!ws()) {
                pt_ = start;
                return false;
            }
            first = false;
            if (!lit(w)) {
                pt_ = start;
                return false;
            }
        }
        if (trail) {
            if (trail_optional) {
                opt_ws();
            } else if (!ws()) {
                pt_ = start;
                return false;
            }
        }
        return true;
    }

    bool op_equal() {
        rule_scope r(*this, "MatchEqual");
        return seq_ws_word({"=="}, true, true, true);
    }
    bool op_not_equal() {
        rule_scope r(*this, "MatchNotEqual");
        return seq_ws_word({"!="}, true, true, true);
    }
    bool op_is_empty() {
        rule_scope r(*this, "MatchIsEmpty");
        return seq_ws_word({"is", "empty"}, false, false, false);
    }
    bool op_is_not_empty() {
        rule_scope r(*this, "MatchIsNotEmpty");
        return seq_ws_word({"is", "not", "empty"}, false, false, false);
    }
    bool op_in() {
        rule_scope r(*this, "MatchIn");
        return seq_ws_word({"in"}, false, true, false);
    }
    bool op_not_in() {
        rule_scope r(*this, "MatchNotIn");
        return seq_ws_word({"not", "in"}, false, true, false);
    }
    bool op_contains() {
        rule_scope r(*this, "MatchContains");
        return seq_ws_word({"contains"}, false, true, false);
    }
    bool op_not_contains() {
        rule_scope r(*this, "MatchNotContains");
        return seq_ws_word({"not", "contains"}, false, true, false);
    }
    bool op_matches() {
        rule_scope r(*this, "MatchMatches");
        return seq_ws_word({"matches"}, false, true, false);
    }
    bool op_not_matches() {
        rule_scope r(*this, "MatchNotMatches");
        return seq_ws_word({"not", "matches"}, false, true, false);
    }

    static bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
    static bool is_ident(char c) { return is_alpha(c) || (c >= '0' && c <= '9') || c == '_'; }
    static bool is_digit(char c) { return c >= '0' && c <= '9'; }
    static bool is_nonzero(char c) { return c >= '1' && c <= '9'; }

    bool identifier(std::string& out) {
        rule_scope r(*this, "Identifier");
        const auto start = pt_;
        if (!cls("[a-zA-Z]", is_alpha)) {
            return false;
        }
        while (cls("[a-zA-Z0-9_]", is_ident)) {
        }
        out = std::string(d_.substr(start, pt_ - start));
        return true;
    }

    bool selector(std::vector<std::string>& out) {
        rule_scope r(*this, "\"selector\"");
        const auto start = pt_;
        std::string first;
        if (!identifier(first)) {
            pt_ = start;
            return false;
        }
        out = {first};
        for (;;) {
            const auto at = pt_;
            std::string part;
            if (selector_or_index(part)) {
                out.push_back(std::move(part));
                continue;
            }
            pt_ = at;
            break;
        }
        return true;
    }

    bool selector_or_index(std::string& out) {
        rule_scope r(*this, "SelectorOrIndex");
        const auto start = pt_;
        if (lit(".") && identifier(out)) {
            return true;
        }
        pt_ = start;
        if (index_expr(out)) {
            return true;
        }
        pt_ = start;
        return false;
    }

    bool index_expr(std::string& out) {
        rule_scope r(*this, "\"index\"");
        const auto start = pt_;
        if (lit("[")) {
            opt_ws();
            std::string value;
            if (string_literal(value)) {
                opt_ws();
                if (lit("]")) {
                    out = std::move(value);
                    return true;
                }
            }
        }
        pt_ = start;
        if (lit("[")) {
            opt_ws();
            std::string ignored;
            if (not_([&] { return string_literal(ignored); })) {
                add_error_at("Invalid index", pt_, true);
            }
        }
        pt_ = start;
        if (lit("[")) {
            opt_ws();
            std::string ignored;
            if (string_literal(ignored)) {
                opt_ws();
                if (not_([this] { return lit("]"); })) {
                    add_error_at("Unclosed index expression", pt_, true);
                }
            }
        }
        pt_ = start;
        return false;
    }

    bool value_rule(std::string& out) {
        rule_scope r(*this, "\"value\"");
        const auto start = pt_;
        std::vector<std::string> sel;
        if (selector(sel)) {
            out.clear();
            for (std::size_t i = 0; i < sel.size(); ++i) {
                out += (i == 0 ? "" : ".") + sel[i];
            }
            return true;
        }
        pt_ = start;
        if (number_literal(out)) {
            return true;
        }
        pt_ = start;
        if (string_literal(out)) {
            return true;
        }
        pt_ = start;
        return false;
    }

    bool integer_or_float() {
        rule_scope r(*this, "IntegerOrFloat");
        const auto start = pt_;
        if (!lit("0")) {
            if (!cls("[1-9]", is_nonzero)) {
                pt_ = start;
                return false;
            }
            while (cls("[0-9]", is_digit)) {
            }
        }
        const auto frac = pt_;
        if (lit(".")) {
            if (cls("[0-9]", is_digit)) {
                while (cls("[0-9]", is_digit)) {
                }
            } else {
                pt_ = frac;
            }
        } else {
            pt_ = frac;
        }
        return true;
    }

    bool after_numbers() {
        rule_scope r(*this, "AfterNumbers");
        return and_([this] {
            const auto at = pt_;
            if (ws()) {
                return true;
            }
            pt_ = at;
            if (eof_rule()) {
                return true;
            }
            pt_ = at;
            return lit(")");
        });
    }

    bool number_literal(std::string& out) {
        rule_scope r(*this, "\"number\"");
        const auto start = pt_;
        {
            const auto at = pt_;
            if (!lit("-")) {
                pt_ = at;
            }
            if (integer_or_float() && after_numbers()) {
                out = std::string(d_.substr(start, pt_ - start));
                return true;
            }
        }
        pt_ = start;
        {
            const auto at = pt_;
            if (!lit("-")) {
                pt_ = at;
            }
            if (integer_or_float() && not_([this] { return after_numbers(); })) {
                add_error_at("Invalid number literal", pt_, true);
            }
        }
        pt_ = start;
        return false;
    }

    /// strconv.Unquote of a Go string literal.
    static std::optional<std::string> unquote(std::string_view s) {
        if (s.size() < 2) {
            return std::nullopt;
        }
        if (s.front() == '`') {
            std::string out;
            for (char c : s.substr(1, s.size() - 2)) {
                if (c != '\r') {
                    out += c;
                }
            }
            return out;
        }
        std::string out;
        const auto body = s.substr(1, s.size() - 2);
        const auto hex = [](char c) -> int {
            if (c >= '0' && c <= '9')
                return c - '0';
            if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
            if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
            return -1;
        };
        const auto put_rune = [&out](std::uint32_t cp) {
            if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
                cp = 0xFFFD;
            }
            if (cp < 0x80) {
                out += static_cast<char>(cp);
            } else if (cp < 0x800) {
                out += static_cast<char>(0xC0 | (cp >> 6));
                out += static_cast<char>(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                out += static_cast<char>(0xE0 | (cp >> 12));
                out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
                out += static_cast<char>(0x80 | (cp & 0x3F));
            } else {
                out += static_cast<char>(0xF0 | (cp >> 18));
                out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
                out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
                out += static_cast<char>(0x80 | (cp & 0x3F));
            }
        };
        for (std::size_t i = 0; i < body.size(); ++i) {
            const char c = body[i];
            if (c == '\n' || c == '"') {
                return std::nullopt;
            }
            if (c != '\\') {
                out += c;
                continue;
            }
            if (++i >= body.size()) {
                return std::nullopt;
            }
            switch (body[i]) {
                case 'a':
                    out += '\a';
                    break;
                case 'b':
                    out += '\b';
                    break;
                case 'f':
                    out += '\f';
                    break;
                case 'n':
                    out += '\n';
                    break;
                case 'r':
                    out += '\r';
                    break;
                case 't':
                    out += '\t';
                    break;
                case 'v':
                    out += '\v';
                    break;
                case '\\':
                    out += '\\';
                    break;
                case '"':
                    out += '"';
                    break;
                case 'x': {
                    if (i + 2 >= body.size()) {
                        return std::nullopt;
                    }
                    const int h1 = hex(body[i + 1]);
                    const int h2 = hex(body[i + 2]);
                    if (h1 < 0 || h2 < 0) {
                        return std::nullopt;
                    }
                    out += static_cast<char>(h1 * 16 + h2);
                    i += 2;
                    break;
                }
                case 'u':
                case 'U': {
                    const std::size_t n = body[i] == 'u' ? 4 : 8;
                    if (i + n >= body.size()) {
                        return std::nullopt;
                    }
                    std::uint32_t cp = 0;
                    for (std::size_t k = 1; k <= n; ++k) {
                        const int h = hex(body[i + k]);
                        if (h < 0) {
                            return std::nullopt;
                        }
                        cp = cp * 16 + static_cast<std::uint32_t>(h);
                    }
                    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
                        return std::nullopt;
                    }
                    put_rune(cp);
                    i += n;
                    break;
                }
                case '0':
                case '1':
                case '2':
                case '3':
                case '4':
                case '5':
                case '6':
                case '7': {
                    if (i + 2 >= body.size()) {
                        return std::nullopt;
                    }
                    int v = 0;
                    for (std::size_t k = 0; k < 3; ++k) {
                        const char o = body[i + k];
                        if (o < '0' || o > '7') {
                            return std::nullopt;
                        }
                        v = v * 8 + (o - '0');
                    }
                    if (v > 255) {
                        return std::nullopt;
                    }
                    out += static_cast<char>(v);
                    i += 2;
                    break;
                }
                default:
                    return std::nullopt;
            }
        }
        return out;
    }

    bool string_literal(std::string& out) {
        rule_scope r(*this, "\"string\"");
        const auto start = pt_;
        // ('`' RawStringChar* '`' / '"' DoubleStringChar* '"') { strconv.Unquote }
        const auto body = [this](char quote) {
            while (true) {
                const auto at = pt_;
                const char q[2] = {quote, 0};
                if (not_([&] { return lit(q); }) && any()) {
                    continue;
                }
                pt_ = at;
                break;
            }
        };
        for (char quote : {'`', '"'}) {
            pt_ = start;
            const char q[2] = {quote, 0};
            if (lit(q)) {
                body(quote);
                if (lit(q)) {
                    auto text = d_.substr(start, pt_ - start);
                    if (auto v = unquote(text)) {
                        out = std::move(*v);
                    } else {
                        add_error_at("invalid syntax", start, true);
                        out.clear();
                    }
                    return true;
                }
            }
        }
        // ('`' RawStringChar* / '"' DoubleStringChar*) EOF &{ Unterminated string literal }
        for (char quote : {'`', '"'}) {
            pt_ = start;
            const char q[2] = {quote, 0};
            if (lit(q)) {
                body(quote);
                if (eof_rule()) {
                    add_error_at("Unterminated string literal", pt_, true);
                    pt_ = start;
                    return false;
                }
            }
        }
        pt_ = start;
        return false;
    }

    static constexpr int max_depth = 512;
    std::string_view d_;
    std::size_t pt_ = 0;
    std::size_t max_fail_ = 0;
    std::vector<std::string> expected_;
    bool invert_ = false;
    std::vector<const char*> rules_;
    std::vector<std::string> errors_;
    int depth_ = 0;
};

// ============================================================================ validation

bool op_allowed(const filter_type& t, match_op op) {
    using k = filter_type;
    switch (t.kind) {
        case k::string:
            return op == match_op::equal || op == match_op::not_equal || op == match_op::in ||
                   op == match_op::not_in || op == match_op::matches || op == match_op::not_matches;
        case k::integer:
        case k::unsigned_:
        case k::boolean:
        case k::floating:
            return op == match_op::equal || op == match_op::not_equal;
        case k::prim_slice:
        case k::map:
        case k::opaque_map:
            return op == match_op::in || op == match_op::not_in || op == match_op::is_empty ||
                   op == match_op::is_not_empty;
        case k::compound_slice:
            return op == match_op::is_empty || op == match_op::is_not_empty;
        case k::structure:
            return false;
    }
    return false;
}

std::string go_quote_text(std::string_view s) {
    std::string out = "\"";
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", c);
            out += buf;
        } else {
            out += static_cast<char>(c);
        }
    }
    return out + "\"";
}

std::string joined(const std::vector<std::string>& path, std::size_t n) {
    std::string out;
    for (std::size_t i = 0; i < n && i < path.size(); ++i) {
        out += (i == 0 ? "" : ".") + path[i];
    }
    return out;
}

/// The sub-fields reachable from a field: a struct's, a map's "any", a compound slice's
/// element's.
const std::vector<std::pair<std::string, type_ptr>>* subfields(const filter_type& t,
                                                               type_ptr& any) {
    switch (t.kind) {
        case filter_type::structure:
            return &t.fields;
        case filter_type::compound_slice:
            return &t.elem->fields;
        case filter_type::map:
            any = t.elem;
            return nullptr;
        default:
            return nullptr;
    }
}

/// strconv.ParseInt / ParseUint / ParseBool / ParseFloat as bexpr's coercions call them.
std::optional<std::string> coerce(filter_node& n) {
    const auto& raw = n.raw;
    const auto& t = *n.leaf;
    const auto q = go_quote_text(raw);
    switch (t.kind) {
        case filter_type::string:
        case filter_type::prim_slice:  // []string
        case filter_type::map:         // keys
        case filter_type::opaque_map:
            n.str_value = raw;
            return std::nullopt;
        case filter_type::boolean:
            if (raw == "1" || raw == "t" || raw == "T" || raw == "true" || raw == "TRUE" ||
                raw == "True") {
                n.bool_value = true;
            } else if (raw == "0" || raw == "f" || raw == "F" || raw == "false" || raw == "FALSE" ||
                       raw == "False") {
                n.bool_value = false;
            } else {
                return "strconv.ParseBool: parsing " + q + ": invalid syntax";
            }
            return std::nullopt;
        case filter_type::integer: {
            // strconv.ParseInt(raw, 0, 64): a sign, then 0x / 0o / 0b / leading-0 prefixes.
            std::string_view v = raw;
            bool neg = false;
            if (!v.empty() && (v.front() == '-' || v.front() == '+')) {
                neg = v.front() == '-';
                v.remove_prefix(1);
            }
            int base = 10;
            if (v.size() > 2 && v[0] == '0' && (v[1] == 'x' || v[1] == 'X')) {
                base = 16;
                v.remove_prefix(2);
            } else if (v.size() > 2 && v[0] == '0' && (v[1] == 'o' || v[1] == 'O')) {
                base = 8;
                v.remove_prefix(2);
            } else if (v.size() > 2 && v[0] == '0' && (v[1] == 'b' || v[1] == 'B')) {
                base = 2;
                v.remove_prefix(2);
            } else if (v.size() > 1 && v[0] == '0') {
                base = 8;
                v.remove_prefix(1);
            }
            std::uint64_t mag = 0;
            auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), mag, base);
            if (v.empty() || p != v.data() + v.size() || ec == std::errc::invalid_argument) {
                return "strconv.ParseInt: parsing " + go_quote_text(raw) + ": invalid syntax";
            }
            if (ec == std::errc::result_out_of_range ||
                mag > (neg ? 9223372036854775808ULL : 9223372036854775807ULL)) {
                return "strconv.ParseInt: parsing " + go_quote_text(raw) + ": value out of range";
            }
            n.int_value = neg ? static_cast<std::int64_t>(0 - mag) : static_cast<std::int64_t>(mag);
            return std::nullopt;
        }
        case filter_type::unsigned_: {
            auto [p, ec] = std::from_chars(raw.data(), raw.data() + raw.size(), n.uint_value);
            if (raw.empty() || p != raw.data() + raw.size() || raw.front() == '-') {
                return "strconv.ParseUint: parsing " + q + ": invalid syntax";
            }
            if (ec != std::errc{}) {
                return "strconv.ParseUint: parsing " + q + ": value out of range";
            }
            return std::nullopt;
        }
        case filter_type::floating: {
            try {
                std::size_t used = 0;
                n.float_value = std::stod(raw, &used);
                if (used != raw.size()) {
                    throw std::invalid_argument(raw);
                }
            } catch (...) {
                return "strconv.ParseFloat: parsing " + q + ": invalid syntax";
            }
            return std::nullopt;
        }
        case filter_type::compound_slice:
        case filter_type::structure:
            return std::nullopt;
    }
    return std::nullopt;
}

std::optional<std::string> validate(filter_node& n, const filter_type& root) {
    switch (n.kind) {
        case filter_node::logical_and:
        case filter_node::logical_or:
            if (auto e = validate(*n.left, root)) {
                return e;
            }
            return validate(*n.right, root);
        case filter_node::logical_not:
            return validate(*n.left, root);
        case filter_node::match:
            break;
    }
    // The selector: each part names a field of what the previous one selected.
    const std::vector<std::pair<std::string, type_ptr>>* fields = &root.fields;
    type_ptr any;
    type_ptr current;
    for (std::size_t i = 0; i < n.selector.size(); ++i) {
        type_ptr next;
        if (fields != nullptr) {
            for (const auto& [name, t] : *fields) {
                if (name == n.selector[i]) {
                    next = t;
                    break;
                }
            }
        }
        if (!next && any) {
            next = any;
        }
        if (!next) {
            return "Selector " + go_quote_text(joined(n.selector, i + 1)) + " is not valid";
        }
        current = next;
        any.reset();
        fields = subfields(*current, any);
    }
    n.leaf = current;
    if (!op_allowed(*current, n.op)) {
        return std::string("Invalid match operator ") + go_quote_text(op_name(n.op)) +
               " for selector " + go_quote_text(joined(n.selector, n.selector.size()));
    }
    if (n.has_value) {
        if (auto e = coerce(n)) {
            return "Failed to coerce value " + go_quote_text(n.raw) + " for selector " +
                   go_quote_text(joined(n.selector, n.selector.size())) + ": " + *e;
        }
        if (n.op == match_op::matches || n.op == match_op::not_matches) {
            try {
                n.re = std::make_shared<std::regex>(n.str_value, std::regex::ECMAScript);
            } catch (const std::regex_error& e) {
                return "Failed to compile regular expression " + go_quote_text(n.str_value) +
                       ": error parsing regexp: " + e.what();
            }
        }
    }
    return std::nullopt;
}

// ============================================================================ evaluation

bool equal_leaf(const filter_node& n, const json& v, const filter_type& t) {
    switch (t.kind) {
        case filter_type::string:
            return (v.is_string() ? v.get_ref<const std::string&>() : std::string{}) == n.str_value;
        case filter_type::integer:
            return (v.is_number() ? v.get<std::int64_t>() : 0) == n.int_value;
        case filter_type::unsigned_:
            return (v.is_number() ? v.get<std::uint64_t>() : 0) == n.uint_value;
        case filter_type::boolean:
            return (v.is_boolean() ? v.get<bool>() : false) == n.bool_value;
        case filter_type::floating:
            return (v.is_number() ? v.get<double>() : 0.0) == n.float_value;
        default:
            return false;
    }
}

bool leaf_match(const filter_node& n, const json& v, const filter_type& t) {
    const auto size = [&v]() -> std::size_t {
        return (v.is_array() || v.is_object()) ? v.size() : 0;
    };
    switch (n.op) {
        case match_op::equal:
            return equal_leaf(n, v, t);
        case match_op::not_equal:
            return !equal_leaf(n, v, t);
        case match_op::is_empty:
            return size() == 0;
        case match_op::is_not_empty:
            return size() != 0;
        case match_op::in:
        case match_op::not_in: {
            bool found = false;
            if (t.kind == filter_type::string) {
                found = v.is_string() &&
                        v.get_ref<const std::string&>().find(n.str_value) != std::string::npos;
            } else if (v.is_object()) {
                found = v.contains(n.str_value);
            } else if (v.is_array()) {
                for (const auto& e : v) {
                    if (e.is_string() && e.get_ref<const std::string&>() == n.str_value) {
                        found = true;
                        break;
                    }
                }
            }
            return n.op == match_op::in ? found : !found;
        }
        case match_op::matches:
        case match_op::not_matches: {
            const bool hit =
                v.is_string() && n.re && std::regex_search(v.get_ref<const std::string&>(), *n.re);
            return n.op == match_op::matches ? hit : !hit;
        }
    }
    return false;
}

/// go-bexpr's evaluateMatchExpressionRecurse over JSON: structs by field, slices of structs as
/// "any element", maps by key (a missing key matches only the negative operators).
bool eval_match(const filter_node& n, std::size_t depth, const json& v, const filter_type& t) {
    static const json null_value;
    if (depth >= n.selector.size()) {
        return leaf_match(n, v, t);
    }
    switch (t.kind) {
        case filter_type::structure: {
            const auto& name = n.selector[depth];
            for (const auto& [field, ft] : t.fields) {
                if (field == name) {
                    const json* sub = &null_value;
                    if (v.is_object()) {
                        if (auto it = v.find(name); it != v.end()) {
                            sub = &*it;
                        }
                    }
                    return eval_match(n, depth + 1, *sub, *ft);
                }
            }
            return false;
        }
        case filter_type::compound_slice:
            if (v.is_array()) {
                for (const auto& e : v) {
                    if (eval_match(n, depth, e, *t.elem)) {
                        return true;
                    }
                }
            }
            return false;
        case filter_type::map: {
            const json* sub = nullptr;
            if (v.is_object()) {
                if (auto it = v.find(n.selector[depth]); it != v.end()) {
                    sub = &*it;
                }
            }
            if (sub == nullptr) {
                return !(n.op == match_op::equal || n.op == match_op::is_not_empty ||
                         n.op == match_op::in);
            }
            return eval_match(n, depth + 1, *sub, *t.elem);
        }
        default:
            return false;
    }
}

bool evaluate(const filter_node& n, const json& entry, const filter_type& root) {
    switch (n.kind) {
        case filter_node::logical_and:
            return evaluate(*n.left, entry, root) && evaluate(*n.right, entry, root);
        case filter_node::logical_or:
            return evaluate(*n.left, entry, root) || evaluate(*n.right, entry, root);
        case filter_node::logical_not:
            return !evaluate(*n.left, entry, root);
        case filter_node::match:
            return eval_match(n, 0, entry, root);
    }
    return false;
}

}  // namespace

std::variant<filter_expression, std::string> filter_expression::parse(std::string_view text,
                                                                      filter_schema schema) {
    const std::string prefix = "Failed to create boolean expression evaluator: ";
    peg parser(text);
    std::string error;
    auto root = parser.parse(error);
    if (!root) {
        return prefix + error;
    }
    const auto type = all_schemas().of(schema);
    if (auto e = validate(*root, *type)) {
        return prefix + *e;
    }
    filter_expression out;
    // The root type rides along with the tree: matches() needs it.
    auto holder = std::make_shared<filter_node>();
    holder->kind = filter_node::logical_and;
    holder->left = std::move(root);
    holder->leaf = type;
    out.root_ = std::move(holder);
    return out;
}

bool filter_expression::matches(const json& entry) const {
    return root_ == nullptr || evaluate(*root_->left, entry, *root_->leaf);
}

response filter_error(std::string text, bool rpc_meta) {
    response r = error_response(500, std::move(text));
    if (rpc_meta) {
        r.index = 1;
        r.known_leader = false;
    } else {
        r.no_index = true;
    }
    return r;
}

std::optional<std::string> apply_filter(const std::optional<std::string>& filter, json& entries,
                                        filter_schema schema) {
    if (!filter || filter->empty()) {
        return std::nullopt;
    }
    auto parsed = filter_expression::parse(*filter, schema);
    if (auto* err = std::get_if<std::string>(&parsed)) {
        return *err;
    }
    const auto& expr = std::get<filter_expression>(parsed);
    json kept = entries.is_object() ? json::object() : json::array();
    if (entries.is_object()) {
        for (auto it = entries.begin(); it != entries.end(); ++it) {
            if (expr.matches(it.value())) {
                kept[it.key()] = it.value();
            }
        }
    } else {
        for (auto& v : entries) {
            if (expr.matches(v)) {
                kept.push_back(v);
            }
        }
    }
    entries = std::move(kept);
    return std::nullopt;
}

}  // namespace lakemesh::testing::detail
