// The summary reader against the full parser: for every text, read_record_summary() must accept
// exactly what nlohmann accepts (as an object) and find the same value, of the same JSON type,
// at every path it reports.
#include "common/crash/crash_json.hpp"
#include "common/store/record.hpp"
#include "common/store/record_summary.hpp"
#include "common/store/record_summary_view.hpp"
#include "tests/unit/record_summary_oracle.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <utility>
#include <vector>

using namespace common;
using nlohmann::json;
using namespace std::string_literals;

namespace {

// The oracle: same verdict as nlohmann, same fields when both accept.
void check_same_as_nlohmann(const std::string& text) {
  INFO("text: " << text.substr(0, 2000));
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  RecordSummary s;
  std::string error;
  const bool ok = read_record_summary(text, s, error);
  INFO("summary error: " << error);
  REQUIRE(ok == (!j.is_discarded() && j.is_object()));
  if (ok) {
    REQUIRE(s == test::summary_from(j));
  } else {
    CHECK_FALSE(error.empty());
  }
}

Record sample() {
  Record r;
  r.id = "0123456789abcdef";
  r.time = format_time(1700000000);
  r.hostname = "web01";
  r.executable = "/usr/bin/ruby";
  r.signal = 11;
  r.signal_name = "SEGV";
  r.pid = 42;
  r.uid = 1000;
  r.comm = "ruby";
  r.core.present = true;
  r.core.reason = CoreReason::stored;
  r.core.path = "web01/usr!bin!ruby/0123456789abcdef.core.zst";
  r.core.size = 1 << 20;
  r.core.stored_size = 4096;
  r.store_host = "web01";
  r.store_exe = "usr!bin!ruby";
  return r;
}

// A record as the handler writes it: scanner facts with frames, a resolved symbol, mappings.
Record handler_like() {
  Record r = sample();
  CoreFacts f;
  f.is_elf = true;
  f.machine = "x86_64";
  f.pc = 0x55d0c0de1234;
  f.sp = 0x7ffc0000;
  f.tid = 42;
  f.threads = 3;
  f.si_signo = 11;
  f.si_code = 1;
  f.si_code_name = "SEGV_MAPERR";
  f.fault_address = 0;
  f.module = "/usr/bin/ruby";
  f.module_offset = 0x1234;
  f.build_id = "abcdef0123456789";
  f.signature = "0011223344556677";
  for (uint64_t i = 0; i < 32; ++i) {
    f.frames.push_back(StackFrame{0x55d0c0de0000 + i * 16, "/usr/lib/libruby.so.3.1", i * 8});
    f.files.push_back(FileMapping{0x7f0000000000 + i * 0x1000, 0x7f0000000000 + (i + 1) * 0x1000, i,
                                  "/usr/lib/lib" + std::to_string(i) + ".so"});
  }
  f.expected_size = 1 << 20;
  f.received = 1 << 20;
  r.crash = crash_to_json(f, ResolvedSymbol{"rb_vm_exec", 0x42, true});
  r.mappings = mappings_to_json(f);
  r.container = {{"cgroup", "/system.slice/ruby.service"}};
  r.handler.version = "1.0";
  r.handler.warnings = {"w1", "w2"};
  return r;
}

} // namespace

TEST_CASE("summary fields equal the full parse of written records", "[record_summary]") {
  std::vector<std::pair<std::string, Record>> cases;
  cases.emplace_back("plain", sample());
  cases.emplace_back("handler-like", handler_like());
  {
    Record r = sample();
    r.hostname = "we\"b\\01\n\t\b\f\r/\x01\x1f\x7f";
    r.executable = "/tmp/\xe2\x98\x83 snow\xf0\x9f\x98\x80/ã\\\"x";
    r.comm = std::string("nul\0in", 6);
    r.signal_name = "";
    cases.emplace_back("hostile strings", r);
  }
  {
    Record r = sample();
    r.hostname = "bad\xff\xfehost";
    r.executable = "/x/\xc0\xaf\xed\xa0\x80\xf4\x90\x80\x80\xe2\x82";
    r.comm = "\x80";
    cases.emplace_back("invalid UTF-8 replaced", r);
  }
  {
    Record r = sample();
    r.pid.reset();
    r.uid.reset();
    r.core = CoreInfo{};
    r.core.reason = CoreReason::rlimit;
    r.store_host.clear();
    cases.emplace_back("nulls and no core", r);
  }
  {
    Record r = handler_like();
    r.pid = INT64_MIN;
    r.uid = INT64_MAX;
    r.core.size = UINT64_MAX;
    r.core.stored_size = 0;
    r.core.truncated = true;
    r.core.removed = "2026-11-22T00:00:00Z";
    r.signal = 0;
    r.executable_deleted = true;
    r.crash["symbol"] = "a string symbol";
    json big = json::array();
    // As large as a reader accepts (k_max_record_bytes), not larger: the full parse must work.
    for (int i = 0; i < 1000; ++i) {
      big.push_back({{"frame", i}, {"nested", {{"a", {1, 2.5, -3, nullptr, true}}}}});
    }
    r.crash["frames"] = big;
    cases.emplace_back("extremes, string symbol, big crash", r);
  }
  {
    Record r = sample();
    r.crash = {{"symbol", nullptr}, {"module", nullptr}, {"signature", nullptr}};
    cases.emplace_back("null crash fields", r);
  }
  for (const auto& [name, record] : cases) {
    SECTION(name) {
      const std::string text = to_json_text(record);
      check_same_as_nlohmann(text);
      // And against the typed record for the fields both have.
      auto full = parse_record(text);
      REQUIRE(full);
      auto s = parse_record_summary(text);
      REQUIRE(s);
      CHECK(s->id.text == full->id);
      CHECK(s->time.text == full->time);
      CHECK(s->hostname.text == full->hostname);
      CHECK(s->executable.text == full->executable);
      CHECK(s->signal.as_int64() == full->signal);
      CHECK(s->signal_name.text == full->signal_name);
      CHECK(s->pid.as_int64() == full->pid);
      CHECK(s->uid.as_int64() == full->uid);
      CHECK(s->comm.text == full->comm);
      CHECK(s->core.present.boolean == full->core.present);
      CHECK(parse_core_reason(s->core.reason.text) == full->core.reason);
      CHECK(s->core.size.unsigned_integer == full->core.size);
      CHECK(s->core.stored_size.unsigned_integer == full->core.stored_size);
      CHECK(s->core.truncated.boolean == full->core.truncated);
      CHECK(s->core.path.text == full->core.path);
      CHECK((s->core.removed.is_string() ? std::optional(s->core.removed.text) : std::nullopt) ==
            full->core.removed);
      CHECK(s->store.host.text == full->store_host);
      CHECK(s->store.executable.text == full->store_exe);
      CHECK(s->schema.as_int64() == full->schema);
      CHECK(s->executable_deleted.boolean == full->executable_deleted);
      CHECK(s->crash.signature.str_or_empty() ==
            (full->crash.contains("signature") && full->crash["signature"].is_string()
                 ? full->crash["signature"].get<std::string>()
                 : ""));
    }
  }
}

TEST_CASE("summary of a handler record finds the crash site", "[record_summary]") {
  auto s = parse_record_summary(to_json_text(handler_like()));
  REQUIRE(s);
  CHECK(s->crash.self.kind == JsonKind::object);
  CHECK(s->crash.symbol.kind == JsonKind::object);
  CHECK(s->crash.symbol_name.text == "rb_vm_exec");
  CHECK(s->crash.symbol_offset.text == "0x42");
  CHECK(s->crash.module.text == "/usr/bin/ruby");
  CHECK(s->crash.module_offset.text == "0x1234");
  CHECK(s->crash.si_code_name.text == "SEGV_MAPERR");
  CHECK(s->crash.fault_address.text == "0x0");
  CHECK(s->crash.signature.text == "0011223344556677");
}

TEST_CASE("summary decodes string escapes", "[record_summary]") {
  auto s = parse_record_summary(
      R"({"hostname": "a\"b\\c\/d\be\ff\ng\rh\ti\u0041\u00e9\u20ac\ud83d\ude00\u0000z"})");
  REQUIRE(s);
  CHECK(s->hostname.text == "a\"b\\c/d\be\ff\ng\rh\tiA\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\0z"s);
  // Escapes in keys are decoded before matching, as nlohmann does.
  auto k = parse_record_summary(R"({"hos\u0074name": "x", "\u0063ore": {"present": true}})");
  REQUIRE(k);
  CHECK(k->hostname.text == "x");
  CHECK(k->core.present.boolean);
}

TEST_CASE("summary agrees with nlohmann on hand-made inputs", "[record_summary]") {
  const std::vector<std::string> texts = {
      "",
      " ",
      "{}",
      "[]",
      "null",
      "\"id\"",
      "{\"id\":1}",
      "{} {}",
      "{}x",
      "{\"a\" 1}",
      "{\"a\":}",
      "{,}",
      "{\"a\":1,}",
      "{\"a\":[1,]}",
      "{\"a\":[1 2]}",
      "{\"a\":{\"b\":1,\"b\":2}}",
      R"({"signal": 18446744073709551615})",
      R"({"signal": 18446744073709551616})",
      R"({"pid": -9223372036854775808})",
      R"({"pid": -9223372036854775809})",
      R"({"pid": -0})",
      R"({"pid": 0})",
      R"({"pid": 01})",
      R"({"pid": 1.})",
      R"({"pid": .5})",
      R"({"pid": 1e})",
      R"({"pid": 1e+})",
      R"({"pid": 1E-2})",
      R"({"pid": -})",
      R"({"pid": +1})",
      R"({"pid": 1e400})",
      R"({"pid": -1e400})",
      R"({"pid": 1e-400})",
      R"({"pid": 1e-310})",
      R"({"pid": -2.2250738585072014e-308})",
      R"({"pid": 4.9e-324})",
      R"({"pid": 1.7976931348623157e308})",
      R"({"pid": 1.8e308})",
      R"({"pid": 0.0e999999})",
      R"({"pid": 0.0001e310})",
      R"({"x": 1e400})",
      R"({"x": [1e-400, 123456789012345678901]})",
      R"({"pid": 12abc})",
      R"({"pid": 0x10})",
      R"({"pid": NaN})",
      R"({"pid": Infinity})",
      R"({"pid": tru})",
      R"({"pid": nul})",
      R"({"pid": falsey})",
      R"({"pid": True})",
      "\xef\xbb\xbf{\"id\":\"x\"}",
      "\xef\xbb{}",
      "\xef{}",
      "{\"id\":\"\xef\xbb\xbf\"}",
      R"({"id": "\ud800"})",
      R"({"id": "\ud800\u0041"})",
      R"({"id": "\udc00"})",
      R"({"id": "\ud800\udbff"})",
      R"({"id": "\u12"})",
      R"({"id": "\u12g4"})",
      R"({"id": "\x"})",
      R"({"id": "\'"})",
      "{\"id\": \"a\tb\"}",
      "{\"id\": \"a\x7f\"}",
      "{\"id\": \"\xc3\"}",
      "{\"id\": \"\xc0\x80\"}",
      "{\"id\": \"\xed\xa0\x80\"}",
      "{\"id\": \"\xf4\x90\x80\x80\"}",
      "{\"id\": \"\xe0\x9f\xbf\"}",
      "{\"id\": \"\xf0\x8f\xbf\xbf\"}",
      "{\"id\": \"\xf5\x80\x80\x80\"}",
      "{\"id\": \"\xef\xbf\xbf\xf4\x8f\xbf\xbf\"}",
      "{\"x\": \"\xff\"}",
      R"({"core": 1, "core": {"present": true}})",
      R"({"core": {"present": true}, "core": 1})",
      R"({"crash": {"symbol": {"name": "f", "offset": "0x1"}, "symbol": "g"}})",
      R"({"crash": {"symbol": "g", "symbol": {"name": "f"}}})",
      R"({"crash": [], "store": "x"})",
      R"({"id":"a"}   )",
      "{\"id\":\"a\"}\n\r\t ",
      "\n{\"id\":\"a\"}",
      "{\"id\":\"a\"}\v",
      std::string("{\"id\":\"a\"}\0x", 11),
      std::string("{\"id\":\0}", 7),
      std::string("\0{}", 3),
      R"({"": 1, "c": 2, "co": 3, "coree": 4})",
      "{\"a\":/*c*/1}",
      std::string(1000, '[') + std::string(1000, ']'),
      "{\"a\":" + std::string(5000, '[') + "}",
      "{\"a\":" + std::string(5000, '[') + std::string(5000, ']') + "}",
      "{\"a\":" + std::string(3000, '{') + "}",
  };
  for (const auto& text : texts) {
    check_same_as_nlohmann(text);
  }
}

TEST_CASE("summary rejects every truncation and survives every byte change", "[record_summary]") {
  std::string text = to_json_text(handler_like());
  text.pop_back(); // the trailing newline: without it, every shorter prefix is incomplete
  REQUIRE(parse_record_summary(text));
  for (size_t n = 0; n < text.size(); ++n) {
    // A copy of exactly n bytes, so a sanitizer sees any read past the end.
    const std::string prefix = text.substr(0, n);
    RecordSummary s;
    std::string error;
    INFO("prefix of " << n << " bytes");
    REQUIRE_FALSE(read_record_summary(prefix, s, error));
    REQUIRE_FALSE(error.empty());
  }
  // One byte replaced at a time (every 7th offset keeps this quick), against the oracle.
  for (size_t i = 0; i < text.size(); i += 7) {
    for (const char c : {'"', '\\', '{', ']', ',', '0', 'e', '\x80', '\0', ' '}) {
      std::string mutated = text;
      mutated[i] = c;
      check_same_as_nlohmann(mutated);
    }
  }
}

TEST_CASE("one summary adapter: the full reader's type rules, its values", "[record_summary]") {
  const json base = to_json(handler_like());
  // Each edit of a field the adapter reads: the adapter accepts the record exactly when the full
  // reader (record_from_json) does, and then both read the same values.
  const std::vector<std::pair<std::string, json>> edits = {
      {"/hostname", 1},
      {"/hostname", nullptr},
      {"/executable", json::array()},
      {"/signal", "x"},
      {"/signal", 11.0},
      {"/signal", -1},
      {"/signal", nullptr},
      {"/signal", 7.9},
      {"/signal_name", false},
      {"/executable_deleted", "yes"},
      {"/executable_deleted", nullptr},
      {"/core", nullptr},
      {"/core", json::array()},
      {"/core", "x"},
      {"/core/present", 1},
      {"/core/present", nullptr},
      {"/core/size", -1},
      {"/core/size", "x"},
      {"/core/size", 12.5},
      {"/core/reason", 3},
      {"/pid", "1"},
      {"/pid", 1.5},
      {"/pid", nullptr},
      {"/uid", json::object()},
      {"/store", 1},
      {"/store", nullptr},
      {"/id", ""},
      {"/id", 5},
      {"/time", 5},
      {"/time", "not a time"},
      {"/comm", json::array()},
      {"/crash", "x"},
      {"/crash/signature", 7},
  };
  auto check = [](const json& j, const std::string& label) {
    INFO(label);
    const std::string text = j.dump();
    const auto full = parse_record(text);
    const auto view = read_record_view(text);
    REQUIRE(view.has_value() == full.has_value());
    if (!view) {
      CHECK_FALSE(view.error().message.empty());
      return;
    }
    CHECK(view->id == full->id);
    CHECK(view->time == parse_time(full->time).value_or(0));
    CHECK(view->hostname == full->hostname);
    CHECK(view->executable == full->executable);
    CHECK(view->executable_deleted == full->executable_deleted);
    CHECK(view->signal == full->signal);
    CHECK(view->signal_name == full->signal_name);
    CHECK(view->pid == full->pid);
    CHECK(view->uid == full->uid);
    CHECK(view->comm == full->comm);
    CHECK(view->core.present == full->core.present);
    CHECK(parse_core_reason(view->core.reason).value_or(CoreReason::error) == full->core.reason);
    CHECK(view->core.size == full->core.size);
    CHECK(view->core.removed == full->core.removed.has_value());
  };
  check(base, "as written");
  for (const auto& [pointer, value] : edits) {
    json j = base;
    j[json::json_pointer(pointer)] = value;
    check(j, pointer + " = " + value.dump());
  }
  for (const char* key : {"/id", "/hostname", "/signal", "/core", "/store", "/crash"}) {
    json j = base;
    j.erase(std::string(key + 1));
    check(j, std::string(key) + " missing");
  }
}

TEST_CASE("one summary adapter: the crash site in one phrase", "[record_summary]") {
  auto site = [](json crash) {
    json j = to_json(sample());
    j["crash"] = std::move(crash);
    auto view = read_record_view(j.dump());
    REQUIRE(view);
    return view->site;
  };
  CHECK(site({{"signature_chain", "f ← g"}, {"module", "/x/lib.so"}}) == "f ← g");
  CHECK(site({{"symbol", {{"name", "main"}, {"offset", "0x10"}}}}) == "main+0x10");
  CHECK(site({{"symbol", {{"name", "main"}, {"offset", "0x0"}}}}) == "main");
  CHECK(site({{"symbol", "old+0x4"}}) == "old+0x4");
  CHECK(site({{"module", "/usr/lib/libc.so.6"}, {"module_offset", "0x29d90"}}) ==
        "libc.so.6+0x29d90");
  CHECK(site({{"module", "bare"}}) == "bare");
  CHECK(site(json::object()).empty());
}
