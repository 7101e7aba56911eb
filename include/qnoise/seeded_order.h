#pragma once
// Seeded orders that are the same with every standard library (std::shuffle and
// std::uniform_int_distribution differ between them): what makes an epoch's batches a function of
// (seed, epoch) only, so resumed runs see the same data.
#include <cstdint>
#include <numeric>
#include <random>
#include <utility>
#include <vector>

namespace qnoise {

// splitmix64: spreads (seed, stream) over the whole state so nearby seeds give unrelated streams.
inline uint64_t mix_seed(uint64_t seed, uint64_t stream) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (stream + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Modulo bias is below 2^-40 for ranges up to 2^24.
inline int64_t uniform_below(std::mt19937_64& engine, int64_t bound) {
  return static_cast<int64_t>(engine() % static_cast<uint64_t>(bound));
}

// Fisher-Yates over 0..n-1.
inline std::vector<int64_t> seeded_permutation(int64_t n, std::mt19937_64& engine) {
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), int64_t{0});
  for (int64_t i = n - 1; i > 0; --i) std::swap(order[i], order[uniform_below(engine, i + 1)]);
  return order;
}

// The permutation of 0..n-1 for epoch `epoch` of a run seeded with `seed`.
inline std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch) {
  std::mt19937_64 engine(mix_seed(seed, static_cast<uint64_t>(epoch)));
  return seeded_permutation(n, engine);
}

}  // namespace qnoise
