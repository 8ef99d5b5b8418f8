// Test support: throw-away certificates for TLS tests (OpenSSL), written to temporary files.
#pragma once

#include <string>

namespace lakemesh::test {

/// A self-signed certificate and its key in PEM files, removed on destruction.
/// Subject CN and subjectAltName cover `host` (an IP address or a DNS name) and "localhost".
class self_signed_cert {
  public:
    explicit self_signed_cert(const std::string& host = "127.0.0.1");
    ~self_signed_cert();
    self_signed_cert(const self_signed_cert&) = delete;
    self_signed_cert& operator=(const self_signed_cert&) = delete;

    /// False when OpenSSL failed to make or write the certificate.
    bool ok() const { return ok_; }
    const std::string& cert_file() const { return cert_; }
    const std::string& key_file() const { return key_; }

  private:
    std::string cert_;
    std::string key_;
    bool ok_ = false;
};

}  // namespace lakemesh::test
