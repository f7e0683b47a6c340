// The dpkg index file: build, serialize, validate, store.
#include "common/packages/dpkg_index.hpp"

#include "common/base/atomic_file.hpp"
#include "common/base/io.hpp"
#include "common/base/sha256.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <span>

namespace common {

namespace {

// "PCDPKGX1" and a byte-order mark: the index is a host's own cache, never moved between hosts,
// but a store copied to another architecture must not be misread.
constexpr char k_magic[8] = {'P', 'C', 'D', 'P', 'K', 'G', 'X', '1'};
constexpr uint32_t k_byte_order = 0x01020304;
constexpr const char* k_suffix = ".idx";
// An index file larger than this is not read (entries and packages at their bounds).
constexpr size_t k_max_file = k_max_dpkg_index_entries * 12 + (size_t{16} << 20);
// Indexes beyond this many names in the directory are not looked at when evicting.
constexpr size_t k_max_dir_names = 256;

uint64_t mix(uint64_t h) {
  // The finalizer of MurmurHash3: every input bit reaches every output bit.
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

template <typename T>
void put(std::string& out, T v) {
  char b[sizeof v];
  std::memcpy(b, &v, sizeof v);
  out.append(b, sizeof v);
}

void put_field(std::string& out, std::string_view s) {
  s = s.substr(0, k_max_dpkg_index_field);
  put(out, static_cast<uint16_t>(s.size()));
  out.append(s);
}

// A bounds-checked cursor over the file's bytes: every read says whether it fit.
struct Reader {
  std::string_view in;
  size_t at = 0;

  template <typename T>
  bool get(T& v) {
    if (in.size() - at < sizeof v) {
      return false;
    }
    std::memcpy(&v, in.data() + at, sizeof v);
    at += sizeof v;
    return true;
  }
  bool bytes(size_t n, std::string_view& v) {
    if (in.size() - at < n) {
      return false;
    }
    v = in.substr(at, n);
    at += n;
    return true;
  }
  bool field(std::string& s) {
    uint16_t n = 0;
    std::string_view v;
    if (!get(n) || n > k_max_dpkg_index_field || !bytes(n, v)) {
      return false;
    }
    s = std::string(v);
    return true;
  }
};

std::string file_name(std::string_view state) {
  return sha256_hex(state, 32) + k_suffix;
}

Expected<DpkgIndex> damaged(const std::string& why) {
  return fail_errno("dpkg index damaged: " + why, EBADMSG);
}

} // namespace

uint64_t index_hash(std::string_view data) {
  // Four independent lanes of 8 bytes, alignment-safe: the checksum of a 2 MiB index costs a
  // fraction of a millisecond, where SHA-256 would cost ten.
  constexpr uint64_t k_mul = 0x9fb21c651e98df25ULL;
  uint64_t lane[4] = {0x9e3779b97f4a7c15ULL ^ data.size(), 0xc2b2ae3d27d4eb4fULL,
                      0x165667b19e3779f9ULL, 0x27d4eb2f165667c5ULL};
  size_t i = 0;
  for (; i + 32 <= data.size(); i += 32) {
    for (size_t l = 0; l < 4; ++l) {
      uint64_t w = 0;
      std::memcpy(&w, data.data() + i + 8 * l, 8);
      lane[l] = (lane[l] ^ w) * k_mul;
      lane[l] ^= lane[l] >> 29;
    }
  }
  uint64_t h = mix(lane[0]) ^ mix(lane[1] + 1) ^ mix(lane[2] + 2) ^ mix(lane[3] + 3);
  for (; i + 8 <= data.size(); i += 8) {
    uint64_t w = 0;
    std::memcpy(&w, data.data() + i, 8);
    h = mix(h ^ w);
  }
  uint64_t tail = 0;
  if (i < data.size()) {
    std::memcpy(&tail, data.data() + i, data.size() - i);
  }
  return mix(h ^ mix(tail ^ (uint64_t{data.size() - i} << 59)));
}

uint32_t DpkgIndex::add_package(IndexedPackage p) {
  m_packages.push_back(std::move(p));
  return static_cast<uint32_t>(m_packages.size() - 1);
}

bool DpkgIndex::add_path(std::string_view key, uint32_t package) {
  if (m_pending.size() >= k_max_dpkg_index_entries) {
    return false;
  }
  m_pending.emplace_back(index_hash(key), package);
  return true;
}

void DpkgIndex::finish() {
  // Bucketed by the hashes' top 16 bits, then each bucket (a few entries) sorted: a fraction of
  // the time of one comparison sort of the whole table, which a root's first crash pays.
  constexpr size_t k_buckets = size_t{1} << 16;
  std::vector<uint32_t> start(k_buckets + 1, 0);
  for (const auto& e : m_pending) {
    ++start[(e.first >> 48) + 1];
  }
  for (size_t b = 0; b < k_buckets; ++b) {
    start[b + 1] += start[b];
  }
  std::vector<std::pair<uint64_t, uint32_t>> sorted(m_pending.size());
  std::vector<uint32_t> next(start.begin(), start.end() - 1);
  for (const auto& e : m_pending) {
    sorted[next[e.first >> 48]++] = e;
  }
  m_pending.clear();
  m_pending.shrink_to_fit();
  for (size_t b = 0; b < k_buckets; ++b) {
    std::sort(sorted.begin() + start[b], sorted.begin() + start[b + 1]);
  }
  // Packages are numbered in the order their lists were read: the lowest number per path is the
  // first list naming it, as a scan would have found it.
  m_hashes.reserve(sorted.size());
  m_owners.reserve(sorted.size());
  for (const auto& [hash, package] : sorted) {
    if (m_hashes.empty() || m_hashes.back() != hash) {
      m_hashes.push_back(hash);
      m_owners.push_back(package);
    }
  }
}

const IndexedPackage* DpkgIndex::find(std::string_view key) const {
  const uint64_t h = index_hash(key);
  const auto it = std::lower_bound(m_hashes.begin(), m_hashes.end(), h);
  if (it == m_hashes.end() || *it != h) {
    return nullptr;
  }
  return &m_packages[m_owners[static_cast<size_t>(it - m_hashes.begin())]];
}

std::string DpkgIndex::serialize(std::string_view state) const {
  std::string out(k_magic, sizeof k_magic);
  put(out, uint64_t{0}); // the checksum, below
  put(out, k_byte_order);
  put(out, static_cast<uint32_t>(state.size()));
  put(out, static_cast<uint32_t>(m_packages.size()));
  put(out, static_cast<uint32_t>(m_hashes.size()));
  out.append(state);
  for (const auto& p : m_packages) {
    put_field(out, p.name);
    put_field(out, p.version);
    put_field(out, p.arch);
  }
  for (const uint64_t h : m_hashes) {
    put(out, h);
  }
  for (const uint32_t o : m_owners) {
    put(out, o);
  }
  const uint64_t sum = index_hash(std::string_view(out).substr(16));
  std::memcpy(out.data() + 8, &sum, sizeof sum);
  return out;
}

Expected<DpkgIndex> DpkgIndex::parse(std::string_view bytes, std::string_view state) {
  Reader r{bytes};
  std::string_view magic;
  uint64_t sum = 0;
  uint32_t order = 0, state_len = 0, packages = 0, entries = 0;
  if (!r.bytes(sizeof k_magic, magic) || magic != std::string_view(k_magic, sizeof k_magic)) {
    return damaged("not an index");
  }
  if (!r.get(sum) || !r.get(order) || !r.get(state_len) || !r.get(packages) || !r.get(entries)) {
    return damaged("short header");
  }
  if (order != k_byte_order) {
    return damaged("another byte order");
  }
  if (sum != index_hash(bytes.substr(16))) {
    return damaged("checksum mismatch");
  }
  std::string_view stored_state;
  if (!r.bytes(state_len, stored_state)) {
    return damaged("short state");
  }
  if (stored_state != state) {
    // A file named after another state (a hash collision of its name, or a copy): stale.
    return fail_errno("dpkg index is stale", ESTALE);
  }
  if (entries > k_max_dpkg_index_entries || packages > k_max_dpkg_index_entries) {
    return damaged("too many entries");
  }
  DpkgIndex index;
  index.m_packages.resize(packages);
  for (auto& p : index.m_packages) {
    if (!r.field(p.name) || !r.field(p.version) || !r.field(p.arch)) {
      return damaged("short package table");
    }
  }
  if ((bytes.size() - r.at) != size_t{entries} * 12) {
    return damaged("entry table of the wrong size");
  }
  index.m_hashes.resize(entries);
  index.m_owners.resize(entries);
  // The sizes were checked above; memcpy, as the tables need not be aligned in the buffer.
  if (entries > 0) {
    std::memcpy(index.m_hashes.data(), bytes.data() + r.at, size_t{entries} * 8);
    std::memcpy(index.m_owners.data(), bytes.data() + r.at + size_t{entries} * 8,
                size_t{entries} * 4);
  }
  for (const uint32_t o : index.m_owners) {
    if (o >= packages) {
      return damaged("entry names no package");
    }
  }
  // find() relies on the order: a binary search over an unsorted table would miss entries.
  for (size_t i = 1; i < index.m_hashes.size(); ++i) {
    if (index.m_hashes[i - 1] >= index.m_hashes[i]) {
      return damaged("entries out of order");
    }
  }
  return index;
}

Expected<UniqueFd> open_dpkg_index_dir(int store_fd) {
  auto dir = open_or_make_dir(store_fd, k_dpkg_index_dir, 0700, FollowLinks::no);
  if (!dir) {
    return dir;
  }
  struct stat st {};
  if (::fstat(dir->get(), &st) != 0) {
    return fail_errno("Failed to stat '" + std::string(k_dpkg_index_dir) + "'", errno);
  }
  if (st.st_uid != ::geteuid() || (st.st_mode & 022) != 0) {
    return fail_errno("'" + std::string(k_dpkg_index_dir) +
                          "' is not the handler's own directory, not using it",
                      EPERM);
  }
  return dir;
}

Expected<DpkgIndex> load_dpkg_index(int dir, std::string_view state) {
  const std::string name = file_name(state);
  auto fd = open_at(dir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  if (!fd) {
    return std::unexpected(fd.error());
  }
  struct stat st {};
  if (::fstat(fd->get(), &st) != 0) {
    return fail_errno("Failed to stat '" + name + "'", errno);
  }
  // Only a file the handler wrote itself: no one else may plant an index in its directory.
  if (!S_ISREG(st.st_mode) || st.st_uid != ::geteuid() || (st.st_mode & 022) != 0 ||
      static_cast<uint64_t>(st.st_size) > k_max_file) {
    return fail_errno("'" + name + "' is not an index the handler wrote", EPERM);
  }
  // Written once and renamed into place, an index never changes size under a reader: one read.
  std::string bytes(static_cast<size_t>(st.st_size), '\0');
  if (auto r = read_exact_at(fd->get(), std::as_writable_bytes(std::span(bytes)), 0); !r) {
    return fail_errno("Failed to read '" + name + "': " + r.error().message, EIO);
  }
  auto index = DpkgIndex::parse(bytes, state);
  if (index) {
    (void)::futimens(fd->get(), nullptr); // used now: the last to be evicted
  }
  return index;
}

Expected<void> save_dpkg_index(int dir, std::string_view state, const DpkgIndex& index) {
  const std::string name = file_name(state);
  if (auto w = write_file_atomic(dir, name, index.serialize(state), 0600, Replace::yes); !w) {
    return w;
  }
  struct Entry {
    std::string name;
    struct timespec used;
  };
  std::vector<Entry> found;
  (void)list_dir(dir, [&](std::string_view n) {
    // The one just written stays whatever the clock's granularity says of its time.
    if (n.ends_with(k_suffix) && n != name && found.size() < k_max_dir_names) {
      found.push_back({std::string(n), {}});
    }
  });
  if (found.size() < k_max_dpkg_indexes) {
    return {};
  }
  for (auto& e : found) {
    struct stat st {};
    if (::fstatat(dir, e.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
      e.used = st.st_mtim;
    }
  }
  std::sort(found.begin(), found.end(), [](const Entry& a, const Entry& b) {
    return a.used.tv_sec != b.used.tv_sec ? a.used.tv_sec > b.used.tv_sec
                                          : a.used.tv_nsec > b.used.tv_nsec;
  });
  for (size_t i = k_max_dpkg_indexes - 1; i < found.size(); ++i) {
    (void)::unlinkat(dir, found[i].name.c_str(), 0);
  }
  return {};
}

} // namespace common
