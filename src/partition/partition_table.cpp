#include <lakemesh/consul/client.hpp>
#include <lakemesh/partition/assignment.hpp>
#include <lakemesh/partition/partition_table.hpp>

#include "discovery/epoch.hpp"
#include "partition/table_codec.hpp"

#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <utility>

namespace lakemesh::partition {

namespace asio = boost::asio;
using discovery::detail::epoch_domain;
using discovery::detail::epoch_reader;

// ------------------------------------------------------------------ route_view

route_view::route_view(route_view&& o) noexcept
    : owner_(std::exchange(o.owner_, nullptr)),
      reader_(std::exchange(o.reader_, nullptr)),
      partition_(o.partition_) {}

route_view& route_view::operator=(route_view&& o) noexcept {
    if (this != &o) {
        if (reader_ != nullptr) {
            epoch_domain::unpin(static_cast<epoch_reader*>(reader_));
        }
        owner_ = std::exchange(o.owner_, nullptr);
        reader_ = std::exchange(o.reader_, nullptr);
        partition_ = o.partition_;
    }
    return *this;
}

route_view::~route_view() {
    if (reader_ != nullptr) {
        epoch_domain::unpin(static_cast<epoch_reader*>(reader_));
    }
}

// ------------------------------------------------------------------ partition_table

struct partition_table::impl : std::enable_shared_from_this<impl> {
    impl(executor_type e, consul::client& c, table_config cfg, observe::logger log)
        : ex(std::move(e)),
          client(c),
          cfg(std::move(cfg)),
          log(std::move(log)),
          collect_timer(ex) {}

    ~impl() {
        // A reader may still hold a view: free the last snapshot through the epoch domain too.
        current.store(nullptr, std::memory_order_release);
        if (auto last = latest.exchange(nullptr)) {
            epoch_domain::instance().retire([p = std::move(last)]() mutable { p.reset(); });
        }
    }

    executor_type ex;
    consul::client& client;
    table_config cfg;
    observe::logger log;
    std::optional<consul::blocking_watch<std::vector<consul::kv_pair>>> watch;
    change_callback on_change;
    std::function<void(const error_code&)> on_error;
    /// For lock-free readers: the snapshot `latest` holds, reclaimed through the epoch domain.
    std::atomic<const table_snapshot*> current{nullptr};
    std::atomic<std::shared_ptr<const table_snapshot>> latest;
    asio::steady_timer collect_timer;
    /// Decoded values of the last read (executor only).
    detail::decode_cache decode_cache;
    bool collect_armed = false;
    bool stopped = false;

    void publish(const std::vector<consul::kv_pair>& entries, std::uint64_t index) {
        auto read = detail::read_table(entries, cfg.prefix, cfg.partitions, &decode_cache);
        if (read.ignored > 0) {
            log.warn("partition table under " + cfg.prefix + ": " + std::to_string(read.ignored) +
                     " keys not understood and ignored");
        }
        auto snap = std::make_shared<table_snapshot>();
        snap->partitions = cfg.partitions;
        snap->index = index;
        snap->config_missing = !read.config && !read.config_malformed;
        snap->epoch = read.config ? read.config->epoch : 0;
        snap->owners.resize(cfg.partitions);
        for (std::uint32_t p = 0; p < cfg.partitions; ++p) {
            const auto& r = read.records[p];
            auto& o = snap->owners[p];
            o.node = r.node;
            o.address = r.address;
            o.port = r.port;
            o.token = r.token;
            o.owned = r.locked();
            o.state = r.state;
            o.meta = std::move(read.statuses[p].meta);
        }
        snap->records = std::move(read.records);
        std::shared_ptr<const table_snapshot> next = std::move(snap);
        current.store(next.get(), std::memory_order_release);
        auto prev = latest.exchange(next, std::memory_order_acq_rel);
        if (prev) {
            epoch_domain::instance().retire([p = std::move(prev)]() mutable { p.reset(); });
            schedule_collect();
        }
        if (on_change) {
            try {
                on_change(next);
            } catch (const std::exception& e) {
                log.error(std::string("partition table: change callback threw: ") + e.what());
            }
        }
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

    route_view view_of(std::uint32_t p) const noexcept {
        route_view v;
        auto* r = epoch_domain::instance().pin();
        const table_snapshot* s = current.load(std::memory_order_acquire);
        if (s != nullptr && p < s->owners.size()) {
            v.owner_ = &s->owners[p];
            v.reader_ = r;
            v.partition_ = p;
            return v;
        }
        epoch_domain::unpin(r);
        v.partition_ = p;
        return v;
    }
};

partition_table::partition_table(executor_type ex, consul::client& c, table_config cfg,
                                 observe::logger log)
    : impl_(std::make_shared<impl>(std::move(ex), c, std::move(cfg), std::move(log))) {}

partition_table::~partition_table() {
    stop();
}

void partition_table::start(change_callback on_change,
                            std::function<void(const error_code&)> on_error) {
    auto& m = *impl_;
    if (m.watch || m.stopped) {
        return;
    }
    m.on_change = std::move(on_change);
    m.on_error = std::move(on_error);
    auto fetch = consul::watch_read<std::vector<consul::kv_pair>>(
        consul::query_options{},
        [&c = m.client, prefix = m.cfg.prefix](const consul::query_options& q, auto handler) {
            c.async_kv_list(prefix, q, std::move(handler));
        });
    consul::watch_handlers<std::vector<consul::kv_pair>> handlers;
    std::weak_ptr<impl> w = impl_;
    handlers.on_value = [w](const std::vector<consul::kv_pair>& entries, std::uint64_t index) {
        if (auto self = w.lock()) {
            self->publish(entries, index);
        }
    };
    handlers.on_error = [w](const error_code& ec) {
        if (auto self = w.lock()) {
            self->log.debug("partition table read failed: " + ec.message());
            if (self->on_error) {
                self->on_error(ec);
            }
        }
    };
    m.watch.emplace(m.ex, m.cfg.watch, std::move(fetch), std::move(handlers));
    m.watch->start();
}

void partition_table::stop() {
    if (!impl_) {
        return;
    }
    impl_->stopped = true;
    if (impl_->watch) {
        impl_->watch->stop();
    }
    impl_->on_change = nullptr;
    impl_->on_error = nullptr;
    impl_->collect_timer.cancel();
}

void partition_table::retry_now() {
    if (impl_ && impl_->watch) {
        impl_->watch->retry_now();
    }
}

void partition_table::refresh() {
    std::weak_ptr<impl> w = impl_;
    impl_->client.async_kv_list(impl_->cfg.prefix,
                                [w](error_code ec, consul::result<std::vector<consul::kv_pair>> r) {
                                    auto self = w.lock();
                                    if (!self || self->stopped || ec) {
                                        return;
                                    }
                                    auto cur = self->latest.load(std::memory_order_acquire);
                                    // Never replace a newer picture with an older one (the watch
                                    // may have moved on).
                                    if (!cur || r.meta.index >= cur->index) {
                                        self->publish(r.value, r.meta.index);
                                    }
                                });
}

std::uint32_t partition_table::partition_of(std::string_view key) const noexcept {
    return partition::partition_of(key, impl_->cfg.partitions);
}

route_view partition_table::route(std::string_view key) const noexcept {
    return impl_->view_of(partition_of(key));
}

route_view partition_table::at(std::uint32_t p) const noexcept {
    return impl_->view_of(p);
}

std::shared_ptr<const table_snapshot> partition_table::snapshot() const {
    return impl_->latest.load(std::memory_order_acquire);
}

const table_config& partition_table::config() const noexcept {
    return impl_->cfg;
}

}  // namespace lakemesh::partition
