// The compiled side of consul::client: request building (Boost.URL), validation, the generic
// operation runner (one coroutine per operation, bound to the caller's cancellation slot and
// executor), status mapping and JSON decoding helpers.
#pragma once

#include <lakemesh/consul/client.hpp>

#include "transport.hpp"

#include <boost/asio/any_completion_executor.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <nlohmann/json.hpp>

#include <exception>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace lakemesh::consul::detail {

using json = nlohmann::json;
using params_t = std::vector<std::pair<std::string, std::string>>;

class client_impl {
  public:
    client_impl(boost::asio::any_io_executor ex, client_config cfg, observe::logger log);

    std::shared_ptr<transport> net;
    observe::logger log;

    const client_config& cfg() const { return net->config(); }

    /// "/v1/" + path (each '/'-separated segment percent-encoded) + encoded query.
    static std::string make_target(std::string_view path, const params_t& params);
    /// As make_target(path, params) with `plain_prefix` (already safe in a URL, such as "kv/")
    /// put before the encoded path.
    static std::string make_target(std::string_view plain_prefix, std::string_view path,
                                   const params_t& params);
    /// Adds dc, ns, consistency, index, wait and filter from `q` and the config defaults.
    void add_query_params(params_t& params, const query_options& q) const;
    /// Adds dc and ns: the call's own when non-empty, else the config's. Reads and writes alike
    /// (as in Consul's Go client, a client's namespace applies to every request).
    void add_scope(params_t& params, const std::string& dc, const std::string& ns) const;

    /// Maps a non-2xx answer to consul_errc with Consul's text in diag.
    static error_code check_status(const http_answer& a, diagnostics& diag);
};

/// Whether `ex` (a handler's associated executor) is the plain executor of the io_context that
/// `io` (the client's executor) refers to.
bool same_executor(const boost::asio::any_completion_executor& ex,
                   const boost::asio::any_io_executor& io);

/// A name, ID, key or parameter headed for a URL: rejects control characters.
error_code validate_text(std::string_view what, std::string_view text, diagnostics& diag,
                         bool allow_empty = true);
/// Text headed for a JSON body: nlohmann's dump throws on invalid UTF-8, so it is refused
/// (validation_errc::invalid_argument) before an encoder sees it.
error_code validate_utf8(std::string_view what, std::string_view text, diagnostics& diag);
/// A name or ID that becomes part of a URL path (its '/' kept): validate_text, and no ".",
/// ".." or empty segment (validation_errc::unclean_path). Consul's Go server cleans such a path
/// and redirects (301), so "a/../b" or "a//b" would reach another key or ID; names that merely
/// contain dots ("v1.2", "a..b", ".hidden") and a trailing '/' are fine.
error_code validate_path_segment(std::string_view what, std::string_view text, diagnostics& diag,
                                 bool allow_empty = false);
/// A KV key: non-empty unless `allow_empty`, no leading '/', no control characters, no ".",
/// ".." or empty segment.
error_code validate_key(std::string_view key, diagnostics& diag, bool allow_empty);

/// Parses a JSON body; decode_errc::malformed_json with a diag on failure.
error_code parse_json(const std::string& body, json& out, diagnostics& diag);

/// Typed field access that names the field on failure.
error_code get_string(const json& obj, const char* field, std::string& out, diagnostics& diag,
                      const std::string& where, bool required = true);
error_code get_u64(const json& obj, const char* field, std::uint64_t& out, diagnostics& diag,
                   const std::string& where, bool required = true);

error_code get_bool(const json& obj, const char* field, bool& out, diagnostics& diag,
                    const std::string& where, bool required = true);
error_code get_i64(const json& obj, const char* field, std::int64_t& out, diagnostics& diag,
                   const std::string& where, bool required = true);
/// An array of strings ("Tags"); null or absent gives an empty vector unless required.
error_code get_string_list(const json& obj, const char* field, std::vector<std::string>& out,
                           diagnostics& diag, const std::string& where, bool required = false);
/// An object of string values ("Meta"); null or absent gives an empty map unless required.
error_code get_string_map(const json& obj, const char* field,
                          std::map<std::string, std::string>& out, diagnostics& diag,
                          const std::string& where, bool required = false);
/// Checks that `j` is an object (or array), naming `where` otherwise.
error_code expect_object(const json& j, diagnostics& diag, const std::string& where);
error_code expect_array(const json& j, diagnostics& diag, const std::string& where);

/// Decodes the JSON array `j` element by element with `one(element, T&, diag, where)`, where
/// element i is named `<item>[i]` in errors. `what` names the whole answer when it is not an
/// array; a null answer is an empty list when `null_is_empty`. On an error `out` is empty.
template <class T, class One>
error_code decode_array(const json& j, std::vector<T>& out, diagnostics& diag,
                        const std::string& what, std::string_view item, One&& one,
                        bool null_is_empty = true) {
    out.clear();
    if (null_is_empty && j.is_null()) {
        return {};
    }
    if (auto ec = expect_array(j, diag, what)) {
        return ec;
    }
    out.reserve(j.size());
    for (std::size_t i = 0; i < j.size(); ++i) {
        T v;
        std::string where(item);
        where += '[';
        where += std::to_string(i);
        where += ']';
        if (auto ec = one(j[i], v, diag, where)) {
            out.clear();
            return ec;
        }
        out.push_back(std::move(v));
    }
    return {};
}

/// One call to Consul for the typed endpoints: sends `call`, copies the query meta into `meta`,
/// maps a non-2xx status to consul_errc (Consul's text in diag) and parses a JSON body when
/// `body` is non-null. A 404 is returned as consul_errc::not_found unless `allow_404`, in which
/// case it completes without error and `*found` (when given) is set to false.
boost::asio::awaitable<error_code> call_json(client_impl& impl, http_call call, diagnostics& diag,
                                             query_meta* meta, json* body, bool allow_404 = false,
                                             bool* found = nullptr);
/// Builds an http_call for a read with query options (blocking when q.index > 0).
http_call read_call(const client_impl& impl, std::string_view path, params_t params,
                    const query_options& q);
/// Builds an http_call for a write (PUT unless `method` says otherwise); adds dc (`dc`, else the
/// config's) and the configured ns.
http_call write_call(const client_impl& impl, boost::beast::http::verb method,
                     std::string_view path, params_t params, std::string body, bool idempotent,
                     const std::string& dc = {});

/// The end of every run_operation: clears the caller's cancellation slot and completes `h` with
/// (ec, r). An exception from the body (only std::bad_alloc can get there) is reported as
/// errc::not_enough_memory rather than let escape a handler.
template <class T>
void complete_operation(handler_t<T>& h, boost::asio::cancellation_slot& slot,
                        const std::exception_ptr& e, error_code ec, result<T>& r) {
    if (e) {
        // A cancelled coroutine throws operation_aborted at its next co_await; anything else
        // that escapes a body is an allocation failure.
        try {
            std::rethrow_exception(e);
        } catch (const boost::system::system_error& se) {
            ec = se.code();
        } catch (...) {
            ec = make_error_code(boost::system::errc::not_enough_memory);
            r.diag.set_client_message("out of memory");
        }
    }
    if (slot.is_connected()) {
        slot.clear();
    }
    std::move(h)(ec, std::move(r));
}

/// Runs `body` as one operation and completes `handler` on its associated executor, honouring
/// its cancellation slot. `body` is either a callable returning
/// awaitable<std::pair<error_code, result<T>>>, or one taking a `result<T>&` to fill and
/// returning awaitable<error_code>: the second keeps the result in storage the operation owns,
/// where it stays until it is moved into the handler, rather than moving it out of each
/// coroutine frame, through co_spawn and its dispatch (about a dozen moves of every string in it).
/// Such a body is called once, so it may move its captures out.
///
/// The caller's slot is not handed to co_spawn directly: co_spawn would leave its own
/// cancellation handler installed in that slot after completing, and a caller that starts its
/// next operation from the completion handler (every coroutine does) would replace it while the
/// finished coroutine frame still points at it. Instead the slot forwards to a signal we own and
/// is cleared before completion; the signal lives until the coroutine frame is gone.
///
/// Completion needs no extra scheduler pass: co_spawn already posts when the body finished
/// without suspending (so the handler never runs inside the initiating function) and otherwise
/// dispatches to the executor bound to its handler, which here is the caller's handler executor.
/// That saves a post and the non-blocking epoll_wait it costs per operation.
template <class T, class Body>
void run_operation(const std::shared_ptr<client_impl>& impl, handler_t<T> handler, Body body) {
    namespace asio = boost::asio;
    constexpr bool owned_result = std::is_invocable_v<Body&, result<T>&>;
    struct signal_state {
        asio::cancellation_signal signal;
    };
    // The body lives here too rather than in co_spawn's function object, which co_spawn moves
    // several times before running it.
    struct result_state {
        explicit result_state(Body&& b) : body(std::move(b)) {}
        asio::cancellation_signal signal;
        result<T> out;
        Body body;
    };
    using op_state = std::conditional_t<owned_result, result_state, signal_state>;
    auto ex = impl->net->executor();
    // Without a caller's slot there is nothing to forward: co_spawn gets an unconnected slot and
    // installs no cancellation handler, and (for a body returning its result) nothing is
    // allocated.
    std::shared_ptr<op_state> state;
    if constexpr (owned_result) {
        state = std::make_shared<op_state>(std::move(body));
    }
    asio::cancellation_slot signal_slot;
    auto slot = asio::get_associated_cancellation_slot(handler);
    if (slot.is_connected()) {
        if constexpr (!owned_result) {
            state = std::make_shared<op_state>();
        }
        signal_slot = state->signal.slot();
        // Emitted on the executor: co_spawn's own handler dispatches the emission with a raw
        // pointer into its slot memory, which a cancellation from outside the io_context's run
        // would leave queued while the coroutine completes and frees it.
        slot.assign([state, ex](asio::cancellation_type type) {
            asio::dispatch(ex, [state, type] { state->signal.emit(type); });
        });
    }
    auto handler_ex = asio::get_associated_executor(handler, ex);
    if constexpr (owned_result) {
        asio::co_spawn(
            ex,
            // co_spawn's frame holds the state, and with it the signal and the result the body
            // writes, as long as it runs.
            [state] { return state->body(state->out); },
            asio::bind_executor(handler_ex,
                                asio::bind_cancellation_slot(
                                    signal_slot, [h = std::move(handler), slot, state](
                                                     std::exception_ptr e, error_code ec) mutable {
                                        complete_operation(h, slot, e, ec, state->out);
                                    })));
    } else {
        asio::co_spawn(
            ex,
            // The body object lives in co_spawn's frame, so holding the state here keeps the
            // signal (where co_spawn installed its cancellation handler) alive as long as that
            // frame.
            [body = std::move(body), state]() mutable { return body(); },
            asio::bind_executor(handler_ex,
                                asio::bind_cancellation_slot(
                                    signal_slot, [h = std::move(handler), slot](
                                                     std::exception_ptr e,
                                                     std::pair<error_code, result<T>> r) mutable {
                                        complete_operation(h, slot, e, r.first, r.second);
                                    })));
    }
}

/// An operation of one exchange driven by callbacks (transport::start_exchange) instead of a
/// coroutine: no co_spawn and no coroutine frames on the hot paths. It owns the handler, the
/// result (the exchange writes its diagnostics there) and the forwarding of the caller's
/// cancellation slot, as run_operation does. `finish(ec, answer, result)` turns the exchange's
/// outcome into the operation's error and fills the result.
template <class T, class Finish>
class exchange_operation final
    : public exchange_client,
      public std::enable_shared_from_this<exchange_operation<T, Finish>> {
  public:
    exchange_operation(handler_t<T> h, Finish finish, const boost::asio::any_io_executor& io)
        : handler_(std::move(h)), finish_(std::move(finish)), work_(track_work(handler_, io)) {}

    result<T> out;

    /// Forwards the caller's cancellation slot (when connected) to a signal of ours; returns
    /// the slot for the exchange.
    boost::asio::cancellation_slot forward_cancellation(const boost::asio::any_io_executor& io) {
        caller_slot_ = boost::asio::get_associated_cancellation_slot(handler_);
        if (!caller_slot_.is_connected()) {
            return {};
        }
        // A weak reference: the caller's slot belongs to whatever owns the handler, which this
        // operation owns, so a strong one would keep both alive for ever when the operation is
        // dropped unfinished (its io_context destroyed mid-flight). While it is in flight the
        // transport holds the operation. Emitted on the client's executor, as in
        // run_operation: a coroutine of the exchange would otherwise queue the emission with a
        // raw pointer into this operation's signal when cancelled from outside the run.
        caller_slot_.assign([weak = this->weak_from_this(), io](boost::asio::cancellation_type t) {
            boost::asio::dispatch(io, [weak, t] {
                if (auto self = weak.lock()) {
                    self->signal_.emit(t);
                }
            });
        });
        return signal_.slot();
    }

    void exchange_done(error_code ec, http_answer& answer) override {
        try {
            ec = finish_(ec, answer, out);
        } catch (const std::bad_alloc&) {
            out = result<T>{};
            ec = make_error_code(boost::system::errc::not_enough_memory);
            out.diag.set_client_message("out of memory");
        }
        complete(ec);
    }

    /// Completes with `ec` (and the result as it is) from a later turn of the executor: for an
    /// operation refused before it started.
    void fail_soon(error_code ec, const boost::asio::any_io_executor& io) {
        boost::asio::post(io, [self = this->shared_from_this(), ec] { self->complete(ec); });
    }

  private:
    using work_executor = decltype(boost::asio::prefer(
        std::declval<
            boost::asio::associated_executor_t<handler_t<T>, boost::asio::any_io_executor>>(),
        boost::asio::execution::outstanding_work.tracked));

    /// As asio's handler_work does for composed operations: the handler's executor keeps work
    /// while the operation is pending and the completion goes through it, unless that executor
    /// is the client's own, which the pending I/O keeps running and on which every completion
    /// of the exchange already runs; then nothing is tracked (empty) and the handler is called
    /// directly.
    static work_executor track_work(const handler_t<T>& h, const boost::asio::any_io_executor& io) {
        auto ex = boost::asio::get_associated_executor(h, io);
        if (same_executor(ex, io)) {
            return work_executor{};
        }
        return boost::asio::prefer(std::move(ex), boost::asio::execution::outstanding_work.tracked);
    }

    void complete(error_code ec) {
        if (caller_slot_.is_connected()) {
            caller_slot_.clear();
        }
        if (!work_) {
            // On the client's executor already (exchange completions and fail_soon's post).
            auto self = this->shared_from_this();
            std::move(handler_)(ec, std::move(out));
            return;
        }
        boost::asio::dispatch(work_, [self = this->shared_from_this(), ec]() mutable {
            std::move(self->handler_)(ec, std::move(self->out));
        });
    }

    handler_t<T> handler_;
    Finish finish_;
    boost::asio::cancellation_signal signal_;
    boost::asio::cancellation_slot caller_slot_;
    work_executor work_;
};

/// Runs one exchange as an exchange_operation: `prepare(result<T>&, http_call&)` validates and
/// builds the call (an error completes the operation without sending anything), `finish` as in
/// exchange_operation.
template <class T, class Prepare, class Finish>
void run_exchange(const std::shared_ptr<client_impl>& impl, handler_t<T> handler, Prepare&& prepare,
                  Finish finish) {
    const auto& io = impl->net->executor();
    auto op =
        std::make_shared<exchange_operation<T, Finish>>(std::move(handler), std::move(finish), io);
    http_call call;
    if (auto ec = prepare(op->out, call)) {
        op->fail_soon(ec, io);
        return;
    }
    auto slot = op->forward_cancellation(io);
    diagnostics& diag = op->out.diag;  // before op is moved into the argument list
    impl->net->start_exchange(std::move(call), diag, slot, std::move(op));
}

}  // namespace lakemesh::consul::detail
