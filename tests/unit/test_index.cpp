#include "common/index/index.hpp"
#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

namespace fs = std::filesystem;
using common::index::Access;
using common::index::DirKey;
using common::index::Index;
using common::index::IndexedDir;
using common::index::IndexedRecord;

namespace {

common::UniqueFd open_dir(const test::TempDir& t) {
  return common::UniqueFd(::open(t.str().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
}

IndexedDir sample_dir(int n, int64_t mtime_ns) {
  IndexedDir d;
  d.state = {42, mtime_ns, static_cast<uint64_t>(2 * n)};
  d.malformed = 1;
  for (int i = 0; i < n; ++i) {
    IndexedRecord r;
    r.id = "00000000000000" + std::string(1, static_cast<char>('a' + i)) + "0";
    r.time = 1'760'000'000 + i;
    r.hostname = i % 2 ? "web01" : "db01";
    r.executable = "/usr/bin/app";
    r.signal = 11;
    r.signal_name = "SEGV";
    r.pid = 100 + i;
    r.uid = i == 0 ? std::nullopt : std::optional<int64_t>(1000);
    r.comm = "app";
    r.core_reason = "stored";
    r.core_present = true;
    r.core_size = uint64_t{1} << 40;
    r.core_file = true;
    r.signature = i < 2 ? "sig-a" : "sig-b";
    r.site = "f ← g";
    d.records.push_back(r);
  }
  IndexedRecord bad;
  bad.id = "ffffffffffffffff";
  bad.listed = false;
  d.records.push_back(bad);
  return d;
}

std::string index_file(const test::TempDir& t) {
  return t.str() + "/" + common::index::k_index_dir + "/" + common::index::k_index_file;
}

// Writes one directory's rows and closes the index again.
void fill(const test::TempDir& t, int fd) {
  auto index = Index::open(fd, t.str(), Access::write);
  REQUIRE(index);
  const DirKey key{"web01", "usr!bin!app"};
  REQUIRE(index->update({{key, sample_dir(3, 7)}}, {key}));
}

} // namespace

TEST_CASE("index: what is written is read back, dirs and records alike", "[index]") {
  test::TempDir t;
  auto fd = open_dir(t);
  fill(t, fd.get());
  auto reader = Index::open(fd.get(), t.str(), Access::read);
  REQUIRE(reader);
  CHECK(reader->rebuilt().empty());
  auto all = reader->load();
  REQUIRE(all);
  REQUIRE(all->size() == 1);
  const auto& d = all->begin()->second;
  const auto want = sample_dir(3, 7);
  CHECK(d.state == want.state);
  CHECK(d.malformed == 1);
  REQUIRE(d.records.size() == want.records.size());
  for (size_t i = 0; i < d.records.size(); ++i) {
    CHECK(d.records[i] == want.records[i]);
  }
  SECTION("a reader cannot write") {
    CHECK_FALSE(reader->update({}, {}));
  }
  SECTION("the groups view: signature, first and last seen, count, hosts") {
    auto groups = reader->groups();
    REQUIRE(groups);
    REQUIRE(groups->size() == 2);
    CHECK((*groups)[0].signature == "sig-a");
    CHECK((*groups)[0].count == 2);
    CHECK((*groups)[0].first_seen == 1'760'000'000);
    CHECK((*groups)[0].last_seen == 1'760'000'001);
    CHECK((*groups)[0].hosts == std::vector<std::string>{"db01", "web01"});
    CHECK((*groups)[1].count == 1);
  }
  SECTION("directories no longer present are dropped") {
    auto writer = Index::open(fd.get(), t.str(), Access::write);
    REQUIRE(writer);
    REQUIRE(writer->update({}, {}));
    auto none = writer->load();
    REQUIRE(none);
    CHECK(none->empty());
  }
}

TEST_CASE("index: select narrows by each field of the query, unlisted rows included", "[index]") {
  test::TempDir t;
  auto fd = open_dir(t);
  {
    auto index = Index::open(fd.get(), t.str(), Access::write);
    REQUIRE(index);
    const DirKey web{"web01", "usr!bin!app"};
    const DirKey db{"db01", "usr!bin!app"};
    REQUIRE(index->update({{web, sample_dir(3, 7)}, {db, sample_dir(2, 9)}}, {web, db}));
  }
  auto reader = Index::open(fd.get(), t.str(), Access::read);
  REQUIRE(reader);
  REQUIRE(reader->begin_read());
  auto ids_of = [&](const common::index::RecordQuery& q) {
    std::vector<std::string> out;
    auto done = reader->select(
        q, [&](const DirKey& key, IndexedRecord&& r) { out.push_back(key.first + ":" + r.id); });
    REQUIRE(done);
    std::sort(out.begin(), out.end());
    return out;
  };
  common::index::RecordQuery q;
  CHECK(q.empty());
  CHECK(ids_of(q).size() == 7); // 3 + 2 records and each directory's unlisted one
  q.hosts = {"db01"};
  CHECK(ids_of(q) == std::vector<std::string>{"db01:00000000000000a0", "db01:00000000000000b0",
                                              "db01:ffffffffffffffff"});
  q = {};
  q.hostnames = {"web01"}; // the records' own hostname, not the directory's
  CHECK(ids_of(q) == std::vector<std::string>{"db01:00000000000000b0", "web01:00000000000000b0"});
  q = {};
  q.id_prefixes = {"00000000000000c", "fff"};
  CHECK(ids_of(q) == std::vector<std::string>{"db01:ffffffffffffffff", "web01:00000000000000c0",
                                              "web01:ffffffffffffffff"});
  q = {};
  q.since = 1'760'000'001;
  q.until = 1'760'000'001;
  q.pids = {101, 102};
  CHECK(ids_of(q) == std::vector<std::string>{"db01:00000000000000b0", "web01:00000000000000b0"});
  q = {};
  q.uids = {1000};
  q.executables = {"/usr/bin/app"};
  q.signals = {11};
  q.comms = {"app"};
  q.exes = {"usr!bin!app"};
  CHECK(ids_of(q).size() == 3); // the first record of each has no uid
  q.signals = {6};
  CHECK(ids_of(q).empty());
  q = {};
  q.signature_prefixes = {"sig-a"};
  CHECK(ids_of(q).size() == 4); // the first two of each directory
  q.signature_prefixes = {"sig-"};
  CHECK(ids_of(q).size() == 5); // not the unlisted ones: they have no signature
  q.signature_prefixes = {"sig-a", "sig-b"};
  CHECK(ids_of(q).size() == 5);
  q.signature_prefixes = {"ig"};
  CHECK(ids_of(q).empty());
  SECTION("every id, with the states of one snapshot") {
    size_t ids = 0;
    REQUIRE(reader->each_id([&](const DirKey&, std::string&&) { ++ids; }));
    CHECK(ids == 7);
    auto dirs = reader->dirs();
    REQUIRE(dirs);
    REQUIRE(dirs->size() == 2);
    CHECK(dirs->at({"db01", "usr!bin!app"}).state.mtime_ns == 9);
    CHECK(dirs->at({"db01", "usr!bin!app"}).malformed == 1);
    CHECK(dirs->at({"db01", "usr!bin!app"}).records.empty());
    // A writer's commit after begin_read() is not seen until end_read().
    auto writer = Index::open(fd.get(), t.str(), Access::write);
    REQUIRE(writer);
    REQUIRE(writer->update({}, {}));
    CHECK(reader->dirs()->size() == 2);
    reader->end_read();
    CHECK(reader->dirs()->empty());
  }
}

TEST_CASE("index: one writer at a time; the second one is refused, not queued", "[index]") {
  test::TempDir t;
  auto fd = open_dir(t);
  auto first = Index::open(fd.get(), t.str(), Access::write);
  REQUIRE(first);
  auto second = Index::open(fd.get(), t.str(), Access::write);
  CHECK_FALSE(second);
  CHECK(Index::open(fd.get(), t.str(), Access::read)); // readers are never refused
}

TEST_CASE("index: a missing or damaged file is never trusted, never fatal", "[index]") {
  test::TempDir t;
  auto fd = open_dir(t);
  SECTION("missing: a reader fails, a writer creates it") {
    CHECK_FALSE(Index::open(fd.get(), t.str(), Access::read));
    auto w = Index::open(fd.get(), t.str(), Access::write);
    REQUIRE(w);
    CHECK(w->rebuilt().empty());
    CHECK(w->load()->empty());
  }
  fill(t, fd.get());
  auto damaged = [&](const std::string& why) {
    auto reader = Index::open(fd.get(), t.str(), Access::read);
    if (reader) {
      CHECK_FALSE(reader->load()); // opened, but its pages are not to be trusted
    }
    auto writer = Index::open(fd.get(), t.str(), Access::write);
    REQUIRE(writer);
    INFO(why);
    CHECK_FALSE(writer->rebuilt().empty());
    auto all = writer->load();
    REQUIRE(all);
    CHECK(all->empty()); // rebuilt from nothing: the files refill it
  };
  SECTION("garbage") {
    test::spit(index_file(t), std::string(8192, 'x'));
    damaged("garbage");
  }
  SECTION("truncated") {
    fs::resize_file(index_file(t), 4096 + 100);
    damaged("truncated");
  }
  SECTION("a symbolic link in its place") {
    test::spit(t.path() / "elsewhere", "x");
    fs::remove(index_file(t));
    fs::create_symlink(t.path() / "elsewhere", index_file(t));
    CHECK_FALSE(Index::open(fd.get(), t.str(), Access::read));
    auto w = Index::open(fd.get(), t.str(), Access::write);
    REQUIRE(w);
    CHECK_FALSE(w->rebuilt().empty());
    CHECK(test::slurp(t.path() / "elsewhere") == "x"); // the link's target is left alone
  }
  SECTION("another application's database, or another schema") {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(index_file(t).c_str(), &db) == SQLITE_OK);
    const bool other_app = GENERATE(true, false);
    const char* sql = other_app ? "PRAGMA application_id = 1" : "PRAGMA user_version = 99";
    REQUIRE(sqlite3_exec(db, sql, nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
    CHECK_FALSE(Index::open(fd.get(), t.str(), Access::read));
    auto w = Index::open(fd.get(), t.str(), Access::write);
    REQUIRE(w);
    CHECK_FALSE(w->rebuilt().empty());
  }
}

TEST_CASE("index: an older schema is migrated, its rows kept", "[index]") {
  test::TempDir t;
  auto fd = open_dir(t);
  fs::create_directory(t.path() / common::index::k_index_dir);
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(index_file(t).c_str(), &db) == SQLITE_OK);
  // Version 1 exactly as its step wrote it, with one directory in it.
  const std::string v1 =
      std::string(common::index::schema_steps().at(0)) +
      "PRAGMA application_id = " + std::to_string(common::index::k_application_id) +
      "; PRAGMA user_version = 1;"
      "INSERT INTO dirs VALUES ('h', 'e', 1, 2, 3, 0);";
  REQUIRE(sqlite3_exec(db, v1.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(db);
  // A reader does not migrate: it leaves that to the writer.
  CHECK_FALSE(Index::open(fd.get(), t.str(), Access::read));
  {
    auto w = Index::open(fd.get(), t.str(), Access::write);
    REQUIRE(w);
    CHECK(w->rebuilt().empty());
    auto states = w->states();
    REQUIRE(states);
    REQUIRE(states->size() == 1);
    CHECK(states->begin()->second == common::index::DirState{1, 2, 3});
    CHECK(w->groups()); // version 2's view exists
  }
  auto r = Index::open(fd.get(), t.str(), Access::read);
  REQUIRE(r);
  CHECK(r->load());
}

TEST_CASE("index: a directory's state is its inode, mtime and entry count", "[index]") {
  test::TempDir t;
  auto fd = open_dir(t);
  auto before = common::index::dir_state(fd.get());
  REQUIRE(before);
  CHECK(before->entries == 0);
  test::spit(t.path() / ".hidden", "x");
  test::spit(t.path() / "a.json", "x");
  auto after = common::index::dir_state(fd.get());
  REQUIRE(after);
  CHECK(after->entries == 2);
  CHECK(after->ino == before->ino);
}

TEST_CASE("index: a version 2 file is migrated, its rows kept without a form", "[index]") {
  test::TempDir t;
  auto fd = open_dir(t);
  fs::create_directory(t.path() / common::index::k_index_dir);
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(index_file(t).c_str(), &db) == SQLITE_OK);
  const std::string v2 =
      std::string(common::index::schema_steps().at(0)) + common::index::schema_steps().at(1) +
      "PRAGMA application_id = " + std::to_string(common::index::k_application_id) +
      "; PRAGMA user_version = 2;"
      "INSERT INTO dirs VALUES ('h', 'e', 1, 2, 3, 0);"
      "INSERT INTO records VALUES ('h', 'e', '00000000000000a0', 1, 5, 'h', '/e', 0, 11, 'SEGV',"
      " 1, NULL, 'e', 'stored', 1, 9, 0, 1, '', '');";
  REQUIRE(sqlite3_exec(db, v2.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(db);
  auto w = Index::open(fd.get(), t.str(), Access::write);
  REQUIRE(w);
  CHECK(w->rebuilt().empty());
  auto d = w->dir({"h", "e"});
  REQUIRE(d);
  REQUIRE(*d);
  REQUIRE((*d)->records.size() == 1);
  CHECK((*d)->records[0].signal_name == "SEGV");
  CHECK_FALSE((*d)->records[0].form); // an older writer's row: the exporter reads the file
  CHECK((*d)->records[0].record_bytes == 0);
}

TEST_CASE("index: a directory patched record by record, read back and forgotten", "[index]") {
  test::TempDir t;
  auto fd = open_dir(t);
  auto w = Index::open(fd.get(), t.str(), Access::write);
  REQUIRE(w);
  const DirKey key{"web01", "usr!bin!app"};
  auto none = w->dir(key);
  REQUIRE(none);
  CHECK_FALSE(*none);
  IndexedDir d = sample_dir(3, 7);
  for (auto& r : d.records) {
    r.form = r.listed ? common::index::Form::parsed : common::index::Form::link;
    r.record_bytes = 4096;
    r.core_bytes = r.listed ? 8192 : 0;
  }
  REQUIRE(w->patch(key, d.state, d.records, {}));
  auto got = w->dir(key);
  REQUIRE(got);
  REQUIRE(*got);
  CHECK((*got)->state == d.state);
  CHECK((*got)->malformed == 1); // the link: recounted from the rows
  REQUIRE((*got)->records.size() == d.records.size());
  for (size_t i = 0; i < d.records.size(); ++i) {
    CHECK((*got)->records[i] == d.records[i]);
  }
  SECTION("a record replaced, one removed, the state moved on") {
    IndexedRecord changed = d.records[0];
    changed.core_removed = true;
    changed.core_file = false;
    changed.core_bytes = 0;
    changed.form = common::index::Form::by_place;
    const common::index::DirState later{42, 9, 5};
    REQUIRE(w->patch(key, later, {changed}, {d.records[1].id, "no-such-id"}));
    auto after = w->dir(key);
    REQUIRE(after);
    REQUIRE(*after);
    CHECK((*after)->state == later);
    CHECK((*after)->malformed == 2);
    REQUIRE((*after)->records.size() == d.records.size() - 1);
    CHECK((*after)->records[0] == changed);
    // Other readers see the same rows through load().
    auto all = w->load();
    REQUIRE(all);
    CHECK(all->at(key).records == (*after)->records);
  }
  SECTION("forgotten: no row, no records") {
    REQUIRE(w->forget(key));
    auto gone = w->dir(key);
    REQUIRE(gone);
    CHECK_FALSE(*gone);
    CHECK(w->load()->empty());
  }
  SECTION("a reader can neither patch nor forget") {
    auto r = Index::open(fd.get(), t.str(), Access::read);
    REQUIRE(r);
    CHECK_FALSE(r->patch(key, d.state, {}, {}));
    CHECK_FALSE(r->forget(key));
  }
}

TEST_CASE("index: verify() notices another process's schema or damaged pages", "[index]") {
  test::TempDir t;
  auto fd = open_dir(t);
  auto w = Index::open(fd.get(), t.str(), Access::write);
  REQUIRE(w);
  REQUIRE(w->update({{{"h", "e"}, sample_dir(3, 7)}}, {{"h", "e"}}));
  CHECK(w->verify());
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(index_file(t).c_str(), &db) == SQLITE_OK);
  REQUIRE(sqlite3_exec(db, "PRAGMA user_version = 99", nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(db);
  CHECK_FALSE(w->verify());
}
