// What every fuzz target checks besides "no crash": a failed check aborts, which libFuzzer
// reports as a crash and saves the input under the run's artifacts.
#pragma once

#include <lakemesh/error.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

// A macro for __FILE__/__LINE__: clang 14 has no std::source_location with libstdc++ 12.
#define LAKEMESH_FUZZ_CHECK(cond) ::lakemesh::fuzz::check((cond), #cond, __FILE__, __LINE__)

namespace lakemesh::fuzz {

inline void check(bool ok, const char* what, const char* file, int line) {
    if (!ok) {
        std::fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", file, line, what);
        std::abort();
    }
}

inline std::string as_string(const std::uint8_t* data, std::size_t size) {
    return std::string(reinterpret_cast<const char*>(data), size);
}

/// Runs a decoder; an exception escaping it breaks the library's no-throw contract, so it is
/// reported with its message rather than left to std::terminate.
template <class Decode>
auto without_throwing(Decode&& decode) {
    try {
        return decode();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "fuzz invariant failed: decoder threw: %s\n", e.what());
        std::abort();
    } catch (...) {
        std::fprintf(stderr, "fuzz invariant failed: decoder threw a non-std exception\n");
        std::abort();
    }
}

/// The contract of every `error_code decode_xxx(body, out, diag)`: an error is one of
/// decode_errc and diag says what was wrong, so a user can act on it.
inline void check_decode_error(const error_code& ec, const diagnostics& diag) {
    if (ec) {
        LAKEMESH_FUZZ_CHECK(ec.category() == error_code(decode_errc::malformed_json).category());
        LAKEMESH_FUZZ_CHECK(!diag.client_message().empty());
    }
}

}  // namespace lakemesh::fuzz
