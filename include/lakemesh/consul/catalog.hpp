// Typed catalog endpoints of the Consul client, reached through client::catalog().
#pragma once

#include <lakemesh/consul/detail/async.hpp>
#include <lakemesh/consul/types.hpp>

#include <boost/asio/any_io_executor.hpp>

#include <memory>
#include <string>
#include <vector>

namespace lakemesh::consul {

/// The catalog endpoints. A cheap handle that shares the client's connections; valid as long as
/// the operations it starts (it keeps the client's state alive). Thread safety, cancellation
/// and errors as for client.
class catalog_api {
  public:
    using executor_type = boost::asio::any_io_executor;
    explicit catalog_api(std::shared_ptr<detail::client_impl> impl) : impl_(std::move(impl)) {}

  private:
    std::shared_ptr<detail::client_impl> impl_;
};

}  // namespace lakemesh::consul
