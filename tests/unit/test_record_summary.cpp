// The summary reader against the full reader: for every text, read_record_summary() must accept
// exactly what parse_record_json() accepts (as an object: the same bounds, then nlohmann) and
// find the same value, of the same JSON type, at every path it reports.
#include "common/base/json_bounds.hpp"
#include "common/crash/crash_json.hpp"
#include "common/store/record.hpp"
#include "common/store/record_summary.hpp"
#include "common/store/record_summary_view.hpp"
#include "tests/unit/record_summary_oracle.hpp"

#include <catch2/catch.hpp>

#include <optional>
#include <string>
#include <utility>
#include <vector>

using namespace common;
using nlohmann::json;
using namespace std::string_literals;

namespace {

// An integer field as int64_t (a uint64 above INT64_MAX wraps, as nlohmann's get<int64_t>()
// does); nullopt for other kinds.
std::optional<int64_t> as_int64(const SummaryValue& v) {
  if (v.kind == JsonKind::integer) {
    return v.integer;
  }
  if (v.kind == JsonKind::unsigned_integer) {
    return static_cast<int64_t>(v.unsigned_integer);
  }
  return std::nullopt;
}

// The oracle: same verdict as the full reader, same fields when both accept.
void check_same_as_full_reader(const std::string& text) {
  INFO("text: " << text.substr(0, 2000));
  const auto j = test::full_reader_object(text);
  const auto s = read_record_summary(text);
  INFO("summary error: " << (s ? std::string() : s.error().message));
  REQUIRE(s.has_value() == j.has_value());
  if (s) {
    REQUIRE(*s == test::summary_from(*j));
  } else {
    CHECK_FALSE(s.error().message.empty());
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
    f.files.push_back(FileMapping{0x7f0000000000 + i * 0x1000, 0x7f0000000000 + (i + 1) * 0x1000, i,
                                  "/usr/lib/lib" + std::to_string(i) + ".so"});
  }
  f.expected_size = 1 << 20;
  f.received = 1 << 20;
  CrashAnalysis a;
  a.symbol = ResolvedSymbol{"rb_vm_exec", 0x42, true};
  a.signature = SignatureV2{"0011223344556677", "v2|11|rb_vm_exec|main", {"rb_vm_exec", "main"}};
  // Small enough that the truncation test below (every prefix) stays quick.
  for (int64_t t = 0; t < 2; ++t) {
    ThreadTrace trace{42 + t, t == 0, "ruby", "R", {}, "", {}};
    for (uint64_t i = 0; i < 4; ++i) {
      Frame frame;
      frame.pc = 0x55d0c0de0000 + i * 16;
      frame.trust = i == 0 ? FrameTrust::context : FrameTrust::cfi;
      frame.module = "/usr/lib/libruby.so.3.1";
      frame.module_offset = i * 8;
      frame.symbol = ResolvedSymbol{"fn" + std::to_string(i), i, true};
      frame.source = SourceLine{"vm.c", static_cast<int>(i)};
      trace.frames.push_back(std::move(frame));
    }
    a.stacks.push_back(std::move(trace));
  }
  r.crash = crash_to_json(f, a);
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
      check_same_as_full_reader(text);
      // And against the typed record for the fields both have.
      auto full = parse_record(text);
      REQUIRE(full);
      auto s = read_record_summary(text);
      REQUIRE(s);
      CHECK(s->id.text == full->id);
      CHECK(s->time.text == full->time);
      CHECK(s->hostname.text == full->hostname);
      CHECK(s->executable.text == full->executable);
      CHECK(as_int64(s->signal) == full->signal);
      CHECK(s->signal_name.text == full->signal_name);
      CHECK(as_int64(s->pid) == full->pid);
      CHECK(as_int64(s->uid) == full->uid);
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
      CHECK(as_int64(s->schema) == full->schema);
      CHECK(s->executable_deleted.boolean == full->executable_deleted);
      CHECK(s->crash.signature.str_or_empty() ==
            (full->crash.contains("signature") && full->crash["signature"].is_string()
                 ? full->crash["signature"].get<std::string>()
                 : ""));
    }
  }
}

TEST_CASE("summary of a handler record finds the crash site", "[record_summary]") {
  auto s = read_record_summary(to_json_text(handler_like()));
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
  CHECK(s->crash.signature_chain.text == "rb_vm_exec ← main");
}

TEST_CASE("summary decodes string escapes", "[record_summary]") {
  auto s = read_record_summary(
      R"({"hostname": "a\"b\\c\/d\be\ff\ng\rh\ti\u0041\u00e9\u20ac\ud83d\ude00\u0000z"})");
  REQUIRE(s);
  CHECK(s->hostname.text == "a\"b\\c/d\be\ff\ng\rh\tiA\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\0z"s);
  // Escapes in keys are decoded before matching, as nlohmann does.
  auto k = read_record_summary(R"({"hos\u0074name": "x", "\u0063ore": {"present": true}})");
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
    check_same_as_full_reader(text);
  }
}

TEST_CASE("summary applies the full reader's size and depth bounds", "[record_summary]") {
  // Nested objects under a record that is otherwise fine: `depth` levels in all.
  auto nested = [](size_t depth) {
    std::string text = "{\"id\":\"x\",\"crash\":";
    for (size_t i = 2; i < depth; ++i) {
      text += "{\"a\":";
    }
    text += "{}" + std::string(depth - 2, '}') + "}";
    return text;
  };
  const auto deepest = read_record_summary(nested(k_max_json_depth));
  REQUIRE(deepest);
  CHECK(deepest->id.text == "x");
  CHECK(deepest->crash.self.kind == JsonKind::object);
  const auto too_deep = read_record_summary(nested(k_max_json_depth + 1));
  REQUIRE_FALSE(too_deep);
  CHECK(too_deep.error().message == "record is nested deeper than 64 levels");
  check_same_as_full_reader(nested(k_max_json_depth));
  check_same_as_full_reader(nested(k_max_json_depth + 1));

  // A padded record exactly at the readers' size limit, and one byte above it.
  const std::string head = "{\"id\":\"x\",\"pad\":\"";
  std::string largest = head + std::string(k_max_record_bytes - head.size() - 2, 'p') + "\"}";
  REQUIRE(largest.size() == k_max_record_bytes);
  CHECK(read_record_summary(largest));
  const auto too_large = read_record_summary(largest + " ");
  REQUIRE_FALSE(too_large);
  CHECK(too_large.error().message ==
        "record is larger than " + std::to_string(k_max_record_bytes) + " bytes");
  check_same_as_full_reader(largest);
  check_same_as_full_reader(largest + " ");
}

TEST_CASE("summary errors say where, never quote the record", "[record_summary]") {
  // nlohmann's messages end with the last token read, which here is record text.
  const auto bad = read_record_summary("{\"id\": \"\u202e-hidden-\xff\"}");
  REQUIRE_FALSE(bad);
  INFO(bad.error().message);
  CHECK(bad.error().message.starts_with("record is not valid JSON at byte "));
  CHECK(bad.error().message.find("hidden") == std::string::npos);
  const auto list = read_record_summary("[1]");
  REQUIRE_FALSE(list);
  CHECK(list.error().message == "record is not a JSON object");
}

TEST_CASE("summary rejects every truncation and survives every byte change", "[record_summary]") {
  std::string text = to_json_text(handler_like());
  text.pop_back(); // the trailing newline: without it, every shorter prefix is incomplete
  REQUIRE(read_record_summary(text));
  for (size_t n = 0; n < text.size(); ++n) {
    // A copy of exactly n bytes, so a sanitizer sees any read past the end.
    const std::string prefix = text.substr(0, n);
    INFO("prefix of " << n << " bytes");
    const auto s = read_record_summary(prefix);
    REQUIRE_FALSE(s);
    REQUIRE_FALSE(s.error().message.empty());
  }
  // One byte replaced at a time (every 7th offset keeps this quick), against the oracle.
  for (size_t i = 0; i < text.size(); i += 7) {
    for (const char c : {'"', '\\', '{', ']', ',', '0', 'e', '\x80', '\0', ' '}) {
      std::string mutated = text;
      mutated[i] = c;
      check_same_as_full_reader(mutated);
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
