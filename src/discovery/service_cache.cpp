// The service cache: an open-addressing table of one-cache-line slots that readers probe
// without locks, each slot publishing its entry's current snapshot through an atomic pointer;
// replaced snapshots, entries and tables are freed through epoch-based reclamation. Everything
// that writes runs on the cache's executor.
#include <lakemesh/consul/client.hpp>
#include <lakemesh/discovery/service_cache.hpp>

#include "epoch.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <new>
#include <random>

namespace lakemesh::discovery {

namespace asio = boost::asio;
using detail::epoch_domain;
using entries_t = std::vector<consul::service_entry>;
using resolve_handler = asio::any_completion_handler<void(error_code, resolve_result)>;

namespace {

std::int64_t ticks(clock::time_point t) {
    return t.time_since_epoch().count();
}
clock::time_point from_ticks(std::int64_t v) {
    return clock::time_point(clock::duration(v));
}

bool is_default(const service_query& q) {
    return !q.include_warning && q.tag.empty() && q.meta.empty() && q.datacenter.empty();
}

/// The default query of a service is keyed by the service name alone, so its lookup needs no
/// key building; other queries append their canonical form after a unit separator (names
/// cannot contain control characters).
void make_key(std::string& out, std::string_view service, const service_query& q) {
    out.assign(service);
    if (is_default(q)) {
        return;
    }
    out += '\x1f';
    out += q.include_warning ? 'w' : 'p';
    out += '\x1f';
    out += q.tag;
    out += '\x1f';
    out += q.datacenter;
    for (const auto& [k, v] : q.meta) {
        out += '\x1f';
        out += k;
        out += '=';
        out += v;
    }
}

bool valid_name(std::string_view s) {
    return !s.empty() && std::none_of(s.begin(), s.end(), [](char c) {
        return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
    });
}

}  // namespace

// ------------------------------------------------------------------ entries and their table

/// One slot of the lookup table. Everything lookup() reads, the key included (inline up to
/// 29 bytes), is in this one cache line, and the slots are one contiguous array, so a hit on a
/// cold name costs one miss (and, on big tables, no TLB miss: they are backed by huge pages
/// where the kernel allows). A slot is written once: its key and fields are stored before its
/// tag is published (release), the key never changes afterwards, and a removed entry only turns
/// the tag into a tombstone. The table is rebuilt (the old one retired) to grow or to drop
/// tombstones, never by reusing a slot, so a reader never sees a key being rewritten.
struct alignas(64) hot_slot {
    static constexpr std::uint64_t empty = 0;
    static constexpr std::uint64_t tombstone = 1;
    static constexpr std::uint8_t long_key = 0xff;
    static constexpr std::size_t inline_capacity = 29;
    /// A live slot's tag is its key's hash with bit 1 set, so it is never empty or a tombstone.
    static std::uint64_t live_tag(std::size_t hash) noexcept { return hash | 2U; }

    std::atomic<std::uint64_t> tag{empty};
    std::atomic<const service_snapshot*> current{nullptr};
    std::atomic<std::int64_t> confirmed{0};
    std::atomic<std::uint64_t> last_used{0};
    std::atomic<bool> stale{false};
    std::atomic<bool> expired{false};
    std::uint8_t key_size = 0;  ///< inline key length, or long_key: key holds a std::string*
    char key[inline_capacity] = {};

    bool key_equals(std::string_view k) const noexcept {
        if (key_size != long_key) {
            return k.size() == key_size && std::memcmp(key, k.data(), k.size()) == 0;
        }
        const std::string* full = nullptr;
        std::memcpy(&full, key, sizeof(const std::string*));
        return *full == k;
    }
};
static_assert(sizeof(hot_slot) == 64);

/// Writer-side state of one cached service/query. Readers never touch it: they read the
/// entry's hot_slot, which the writer keeps in step (publish()).
struct cache_entry {
    std::string key;
    std::size_t hash = 0;
    hot_slot* slot = nullptr;  ///< in the current table while live, else null

    // Authoritative copies of what the slot shows readers.
    std::int64_t confirmed = 0;
    bool stale = false;
    bool expired = false;

    std::string service;
    service_query query;
    std::uint64_t seq = 0;

    std::shared_ptr<const service_snapshot> owner;
    std::optional<consul::blocking_watch<entries_t>> watch;
    std::unique_ptr<asio::steady_timer> refresh_timer;
    std::unique_ptr<asio::steady_timer> expiry_timer;
    std::vector<resolve_handler> pending;
    bool live = true;
    std::uint64_t last_index = 0;
};

namespace {

std::size_t hash_key(std::string_view k) {
    return std::hash<std::string_view>{}(k);
}

constexpr std::size_t huge_page = std::size_t{2} << 20;

}  // namespace

/// Open addressing with linear probing over hot_slots; its capacity is a power of two that
/// keeps live + tombstoned slots under three quarters, so a probe always meets an empty slot.
struct slot_table {
    explicit slot_table(std::size_t capacity) : mask(capacity - 1) {
        bytes = capacity * sizeof(hot_slot);
        void* mem = nullptr;
        if (bytes >= huge_page) {
            // Whole huge pages: a random probe then needs no page walk.
            bytes = (bytes + huge_page - 1) / huge_page * huge_page;
            mem =
                ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (mem == MAP_FAILED) {
                throw std::bad_alloc();
            }
            mapped = true;
#ifdef MADV_HUGEPAGE
            ::madvise(mem, bytes, MADV_HUGEPAGE);  // advice only; fine if refused
#endif
        } else {
            mem = ::operator new (bytes, std::align_val_t{alignof(hot_slot)});
        }
        slots = static_cast<hot_slot*>(mem);
        std::uninitialized_value_construct_n(slots, capacity);
    }
    ~slot_table() {
        // hot_slot is trivially destructible.
        if (mapped) {
            ::munmap(slots, bytes);
        } else {
            ::operator delete (slots, std::align_val_t{alignof(hot_slot)});
        }
    }
    slot_table(const slot_table&) = delete;
    slot_table& operator=(const slot_table&) = delete;

    std::size_t capacity() const noexcept {
        return mask + 1;
    }

    const hot_slot* find(std::string_view key, std::size_t hash) const noexcept {
        const std::uint64_t want = hot_slot::live_tag(hash);
        for (std::size_t i = hash & mask;; i = (i + 1) & mask) {
            const std::uint64_t t = slots[i].tag.load(std::memory_order_acquire);
            if (t == hot_slot::empty) {
                return nullptr;
            }
            if (t == want && slots[i].key_equals(key)) {
                return &slots[i];
            }
        }
    }

    /// Writer: fills the first empty slot of the key's probe sequence and publishes it last.
    /// The caller sets the other fields before publish().
    hot_slot* claim(std::string_view key, std::size_t hash) {
        for (std::size_t i = hash & mask;; i = (i + 1) & mask) {
            hot_slot& s = slots[i];
            if (s.tag.load(std::memory_order_relaxed) != hot_slot::empty) {
                continue;
            }
            if (key.size() <= hot_slot::inline_capacity) {
                s.key_size = static_cast<std::uint8_t>(key.size());
                std::memcpy(s.key, key.data(), key.size());
            } else {
                long_keys.push_back(std::make_unique<std::string>(key));
                const std::string* full = long_keys.back().get();
                s.key_size = hot_slot::long_key;
                std::memcpy(s.key, &full, sizeof(const std::string*));
            }
            ++used;
            return &s;
        }
    }
    static void publish(hot_slot& s, std::size_t hash) noexcept {
        s.tag.store(hot_slot::live_tag(hash), std::memory_order_release);
    }
    void erase(hot_slot& s) noexcept {
        s.tag.store(hot_slot::tombstone, std::memory_order_release);
        --used;
        ++tombstones;
    }

    std::size_t mask;
    hot_slot* slots = nullptr;
    std::size_t bytes = 0;
    bool mapped = false;
    // Writer only (the table is replaced, never shrunk in place).
    std::vector<std::unique_ptr<std::string>> long_keys;
    std::size_t used = 0;
    std::size_t tombstones = 0;
};

// ------------------------------------------------------------------ the cache's state

struct service_cache::impl : std::enable_shared_from_this<impl> {
    impl(executor_type e, service_source s, service_cache_config c, observe::logger l)
        : ex(std::move(e)),
          source(std::move(s)),
          cfg(std::move(c)),
          log(l.with_component("discovery")),
          first_policy(ex, cfg.first_resolve),
          collect_timer(ex) {
        cfg.max_services = std::max<std::size_t>(cfg.max_services, 1);
        cfg.max_instances = std::max<std::size_t>(cfg.max_instances, 1);
        std::size_t cap = 16;
        while (cap < cfg.max_services * 2 + 2) {
            cap *= 2;
        }
        max_capacity = cap;
        // Start small and grow with the number of services (a slot is a cache line).
        auto t = std::make_unique<slot_table>(std::min<std::size_t>(16, max_capacity));
        table.store(t.release(), std::memory_order_release);
    }

    ~impl() {
        // Nothing can read any more (the cache object is gone): free directly.
        delete table.load(std::memory_order_relaxed);
    }

    executor_type ex;
    service_source source;
    service_cache_config cfg;
    observe::logger log;
    resilience::policy first_policy;
    asio::steady_timer collect_timer;
    bool collect_armed = false;
    std::size_t max_capacity = 0;

    std::atomic<slot_table*> table{nullptr};
    std::unordered_map<std::string, std::shared_ptr<cache_entry>> entries;
    std::atomic<std::uint64_t> tick{2};
    std::uint64_t next_seq = 0;
    bool stopped = false;
    std::uint64_t next_subscriber = 0;
    std::multimap<std::string, std::pair<std::uint64_t, change_callback>, std::less<>> subscribers;
    std::mt19937_64 rng{std::random_device{}()};

    std::atomic<std::uint64_t> resolves{0}, updates{0}, evictions{0}, truncated{0}, watch_errors{0},
        resyncs{0}, services{0}, watches{0};

    // -------------------------------------------------------------- reclamation

    void retire(std::function<void()> release) {
        epoch_domain::instance().retire(std::move(release));
        schedule_collect();
    }
    void schedule_collect() {
        if (collect_armed) {
            return;
        }
        collect_armed = true;
        collect_timer.expires_after(std::chrono::milliseconds(20));
        collect_timer.async_wait([w = weak_from_this()](const error_code& ec) {
            auto self = w.lock();
            if (!self || ec) {
                return;
            }
            self->collect_armed = false;
            if (epoch_domain::instance().collect() > 0) {
                self->schedule_collect();
            }
        });
    }

    // -------------------------------------------------------------- settings

    bool watching(const std::string& service) const {
        auto it = cfg.per_service.find(service);
        return it != cfg.per_service.end() && it->second.watch ? *it->second.watch : cfg.watch;
    }
    std::chrono::milliseconds ttl(const std::string& service) const {
        auto it = cfg.per_service.find(service);
        return it != cfg.per_service.end() && it->second.ttl ? *it->second.ttl : cfg.ttl;
    }
    std::chrono::milliseconds max_staleness(const std::string& service) const {
        auto it = cfg.per_service.find(service);
        return it != cfg.per_service.end() && it->second.max_staleness ? *it->second.max_staleness
                                                                       : cfg.max_staleness;
    }

    // -------------------------------------------------------------- table maintenance

    /// Claims a slot for a new live entry (growing the table, or dropping its tombstones,
    /// first when needed) and publishes it.
    void table_insert(cache_entry& e) {
        slot_table* t = table.load(std::memory_order_relaxed);
        if ((t->used + 1) * 2 > t->capacity() && t->capacity() < max_capacity) {
            rebuild_table(t->capacity() * 2);
        } else if (t->tombstones > t->capacity() / 4) {
            rebuild_table(t->capacity());
        }
        t = table.load(std::memory_order_relaxed);
        e.slot = t->claim(e.key, e.hash);
        publish(e);
        slot_table::publish(*e.slot, e.hash);
    }
    void table_erase(cache_entry& e) {
        if (e.slot != nullptr) {
            table.load(std::memory_order_relaxed)->erase(*e.slot);
            e.slot = nullptr;
        }
    }
    void rebuild_table(std::size_t cap) {
        auto fresh = std::make_unique<slot_table>(cap);
        for (auto& [k, e] : entries) {
            if (e->live && e->slot != nullptr) {
                hot_slot* s = fresh->claim(e->key, e->hash);
                s->last_used.store(e->slot->last_used.load(std::memory_order_relaxed),
                                   std::memory_order_relaxed);
                e->slot = s;
                publish(*e);
                slot_table::publish(*s, e->hash);
            }
        }
        slot_table* old = table.exchange(fresh.release(), std::memory_order_acq_rel);
        retire([old] { delete old; });
    }
    /// Shows readers the entry's current snapshot and freshness.
    static void publish(cache_entry& e) noexcept {
        if (e.slot == nullptr) {
            return;
        }
        hot_slot& s = *e.slot;
        s.confirmed.store(e.confirmed, std::memory_order_relaxed);
        // Unchanged flags are not rewritten (fewer stores to a line readers share).
        if (s.stale.load(std::memory_order_relaxed) != e.stale) {
            s.stale.store(e.stale, std::memory_order_relaxed);
        }
        if (s.expired.load(std::memory_order_relaxed) != e.expired) {
            s.expired.store(e.expired, std::memory_order_relaxed);
        }
        if (s.current.load(std::memory_order_relaxed) != e.owner.get()) {
            s.current.store(e.owner.get(), std::memory_order_release);
        }
    }

    // -------------------------------------------------------------- resolve

    void complete(resolve_handler h, error_code ec, resolve_result r) {
        auto hex = asio::get_associated_executor(h, ex);
        asio::post(ex, asio::bind_executor(hex, [h = std::move(h), ec, r = std::move(r)]() mutable {
                       std::move(h)(ec, std::move(r));
                   }));
    }

    resolve_result result_of(const cache_entry& e) const {
        resolve_result r;
        r.snapshot = e.owner;
        r.stale = e.stale;
        if (r.stale) {
            r.age = clock::now() - from_ticks(e.confirmed);
        }
        return r;
    }

    /// Writer uses are even ticks, each above every earlier use; a lookup records the current
    /// tick + 1, above the writer use before it and below the next one.
    void touch(cache_entry& e) {
        const auto t = tick.fetch_add(2, std::memory_order_relaxed) + 2;
        if (e.slot != nullptr) {
            e.slot->last_used.store(t, std::memory_order_relaxed);
        }
    }

    void resolve(std::string service, service_query query, resolve_handler h) {
        ++resolves;
        if (stopped) {
            complete(std::move(h), discovery_errc::cache_stopped, {});
            return;
        }
        if (!valid_name(service)) {
            complete(std::move(h), validation_errc::invalid_name, {});
            return;
        }
        std::string key;
        make_key(key, service, query);
        if (auto it = entries.find(key); it != entries.end()) {
            cache_entry& e = *it->second;
            touch(e);
            if (!e.owner) {
                e.pending.push_back(std::move(h));  // first resolve still in flight
                return;
            }
            if (e.expired) {
                complete(std::move(h), discovery_errc::stale_beyond_limit, result_of(e));
                return;
            }
            complete(std::move(h), {}, result_of(e));
            return;
        }
        if (entries.size() >= cfg.max_services) {
            evict_one();
        }
        auto e = std::make_shared<cache_entry>();
        e->key = key;
        e->hash = hash_key(key);
        e->service = std::move(service);
        e->query = std::move(query);
        e->seq = next_seq++;
        e->pending.push_back(std::move(h));
        entries.emplace(std::move(key), e);
        services.store(entries.size(), std::memory_order_relaxed);
        table_insert(*e);
        touch(*e);
        first_fetch(e);
    }

    void first_fetch(const std::shared_ptr<cache_entry>& e) {
        auto op = [src = source, service = e->service, query = e->query](auto token) {
            return asio::async_initiate<decltype(token),
                                        void(error_code, std::pair<entries_t, std::uint64_t>)>(
                [&src, &service, &query](auto h) {
                    auto slot = asio::get_associated_cancellation_slot(h);
                    auto hex = asio::get_associated_executor(h);
                    src(service, query, consul::fetch_params{0, std::chrono::milliseconds(0)},
                        asio::bind_executor(
                            hex, asio::bind_cancellation_slot(
                                     slot, [h = std::move(h)](error_code ec, entries_t v,
                                                              std::uint64_t index) mutable {
                                         std::move(h)(ec, std::pair{std::move(v), index});
                                     })));
                },
                token);
        };
        resilience::async_execute(
            first_policy, std::move(op),
            asio::bind_executor(ex, [self = shared_from_this(), w = std::weak_ptr(e)](
                                        error_code ec, std::pair<entries_t, std::uint64_t> r) {
                auto e = w.lock();
                if (!e || !e->live) {
                    return;  // evicted or invalidated meanwhile; its pending were failed then
                }
                if (ec) {
                    self->log.warn("resolving service '" + e->service +
                                   "' failed: " + ec.message());
                    auto pending = std::move(e->pending);
                    e->pending.clear();
                    self->remove(*e, {});
                    for (auto& h : pending) {
                        self->complete(std::move(h), ec, {});
                    }
                    return;
                }
                self->apply(*e, r.first, r.second);
                auto pending = std::move(e->pending);
                e->pending.clear();
                for (auto& h : pending) {
                    self->complete(std::move(h), {}, self->result_of(*e));
                }
                self->start_following(e);
            }));
    }

    // -------------------------------------------------------------- following changes

    void start_following(const std::shared_ptr<cache_entry>& e) {
        if (!watching(e->service)) {
            arm_refresh(e);
            return;
        }
        std::weak_ptr<cache_entry> w = e;
        consul::watch_fetch<entries_t> fetch =
            [src = source, service = e->service, query = e->query](
                consul::fetch_params p,
                asio::any_completion_handler<void(error_code, entries_t, std::uint64_t)> h) {
                src(service, query, p, std::move(h));
            };
        consul::watch_handlers<entries_t> handlers;
        handlers.on_value = [self = weak_from_this(), w](const entries_t& v, std::uint64_t index) {
            auto s = self.lock();
            auto e = w.lock();
            if (s && e && e->live) {
                s->apply(*e, v, index);
            }
        };
        handlers.on_confirm = [self = weak_from_this(), w](std::uint64_t) {
            auto s = self.lock();
            auto e = w.lock();
            if (s && e && e->live) {
                s->confirmed(*e);
            }
        };
        handlers.on_error = [self = weak_from_this(), w](const error_code& ec) {
            auto s = self.lock();
            auto e = w.lock();
            if (s && e && e->live) {
                s->failed(e, ec);
            }
        };
        e->watch.emplace(ex, cfg.watch_settings, std::move(fetch), std::move(handlers));
        e->watch->start();
        ++watches;
    }

    void arm_refresh(const std::shared_ptr<cache_entry>& e) {
        if (!e->refresh_timer) {
            e->refresh_timer = std::make_unique<asio::steady_timer>(ex);
        }
        const auto base = ttl(e->service);
        std::uniform_real_distribution<double> jitter(0.9, 1.1);
        e->refresh_timer->expires_after(
            std::chrono::duration_cast<clock::duration>(std::chrono::duration<double, std::milli>(
                static_cast<double>(base.count()) * jitter(rng))));
        e->refresh_timer->async_wait([self = weak_from_this(),
                                      w = std::weak_ptr(e)](const error_code& ec) {
            auto s = self.lock();
            auto e = w.lock();
            if (ec || !s || !e || !e->live) {
                return;
            }
            s->source(
                e->service, e->query, consul::fetch_params{0, std::chrono::milliseconds(0)},
                asio::bind_executor(s->ex, [self = s->weak_from_this(), w](
                                               error_code ec, entries_t v, std::uint64_t index) {
                    auto s = self.lock();
                    auto e = w.lock();
                    if (!s || !e || !e->live) {
                        return;
                    }
                    if (ec) {
                        s->failed(e, ec);
                    } else {
                        s->apply(*e, v, index);
                    }
                    s->arm_refresh(e);
                }));
        });
    }

    std::shared_ptr<service_snapshot> build(const cache_entry& e, const entries_t& v,
                                            std::uint64_t index) {
        auto snap = std::make_shared<service_snapshot>();
        snap->service = e.service;
        snap->query = e.query;
        snap->index = index;
        snap->received = clock::now();
        snap->instances.reserve(std::min(v.size(), cfg.max_instances));
        std::vector<const consul::service_entry*> chosen;
        chosen.reserve(v.size());
        for (const auto& se : v) {
            const auto st = se.status();
            if (st == consul::check_status::critical || st == consul::check_status::maintenance ||
                (st == consul::check_status::warning && !e.query.include_warning)) {
                continue;
            }
            if (!e.query.tag.empty() && std::find(se.service.tags.begin(), se.service.tags.end(),
                                                  e.query.tag) == se.service.tags.end()) {
                continue;
            }
            bool meta_ok = true;
            for (const auto& [k, val] : e.query.meta) {
                auto it = se.service.meta.find(k);
                if (it == se.service.meta.end() || it->second != val) {
                    meta_ok = false;
                    break;
                }
            }
            if (meta_ok) {
                chosen.push_back(&se);
            }
        }
        std::sort(chosen.begin(), chosen.end(), [](const auto* a, const auto* b) {
            return std::tie(a->node.node, a->service.id) < std::tie(b->node.node, b->service.id);
        });
        if (chosen.size() > cfg.max_instances) {
            snap->truncated = chosen.size() - cfg.max_instances;
            chosen.resize(cfg.max_instances);
            truncated.fetch_add(snap->truncated, std::memory_order_relaxed);
        }
        for (const auto* se : chosen) {
            service_instance in;
            in.id = se->service.id;
            in.service = se->service.service;
            in.node = se->node.node;
            in.address = se->address();
            in.port = static_cast<std::uint16_t>(se->service.port);
            in.datacenter = se->node.datacenter;
            in.tags = se->service.tags;
            in.meta = se->service.meta;
            in.node_meta = se->node.meta;
            in.weights = se->service.weights;
            in.status = se->status();
            in.create_index = se->service.create_index;
            in.modify_index = se->service.modify_index;
            snap->instances.push_back(std::move(in));
        }
        return snap;
    }

    void apply(cache_entry& e, const entries_t& v, std::uint64_t index) {
        if (e.last_index != 0 && index < e.last_index) {
            ++resyncs;
            log.info("service '" + e.service + "': Consul's index went back from " +
                     std::to_string(e.last_index) + " to " + std::to_string(index) +
                     " (agent state lost); resynchronised");
        }
        e.last_index = index;
        auto snap = build(e, v, index);
        std::shared_ptr<const service_snapshot> before = e.owner;
        const bool changed = !before || before->instances != snap->instances;
        e.owner = snap;
        publish(e);
        if (before) {
            retire([before]() mutable { before.reset(); });
        }
        ++updates;
        confirmed(e);
        if (changed && before) {
            notify(e.service, before, e.owner);
        } else if (changed) {
            notify(e.service, nullptr, e.owner);
        }
    }

    /// Consul answered: the snapshot is current.
    void confirmed(cache_entry& e) {
        e.confirmed = ticks(clock::now());
        if (e.stale) {
            log.info("service '" + e.service + "': Consul reachable again; snapshot fresh");
        }
        e.stale = false;
        e.expired = false;
        publish(e);
        if (e.expiry_timer) {
            e.expiry_timer->cancel();
        }
    }

    void failed(const std::shared_ptr<cache_entry>& e, const error_code& ec) {
        ++watch_errors;
        if (e->stale) {
            return;
        }
        e->stale = true;
        publish(*e);
        const auto limit = max_staleness(e->service);
        log.warn("service '" + e->service + "': Consul unreachable (" + ec.message() +
                 "); serving the last snapshot as stale for up to " +
                 std::to_string(limit.count()) + " ms");
        if (!e->expiry_timer) {
            e->expiry_timer = std::make_unique<asio::steady_timer>(ex);
        }
        e->expiry_timer->expires_at(from_ticks(e->confirmed) + limit);
        e->expiry_timer->async_wait(
            [self = weak_from_this(), w = std::weak_ptr(e)](const error_code& tec) {
                auto s = self.lock();
                auto e = w.lock();
                if (tec || !s || !e || !e->live || !e->stale) {
                    return;
                }
                e->expired = true;
                publish(*e);
                s->log.error("service '" + e->service +
                             "': stale past max_staleness; no longer served");
            });
    }

    void notify(const std::string& service, const std::shared_ptr<const service_snapshot>& before,
                const std::shared_ptr<const service_snapshot>& after) {
        auto [lo, hi] = subscribers.equal_range(service);
        std::vector<change_callback> cbs;
        for (auto it = lo; it != hi; ++it) {
            cbs.push_back(it->second.second);
        }
        for (auto& cb : cbs) {
            try {
                cb(service, before, after);
            } catch (const std::exception& ex) {
                log.error("service '" + service + "': change callback threw: " + ex.what());
            }
        }
    }

    // -------------------------------------------------------------- removal

    void remove(cache_entry& e, error_code pending_error) {
        if (!e.live) {
            return;
        }
        e.live = false;
        if (e.watch) {
            e.watch->stop();
            --watches;
        }
        if (e.refresh_timer) {
            e.refresh_timer->cancel();
        }
        if (e.expiry_timer) {
            e.expiry_timer->cancel();
        }
        auto pending = std::move(e.pending);
        e.pending.clear();
        for (auto& h : pending) {
            complete(std::move(h), pending_error ? pending_error : discovery_errc::invalidated, {});
        }
        table_erase(e);
        auto it = entries.find(e.key);
        if (it != entries.end()) {
            std::shared_ptr<cache_entry> keep = std::move(it->second);
            entries.erase(it);
            // Readers may still be on the entry or its snapshot: free both after them. The
            // watch goes with it (stopped above, its callbacks hold only weak pointers).
            retire([keep]() mutable { keep.reset(); });
        }
        services.store(entries.size(), std::memory_order_relaxed);
    }

    void evict_one() {
        cache_entry* victim = nullptr;
        std::uint64_t victim_used = 0;
        for (auto& [k, e] : entries) {
            if (!e->pending.empty()) {
                continue;
            }
            if (e->slot == nullptr) {
                continue;
            }
            const auto a = e->slot->last_used.load(std::memory_order_relaxed);
            if (victim == nullptr || a < victim_used ||
                (a == victim_used && e->seq < victim->seq)) {
                victim = e.get();
                victim_used = a;
            }
        }
        if (victim != nullptr) {
            ++evictions;
            log.debug("evicting service '" + victim->service + "' (least recently used)");
            remove(*victim, {});
        }
    }

    void remove_if(const std::function<bool(const cache_entry&)>& pred) {
        std::vector<cache_entry*> doomed;
        for (auto& [k, e] : entries) {
            if (pred(*e)) {
                doomed.push_back(e.get());
            }
        }
        for (auto* e : doomed) {
            remove(*e, {});
        }
    }
};

// ------------------------------------------------------------------ snapshot_view

snapshot_view::snapshot_view(snapshot_view&& o) noexcept
    : snap_(std::exchange(o.snap_, nullptr)),
      reader_(std::exchange(o.reader_, nullptr)),
      stale_(o.stale_),
      confirmed_(o.confirmed_) {}

snapshot_view& snapshot_view::operator=(snapshot_view&& o) noexcept {
    if (this != &o) {
        if (reader_ != nullptr) {
            epoch_domain::unpin(reader_);
        }
        snap_ = std::exchange(o.snap_, nullptr);
        reader_ = std::exchange(o.reader_, nullptr);
        stale_ = o.stale_;
        confirmed_ = o.confirmed_;
    }
    return *this;
}

snapshot_view::~snapshot_view() {
    if (reader_ != nullptr) {
        epoch_domain::unpin(reader_);
    }
}

clock::duration snapshot_view::age(clock::time_point now) const noexcept {
    if (!stale_ || snap_ == nullptr) {
        return clock::duration::zero();
    }
    return now - confirmed_;
}

std::shared_ptr<const service_snapshot> snapshot_view::share() const {
    return snap_ == nullptr ? nullptr : snap_->shared_from_this();
}

// ------------------------------------------------------------------ service_cache

service_source consul_source(consul::client& c) {
    return [&c](const std::string& service, const service_query& query, consul::fetch_params p,
                asio::any_completion_handler<void(error_code, entries_t, std::uint64_t)> h) {
        consul::health_service_options o;
        // Passing-only is filtered by Consul; passing+warning is filtered here.
        o.passing_only = !query.include_warning;
        if (!query.tag.empty()) {
            o.tags.push_back(query.tag);
        }
        consul::query_options q;
        q.index = p.index;
        q.wait = p.wait;
        q.datacenter = query.datacenter;
        auto slot = asio::get_associated_cancellation_slot(h);
        auto hex = asio::get_associated_executor(h);
        c.health().async_service(
            service, o, q,
            asio::bind_executor(
                hex,
                asio::bind_cancellation_slot(
                    slot, [h = std::move(h)](error_code ec, consul::result<entries_t> r) mutable {
                        std::move(h)(ec, std::move(r.value), r.meta.index);
                    })));
    };
}

service_cache::service_cache(executor_type ex, consul::client& c, service_cache_config cfg,
                             observe::logger log)
    : service_cache(std::move(ex), consul_source(c), std::move(cfg), std::move(log)) {}

service_cache::service_cache(executor_type ex, service_source source, service_cache_config cfg,
                             observe::logger log)
    : impl_(std::make_shared<impl>(std::move(ex), std::move(source), std::move(cfg),
                                   std::move(log))) {}

service_cache::~service_cache() {
    stop();
    // Let readers finish with what they hold; the rest goes with impl_.
    epoch_domain::instance().collect();
}

service_cache::executor_type service_cache::get_executor() const noexcept {
    return impl_->ex;
}

void service_cache::start_resolve(std::string service, service_query query, resolve_handler h) {
    impl_->resolve(std::move(service), std::move(query), std::move(h));
}

snapshot_view service_cache::lookup(std::string_view service) const noexcept {
    snapshot_view v;
    auto& dom = epoch_domain::instance();
    detail::epoch_reader* r = dom.pin();
    const slot_table* t = impl_->table.load(std::memory_order_acquire);
    const hot_slot* e = t->find(service, hash_key(service));
    if (e != nullptr) {
        const service_snapshot* s = e->current.load(std::memory_order_acquire);
        if (s != nullptr && !e->expired.load(std::memory_order_relaxed)) {
            // Recency for eviction: write only when it changes, so readers of a hot entry do
            // not fight over its cache line. (A stamp written into a table that a rebuild has
            // just replaced is lost; eviction order is approximate by that much.)
            const auto now = impl_->tick.load(std::memory_order_relaxed) + 1;
            if (e->last_used.load(std::memory_order_relaxed) != now) {
                const_cast<hot_slot*>(e)->last_used.store(now, std::memory_order_relaxed);
            }
            v.snap_ = s;
            v.reader_ = r;
            v.stale_ = e->stale.load(std::memory_order_relaxed);
            v.confirmed_ = from_ticks(e->confirmed.load(std::memory_order_relaxed));
            return v;
        }
    }
    epoch_domain::unpin(r);
    return v;
}

snapshot_view service_cache::lookup(std::string_view service, const service_query& query) const {
    if (is_default(query)) {
        return lookup(service);
    }
    thread_local std::string key;
    make_key(key, service, query);
    return lookup(std::string_view(key));
}

subscription service_cache::subscribe(std::string service, change_callback cb) {
    const auto id = impl_->next_subscriber++;
    impl_->subscribers.emplace(service, std::pair{id, std::move(cb)});
    return subscription([w = std::weak_ptr(impl_), service = std::move(service), id] {
        if (auto s = w.lock()) {
            auto [lo, hi] = s->subscribers.equal_range(service);
            for (auto it = lo; it != hi; ++it) {
                if (it->second.first == id) {
                    s->subscribers.erase(it);
                    break;
                }
            }
        }
    });
}

void service_cache::invalidate(std::string_view service) {
    impl_->remove_if([service](const cache_entry& e) { return e.service == service; });
}

void service_cache::invalidate_all() {
    impl_->remove_if([](const cache_entry&) { return true; });
}

void service_cache::retry_now() {
    for (auto& [k, e] : impl_->entries) {
        if (e->watch) {
            e->watch->retry_now();
        }
    }
}

void service_cache::stop() {
    if (impl_->stopped) {
        return;
    }
    impl_->stopped = true;
    auto& entries = impl_->entries;
    std::vector<cache_entry*> all;
    for (auto& [k, e] : entries) {
        all.push_back(e.get());
    }
    for (auto* e : all) {
        impl_->remove(*e, discovery_errc::cache_stopped);
    }
    impl_->collect_timer.cancel();
}

service_cache_stats service_cache::stats() const noexcept {
    service_cache_stats s;
    const auto& i = *impl_;
    s.resolves = i.resolves.load(std::memory_order_relaxed);
    s.updates = i.updates.load(std::memory_order_relaxed);
    s.evictions = i.evictions.load(std::memory_order_relaxed);
    s.truncated_instances = i.truncated.load(std::memory_order_relaxed);
    s.watch_errors = i.watch_errors.load(std::memory_order_relaxed);
    s.resyncs = i.resyncs.load(std::memory_order_relaxed);
    s.services = i.services.load(std::memory_order_relaxed);
    s.watches = i.watches.load(std::memory_order_relaxed);
    return s;
}

}  // namespace lakemesh::discovery
