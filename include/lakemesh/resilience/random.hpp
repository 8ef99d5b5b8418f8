// The seedable pseudo-random source used for jitter and load balancing, so that tests are
// deterministic and benchmarks do not pay for std::mt19937_64 or std::uniform_int_distribution.
#pragma once

#include <cstdint>
#include <limits>

namespace lakemesh::resilience {

/// xoshiro256** seeded through splitmix64. Not cryptographic; statistically good enough for
/// jitter and power-of-two-choices. Satisfies std::uniform_random_bit_generator.
/// Thread safety: none; give each policy or balancer its own instance.
class random_source {
  public:
    using result_type = std::uint64_t;

    explicit random_source(std::uint64_t seed = 0x5eed'1a4e'3e54'0001ULL) noexcept { reseed(seed); }

    void reseed(std::uint64_t seed) noexcept {
        for (auto& word : state_) {
            seed += 0x9e37'79b9'7f4a'7c15ULL;
            std::uint64_t z = seed;
            z = (z ^ (z >> 30)) * 0xbf58'476d'1ce4'e5b9ULL;
            z = (z ^ (z >> 27)) * 0x94d0'49bb'1331'11ebULL;
            word = z ^ (z >> 31);
        }
    }

    static constexpr result_type min() noexcept { return 0; }
    static constexpr result_type max() noexcept { return std::numeric_limits<result_type>::max(); }

    result_type operator()() noexcept {
        const std::uint64_t result = rotl(state_[1] * 5, 7) * 9;
        const std::uint64_t t = state_[1] << 17;
        state_[2] ^= state_[0];
        state_[3] ^= state_[1];
        state_[1] ^= state_[2];
        state_[0] ^= state_[3];
        state_[2] ^= t;
        state_[3] = rotl(state_[3], 45);
        return result;
    }

    /// Uniform integer in [0, bound); returns 0 when bound is 0. Multiply-shift reduction: the
    /// bias is below bound / 2^64, irrelevant for endpoint counts and jitter ranges.
    std::uint64_t below(std::uint64_t bound) noexcept {
        __extension__ using wide = unsigned __int128;
        return static_cast<std::uint64_t>((static_cast<wide>((*this)()) * bound) >> 64);
    }

    /// Uniform double in [0, 1).
    double unit() noexcept { return static_cast<double>((*this)() >> 11) * 0x1.0p-53; }

  private:
    static constexpr std::uint64_t rotl(std::uint64_t x, int k) noexcept {
        return (x << k) | (x >> (64 - k));
    }

    std::uint64_t state_[4]{};
};

}  // namespace lakemesh::resilience
