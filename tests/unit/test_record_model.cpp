// The typed record sections against the JSON the handler writes today and wrote before: every
// section reads back to the same JSON, whatever version or owner wrote it.
#include "common/crash/crash_json.hpp"
#include "common/record/crash.hpp"
#include "common/record/host.hpp"
#include "common/record/mapping.hpp"
#include "common/store/record.hpp"

#include <catch2/catch.hpp>

#include <string>

using namespace common;
using nlohmann::json;

namespace {

// A crash as pc_crash writes it (schema 2): scanner facts, two threads of frames, a symbol, an
// original fault's shape, a blocked system call.
CoreFacts sample_facts() {
  CoreFacts f;
  f.is_elf = true;
  f.machine = "x86_64";
  f.pc = 0x55d0c0de1234;
  f.sp = 0x7ffc0000;
  f.tid = 42;
  f.threads = 2;
  f.si_signo = 31;
  f.si_code = 1;
  f.si_code_name = "SYS_SECCOMP";
  f.syscall = 92;
  f.syscall_arch = 0xc000003e;
  f.module = "/usr/bin/ruby";
  f.module_offset = 0x1234;
  f.build_id = "abcdef0123456789";
  f.signature = "0011223344556677";
  f.files.push_back(FileMapping{0x7f0000000000, 0x7f0000001000, 0, "/usr/lib/libc.so.6"});
  f.files.push_back(FileMapping{0x7f0000002000, 0x7f0000003000, 0, "/usr/lib/lib\xff.so"});
  f.build_ids["/usr/lib/libc.so.6"] = "00ff";
  f.expected_size = 1 << 20;
  f.received = 1 << 19;
  f.truncated = true;
  f.warnings = {"w1", "bad \xfe byte"};
  return f;
}

CrashAnalysis sample_analysis() {
  CrashAnalysis a;
  a.symbol = ResolvedSymbol{"rb_vm_exec", 0x42, true};
  a.signature = SignatureV2{"0011223344556677", "v2|31|rb_vm_exec|main", {"rb_vm_exec", "main"}};
  for (int64_t t = 0; t < 2; ++t) {
    ThreadTrace trace{42 + t, t == 0, "ruby", "R", {}, t == 1 ? "no CFI" : "", {}};
    for (uint64_t i = 0; i < 3; ++i) {
      Frame frame;
      frame.pc = 0x55d0c0de0000 + i * 16;
      frame.trust = i == 0 ? FrameTrust::context : FrameTrust::cfi;
      frame.module = "/usr/lib/libruby.so.3.1";
      frame.module_offset = i * 8;
      if (i != 2) {
        frame.symbol = ResolvedSymbol{"fn" + std::to_string(i), i, i == 0};
        frame.source = SourceLine{"vm.c", static_cast<int>(i)};
      }
      frame.inlined = i == 1;
      trace.frames.push_back(std::move(frame));
    }
    a.stacks.push_back(std::move(trace));
  }
  return a;
}

// Schema 1 (records of earlier versions): `frames` instead of `stacks`, a v1 signature, and none
// of the keys added since.
json schema1_crash() {
  return json::parse(R"({
    "machine": "x86_64", "si_signo": 11, "si_code": 1, "si_code_name": "SEGV_MAPERR",
    "si_errno": 0, "fault_address": "0x0", "sender_pid": null, "sender_uid": null,
    "pc": "0x401136", "sp": "0x7ffd1000", "tid": 4242, "threads": 1,
    "module": "/usr/bin/app", "module_offset": "0x1136", "build_id": "deadbeef",
    "symbol": {"name": "crash_here", "offset": "0x6", "verified": true},
    "signature": "0123456789abcdef", "signature_version": 1,
    "frames": [{"address": "0x401136", "module": "/usr/bin/app", "offset": "0x1136",
                "best_effort": true}],
    "expected_size": 1000, "received": 1000, "truncated": false, "format_error": null,
    "warnings": []
  })");
}

json round_trip(const json& crash) {
  return record::to_json(record::crash_from_json(crash));
}

} // namespace

TEST_CASE("a schema 2 crash section reads back to the same JSON", "[record_model]") {
  const CoreFacts facts = sample_facts();
  const json written = crash_to_json(facts, sample_analysis());
  const record::Crash typed = record::crash_from_json(written);
  CHECK(record::to_json(typed) == written);
  CHECK(typed.unknown.fields.empty());
  // Schema 1's key, and signature_refines, which only v3 records have.
  CHECK(typed.unknown.absent == std::vector<std::string>{"signature_refines", "frames"});
  REQUIRE(typed.stacks.size() == 2);
  CHECK(typed.stacks[0].crashing);
  CHECK(typed.stacks[0].frames.size() == 3);
  CHECK(typed.stacks[0].frames[0].symbol->name == "fn0");
  CHECK(typed.stacks[0].frames[1].inlined);
  CHECK(typed.stacks[1].error == "no CFI");
  CHECK(typed.symbol->name == "rb_vm_exec");
  CHECK(typed.symbol->offset == "0x42");
  CHECK(typed.signature_version == 2);
  CHECK(typed.blocked_syscall->number == 92);
  CHECK(typed.blocked_syscall->arch == "x86_64");
  CHECK(typed.received == uint64_t{1} << 19);
  CHECK(typed.truncated);
  CHECK(typed.warnings.at(1) == "bad \xef\xbf\xbd byte"); // made valid UTF-8 when written
  // The scanner's facts alone (no analysis): every key still there, the stacks empty.
  const json facts_only = crash_to_json(facts, CrashAnalysis{});
  CHECK(round_trip(facts_only) == facts_only);
  CHECK(round_trip(facts_only).dump() == facts_only.dump());
}

TEST_CASE("a schema 1 crash section reads back to the same JSON", "[record_model]") {
  const json v1 = schema1_crash();
  const record::Crash typed = record::crash_from_json(v1);
  CHECK(typed.stacks.empty());
  REQUIRE(typed.frames_v1);
  CHECK(typed.frames_v1->size() == 1);
  // Keys added after schema 1 were absent and stay absent.
  const json again = record::to_json(typed);
  CHECK(again == v1);
  CHECK_FALSE(again.contains("stacks"));
  CHECK_FALSE(again.contains("original_fault"));
  CHECK_FALSE(again.contains("blocked_syscall"));
  CHECK_FALSE(again.contains("signature_chain"));
}

TEST_CASE("unknown keys and unexpected types survive a rewrite", "[record_model]") {
  json crash = crash_to_json(sample_facts(), sample_analysis());
  SECTION("keys of a later version, at every level") {
    crash["python"] = {{"frames", json::array({{{"function", "main"}}})}};
    crash["stacks"][0]["frames"][0]["interpreter"] = "cpython";
    crash["stacks"][1]["lwp"] = 7;
    crash["symbol"]["demangled"] = "rb_vm_exec()";
    crash["blocked_syscall"]["args"] = json::array({1, 2});
    const record::Crash typed = record::crash_from_json(crash);
    CHECK(typed.unknown.fields.contains("python"));
    CHECK(typed.stacks[0].frames[0].unknown.fields.contains("interpreter"));
    CHECK(record::to_json(typed) == crash);
  }
  SECTION("a known key with another type is kept as it was, and reads as unknown") {
    crash["threads"] = json::array({1, 2, 3});
    crash["module"] = 7;
    crash["truncated"] = "yes";
    crash["received"] = -1;
    crash["si_signo"] = 1.5;
    crash["tid"] = uint64_t{1} << 63;
    crash["symbol"] = "a string symbol";
    crash["stacks"][0]["frames"][1] = "not a frame";
    crash["warnings"] = json::array({"w", 1});
    const record::Crash typed = record::crash_from_json(crash);
    CHECK_FALSE(typed.threads);
    CHECK_FALSE(typed.module);
    CHECK_FALSE(typed.received);
    CHECK_FALSE(typed.si_signo);
    CHECK_FALSE(typed.tid);
    CHECK_FALSE(typed.symbol);
    CHECK(typed.stacks[0].frames.empty());
    CHECK(typed.warnings.empty());
    CHECK(record::to_json(typed) == crash);
  }
  SECTION("a stacks array holding a non-object is kept whole") {
    crash["stacks"].push_back(3);
    const record::Crash typed = record::crash_from_json(crash);
    CHECK(typed.stacks.empty());
    CHECK(record::to_json(typed) == crash);
  }
  SECTION("invalid UTF-8 in what was kept is replaced, as every written string is") {
    crash["extra \xff"] = "v\xfe";
    const json again = round_trip(crash);
    CHECK(again.at("extra \xef\xbf\xbd") == "v\xef\xbf\xbd");
  }
  SECTION("not an object: an empty section") {
    CHECK(record::to_json(record::crash_from_json(json::array())) ==
          record::to_json(record::Crash{}));
  }
}

TEST_CASE("the cause line reads the typed section", "[record_model]") {
  json crash = crash_to_json(sample_facts(), sample_analysis());
  CHECK(record::cause_detail(record::crash_from_json(crash)) ==
        " (seccomp blocked chown (92) on x86_64)");
  crash["original_fault"] = {
      {"si_signo", 11},
      {"signal_name", "SEGV"},
      {"si_code", 1},
      {"si_code_name", "SEGV_MAPERR"},
      {"fault_address", "0x10"},
      {"pc", "0x401136"},
      {"symbol", {{"name", "crash_here"}, {"offset", "0x6"}, {"verified", true}}}};
  CHECK(record::cause_detail(record::crash_from_json(crash)) ==
        " raised by the program's crash handler after SIGSEGV (SEGV_MAPERR) at 0x10 in crash_here");
  crash["original_fault"]["symbol"] = nullptr;
  crash["original_fault"]["signal_name"] = 11; // the store owner's: left out, never thrown
  CHECK(record::cause_detail(record::crash_from_json(crash)) ==
        " raised by the program's crash handler after a fault (SEGV_MAPERR) at 0x10 in 0x401136");
  CHECK(record::cause_detail(record::crash_from_json(schema1_crash())).empty());
}

TEST_CASE("mappings, container and node read back to the same JSON", "[record_model]") {
  const json mappings = mappings_to_json(sample_facts());
  const record::Mappings typed = record::mappings_from_json(mappings);
  REQUIRE(typed.entries.size() == 2);
  CHECK(typed.entries[0].build_id == "00ff");
  CHECK_FALSE(typed.entries[1].build_id);
  CHECK(record::to_json(typed) == mappings);

  json odd = mappings;
  odd[0]["inode"] = 12;
  odd[1]["findings"] = json::array({"deleted"});
  CHECK(record::to_json(record::mappings_from_json(odd)) == odd);
  odd.push_back("a string");
  CHECK(record::mappings_from_json(odd).entries.empty());
  CHECK(record::to_json(record::mappings_from_json(odd)) == odd);

  const json container = {{"cgroup", "/system.slice/ruby.service"},
                          {"unit", "ruby.service"},
                          {"claimed_pod_name", "web-0"},
                          {"runtime", "podman"}};
  const record::Container c = record::container_from_json(container);
  CHECK(c.unit == "ruby.service");
  CHECK_FALSE(c.pod_uid);
  CHECK(record::to_json(c) == container);
  CHECK(record::container_from_json(json::object()).empty());
  CHECK(record::to_json(record::container_from_json({{"unit", nullptr}})) ==
        json{{"unit", nullptr}});

  const json node = {{"machine_id", std::string(32, 'a')}, {"hostname", "node-1"}};
  const record::Node n = record::node_from_json(node);
  CHECK(n.hostname == "node-1");
  CHECK_FALSE(n.boot_id);
  CHECK(record::to_json(n) == node);
  CHECK(record::node_from_json("x").empty());
}

TEST_CASE("a record keeps the keys and sections of a later version", "[record_model]") {
  Record r;
  r.id = "0123456789abcdef";
  r.crash = crash_to_json(sample_facts(), sample_analysis());
  json j = to_json(r);
  j["sandbox_report"] = {{"threads", json::array({{{"frames", json::array()}}})}};
  j["packages"] = json::array({{{"name", "libc6"}}}); // known, of another type
  j["core"]["uploaded"] = "2026-12-01T00:00:00Z";
  j["handler"]["sandbox"] = {{"seccomp", true}};
  j["crash"]["python_stack"] = true;
  auto parsed = record_from_json(j);
  REQUIRE(parsed);
  CHECK(to_json(*parsed) == j);
  CHECK(parsed->unknown.contains("sandbox_report"));
  CHECK(parsed->unknown.contains("packages"));
  CHECK(parsed->core.unknown.contains("uploaded"));

  SECTION("a known section of another type is kept, not dropped") {
    j["container"] = "docker";
    j["mappings"] = {{"path", "/x"}};
    auto odd = record_from_json(j);
    REQUIRE(odd);
    CHECK(odd->container.empty());
    CHECK(to_json(*odd) == j);
  }
  SECTION("a record without unknown keys is written as before") {
    CHECK(to_json(*record_from_json(to_json(r))) == to_json(r));
    CHECK(record_from_json(to_json(r))->unknown.empty());
  }
}
