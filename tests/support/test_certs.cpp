#include "test_certs.hpp"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <memory>

#include <unistd.h>

namespace lakemesh::test {
namespace {

bool is_ip(const std::string& host) {
    return host.find_first_not_of("0123456789.") == std::string::npos ||
           host.find(':') != std::string::npos;
}

bool add_extension(X509* cert, int nid, const std::string& value) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
    if (ext == nullptr) {
        return false;
    }
    bool ok = X509_add_ext(cert, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    return ok;
}

bool write_pem(const std::string& cert_path, const std::string& key_path, X509* cert,
               EVP_PKEY* key) {
    std::unique_ptr<FILE, int (*)(FILE*)> c(std::fopen(cert_path.c_str(), "w"), &std::fclose);
    std::unique_ptr<FILE, int (*)(FILE*)> k(std::fopen(key_path.c_str(), "w"), &std::fclose);
    return c && k && PEM_write_X509(c.get(), cert) == 1 &&
           PEM_write_PrivateKey(k.get(), key, nullptr, nullptr, 0, nullptr, nullptr) == 1;
}

}  // namespace

self_signed_cert::self_signed_cert(const std::string& host) {
    static std::atomic<int> counter{0};
    const auto dir = std::filesystem::temp_directory_path();
    const std::string stem =
        "lakemesh-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
    cert_ = (dir / (stem + ".crt")).string();
    key_ = (dir / (stem + ".key")).string();

    EVP_PKEY* key = EVP_EC_gen("P-256");
    X509* cert = X509_new();
    ok_ = key != nullptr && cert != nullptr;
    if (ok_) {
        X509_set_version(cert, 2);
        ASN1_INTEGER_set(X509_get_serialNumber(cert), counter.load() + 1);
        X509_gmtime_adj(X509_getm_notBefore(cert), -60);
        X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
        X509_set_pubkey(cert, key);
        X509_NAME* subject = X509_get_subject_name(cert);
        X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC,
                                   reinterpret_cast<const unsigned char*>(host.c_str()), -1, -1, 0);
        X509_set_issuer_name(cert, subject);
        // Host-name verification of an IP address looks only at subjectAltName.
        const std::string san = (is_ip(host) ? "IP:" : "DNS:") + host + ",DNS:localhost";
        ok_ = add_extension(cert, NID_subject_alt_name, san) &&
              add_extension(cert, NID_basic_constraints, "critical,CA:TRUE") &&
              X509_sign(cert, key, EVP_sha256()) > 0 && write_pem(cert_, key_, cert, key);
    }
    X509_free(cert);
    EVP_PKEY_free(key);
}

self_signed_cert::~self_signed_cert() {
    std::error_code ec;
    std::filesystem::remove(cert_, ec);
    std::filesystem::remove(key_, ec);
}

}  // namespace lakemesh::test
