// The deterministic body of the fake upstream's `big` stream mode: byte i of the body with seed
// `seed` is byte (i % 8) (little-endian) of SplitMix64(seed + (i / 8 + 1) * golden ratio). Any
// range can be produced without the bytes before it, so the fake sends a gigabyte without
// holding it and a test can check any part of what it received.
//
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace tollgate::fake {

inline uint64_t PatternWord(uint64_t seed, uint64_t index) {
  uint64_t z = seed + (index + 1) * 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// Appends bytes [offset, offset + length) of the pattern to `out`.
inline void AppendPattern(uint64_t seed, uint64_t offset, size_t length, std::string* out) {
  size_t start = out->size();
  out->resize(start + length);
  char* p = &(*out)[start];
  uint64_t i = offset;
  uint64_t end = offset + length;
  while (i < end) {
    uint64_t word = PatternWord(seed, i / 8);
    for (unsigned b = static_cast<unsigned>(i % 8); b < 8 && i < end; ++b, ++i) {
      *p++ = static_cast<char>((word >> (8 * b)) & 0xff);
    }
  }
}

}  // namespace tollgate::fake
