#include "filter.hpp"

namespace lakemesh::testing::detail {

enum class filter_op {
    logical_and,
    logical_or,
    logical_not,
    equal,
    not_equal,
    in,
    not_in,
    contains,
    not_contains,
    is_empty,
    is_not_empty,
};

struct filter_node {
    filter_op op = filter_op::equal;
    std::shared_ptr<const filter_node> left;
    std::shared_ptr<const filter_node> right;
    std::vector<std::string> selector;  // e.g. {"Service", "Meta", "version"}
    std::string value;
};

namespace {

struct token {
    enum kind_t { word, string, lparen, rparen, eq, ne, end } kind = end;
    std::string text;
};

class filter_parser {
  public:
    explicit filter_parser(std::string_view text) : text_(text) {}

    std::shared_ptr<const filter_node> parse() {
        advance();
        auto n = parse_or();
        if (current_.kind != token::end) {
            fail("unexpected \"" + current_.text + "\"");
        }
        return n;
    }

  private:
    [[noreturn]] void fail(const std::string& what) { throw std::invalid_argument(what); }

    void advance() {
        while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) {
            ++pos_;
        }
        current_ = token{};
        if (pos_ >= text_.size()) {
            return;
        }
        char ch = text_[pos_];
        if (ch == '(' || ch == ')') {
            current_.kind = ch == '(' ? token::lparen : token::rparen;
            current_.text = std::string(1, ch);
            ++pos_;
            return;
        }
        if (ch == '=' || ch == '!') {
            if (pos_ + 1 < text_.size() && text_[pos_ + 1] == '=') {
                current_.kind = ch == '=' ? token::eq : token::ne;
                current_.text = std::string(text_.substr(pos_, 2));
                pos_ += 2;
                return;
            }
            fail(std::string("unexpected character '") + ch + "'");
        }
        if (ch == '"' || ch == '`') {
            char quote = ch;
            std::string out;
            ++pos_;
            while (pos_ < text_.size() && text_[pos_] != quote) {
                if (quote == '"' && text_[pos_] == '\\' && pos_ + 1 < text_.size()) {
                    ++pos_;
                }
                out += text_[pos_++];
            }
            if (pos_ >= text_.size()) {
                fail("unterminated string");
            }
            ++pos_;
            current_.kind = token::string;
            current_.text = std::move(out);
            return;
        }
        std::size_t start = pos_;
        while (pos_ < text_.size()) {
            char c = text_[pos_];
            if (std::isspace(static_cast<unsigned char>(c)) || c == '(' || c == ')' || c == '"' ||
                c == '`' || c == '=' || c == '!') {
                break;
            }
            ++pos_;
        }
        if (pos_ == start) {
            fail(std::string("unexpected character '") + ch + "'");
        }
        current_.kind = token::word;
        current_.text = std::string(text_.substr(start, pos_ - start));
    }

    bool at_word(std::string_view w) const {
        return current_.kind == token::word && current_.text == w;
    }

    std::shared_ptr<const filter_node> binary(filter_op op, std::shared_ptr<const filter_node> l,
                                              std::shared_ptr<const filter_node> r) {
        auto n = std::make_shared<filter_node>();
        n->op = op;
        n->left = std::move(l);
        n->right = std::move(r);
        return n;
    }

    std::shared_ptr<const filter_node> parse_or() {
        auto l = parse_and();
        while (at_word("or")) {
            advance();
            l = binary(filter_op::logical_or, l, parse_and());
        }
        return l;
    }

    std::shared_ptr<const filter_node> parse_and() {
        auto l = parse_unary();
        while (at_word("and")) {
            advance();
            l = binary(filter_op::logical_and, l, parse_unary());
        }
        return l;
    }

    std::shared_ptr<const filter_node> parse_unary() {
        // Bounded so that a hostile filter cannot exhaust the io thread's stack.
        if (++depth_ > max_depth) {
            fail("expression nested too deeply");
        }
        struct leave {
            int& d;
            ~leave() { --d; }
        } guard{depth_};
        if (at_word("not")) {
            advance();
            return binary(filter_op::logical_not, parse_unary(), nullptr);
        }
        if (current_.kind == token::lparen) {
            advance();
            auto n = parse_or();
            if (current_.kind != token::rparen) {
                fail("expected \")\"");
            }
            advance();
            return n;
        }
        return parse_match();
    }

    std::vector<std::string> parse_selector() {
        if (current_.kind != token::word) {
            fail(current_.kind == token::end ? "unexpected end of expression"
                                             : "expected selector, got \"" + current_.text + "\"");
        }
        std::vector<std::string> parts;
        std::string_view s = current_.text;
        std::size_t start = 0;
        for (std::size_t i = 0; i <= s.size(); ++i) {
            if (i == s.size() || s[i] == '.') {
                if (i == start) {
                    fail("invalid selector \"" + current_.text + "\"");
                }
                parts.emplace_back(s.substr(start, i - start));
                start = i + 1;
            }
        }
        advance();
        return parts;
    }

    std::string parse_value() {
        if (current_.kind != token::string && current_.kind != token::word) {
            fail(current_.kind == token::end ? "unexpected end of expression"
                                             : "expected value, got \"" + current_.text + "\"");
        }
        auto v = current_.text;
        advance();
        return v;
    }

    std::shared_ptr<const filter_node> parse_match() {
        auto n = std::make_shared<filter_node>();
        if (current_.kind == token::string) {
            // <value> [not] in <selector>
            n->value = parse_value();
            if (at_word("not")) {
                advance();
                if (!at_word("in")) {
                    fail("expected \"in\"");
                }
                n->op = filter_op::not_in;
            } else if (at_word("in")) {
                n->op = filter_op::in;
            } else {
                fail("expected \"in\" or \"not in\" after a value");
            }
            advance();
            n->selector = parse_selector();
            return n;
        }
        n->selector = parse_selector();
        if (current_.kind == token::eq || current_.kind == token::ne) {
            n->op = current_.kind == token::eq ? filter_op::equal : filter_op::not_equal;
            advance();
            n->value = parse_value();
            return n;
        }
        if (at_word("is")) {
            advance();
            bool negate = false;
            if (at_word("not")) {
                negate = true;
                advance();
            }
            if (!at_word("empty")) {
                fail("expected \"empty\"");
            }
            advance();
            n->op = negate ? filter_op::is_not_empty : filter_op::is_empty;
            return n;
        }
        bool negate = false;
        if (at_word("not")) {
            negate = true;
            advance();
        }
        if (at_word("contains")) {
            advance();
            n->op = negate ? filter_op::not_contains : filter_op::contains;
            n->value = parse_value();
            return n;
        }
        if (at_word("matches")) {
            // Regular expressions are left out: libstdc++'s std::regex is slow and unbounded on
            // hostile patterns, and the library never filters with them.
            fail("\"matches\" is not supported by dev_consul");
        }
        fail(current_.kind == token::end ? "unexpected end of expression"
                                         : "unexpected \"" + current_.text + "\"");
    }

    static constexpr int max_depth = 64;
    std::string_view text_;
    std::size_t pos_ = 0;
    int depth_ = 0;
    token current_;
};

/// Resolves a selector against the entry; nullptr when some part names nothing.
const json* resolve(const json& entry, const std::vector<std::string>& selector) {
    const json* at = &entry;
    for (const auto& part : selector) {
        if (!at->is_object()) {
            return nullptr;
        }
        auto it = at->find(part);
        if (it == at->end()) {
            return nullptr;
        }
        at = &*it;
    }
    return at;
}

/// bexpr compares against the field's own type; here every scalar compares by its text.
std::string scalar_text(const json& v) {
    if (v.is_string()) {
        return v.get<std::string>();
    }
    if (v.is_null()) {
        return "";
    }
    return v.dump();
}

bool collection_has(const json& v, const std::string& needle) {
    if (v.is_array()) {
        for (const auto& e : v) {
            if (scalar_text(e) == needle) {
                return true;
            }
        }
        return false;
    }
    if (v.is_object()) {
        return v.contains(needle);
    }
    if (v.is_string()) {
        return v.get<std::string>().find(needle) != std::string::npos;
    }
    return false;
}

bool is_empty(const json& v) {
    if (v.is_null()) {
        return true;
    }
    if (v.is_array() || v.is_object()) {
        return v.empty();
    }
    if (v.is_string()) {
        return v.get<std::string>().empty();
    }
    return false;
}

bool evaluate(const filter_node& n, const json& entry) {
    switch (n.op) {
        case filter_op::logical_and:
            return evaluate(*n.left, entry) && evaluate(*n.right, entry);
        case filter_op::logical_or:
            return evaluate(*n.left, entry) || evaluate(*n.right, entry);
        case filter_op::logical_not:
            return !evaluate(*n.left, entry);
        default:
            break;
    }
    const json* v = resolve(entry, n.selector);
    switch (n.op) {
        case filter_op::equal:
            return v != nullptr && scalar_text(*v) == n.value;
        case filter_op::not_equal:
            return v == nullptr || scalar_text(*v) != n.value;
        case filter_op::in:
        case filter_op::contains:
            return v != nullptr && collection_has(*v, n.value);
        case filter_op::not_in:
        case filter_op::not_contains:
            return v == nullptr || !collection_has(*v, n.value);
        case filter_op::is_empty:
            return v == nullptr || is_empty(*v);
        case filter_op::is_not_empty:
            return v != nullptr && !is_empty(*v);
        default:
            return false;
    }
}

}  // namespace

std::variant<filter_expression, std::string> filter_expression::parse(std::string_view text) {
    filter_parser p(text);
    try {
        filter_expression e;
        e.root_ = p.parse();
        return e;
    } catch (const std::invalid_argument& err) {
        return std::string("Failed to create boolean expression evaluator: 1:1 (0): ") + err.what();
    }
}

bool filter_expression::matches(const json& entry) const {
    return root_ == nullptr || evaluate(*root_, entry);
}

std::optional<std::string> apply_filter(const std::optional<std::string>& filter, json& entries) {
    if (!filter || filter->empty()) {
        return std::nullopt;
    }
    auto parsed = filter_expression::parse(*filter);
    if (auto* err = std::get_if<std::string>(&parsed)) {
        return *err;
    }
    const auto& expr = std::get<filter_expression>(parsed);
    json kept = json::array();
    if (entries.is_object()) {
        kept = json::object();
        for (auto& [k, v] : entries.items()) {
            if (expr.matches(v)) {
                kept[k] = v;
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
