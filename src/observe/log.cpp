#include <lakemesh/observe/log.hpp>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace lakemesh::observe {
namespace {

spdlog::level::level_enum to_spdlog(log_level l) {
    switch (l) {
        case log_level::trace:
            return spdlog::level::trace;
        case log_level::debug:
            return spdlog::level::debug;
        case log_level::info:
            return spdlog::level::info;
        case log_level::warn:
            return spdlog::level::warn;
        case log_level::error:
            return spdlog::level::err;
        case log_level::off:
            return spdlog::level::off;
    }
    return spdlog::level::info;
}

class spdlog_sink final : public log_sink {
  public:
    explicit spdlog_sink(std::shared_ptr<spdlog::logger> l) : logger_(std::move(l)) {}
    bool enabled(log_level level) const noexcept override {
        return logger_->should_log(to_spdlog(level));
    }
    void write(log_level level, std::string_view component, std::string_view message) override {
        logger_->log(to_spdlog(level), "[{}] {}", component, message);
    }

  private:
    std::shared_ptr<spdlog::logger> logger_;
};

const char* level_name(log_level l) {
    switch (l) {
        case log_level::trace:
            return "trace";
        case log_level::debug:
            return "debug";
        case log_level::info:
            return "info";
        case log_level::warn:
            return "warn";
        case log_level::error:
            return "error";
        case log_level::off:
            return "off";
    }
    return "info";
}

/// The 32 hex digits after "[trace " in a message, "" when there are none.
std::string_view trace_id_in(std::string_view message) {
    constexpr std::string_view marker = "[trace ";
    const auto at = message.find(marker);
    if (at == std::string_view::npos || message.size() < at + marker.size() + 32) {
        return {};
    }
    const auto id = message.substr(at + marker.size(), 32);
    for (char c : id) {
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return {};
        }
    }
    return id;
}

class json_sink final : public log_sink {
  public:
    json_sink(std::FILE* out, log_level level) : out_(out), level_(level) {}
    bool enabled(log_level level) const noexcept override {
        return level_ != log_level::off && level >= level_;
    }
    void write(log_level level, std::string_view component, std::string_view message) override {
        if (!enabled(level)) {
            return;
        }
        const auto now = std::chrono::system_clock::now();
        const auto tt = std::chrono::system_clock::to_time_t(now);
        const auto ms =
            std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() %
            1000;
        std::tm tm{};
        gmtime_r(&tt, &tm);
        char stamp[96];
        std::snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                      tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                      static_cast<int>(ms));
        nlohmann::ordered_json line;
        line["time"] = stamp;
        line["level"] = level_name(level);
        line["component"] = component;
        line["message"] = message;
        if (const auto trace = trace_id_in(message); !trace.empty()) {
            line["trace_id"] = trace;
        }
        auto text = line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
        text += '\n';
        const std::lock_guard lock(mutex_);
        std::fwrite(text.data(), 1, text.size(), out_);
        std::fflush(out_);
    }

  private:
    std::FILE* out_;
    log_level level_;
    std::mutex mutex_;
};

class null_sink final : public log_sink {
  public:
    bool enabled(log_level) const noexcept override { return false; }
    void write(log_level, std::string_view, std::string_view) override {}
};

}  // namespace

std::shared_ptr<log_sink> make_spdlog_sink(std::string name, log_level level) {
    auto l = spdlog::get(name);
    if (!l) {
        try {
            l = spdlog::stderr_color_mt(name);
        } catch (const spdlog::spdlog_ex&) {
            l = spdlog::get(name);  // created concurrently by another thread
        }
    }
    l->set_level(to_spdlog(level));
    return std::make_shared<spdlog_sink>(std::move(l));
}

std::shared_ptr<log_sink> make_json_sink(std::FILE* out, log_level level) {
    return std::make_shared<json_sink>(out != nullptr ? out : stderr, level);
}

std::shared_ptr<log_sink> make_null_sink() {
    static const auto sink = std::make_shared<null_sink>();
    return sink;
}

namespace {

/// `s` percent-encoded as a URL query or path would carry it (RFC 3986 unreserved characters
/// kept), with upper- or lower-case hex digits.
std::string percent_encoded(std::string_view s, bool lower) {
    const char* digits = lower ? "0123456789abcdef" : "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : s) {
        if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
            out.push_back(static_cast<char>(c));
        } else {
            out.push_back('%');
            out.push_back(digits[c >> 4]);
            out.push_back(digits[c & 15]);
        }
    }
    return out;
}

}  // namespace

void secret_registry::add(std::string secret) {
    if (secret.empty()) {
        return;
    }
    // The secret as written, and as it looks inside a URL (a token passed as ?token=, a URL
    // named in an error): a token with '+', '/' or '=' is otherwise missed there.
    std::vector<std::string> forms{percent_encoded(secret, false), percent_encoded(secret, true)};
    forms.insert(forms.begin(), std::move(secret));
    std::lock_guard lock(mutex_);
    for (auto& f : forms) {
        if (std::find(secrets_.begin(), secrets_.end(), f) == secrets_.end()) {
            secrets_.push_back(std::move(f));
        }
    }
}

std::string secret_registry::redact(std::string_view message) const {
    std::string out(message);
    std::lock_guard lock(mutex_);
    for (const auto& s : secrets_) {
        std::size_t pos = 0;
        while ((pos = out.find(s, pos)) != std::string::npos) {
            out.replace(pos, s.size(), "<redacted>");
            pos += 10;
        }
    }
    return out;
}

logger::logger() : logger(make_null_sink(), "lakemesh") {}

logger::logger(std::shared_ptr<log_sink> sink, std::string component,
               std::shared_ptr<secret_registry> secrets)
    : sink_(sink ? std::move(sink) : make_null_sink()),
      component_(std::move(component)),
      secrets_(secrets ? std::move(secrets) : std::make_shared<secret_registry>()) {}

logger logger::with_component(std::string component) const {
    return logger(sink_, std::move(component), secrets_);
}

void logger::add_secret(std::string secret) const {
    secrets_->add(std::move(secret));
}

void logger::log(log_level level, std::string_view message) const {
    if (level == log_level::off || !sink_->enabled(level)) {
        return;
    }
    sink_->write(level, component_, secrets_->redact(message));
}

}  // namespace lakemesh::observe
