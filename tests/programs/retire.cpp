// pc_retire STORE RELPATH...: retires records through common::retire_records(), the way
// `corectl vacuum` does, so exporter tests exercise the real ledger code without depending on
// the CLI's retention policy. RELPATH is <host>/<exe>/<id>.json relative to STORE.
#include "common/base/io.hpp"
#include "common/store/ledger.hpp"
#include "common/store/record.hpp"

#include <fcntl.h>

#include <cstdio>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fputs("usage: pc_retire STORE RELPATH...\n", stderr);
    return 2;
  }
  auto store = common::Store::open(argv[1]);
  if (!store) {
    std::fprintf(stderr, "%s\n", store.error().message.c_str());
    return 1;
  }
  std::vector<common::RetireItem> items;
  for (int i = 2; i < argc; ++i) {
    const std::string rel = argv[i];
    const auto s1 = rel.find('/');
    const auto s2 = rel.find('/', s1 + 1);
    auto text = common::read_file(store->fd(), rel);
    auto record = text ? common::parse_record(*text) : common::Expected<common::Record>();
    if (!text || !record || s1 == std::string::npos || s2 == std::string::npos) {
      std::fprintf(stderr, "cannot read record '%s'\n", rel.c_str());
      return 1;
    }
    items.push_back({rel.substr(0, s1), rel.substr(s1 + 1, s2 - s1 - 1), record->id,
                     common::series_of(*record), common::parse_time(record->time).value_or(0)});
  }
  auto removed = common::retire_records(*store, items);
  if (!removed) {
    std::fprintf(stderr, "%s\n", removed.error().message.c_str());
    return 1;
  }
  std::printf("%zu\n", *removed);
  return 0;
}
