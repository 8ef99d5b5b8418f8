// Typed txn endpoint of the Consul client, reached through client::txn().
// https://developer.hashicorp.com/consul/api-docs/txn
#pragma once

#include <lakemesh/consul/detail/async.hpp>
#include <lakemesh/consul/types.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

namespace lakemesh::consul {

/// The verb of a KV operation in a transaction. Consul's names in quotes.
enum class txn_kv_verb {
    set,               ///< "set": writes value and flags.
    cas,               ///< "cas": writes only if the key's ModifyIndex equals index (0: absent).
    get,               ///< "get": reads the key; fails the transaction if it does not exist.
    get_tree,          ///< "get-tree": reads every key under the prefix.
    check_index,       ///< "check-index": fails unless the key's ModifyIndex equals index.
    check_session,     ///< "check-session": fails unless the key is locked by session.
    check_not_exists,  ///< "check-not-exists": fails if the key exists.
    delete_key,        ///< "delete": deletes the key (absent is fine).
    delete_tree,       ///< "delete-tree": deletes every key under the prefix.
    delete_cas,        ///< "delete-cas": deletes only if the key's ModifyIndex equals index.
    lock,              ///< "lock": writes and locks the key with session.
    unlock,            ///< "unlock": writes and unlocks the key held by session.
};

/// One KV operation of a transaction. Fields a verb does not use are ignored.
struct txn_kv_op {
    txn_kv_verb verb = txn_kv_verb::get;
    /// The key, or the prefix for get-tree / delete-tree (which may be empty: every key).
    std::string key;
    /// Raw bytes (sent base64-encoded), for set, cas, lock and unlock.
    std::string value;
    std::uint64_t flags = 0;
    /// ModifyIndex for cas, check-index and delete-cas.
    std::uint64_t index = 0;
    /// Session ID for lock, unlock and check-session.
    std::string session;
};

/// Why a transaction was rolled back: the operation at op_index failed with Consul's text.
struct txn_op_error {
    std::size_t op_index = 0;
    std::string what;

    friend bool operator==(const txn_op_error&, const txn_op_error&) = default;
};

/// The answer to a transaction.
struct txn_result {
    /// On commit: the entries Consul returned, in operation order. Not one per operation:
    /// delete and check-not-exists return nothing, get-tree one entry per key. Entries of
    /// writes and checks carry no value (Consul omits it); get and get-tree carry it.
    std::vector<kv_pair> results;
    /// On rollback (consul_errc::conflict): the failing operations. Empty on commit.
    std::vector<txn_op_error> errors;
};

struct txn_options {
    /// Overrides client_config::datacenter when non-empty.
    std::string datacenter;
    /// Overrides client_config::consistency; Consul honours it only for read-only transactions.
    std::optional<consistency_mode> consistency;
};

/// Consul's limit on the operations of one transaction (checked before sending).
inline constexpr std::size_t max_txn_ops = 64;

namespace detail {
void run_txn_commit(std::shared_ptr<client_impl>, std::vector<txn_kv_op>, txn_options,
                    handler_t<txn_result>);
}  // namespace detail

/// The transaction endpoint. A cheap handle that shares the client's connections; valid as
/// long as the operations it starts (it keeps the client's state alive). Thread safety,
/// cancellation and errors as for client.
class txn_api {
  public:
    using executor_type = boost::asio::any_io_executor;
    explicit txn_api(std::shared_ptr<detail::client_impl> impl) : impl_(std::move(impl)) {}

    /// PUT /v1/txn (https://developer.hashicorp.com/consul/api-docs/txn#create-transaction):
    /// applies `ops` atomically: all of them, or none.
    ///
    /// Completion: void(error_code, result<txn_result>).
    /// - Committed: no error; value.results holds what the operations returned.
    /// - Rolled back: consul_errc::conflict (HTTP 409) and value.errors names each failing
    ///   operation (OpIndex, What) - the one case where an errored result carries a value.
    /// - validation_errc before sending: more than max_txn_ops operations (invalid_argument),
    ///   an invalid key (invalid_key, control_character), a lock, unlock or check-session
    ///   without a session (invalid_name).
    /// - consul_errc::request_entity_too_large for values over Consul's limits; other
    ///   consul_errc, transport_errc and decode_errc as for any call.
    /// A transaction with a write is not retried on a dead connection (it may have been
    /// applied); a read-only one is, and honours txn_options::consistency.
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    auto async_commit(const std::vector<txn_kv_op>& ops, const txn_options& o, Token&& token = {}) {
        return detail::initiate<txn_result>(
            [impl = impl_, ops = ops, o = o](auto h) mutable {
                detail::run_txn_commit(std::move(impl), std::move(ops), std::move(o), std::move(h));
            },
            token);
    }

    // Overload without options (g++ 12: see the note in client.hpp).
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    requires(!std::is_convertible_v<Token, const txn_options&>) auto async_commit(
        const std::vector<txn_kv_op>& ops, Token&& token = {}) {
        return async_commit(ops, txn_options{}, std::forward<Token>(token));
    }

  private:
    std::shared_ptr<detail::client_impl> impl_;
};

}  // namespace lakemesh::consul
