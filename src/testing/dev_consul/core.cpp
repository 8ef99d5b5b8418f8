#include "core.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>

namespace lakemesh::testing::detail {

// ------------------------------------------------------------------------------ dev_agent

dev_agent::dev_agent(dev_cluster_core& c, dev_consul_options o) : core(c), opts(std::move(o)) {
    info.node_id = make_uuid();
    info.datacenter = opts.datacenter;
    info.address = opts.bind_address;
    info.enable_script_checks = opts.enable_script_checks;
    info.enable_local_script_checks = opts.enable_local_script_checks;
    info.acl_enabled = !opts.acl_token.empty();
    if (!opts.tls_cert_file.empty() || !opts.tls_key_file.empty()) {
        tls = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
        tls->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                         asio::ssl::context::no_sslv3);
        tls->use_certificate_chain_file(opts.tls_cert_file);
        tls->use_private_key_file(opts.tls_key_file, asio::ssl::context::pem);
        if (!opts.tls_client_ca_file.empty()) {
            tls->load_verify_file(opts.tls_client_ca_file);
            tls->set_verify_mode(asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert);
        }
    }
}

void dev_agent::listen() {
    auto addr = asio::ip::make_address(opts.bind_address);
    acceptor = std::make_unique<asio::ip::tcp::acceptor>(core.io());
    asio::ip::tcp::endpoint ep(addr, opts.port);
    acceptor->open(ep.protocol());
    acceptor->set_option(asio::ip::tcp::acceptor::reuse_address(true));
    acceptor->bind(ep);
    acceptor->listen(asio::socket_base::max_listen_connections);
    opts.port = acceptor->local_endpoint().port();  // keep the port across restarts
    info.port = opts.port;
    if (info.node_name.empty()) {
        info.node_name =
            opts.node_name.empty() ? "dev-" + std::to_string(opts.port) : opts.node_name;
    }
    info.running = true;
    accept_loop();
}

void dev_agent::accept_loop() {
    auto self = shared_from_this();
    acceptor->async_accept([self](boost::system::error_code ec, asio::ip::tcp::socket socket) {
        if (ec) {
            if (ec != asio::error::operation_aborted && self->acceptor &&
                self->acceptor->is_open()) {
                self->accept_loop();  // transient (e.g. EMFILE): keep accepting
            }
            return;
        }
        serve_connection(self, std::move(socket));
        self->accept_loop();
    });
}

void dev_agent::shutdown() {
    if (acceptor) {
        boost::system::error_code ec;
        acceptor->close(ec);
    }
    auto conns = connections_;
    for (const auto& c : conns) {
        c->close();
    }
    info.running = false;
}

// ------------------------------------------------------------------------------ dev_cluster_core

dev_cluster_core::dev_cluster_core() : tick_timer_(io_) {
    add_kv_routes(router_);
    add_status_routes(router_);
    add_agent_routes(router_);
    add_catalog_routes(router_);
    add_health_routes(router_);
    add_session_routes(router_);
    add_txn_routes(router_);
    // The periodic tick keeps the context busy until the destructor cancels it, so no work
    // guard is needed; arm it before the thread starts so run() has work from the outset.
    schedule_tick();
    thread_ = std::thread([this] { io_.run(); });
    io_thread_id_ = thread_.get_id();
}

dev_cluster_core::~dev_cluster_core() {
    run_sync([this] {
        stopping_ = true;
        tick_timer_.cancel();
        for (auto& w : agents_) {
            if (auto a = w.lock()) {
                a->shutdown();
            }
        }
        for (auto* w : waiters_) {
            w->timer->cancel();
        }
        // Checks still probing or running a script would hold run() up to their timeouts.
        io_.stop();
        return 0;
    });
    thread_.join();
}

void dev_cluster_core::add_agent(const std::shared_ptr<dev_agent>& a) {
    agents_.push_back(a);
    if (a->opts.reap_interval < tick_interval_) {
        tick_interval_ = a->opts.reap_interval;
    }
}

void dev_cluster_core::remove_agent(const std::shared_ptr<dev_agent>& a) {
    std::erase_if(agents_, [&](const std::weak_ptr<dev_agent>& w) {
        auto p = w.lock();
        return !p || p == a;
    });
    refresh_members();
}

void dev_cluster_core::refresh_members() {
    members_.clear();
    for (auto& w : agents_) {
        if (auto a = w.lock()) {
            members_.push_back(a->info);
        }
    }
}

void dev_cluster_core::register_agent_node(dev_agent& a) {
    auto& s = store_;
    auto idx = s.write(table_catalog);
    auto& n = s.nodes[a.info.node_name];
    if (n.create_index == 0) {
        n.create_index = idx;
    }
    n.id = a.info.node_id;
    n.name = a.info.node_name;
    n.address = a.info.address;
    n.datacenter = a.info.datacenter;
    n.meta["consul-network-segment"] = "";
    n.tagged_addresses = {{"lan", a.info.address},
                          {"lan_ipv4", a.info.address},
                          {"wan", a.info.address},
                          {"wan_ipv4", a.info.address}};
    n.modify_index = idx;
    auto& c = s.checks[a.info.node_name]["serfHealth"];
    if (c.create_index == 0) {
        c.create_index = idx;
    }
    c.node = a.info.node_name;
    c.id = "serfHealth";
    c.name = "Serf Health Status";
    c.status = "passing";
    c.output = "Agent alive and reachable";
    c.agent_output = c.output;
    c.type = "";
    c.critical_since.reset();
    c.modify_index = idx;
    // A server registers itself as the "consul" service (with its serfHealth as only check).
    auto& svc = s.services[a.info.node_name]["consul"];
    if (svc.create_index == 0) {
        svc.create_index = idx;
    }
    svc.node = a.info.node_name;
    svc.id = "consul";
    svc.name = "consul";
    svc.port = 8300;
    svc.meta_null = false;
    svc.meta = {{"non_voter", "false"},     {"raft_version", "3"},
                {"read_replica", "false"},  {"serf_protocol_current", "2"},
                {"serf_protocol_max", "5"}, {"serf_protocol_min", "1"},
                {"version", "1.10.11"}};
    svc.modify_index = idx;
    s.nodes_index = idx;
    catalog_service_changed(s, "consul", idx);
    catalog_check_changed(s, c, idx);
    refresh_members();
}

void dev_cluster_core::set_agent_alive(dev_agent& a, bool alive) {
    if (alive) {
        register_agent_node(a);
    } else {
        set_check_status(store_, a.info.node_name, "serfHealth", "critical",
                         "Agent not live or unreachable");
    }
    refresh_members();
    after_write();
}

void dev_cluster_core::after_write() {
    if (store_.dirty == 0) {
        return;
    }
    unsigned dirty = store_.dirty;
    store_.dirty = 0;
    for (auto* w : waiters_) {
        if ((w->tables & dirty) != 0 && !w->notified) {
            w->notified = true;
            w->timer->cancel();
        }
    }
}

void dev_cluster_core::wake_paused() {
    for (auto* w : waiters_) {
        if (w->tables == 0) {
            w->notified = true;
            w->timer->cancel();
        }
    }
}

std::size_t dev_cluster_core::parked_blocking_queries() const {
    std::size_t n = 0;
    for (auto* w : waiters_) {
        n += w->tables != 0 ? 1 : 0;
    }
    return n;
}

void dev_cluster_core::tick() {
    kv_reap_tombstones(store_);
    checks_tick(store_);
    sessions_tick(store_);
    run_due_checks();
    after_write();
}

const response* dev_cluster_core::shared_answer(const std::string& key) const {
    if (answers_index_ != store_.index) {
        return nullptr;
    }
    auto it = answers_.find(key);
    return it == answers_.end() ? nullptr : &it->second;
}

void dev_cluster_core::keep_shared_answer(std::string key, const response& r) {
    if (answers_index_ != store_.index) {
        answers_.clear();
        answers_index_ = store_.index;
    }
    // Bounded: between two writes only so many distinct queries are asked.
    if (answers_.size() < 1024) {
        answers_.insert_or_assign(std::move(key), r);
    }
}

void dev_cluster_core::wipe_state() {
    store_.wipe();
    // The raft index starts over: answers kept at an index are no longer that index's answers.
    answers_.clear();
    answers_index_ = 0;
    for (auto& w : agents_) {
        if (auto a = w.lock(); a && a->info.running) {
            register_agent_node(*a);
        }
    }
    after_write();
}

void dev_cluster_core::schedule_tick() {
    if (stopping_) {
        return;
    }
    tick_timer_.expires_after(tick_interval_);
    tick_timer_.async_wait([this](boost::system::error_code ec) {
        if (ec || stopping_) {
            return;
        }
        tick();
        schedule_tick();
    });
}

void dev_cluster_core::run_due_checks() {
    for (auto& [node, id] : checks_due(store_)) {
        auto nit = store_.checks.find(node);
        if (nit == store_.checks.end()) {
            continue;
        }
        auto cit = nit->second.find(id);
        if (cit == nit->second.end()) {
            continue;
        }
        std::weak_ptr<dev_cluster_core> weak = weak_from_this();
        run_check_async(io_.get_executor(), cit->second,
                        [this, weak, node = node, id = id](std::string status, std::string output) {
                            auto self = weak.lock();
                            if (!self || stopping_) {
                                return;
                            }
                            check_run_finished(store_, node, id, status, output);
                            after_write();
                        });
    }
}

}  // namespace lakemesh::testing::detail

// ------------------------------------------------------------------------------ public API

namespace lakemesh::testing {

using detail::dev_agent;
using detail::dev_cluster_core;

namespace {
std::shared_ptr<dev_agent> start_agent(dev_cluster_core& core, dev_consul_options opts) {
    return core.run_sync([&] {
        auto a = std::make_shared<dev_agent>(core, std::move(opts));
        a->listen();
        core.add_agent(a);
        core.register_agent_node(*a);
        core.after_write();
        return a;
    });
}
}  // namespace

dev_consul::dev_consul(dev_consul_options opts) : core_(std::make_shared<dev_cluster_core>()) {
    agent_ = start_agent(*core_, std::move(opts));
}

dev_consul::dev_consul(dev_consul& peer, dev_consul_options opts) : core_(peer.core_) {
    agent_ = start_agent(*core_, std::move(opts));
}

dev_consul::~dev_consul() {
    core_->run_sync([this] {
        agent_->shutdown();
        core_->remove_agent(agent_);
        return 0;
    });
    agent_.reset();
    core_.reset();
}

std::string dev_consul::address() const {
    return agent_->opts.bind_address + ":" + std::to_string(port());
}
std::string dev_consul::url() const {
    return std::string(agent_->tls ? "https://" : "http://") + address();
}
std::uint16_t dev_consul::port() const {
    return agent_->opts.port;
}
const std::string& dev_consul::node_name() const {
    return agent_->info.node_name;
}
const std::string& dev_consul::datacenter() const {
    return agent_->opts.datacenter;
}

void dev_consul::stop() {
    core_->run_sync([this] {
        if (agent_->info.running) {
            agent_->shutdown();
            core_->set_agent_alive(*agent_, false);
        }
        return 0;
    });
}

void dev_consul::start() {
    core_->run_sync([this] {
        if (!agent_->info.running) {
            agent_->listen();
            core_->set_agent_alive(*agent_, true);
        }
        return 0;
    });
}

bool dev_consul::running() const {
    return core_->run_sync([this] { return agent_->info.running; });
}

void dev_consul::restart(bool keep_state) {
    core_->run_sync([this, keep_state] {
        agent_->shutdown();
        if (!keep_state) {
            core_->wipe_state();
        }
        agent_->listen();
        core_->register_agent_node(*agent_);
        core_->after_write();
        return 0;
    });
}

void dev_consul::set_latency(std::chrono::milliseconds delay) {
    agent_->latency_ms = delay.count();
}

void dev_consul::fail_next(std::size_t count, dev_fault kind) {
    agent_->fail_kind = static_cast<int>(kind);
    agent_->fail_count = count;
}

void dev_consul::pause() {
    core_->run_sync([this] {
        agent_->paused = true;
        return 0;
    });
}

void dev_consul::resume() {
    core_->run_sync([this] {
        agent_->paused = false;
        core_->wake_paused();
        return 0;
    });
}

void dev_consul::advance_clock(std::chrono::milliseconds d) {
    core_->run_sync([this, d] {
        core_->state().clock_offset += d;
        core_->tick();
        return 0;
    });
}

std::size_t dev_consul::blocking_queries() const {
    return core_->run_sync([this] { return core_->parked_blocking_queries(); });
}

std::uint64_t dev_consul::requests_served() const {
    return agent_->served.load();
}

std::string dev_consul::last_tls_server_name() const {
    std::lock_guard lock(agent_->sni_mutex);
    return agent_->last_sni;
}

std::uint64_t dev_consul::current_index() const {
    return core_->run_sync([this] { return core_->state().index; });
}

}  // namespace lakemesh::testing
