// Typed reads of <elf.h> structures (Elf64_Ehdr, Elf64_Phdr, Elf64_Shdr, Elf64_Nhdr, Elf64_Sym …)
// out of untrusted bytes: bounds-checked and alignment-safe (memcpy), so field names replace
// hand-written offsets.
#pragma once

#include <elf.h>

#include <bit>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <type_traits>

namespace common {

// The files we read are ELFCLASS64 little-endian (the parsers check EI_CLASS and EI_DATA), and
// so are the machines we run on: a structure copied from the bytes needs no byte swapping.
static_assert(std::endian::native == std::endian::little, "ELF structures are read in place");

// The T at `offset` of `data`, or nullopt when it does not fit.
template <typename T>
std::optional<T> read_struct(std::span<const std::byte> data, uint64_t offset) {
  static_assert(std::is_trivially_copyable_v<T>);
  if (offset > data.size() || data.size() - offset < sizeof(T)) {
    return std::nullopt;
  }
  T v;
  std::memcpy(&v, data.data() + offset, sizeof(T));
  return v;
}

// Whether `ident` (e_ident) starts with the ELF magic and says ELFCLASS64, little-endian.
inline bool is_elf64_le(const unsigned char (&ident)[EI_NIDENT]) {
  return std::memcmp(ident, ELFMAG, SELFMAG) == 0 && ident[EI_CLASS] == ELFCLASS64 &&
         ident[EI_DATA] == ELFDATA2LSB;
}

} // namespace common
