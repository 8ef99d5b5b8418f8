// Plumbing shared by the client's endpoint groups: the type-erased handler that crosses into
// compiled code and the one async_initiate call every operation makes. Not part of the API.
#pragma once

#include <lakemesh/consul/types.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>

#include <utility>

namespace lakemesh::consul::detail {

class client_impl;

template <class T>
using handler_t = boost::asio::any_completion_handler<void(error_code, result<T>)>;

/// Starts an operation completing with (error_code, result<T>); `init` receives the erased handler.
template <class T, class Init, class Token>
auto initiate(Init init, Token& token) {
    return boost::asio::async_initiate<Token, void(error_code, result<T>)>(std::move(init), token);
}

}  // namespace lakemesh::consul::detail
