#include <lakemesh/consul/client.hpp>
#include <lakemesh/discovery/service_cache.hpp>
#include <lakemesh/partition/partition_registry.hpp>

#include "partition/table_codec.hpp"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <deque>

namespace lakemesh::partition {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using handler_t = asio::any_completion_handler<void(error_code)>;

// ------------------------------------------------------------------ configuration

void drain_done::operator()() const {
    if (f_) {
        // Only the first call counts.
        auto f = std::exchange(*f_, nullptr);
        if (f) {
            f();
        }
    }
}

registry_config registry_config::fast_failover(std::string cluster, std::string node_id) {
    registry_config c;
    c.cluster = std::move(cluster);
    c.node_id = std::move(node_id);
    c.member_check_interval = 250ms;
    c.member_check_ttl = 1s;
    c.lease.session_ttl = 10s;
    c.lease.lock_delay = 1s;
    c.lease.margin = 250ms;
    c.lease.renew_interval = 150ms;
    c.lease.retry_base = 50ms;
    c.lease.retry_cap = 1s;
    c.orphan_timeout = 5s;
    c.drain_timeout = 10s;
    return c;
}

namespace {

bool valid_name(std::string_view s) {
    return !s.empty() && s.size() <= 128 && std::all_of(s.begin(), s.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
    });
}

std::string effective_prefix(const registry_config& c) {
    return c.prefix.empty() ? "lakemesh/" + c.cluster + "/" : c.prefix;
}

std::int64_t unix_ms_now() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

}  // namespace

error_code validate(const registry_config& c, diagnostics& diag) {
    auto fail = [&](validation_errc e, std::string what) {
        diag.set_client_message(std::move(what));
        return make_error_code(e);
    };
    if (!valid_name(c.cluster)) {
        return fail(validation_errc::invalid_name,
                    "cluster must be 1-128 letters, digits, '-' or '_': \"" + c.cluster + "\"");
    }
    if (!valid_name(c.node_id)) {
        return fail(validation_errc::invalid_name,
                    "node_id must be 1-128 letters, digits, '-' or '_': \"" + c.node_id + "\"");
    }
    if (!c.member_service.empty() && !valid_name(c.member_service)) {
        return fail(
            validation_errc::invalid_name,
            "member_service must be letters, digits, '-' or '_': \"" + c.member_service + "\"");
    }
    const auto prefix = effective_prefix(c);
    if (prefix.front() == '/' || prefix.back() != '/' ||
        std::any_of(prefix.begin(), prefix.end(),
                    [](char ch) { return static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f; }) ||
        prefix.find("//") != std::string::npos) {
        return fail(validation_errc::invalid_key,
                    "prefix must end in '/', not start with one, and hold no control characters "
                    "or empty segments: \"" +
                        prefix + "\"");
    }
    if (c.partitions == 0 || c.partitions > 65536) {
        return fail(validation_errc::invalid_argument,
                    "partitions must be within [1, 65536], got " + std::to_string(c.partitions));
    }
    if (!std::isfinite(c.weight) || c.weight < 0) {
        return fail(validation_errc::invalid_argument, "weight must be finite and not negative");
    }
    if (auto ec = validate(c.lease, diag)) {
        return ec;
    }
    if (c.member_check_interval <= health::duration::zero() ||
        c.member_check_ttl < health::duration::zero() ||
        c.partition_check_interval <= health::duration::zero() ||
        c.drain_timeout <= std::chrono::milliseconds::zero() ||
        c.orphan_timeout < std::chrono::milliseconds::zero()) {
        return fail(validation_errc::invalid_duration,
                    "member_check_interval, partition_check_interval and drain_timeout must be "
                    "positive; member_check_ttl and orphan_timeout not negative");
    }
    return {};
}

// ------------------------------------------------------------------ the shell

struct partition_registry::impl : std::enable_shared_from_this<impl> {
    enum class phase { idle, configuring, running, stopping, stopped };

    impl(executor_type e, consul::client& c, discovery::service_cache& cache,
         health::health_scheduler& sched, registry_config config, observe::logger lg)
        : ex(std::move(e)),
          client(c),
          cache(cache),
          scheduler(sched),
          cfg(std::move(config)),
          prefix(effective_prefix(cfg)),
          member_service(cfg.member_service.empty() ? cfg.cluster : cfg.member_service),
          member_instance_id(member_service + "-" + cfg.node_id),
          member_check_id("lakemesh-member:" + cfg.cluster + ":" + cfg.node_id),
          log(std::move(lg)),
          table(ex, c, table_config{prefix, cfg.partitions, cfg.table_watch}, log),
          lease(cfg.lease),
          fsm(ownership_config{.partitions = cfg.partitions,
                               .node_id = cfg.node_id,
                               .max_concurrent_moves = cfg.max_concurrent_moves,
                               .max_concurrent_acquires = cfg.max_concurrent_acquires,
                               .drain_timeout = cfg.drain_timeout,
                               .orphan_timeout = cfg.orphan_timeout,
                               .lock_delay = cfg.lease.lock_delay}),
          timer(ex),
          retry_timer(ex),
          tokens(new std::atomic<fencing_token>[cfg.partitions]),
          parts(cfg.partitions) {
        for (std::uint32_t p = 0; p < cfg.partitions; ++p) {
            tokens[p].store(0, std::memory_order_relaxed);
        }
    }

    executor_type ex;
    consul::client& client;
    discovery::service_cache& cache;
    health::health_scheduler& scheduler;
    registry_config cfg;
    std::string prefix;
    std::string member_service;
    std::string member_instance_id;
    std::string member_check_id;
    observe::logger log;
    partition_table table;
    lease_fsm lease;
    ownership_fsm fsm;
    asio::steady_timer timer;
    asio::steady_timer retry_timer;
    clock::time_point armed_for = clock::time_point::max();
    clock::time_point lease_wake = clock::time_point::max();
    discovery::subscription member_sub;
    std::vector<member> members_now;

    phase state = phase::idle;
    /// The registry object is gone: completions still in flight must not touch the client,
    /// cache or scheduler (they may be gone too) nor call the application.
    bool destroyed = false;
    // Boost 1.81's any_completion_handler move assignment recurses without end (it copies from
    // an lvalue through the converting constructor): handlers are only ever move-constructed.
    std::optional<handler_t> start_handler;
    std::vector<handler_t> stop_handlers;
    bool config_ok = false;
    bool config_in_flight = false;
    bool table_seen = false;
    std::uint64_t last_table_index = 0;
    unsigned config_failures = 0;
    std::uint32_t known_epoch = 0;
    bool maintenance = false;
    clock::time_point stop_deadline = clock::time_point::max();
    bool handoff_incomplete = false;

    std::unique_ptr<std::atomic<fencing_token>[]> tokens;
    std::atomic<std::size_t> owned_n{0};
    std::atomic<std::size_t> members_n{0};
    std::atomic<std::uint64_t> renew_failures{0};
    std::atomic<std::int64_t> renew_latency_us{0};
    std::atomic<std::uint64_t> acquisitions{0}, handoffs{0}, drain_timeouts{0}, terms_lost{0},
        sessions_created{0}, self_fencings{0}, previous_sessions_ended{0};

    /// The shell's side of each partition: writes to its keys go one at a time, so that each
    /// status write knows the ModifyIndex its CAS needs.
    struct part {
        /// The status key's ModifyIndex as this node knows it: from its own last write, or from
        /// a table picture that already contains that write (see on_table).
        std::uint64_t status_index = 0;
        /// X-Consul-Index at which this node last wrote the status key.
        std::uint64_t written_at = 0;
        bool busy = false;
        std::deque<std::function<void()>> queue;
        std::map<std::string, std::string> meta;
        bool service_registered = false;
    };
    std::vector<part> parts;

    // -------------------------------------------------------------- helpers

    std::weak_ptr<impl> weak() { return weak_from_this(); }
    /// The impl behind a completion, or null when the registry is gone.
    static std::shared_ptr<impl> live(const std::weak_ptr<impl>& w) {
        auto self = w.lock();
        return self && !self->destroyed ? self : nullptr;
    }

    std::string owner_key(std::uint32_t p) const {
        return prefix + "partitions/" + std::to_string(p) + "/owner";
    }
    std::string status_key(std::uint32_t p) const {
        return prefix + "partitions/" + std::to_string(p) + "/status";
    }
    std::string partition_service_id(std::uint32_t p) const {
        return cfg.cluster + "-partition-" + std::to_string(p);
    }
    std::string owner_json(fencing_token token) const {
        return detail::encode(detail::owner_value{cfg.node_id, cfg.address, cfg.port, token});
    }
    std::string status_json(std::uint32_t p, partition_state s, fencing_token token) const {
        return detail::encode(detail::status_value{
            s, cfg.node_id, token, detail::rfc3339_ms(unix_ms_now()), parts[p].meta});
    }

    template <class F>
    void guarded(const char* what, F&& f) {
        try {
            f();
        } catch (const std::exception& e) {
            log.error(std::string("partition registry: ") + what + " threw: " + e.what());
        } catch (...) {
            log.error(std::string("partition registry: ") + what + " threw");
        }
    }

    // Per-partition write chain.
    void enqueue(std::uint32_t p, std::function<void()> op) {
        parts[p].queue.push_back(std::move(op));
        if (!parts[p].busy) {
            next_in_chain(p);
        }
    }
    void next_in_chain(std::uint32_t p) {
        auto& pt = parts[p];
        if (pt.queue.empty()) {
            pt.busy = false;
            return;
        }
        pt.busy = true;
        auto op = std::move(pt.queue.front());
        pt.queue.pop_front();
        op();
    }
    /// Call when an op of the chain completed.
    void chain_done(std::uint32_t p) {
        parts[p].busy = false;
        next_in_chain(p);
    }

    void wrote_status(std::uint32_t p, std::uint64_t index) {
        if (index != 0) {
            parts[p].status_index = index;
            parts[p].written_at = index;
        }
    }

    static std::uint64_t index_of_key(const consul::txn_result& r, const std::string& key) {
        std::uint64_t idx = 0;
        for (const auto& e : r.results) {
            if (e.key == key) {
                idx = std::max(idx, e.modify_index);
            }
        }
        return idx;
    }

    // -------------------------------------------------------------- start

    void start(handler_t h) {
        if (state != phase::idle) {
            const error_code ec = state == phase::stopped || state == phase::stopping
                                      ? make_error_code(partition_errc::registry_stopped)
                                      : make_error_code(validation_errc::invalid_configuration);
            asio::post(ex, [h = std::move(h), ec]() mutable { std::move(h)(ec); });
            return;
        }
        diagnostics diag;
        if (auto ec = validate(cfg, diag)) {
            log.error("partition registry: invalid settings: " + diag.to_string());
            state = phase::stopped;
            asio::post(ex, [h = std::move(h), ec]() mutable { std::move(h)(ec); });
            return;
        }
        start_handler.emplace(std::move(h));
        state = phase::configuring;
        ensure_config();
    }

    void complete_start(error_code ec) {
        if (start_handler) {
            handler_t h(std::move(*start_handler));
            start_handler.reset();
            asio::post(ex, [h = std::move(h), ec]() mutable { std::move(h)(ec); });
        }
    }

    void retry_config_later() {
        const auto shift = std::min(config_failures++, 7u);
        retry_timer.expires_after(std::min<std::chrono::milliseconds>(5s, 100ms * (1 << shift)));
        retry_timer.async_wait([w = weak()](const error_code& ec) {
            if (auto self = live(w); self && !ec) {
                self->ensure_config();
            }
        });
    }

    /// Reads <prefix>config, creating it when absent; checks it against the settings.
    void ensure_config() {
        if (config_in_flight || state == phase::stopped || state == phase::stopping) {
            return;
        }
        config_in_flight = true;
        client.async_kv_get(
            prefix + "config",
            [w = weak()](error_code ec, consul::result<std::optional<consul::kv_pair>> r) {
                auto self = live(w);
                if (!self) {
                    return;
                }
                self->config_in_flight = false;
                self->on_config_read(ec, std::move(r));
            });
    }

    void on_config_read(error_code ec, consul::result<std::optional<consul::kv_pair>> r) {
        if (state == phase::stopped || state == phase::stopping) {
            return;
        }
        if (ec) {
            log.warn("partition registry: reading " + prefix +
                     "config failed, retrying: " + ec.message());
            retry_config_later();
            return;
        }
        if (!r.value) {
            create_config();
            return;
        }
        auto v = detail::decode_config(r.value->value);
        diagnostics diag;
        if (!v) {
            diag.set_client_message(prefix + "config does not hold a lakemesh cluster config: " +
                                    r.value->value.substr(0, 200));
        } else if (v->partitions != cfg.partitions || v->cluster != cfg.cluster) {
            diag.set_client_message(prefix + "config says cluster \"" + v->cluster + "\" with " +
                                    std::to_string(v->partitions) +
                                    " partitions; this node is configured for cluster \"" +
                                    cfg.cluster + "\" with " + std::to_string(cfg.partitions));
        }
        if (!diag.client_message().empty()) {
            log.error("partition registry: " + diag.client_message());
            fail_config(make_error_code(partition_errc::config_mismatch));
            return;
        }
        config_failures = 0;
        known_epoch = std::max(known_epoch, v->epoch);
        // A config younger than a lock-delay may come from a Consul that just lost its state:
        // no acquisition before the old owners' leases have surely ended.
        const auto age_ms = unix_ms_now() - v->created_unix_ms;
        const auto delay_ms = cfg.lease.lock_delay.count();
        if (age_ms < delay_ms) {
            apply(fsm.hold_acquisitions_until(
                clock::now(), clock::now() + std::chrono::milliseconds(
                                                 delay_ms - std::max<std::int64_t>(age_ms, 0))));
        }
        config_ready();
    }

    void create_config() {
        const auto now_s =
            static_cast<std::uint32_t>(std::chrono::duration_cast<std::chrono::seconds>(
                                           std::chrono::system_clock::now().time_since_epoch())
                                           .count());
        detail::cluster_config_value v{cfg.cluster, cfg.partitions,
                                       std::max(now_s, known_epoch + 1), unix_ms_now()};
        consul::kv_put_options o;
        o.cas = 0;
        config_in_flight = true;
        client.async_kv_put(prefix + "config", detail::encode(v), o,
                            [w = weak(), v](error_code ec, consul::result<bool> r) {
                                auto self = live(w);
                                if (!self) {
                                    return;
                                }
                                self->config_in_flight = false;
                                if (ec || !r.value) {
                                    // Lost a race (someone created it) or an error: read again.
                                    if (ec) {
                                        self->retry_config_later();
                                    } else {
                                        self->ensure_config();
                                    }
                                    return;
                                }
                                self->log.info("partition registry: created " + self->prefix +
                                               "config, epoch " + std::to_string(v.epoch));
                                self->known_epoch = v.epoch;
                                self->apply(self->fsm.hold_acquisitions_until(
                                    clock::now(), clock::now() + self->cfg.lease.lock_delay));
                                self->config_ready();
                            });
    }

    void fail_config(error_code ec) {
        if (state == phase::configuring) {
            state = phase::stopped;
            complete_start(ec);
        } else {
            // Running: someone rewrote the config under us. Keep what we hold; report it.
            log.error("partition registry: the cluster config changed under a running node: " +
                      ec.message());
        }
    }

    void config_ready() {
        config_ok = true;
        if (state != phase::configuring) {
            return;
        }
        state = phase::running;
        register_member();
        watch_members();
        std::weak_ptr<impl> w = weak();
        table.start([w](const std::shared_ptr<const table_snapshot>& snap) {
            if (auto self = live(w)) {
                self->on_table(snap);
            }
        });
        end_previous_sessions();
    }

    /// A process of this node that died and was restarted before Consul noticed (its member
    /// check re-registered by us before it went critical) leaves its session alive until the
    /// session's TTL runs out, up to twice the TTL, and its partitions locked with it. The node
    /// ID is unique in the cluster and this process has no session yet, so every session named
    /// like ours is such a leftover: destroying it frees its locks after the lock-delay instead.
    /// Listing failures are not fatal (the TTL still ends those sessions); the lease starts
    /// either way.
    void end_previous_sessions() {
        client.session().async_list(
            [w = weak()](error_code ec, consul::result<std::vector<consul::session_info>> r) {
                auto self = live(w);
                if (!self || self->state != phase::running) {
                    return;
                }
                if (ec) {
                    self->log.debug(
                        "partition registry: listing sessions failed, not looking for "
                        "a previous process's session: " +
                        ec.message());
                } else {
                    const auto name = self->session_options().name;
                    for (const auto& s : r.value) {
                        if (s.name != name) {
                            continue;
                        }
                        self->previous_sessions_ended.fetch_add(1, std::memory_order_relaxed);
                        self->log.warn("partition registry: destroying session " + s.id +
                                       " on node " + s.node +
                                       ", left by an earlier process of node " + self->cfg.node_id +
                                       "; its partitions are free after the "
                                       "lock-delay");
                        self->destroy_session(s.id);
                    }
                }
                self->run_lease(self->lease.start(clock::now()));
            });
    }

    void register_member() {
        health::service_definition def;
        auto& reg = def.registration;
        reg.id = member_instance_id;
        reg.name = member_service;
        reg.address = cfg.address;
        reg.port = cfg.port;
        reg.tags = cfg.member_tags;
        reg.meta = cfg.member_meta;
        reg.meta["lakemesh-weight"] = maintenance ? "0" : std::to_string(cfg.weight);
        reg.meta["lakemesh-cluster"] = cfg.cluster;
        reg.meta["lakemesh-node"] = cfg.node_id;
        health::probe_check check;
        check.id = member_check_id;
        check.name = "lakemesh member " + cfg.node_id;
        check.interval = cfg.member_check_interval;
        check.timeout = cfg.member_check_interval;
        check.ttl = cfg.member_check_ttl;
        if (cfg.member_probe) {
            check.probe = cfg.member_probe;
        } else {
            check.probe = health::sync_probe([] { return health::probe_result{}; });
        }
        def.checks.emplace_back(std::move(check));
        if (auto ec = scheduler.register_service(std::move(def))) {
            log.error("partition registry: registering the member failed: " + ec.message());
        }
    }

    static double weight_of(const discovery::service_instance& i) {
        auto it = i.meta.find("lakemesh-weight");
        if (it == i.meta.end()) {
            return 1.0;
        }
        try {
            const double w = std::stod(it->second);
            return std::isfinite(w) && w >= 0 ? w : 0.0;
        } catch (...) {
            return 0.0;
        }
    }

    void on_members(const std::shared_ptr<const discovery::service_snapshot>& snap) {
        std::vector<member> ms;
        if (snap) {
            for (const auto& i : snap->instances) {
                // The node's ID is in the meta; the instance ID carries the member service as a
                // prefix so that several clusters can share one Consul agent.
                auto it = i.meta.find("lakemesh-node");
                ms.push_back({it != i.meta.end() ? it->second : i.id, weight_of(i)});
            }
        }
        if (log.enabled(observe::log_level::debug)) {
            std::string ids;
            for (const auto& m : ms) {
                ids += " " + m.id + "/" + std::to_string(m.weight);
            }
            log.debug("partition registry: members" + ids);
        }
        const bool self_listed =
            std::any_of(ms.begin(), ms.end(), [&](const member& m) { return m.id == cfg.node_id; });
        members_now = ms;
        members_n.store(ms.size(), std::memory_order_relaxed);
        apply(fsm.set_members(clock::now(), std::move(ms)));
        if (self_listed && lease.state() != lease_state::held && state == phase::running) {
            // This node's member check passes (the list holds passing instances only), so a
            // session linked to it can be created now. The others start handing this node its
            // share as soon as they see it listed; a create backing off after "check is
            // critical" would keep those partitions unowned for the rest of the back-off.
            run_lease(lease.retry_now(clock::now()));
        }
    }

    void watch_members() {
        std::weak_ptr<impl> w = weak();
        member_sub = cache.subscribe(member_service,
                                     [w](const std::string&, const auto&, const auto& after) {
                                         if (auto self = live(w)) {
                                             self->on_members(after);
                                         }
                                     });
        cache.async_resolve(member_service, [w](error_code ec, discovery::resolve_result r) {
            auto self = live(w);
            if (!self) {
                return;
            }
            if (ec) {
                // The cache keeps trying through its watch once the entry exists; a first
                // resolve that failed is retried here.
                self->log.warn("partition registry: resolving the members failed: " + ec.message());
                self->retry_members();
                return;
            }
            self->on_members(r.snapshot);
        });
    }

    void retry_members() {
        auto t = std::make_shared<asio::steady_timer>(ex, 500ms);
        t->async_wait([w = weak(), t](const error_code& ec) {
            auto self = live(w);
            if (!self || ec || self->state != phase::running) {
                return;
            }
            self->cache.async_resolve(self->member_service,
                                      [w](error_code e, discovery::resolve_result r) {
                                          auto s = live(w);
                                          if (!s) {
                                              return;
                                          }
                                          if (e) {
                                              s->retry_members();
                                          } else {
                                              s->on_members(r.snapshot);
                                          }
                                      });
        });
    }

    void on_table(const std::shared_ptr<const table_snapshot>& snap) {
        if (state == phase::stopped) {
            return;
        }
        if (snap->config_missing && config_ok && state == phase::running) {
            // The config key is gone: Consul lost its state (or someone deleted it). Recreate it
            // with a new epoch, so that the new terms outrank every token issued before.
            log.warn("partition registry: " + prefix + "config is gone; recreating it");
            ensure_config();
        }
        if (snap->epoch != 0) {
            known_epoch = std::max(known_epoch, snap->epoch);
        }
        for (std::uint32_t p = 0; p < cfg.partitions; ++p) {
            if (snap->records[p].session == lease.session() && !lease.session().empty()) {
                parts[p].status_index =
                    std::max(parts[p].status_index, snap->records[p].status_index);
            }
        }
        table_seen = true;
        apply(fsm.set_table(clock::now(), snap->records, snap->epoch));
        maybe_started();
    }

    void maybe_started() {
        if (state == phase::running && table_seen && lease.state() == lease_state::held) {
            complete_start({});
        }
    }

    // -------------------------------------------------------------- lease

    consul::session_options session_options() const {
        consul::session_options o;
        o.name = "lakemesh " + cfg.cluster + " " + cfg.node_id;
        o.lock_delay = cfg.lease.lock_delay;
        o.behavior = consul::session_behavior::release;
        o.ttl = cfg.lease.session_ttl;
        o.node_checks = std::vector<std::string>{"serfHealth"};
        o.service_checks = {consul::session_service_check{member_check_id, {}}};
        return o;
    }

    /// Best effort: a session that is not destroyed ends with its TTL.
    void destroy_session(const std::string& id) {
        client.session().async_destroy(id, [w = weak(), id](error_code ec, consul::result<bool>) {
            if (auto self = live(w); self && ec) {
                self->log.debug("partition registry: destroying session " + id +
                                " failed: " + ec.message());
            }
        });
    }

    void run_lease(lease_actions a) {
        for (auto& id : a.destroy) {
            destroy_session(id);
        }
        if (a.fenced) {
            self_fencings.fetch_add(1, std::memory_order_relaxed);
            log.warn(
                "partition registry: the session could not be renewed within its window; "
                "this node stops acting as owner of every partition");
            apply(fsm.set_lease(clock::now(), ""));
        }
        if (a.create && state != phase::stopped) {
            const auto sent = clock::now();
            client.session().async_create(
                session_options(),
                [w = weak(), sent](error_code ec, consul::result<std::string> r) {
                    auto self = live(w);
                    if (!self) {
                        return;
                    }
                    const auto now = clock::now();
                    if (ec) {
                        self->log.debug("partition registry: creating the session failed: " +
                                        ec.message() + " " + r.diag.to_string());
                        self->run_lease(self->lease.on_create_failed(now, ec));
                        return;
                    }
                    self->run_lease(self->lease.on_created(now, sent, r.value));
                    if (self->lease.state() == lease_state::held) {
                        // Consul answers again (after a cut, the watches may be waiting out
                        // error backoffs of seconds): the table and the members must be current
                        // before this node can take its share, or what the others hand it stays
                        // unowned until the backoffs end.
                        self->table.retry_now();
                        self->cache.retry_now();
                        self->sessions_created.fetch_add(1, std::memory_order_relaxed);
                        self->log.info("partition registry: session " + self->lease.session() +
                                       " created");
                        self->apply(self->fsm.set_lease(now, self->lease.session()));
                        self->maybe_started();
                    }
                });
        }
        if (a.renew) {
            const auto sent = clock::now();
            client.session().async_renew(a.renew_id, [w = weak(), sent, id = a.renew_id](
                                                         error_code ec,
                                                         consul::result<consul::session_info>) {
                auto self = live(w);
                if (!self) {
                    return;
                }
                const auto now = clock::now();
                if (ec) {
                    self->renew_failures.fetch_add(1, std::memory_order_relaxed);
                    self->run_lease(self->lease.on_renew_failed(now, id, ec));
                } else {
                    self->renew_latency_us.store(
                        std::chrono::duration_cast<std::chrono::microseconds>(now - sent).count(),
                        std::memory_order_relaxed);
                    self->run_lease(self->lease.on_renewed(now, sent, id));
                }
            });
        }
        lease_wake = a.wake_at;
        rearm();
    }

    // -------------------------------------------------------------- ownership actions

    void apply(std::vector<ownership_action> actions) {
        for (const auto& a : actions) {
            switch (a.what) {
                case ownership_action::kind::acquire:
                    do_acquire(a);
                    break;
                case ownership_action::kind::acquired:
                    do_acquired(a);
                    break;
                case ownership_action::kind::start_drain:
                    do_drain(a);
                    break;
                case ownership_action::kind::release:
                    do_release(a);
                    break;
                case ownership_action::kind::lost:
                    do_lost(a);
                    break;
            }
        }
        rearm();
        check_stop();
    }

    void do_acquire(const ownership_action& a) {
        const auto p = a.partition;
        const auto session = lease.session();
        enqueue(p, [this, a, p, session] {
            std::vector<consul::txn_kv_op> ops;
            if (a.expected_owner_index == 0) {
                ops.push_back({.verb = consul::txn_kv_verb::check_not_exists, .key = owner_key(p)});
            } else {
                ops.push_back({.verb = consul::txn_kv_verb::check_index,
                               .key = owner_key(p),
                               .index = a.expected_owner_index});
            }
            ops.push_back({.verb = consul::txn_kv_verb::lock,
                           .key = owner_key(p),
                           .value = owner_json(a.token),
                           .session = session});
            ops.push_back({.verb = consul::txn_kv_verb::cas,
                           .key = status_key(p),
                           .value = status_json(p, partition_state::acquiring, a.token),
                           .index = a.status_index});
            client.txn().async_commit(
                ops, [w = weak(), p](error_code ec, consul::result<consul::txn_result> r) {
                    auto self = live(w);
                    if (!self) {
                        return;
                    }
                    acquire_outcome out = acquire_outcome::failed;
                    std::uint64_t owner_idx = 0, status_idx = 0;
                    if (!ec) {
                        out = acquire_outcome::acquired;
                        owner_idx = index_of_key(r.value, self->owner_key(p));
                        status_idx = index_of_key(r.value, self->status_key(p));
                        self->wrote_status(p, status_idx);
                    } else if (ec == consul_errc::conflict) {
                        out = acquire_outcome::refused;
                    } else {
                        self->log.debug("partition registry: acquiring " + std::to_string(p) +
                                        " failed: " + ec.message());
                    }
                    self->chain_done(p);
                    self->apply(
                        self->fsm.on_acquire_result(clock::now(), p, out, owner_idx, status_idx));
                });
        });
    }

    void write_status(std::uint32_t p, partition_state s, fencing_token token) {
        const auto session = lease.session();
        enqueue(p, [this, p, s, token, session] {
            if (session.empty() || session != lease.session() || fsm.token_of(p) != token) {
                chain_done(p);  // the term is over: nothing to write
                return;
            }
            std::vector<consul::txn_kv_op> ops{{.verb = consul::txn_kv_verb::check_session,
                                                .key = owner_key(p),
                                                .session = session},
                                               {.verb = consul::txn_kv_verb::cas,
                                                .key = status_key(p),
                                                .value = status_json(p, s, token),
                                                .index = parts[p].status_index}};
            client.txn().async_commit(
                ops, [w = weak(), p](error_code ec, consul::result<consul::txn_result> r) {
                    auto self = live(w);
                    if (!self) {
                        return;
                    }
                    if (!ec) {
                        const auto idx = index_of_key(r.value, self->status_key(p));
                        self->parts[p].status_index = std::max(self->parts[p].status_index, idx);
                        self->chain_done(p);
                        self->apply(self->fsm.on_status_written(clock::now(), p, idx));
                        return;
                    }
                    // A stale index (someone else wrote the status) or no answer: the table's next
                    // picture brings the index; the state itself is in the owner key.
                    self->log.debug("partition registry: status write of " + std::to_string(p) +
                                    " failed: " + ec.message());
                    self->chain_done(p);
                });
        });
    }

    void register_partition_service(std::uint32_t p, fencing_token token) {
        if (!cfg.register_partition_services) {
            return;
        }
        health::service_definition def;
        auto& reg = def.registration;
        reg.id = partition_service_id(p);
        reg.name = cfg.cluster + "-partition";
        reg.address = cfg.address;
        reg.port = cfg.port;
        reg.meta = {{"partition", std::to_string(p)},
                    {"token", std::to_string(token)},
                    {"node", cfg.node_id}};
        health::probe_check check;
        check.id = "lakemesh-partition:" + cfg.cluster + ":" + std::to_string(p);
        check.name = "partition " + std::to_string(p);
        check.interval = cfg.partition_check_interval;
        if (cfg.partition_probe) {
            check.probe = health::sync_probe([probe = cfg.partition_probe, p] { return probe(p); });
        } else {
            check.probe = health::sync_probe([] { return health::probe_result{}; });
        }
        def.checks.emplace_back(std::move(check));
        if (auto ec = scheduler.register_service(std::move(def))) {
            log.warn("partition registry: registering partition " + std::to_string(p) +
                     " failed: " + ec.message());
            return;
        }
        parts[p].service_registered = true;
    }

    void deregister_partition_service(std::uint32_t p) {
        if (parts[p].service_registered) {
            parts[p].service_registered = false;
            scheduler.deregister_service(partition_service_id(p));
        }
    }

    void set_token(std::uint32_t p, fencing_token t) {
        const auto before = tokens[p].exchange(t, std::memory_order_acq_rel);
        if (before == 0 && t != 0) {
            owned_n.fetch_add(1, std::memory_order_relaxed);
        } else if (before != 0 && t == 0) {
            owned_n.fetch_sub(1, std::memory_order_relaxed);
        }
    }

    void do_acquired(const ownership_action& a) {
        const auto p = a.partition;
        acquisitions.fetch_add(1, std::memory_order_relaxed);
        set_token(p, a.token);
        log.debug("partition registry: acquired " + std::to_string(p) + " token " +
                  std::to_string(a.token));
        if (cfg.callbacks.on_acquired) {
            guarded("on_acquired", [&] { cfg.callbacks.on_acquired(p, a.token); });
        }
        register_partition_service(p, a.token);
        write_status(p, partition_state::active, a.token);
    }

    void do_drain(const ownership_action& a) {
        const auto p = a.partition;
        handoffs.fetch_add(1, std::memory_order_relaxed);
        write_status(p, partition_state::draining, a.token);
        drain_done done([w = weak(), ex = ex, p, token = a.token] {
            asio::post(ex, [w, p, token] {
                auto self = live(w);
                if (!self || self->fsm.state_of(p) != local_state::draining ||
                    self->fsm.token_of(p) != token) {
                    return;
                }
                self->apply(self->fsm.on_drained(clock::now(), p));
            });
        });
        if (cfg.callbacks.on_releasing) {
            guarded("on_releasing", [&] { cfg.callbacks.on_releasing(p, a.token, done); });
        } else {
            done();
        }
    }

    void do_release(const ownership_action& a) {
        const auto p = a.partition;
        if (a.drain_timed_out) {
            drain_timeouts.fetch_add(1, std::memory_order_relaxed);
            log.warn("partition registry: draining partition " + std::to_string(p) +
                     " overran drain_timeout; releasing it anyway");
        }
        // The application stopped serving it (it called done, or ran out of time).
        set_token(p, 0);
        deregister_partition_service(p);
        const auto session = lease.session();
        enqueue(p, [this, a, p, session] {
            std::vector<consul::txn_kv_op> ops{
                {.verb = consul::txn_kv_verb::check_session,
                 .key = owner_key(p),
                 .session = session},
                {.verb = consul::txn_kv_verb::cas,
                 .key = status_key(p),
                 .value = status_json(p, partition_state::released, a.token),
                 .index = parts[p].status_index},
                {.verb = consul::txn_kv_verb::unlock,
                 .key = owner_key(p),
                 .value = owner_json(a.token),
                 .session = session}};
            client.txn().async_commit(ops, [w = weak(), p](error_code ec,
                                                           consul::result<consul::txn_result> r) {
                auto self = live(w);
                if (!self) {
                    return;
                }
                acquire_outcome out = acquire_outcome::failed;
                std::uint64_t owner_idx = 0;
                if (!ec) {
                    out = acquire_outcome::acquired;
                    owner_idx = index_of_key(r.value, self->owner_key(p));
                    self->parts[p].status_index = std::max(
                        self->parts[p].status_index, index_of_key(r.value, self->status_key(p)));
                } else if (ec == consul_errc::conflict) {
                    // The session check failing means the lock is not ours any more; a stale
                    // status index is worth another try once the table has the current one.
                    const bool lock_gone =
                        std::any_of(r.value.errors.begin(), r.value.errors.end(),
                                    [](const consul::txn_op_error& e) { return e.op_index == 0; });
                    out = lock_gone ? acquire_outcome::refused : acquire_outcome::failed;
                    if (!lock_gone) {
                        self->table.refresh();
                    }
                }
                self->chain_done(p);
                self->apply(self->fsm.on_release_result(clock::now(), p, out, owner_idx));
            });
        });
    }

    void do_lost(const ownership_action& a) {
        const auto p = a.partition;
        terms_lost.fetch_add(1, std::memory_order_relaxed);
        set_token(p, 0);
        log.warn("partition registry: lost partition " + std::to_string(p) + " (token " +
                 std::to_string(a.token) + ")");
        if (cfg.callbacks.on_lost) {
            guarded("on_lost", [&] { cfg.callbacks.on_lost(p, a.token); });
        }
        deregister_partition_service(p);
    }

    // -------------------------------------------------------------- timer

    void rearm() {
        if (state == phase::stopped) {
            return;
        }
        const auto now = clock::now();
        auto at = std::min({lease_wake, fsm.wake_at(now), stop_deadline});
        if (at == armed_for) {
            return;
        }
        armed_for = at;
        if (at == clock::time_point::max()) {
            timer.cancel();
            return;
        }
        timer.expires_at(at);
        timer.async_wait([w = weak(), at](const error_code& ec) {
            auto self = live(w);
            if (!self || ec || self->armed_for != at) {
                return;
            }
            self->armed_for = clock::time_point::max();
            const auto now = clock::now();
            self->lease_wake = clock::time_point::max();
            self->run_lease(self->lease.on_timer(now));
            self->apply(self->fsm.on_timer(now));
        });
    }

    // -------------------------------------------------------------- stop

    void stop(handler_t h) {
        switch (state) {
            case phase::stopped:
                asio::post(ex, [h = std::move(h)]() mutable { std::move(h)(error_code{}); });
                return;
            case phase::stopping:
                stop_handlers.push_back(std::move(h));
                return;
            case phase::idle:
            case phase::configuring:
                stop_handlers.push_back(std::move(h));
                state = phase::stopping;
                complete_start(make_error_code(partition_errc::registry_stopped));
                finish_stop();
                return;
            case phase::running:
                break;
        }
        stop_handlers.push_back(std::move(h));
        state = phase::stopping;
        complete_start(make_error_code(partition_errc::registry_stopped));
        log.info("partition registry: leaving the cluster: handing every partition off");
        maintenance = true;  // advertise weight 0 so that the others take over
        register_member();
        stop_deadline = clock::now() + cfg.drain_timeout + 5s;
        apply(fsm.leave(clock::now()));
    }

    void check_stop() {
        if (state != phase::stopping) {
            return;
        }
        const auto now = clock::now();
        if (!fsm.left() && lease.state() == lease_state::held && now < stop_deadline) {
            return;
        }
        if (!fsm.left()) {
            handoff_incomplete = true;
            log.warn(
                "partition registry: stopping with partitions not handed off; ending "
                "their terms here");
            // Ends every term (on_lost) without a lease.
            state = phase::stopped;  // no new acquisitions from the actions below
            apply(fsm.set_lease(now, ""));
        }
        finish_stop();
    }

    void finish_stop() {
        state = phase::stopped;
        run_lease_stop();
        for (std::uint32_t p = 0; p < cfg.partitions; ++p) {
            deregister_partition_service(p);
        }
        if (config_ok) {
            scheduler.deregister_service(member_instance_id);
        }
        table.stop();
        member_sub.reset();
        timer.cancel();
        retry_timer.cancel();
        const auto ec =
            handoff_incomplete ? make_error_code(partition_errc::handoff_incomplete) : error_code{};
        for (auto& h : std::exchange(stop_handlers, {})) {
            asio::post(ex, [h = std::move(h), ec]() mutable { std::move(h)(ec); });
        }
    }

    void run_lease_stop() {
        auto a = lease.stop();
        for (auto& id : a.destroy) {
            // The handler keeps the registry alive until Consul answered, so the io_context does
            // not run out before the session is gone.
            client.session().async_destroy(
                id, [self = shared_from_this(), id](error_code ec, consul::result<bool>) {
                    if (ec) {
                        self->log.warn("partition registry: destroying session " + id +
                                       " failed: " + ec.message());
                    }
                });
        }
    }
};

// ------------------------------------------------------------------ public surface

partition_registry::partition_registry(executor_type ex, consul::client& client,
                                       discovery::service_cache& cache,
                                       health::health_scheduler& scheduler, registry_config cfg,
                                       observe::logger log)
    : impl_(std::make_shared<impl>(std::move(ex), client, cache, scheduler, std::move(cfg),
                                   std::move(log))) {}

partition_registry::partition_registry(boost::asio::io_context& io, consul::client& client,
                                       discovery::service_cache& cache,
                                       health::health_scheduler& scheduler, registry_config cfg,
                                       observe::logger log)
    : partition_registry(io.get_executor(), client, cache, scheduler, std::move(cfg),
                         std::move(log)) {}

partition_registry::~partition_registry() {
    auto& m = *impl_;
    m.complete_start(make_error_code(partition_errc::registry_stopped));
    m.destroyed = true;
    m.table.stop();
    m.member_sub.reset();
    m.timer.cancel();
    m.retry_timer.cancel();
    m.state = impl::phase::stopped;
}

partition_registry::executor_type partition_registry::get_executor() const noexcept {
    return impl_->ex;
}

const registry_config& partition_registry::config() const noexcept {
    return impl_->cfg;
}

void partition_registry::start(handler_t h) {
    impl_->start(std::move(h));
}

void partition_registry::stop(handler_t h) {
    impl_->stop(std::move(h));
}

void partition_registry::set_maintenance(bool on) {
    auto& m = *impl_;
    if (m.maintenance == on || m.state != impl::phase::running) {
        m.maintenance = on;
        return;
    }
    m.maintenance = on;
    m.register_member();
    m.apply(on ? m.fsm.leave(clock::now()) : m.fsm.rejoin(clock::now()));
}

bool partition_registry::in_maintenance() const noexcept {
    return impl_->maintenance;
}

fencing_token partition_registry::token_of(std::uint32_t p) const noexcept {
    return p < impl_->cfg.partitions ? impl_->tokens[p].load(std::memory_order_acquire) : 0;
}

std::vector<std::uint32_t> partition_registry::owned() const {
    return impl_->fsm.owned();
}

std::size_t partition_registry::owned_count() const noexcept {
    return impl_->owned_n.load(std::memory_order_relaxed);
}

bool partition_registry::settled() const {
    return impl_->fsm.settled();
}

std::vector<member> partition_registry::members() const {
    return impl_->members_now;
}

std::string partition_registry::session() const {
    return impl_->lease.session();
}

const partition_table& partition_registry::table() const noexcept {
    return impl_->table;
}

partition_table& partition_registry::table() noexcept {
    return impl_->table;
}

bool partition_registry::set_partition_meta(std::uint32_t p,
                                            std::map<std::string, std::string> meta) {
    auto& m = *impl_;
    if (p >= m.cfg.partitions || m.fsm.token_of(p) == 0) {
        return false;
    }
    m.parts[p].meta = std::move(meta);
    const auto s = m.fsm.state_of(p) == local_state::draining ? partition_state::draining
                                                              : partition_state::active;
    m.write_status(p, s, m.fsm.token_of(p));
    return true;
}

registry_stats partition_registry::stats() const noexcept {
    const auto& m = *impl_;
    registry_stats s;
    s.acquisitions = m.acquisitions.load(std::memory_order_relaxed);
    s.handoffs = m.handoffs.load(std::memory_order_relaxed);
    s.drain_timeouts = m.drain_timeouts.load(std::memory_order_relaxed);
    s.terms_lost = m.terms_lost.load(std::memory_order_relaxed);
    s.sessions_created = m.sessions_created.load(std::memory_order_relaxed);
    s.self_fencings = m.self_fencings.load(std::memory_order_relaxed);
    s.previous_sessions_ended = m.previous_sessions_ended.load(std::memory_order_relaxed);
    s.renew_failures = m.renew_failures.load(std::memory_order_relaxed);
    s.owned = m.owned_n.load(std::memory_order_relaxed);
    s.members = m.members_n.load(std::memory_order_relaxed);
    s.last_renew_latency =
        std::chrono::microseconds(m.renew_latency_us.load(std::memory_order_relaxed));
    return s;
}

}  // namespace lakemesh::partition
