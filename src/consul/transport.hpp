// HTTP/1.1 keep-alive transport to Consul agents: a connection pool per address, TLS, failover,
// timeouts, cancellation, and the rule that a request is never sent twice unless that is safe.
#pragma once

#include <lakemesh/consul/client_config.hpp>
#include <lakemesh/consul/observer.hpp>
#include <lakemesh/consul/types.hpp>
#include <lakemesh/observe/log.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/beast/http/verb.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace lakemesh::consul::detail {

struct http_call {
    boost::beast::http::verb method = boost::beast::http::verb::get;
    /// Encoded origin-form target: "/v1/kv/a%20b?index=5".
    std::string target;
    std::string body;
    /// Safe to send again when a reused connection turns out to be dead.
    bool idempotent = true;
    /// A blocking query: its own connection (not counted against the pool cap) and a timeout
    /// that allows for the wait.
    bool blocking = false;
    std::chrono::milliseconds wait{0};
};

struct http_answer {
    unsigned status = 0;
    std::string body;
    query_meta meta;
};

/// The caller of transport::start_exchange.
class exchange_client {
  public:
    /// The exchange is over: `ec` and `answer` as exchange() returns them.
    virtual void exchange_done(error_code ec, http_answer& answer) = 0;

  protected:
    ~exchange_client() = default;
};

class transport : public std::enable_shared_from_this<transport> {
  public:
    transport(boost::asio::any_io_executor ex, client_config cfg, observe::logger log);
    ~transport();

    /// One request/response exchange. Never throws; errors come back as the error_code, with
    /// details in `diag`. A non-2xx status is not an error here (the caller maps it).
    /// `retrying_stale`: the call already found a pooled connection dead (see start_exchange),
    /// so the first address gets no second try for that reason.
    boost::asio::awaitable<std::pair<error_code, http_answer>> exchange(
        http_call call, diagnostics& diag, bool retrying_stale = false);
    /// The same exchange driven by callbacks instead of a coroutine, for the hot paths: while
    /// the preferred agent has an idle connection, a non-blocking call costs no coroutine frame
    /// and no co_spawn. Anything else (opening a connection, waiting for a slot, failover, a
    /// blocking query, a dead pooled connection to retry) continues in exchange(). `slot`
    /// cancels it. Completes by calling client->exchange_done on the transport's executor,
    /// never from within start_exchange; `diag` must live until then (in the client, say).
    void start_exchange(http_call call, diagnostics& diag, boost::asio::cancellation_slot slot,
                        std::shared_ptr<exchange_client> client);
    /// Several exchanges pipelined on one keep-alive connection: every request in one write,
    /// the answers read in order, so a batch costs one send and about one wake-up instead of one
    /// each. Outcomes come back in the order of `calls`, each with its diagnostics in `diags`
    /// (resized to match). The calls must be idempotent and non-blocking (others are sent one
    /// by one): when the connection fails or the agent closes it part way, the unanswered
    /// calls are sent again on a fresh connection, as long as each attempt gets an answer (a
    /// reused connection found dead gets one more). A lone call takes the single-call path,
    /// with failover to the next address; a batch fails over one call at a time.
    boost::asio::awaitable<std::vector<std::pair<error_code, http_answer>>> exchange_pipelined(
        std::vector<http_call> calls, std::vector<diagnostics>& diags);
    /// Closes idle connections; in-flight exchanges finish or fail.
    void shutdown();
    /// Every exchange's outcome goes to `observer` from now on (null: none).
    void set_observer(std::shared_ptr<request_observer> observer) noexcept {
        observer_ = std::move(observer);
    }

    const client_config& config() const noexcept { return cfg_; }
    const boost::asio::any_io_executor& executor() const noexcept { return ex_; }
    /// Connections currently open to address i (idle + busy), for tests.
    std::size_t open_connections(std::size_t i) const;

    struct state;

  private:
    struct fast_exchange;
    /// start_exchange's way out to exchange(), run by co_spawn.
    void continue_in_coroutine(http_call call, diagnostics& diag,
                               boost::asio::cancellation_slot slot,
                               std::shared_ptr<exchange_client> client, bool retrying_stale);

    /// The exchange itself; exchange() adds the observer's event around it.
    boost::asio::awaitable<std::pair<error_code, http_answer>> exchange_once(http_call call,
                                                                             diagnostics& diag,
                                                                             bool retrying_stale);
    boost::asio::awaitable<std::vector<std::pair<error_code, http_answer>>> exchange_pipelined_once(
        std::vector<http_call> calls, std::vector<diagnostics>& diags);
    /// Tells the observer (if any) about one exchange's outcome.
    void report(const http_call& call, const error_code& ec, unsigned status,
                std::chrono::steady_clock::time_point start) const noexcept;

    boost::asio::any_io_executor ex_;
    client_config cfg_;
    observe::logger log_;
    std::unique_ptr<state> st_;
    std::shared_ptr<request_observer> observer_;
};

}  // namespace lakemesh::consul::detail
