#include "core/tls_client.hpp"

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/error.hpp>

#include <openssl/err.h>
#include <openssl/ssl.h>

namespace lakemesh::detail {

namespace asio = boost::asio;

std::unique_ptr<asio::ssl::context> make_tls_client_context(const consul::tls_config& cfg,
                                                            std::string& error) {
    auto ctx = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_client);
    ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                     asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                     asio::ssl::context::no_tlsv1_1);
    error.clear();
    error_code ec;
    if (!cfg.ca_file.empty()) {
        ctx->load_verify_file(cfg.ca_file, ec);
    } else if (cfg.ca_path.empty()) {
        ctx->set_default_verify_paths(ec);
    }
    if (ec) {
        error = cfg.ca_file.empty() ? "cannot load the system's default CA paths: " + ec.message()
                                    : "cannot load CA file '" + cfg.ca_file + "': " + ec.message();
    }
    if (!cfg.ca_path.empty()) {
        ctx->add_verify_path(cfg.ca_path, ec);
        if (ec) {
            error = "cannot use CA path '" + cfg.ca_path + "': " + ec.message();
        }
    }
    if (!cfg.cert_file.empty()) {
        ctx->use_certificate_chain_file(cfg.cert_file, ec);
        if (!ec) {
            ctx->use_private_key_file(cfg.key_file, asio::ssl::context::pem, ec);
        }
        if (ec) {
            error = "cannot load client certificate '" + cfg.cert_file + "' or key '" +
                    cfg.key_file + "': " + ec.message();
        }
    }
    ctx->set_verify_mode(cfg.verify ? asio::ssl::verify_peer : asio::ssl::verify_none);
    return ctx;
}

bool is_tls_verify_failure(const error_code& ec) noexcept {
    return ec.category() == asio::error::get_ssl_category() &&
           ERR_GET_REASON(static_cast<unsigned long>(ec.value())) ==
               SSL_R_CERTIFICATE_VERIFY_FAILED;
}

bool sni_allowed(const std::string& name) noexcept {
    error_code not_ip;
    asio::ip::make_address(name, not_ip);
    return static_cast<bool>(not_ip);
}

bool set_sni(SSL* ssl, const std::string& name) noexcept {
    return SSL_set_tlsext_host_name(ssl, name.c_str()) == 1;
}

}  // namespace lakemesh::detail
