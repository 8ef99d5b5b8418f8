// Logging through a small sink interface. spdlog is the default sink (wired in src/), so no
// spdlog type appears here. Every line passes through `logger`, which removes registered secrets
// (the ACL token) before the sink sees it.
#pragma once

#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace lakemesh::observe {

enum class log_level { trace, debug, info, warn, error, off };

/// Where log lines go. Implementations must be safe to call from any thread.
class log_sink {
  public:
    virtual ~log_sink() = default;
    /// Cheap pre-check so callers can skip formatting.
    virtual bool enabled(log_level level) const noexcept = 0;
    /// `component` names the part that logs ("consul", "dev_consul", ...).
    virtual void write(log_level level, std::string_view component, std::string_view message) = 0;
};

/// The default sink: an spdlog logger named `name` (created on first use, stderr colour sink).
std::shared_ptr<log_sink> make_spdlog_sink(std::string name = "lakemesh",
                                           log_level level = log_level::info);
/// A sink writing one JSON object per line to `out` (stderr when null): {"time": UTC with
/// milliseconds, "level", "component", "message", and "trace_id" when the message names a trace
/// as "[trace <32 hex digits>]", as the mesh's call failures do}. Invalid UTF-8 is replaced.
std::shared_ptr<log_sink> make_json_sink(std::FILE* out = nullptr,
                                         log_level level = log_level::info);
/// A sink that drops everything.
std::shared_ptr<log_sink> make_null_sink();

/// Strings that must never reach a sink. Shared by all loggers of one integrator.
class secret_registry {
  public:
    void add(std::string secret);
    /// Returns `message` with every registered secret replaced by "<redacted>".
    std::string redact(std::string_view message) const;

  private:
    mutable std::mutex mutex_;
    std::vector<std::string> secrets_;
};

/// A cheap-to-copy handle: a sink, a component name and the secrets to redact.
class logger {
  public:
    /// A logger that drops everything.
    logger();
    logger(std::shared_ptr<log_sink> sink, std::string component,
           std::shared_ptr<secret_registry> secrets = std::make_shared<secret_registry>());

    /// Same sink and secrets, another component name.
    logger with_component(std::string component) const;
    /// Registers a secret (e.g. the ACL token) to be redacted from every line.
    void add_secret(std::string secret) const;

    bool enabled(log_level level) const noexcept { return sink_->enabled(level); }
    void log(log_level level, std::string_view message) const;
    void trace(std::string_view m) const { log(log_level::trace, m); }
    void debug(std::string_view m) const { log(log_level::debug, m); }
    void info(std::string_view m) const { log(log_level::info, m); }
    void warn(std::string_view m) const { log(log_level::warn, m); }
    void error(std::string_view m) const { log(log_level::error, m); }

  private:
    std::shared_ptr<log_sink> sink_;
    std::string component_;
    std::shared_ptr<secret_registry> secrets_;
};

}  // namespace lakemesh::observe
