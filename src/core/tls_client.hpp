// TLS client pieces shared by the Consul transport and the mesh's connection pool: the OpenSSL
// context built from a tls_config, the server-name setup of one connection, and the telling of
// a certificate verification failure from other handshake errors.
#pragma once

#include <lakemesh/consul/client_config.hpp>
#include <lakemesh/error.hpp>

#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/ssl/stream.hpp>

#include <memory>
#include <string>

namespace lakemesh::detail {

/// A TLS 1.2+ client context: the CA file or the system's default paths, the CA directory, the
/// client certificate and key, peer verification unless `verify` is off. Never null. A file that
/// does not load leaves `error` saying which (the caller refuses to connect with it then).
std::unique_ptr<boost::asio::ssl::context> make_tls_client_context(const consul::tls_config& cfg,
                                                                   std::string& error);

/// Whether a handshake failed on the peer's certificate (rather than on the connection).
bool is_tls_verify_failure(const error_code& ec) noexcept;

/// `name` is not an IP literal.
bool sni_allowed(const std::string& name) noexcept;
/// SSL_set_tlsext_host_name; false when OpenSSL refuses the name.
bool set_sni(SSL* ssl, const std::string& name) noexcept;

/// Sets a connection's server name before its handshake: sent as SNI when it is a DNS name (RFC
/// 6066 allows no IP literal there), and verified against the certificate when `verify`.
/// Errors: transport_errc::tls_handshake_failed with the reason in `diag`.
template <class Stream>
error_code set_tls_server_name(boost::asio::ssl::stream<Stream>& s, const std::string& name,
                               bool verify, diagnostics& diag) {
    if (!sni_allowed(name) || set_sni(s.native_handle(), name)) {
        if (verify) {
            s.set_verify_callback(boost::asio::ssl::host_name_verification(name));
        }
        return {};
    }
    diag.set_client_message("cannot set TLS server name '" + name + "'");
    return transport_errc::tls_handshake_failed;
}

}  // namespace lakemesh::detail
