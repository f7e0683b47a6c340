// libFuzzer target for the ELF core scanner and the note decoders (built by run_fuzz.sh).
// The same input goes through the scanner whole, byte by byte and in input-derived splits (the
// facts must not depend on the splits), then straight into each note decoder.
#include "common/crash/crash_json.hpp"
#include "common/crash/elf_core.hpp"
#include "common/crash/elf_notes.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>

namespace {

common::CoreFacts scan(std::span<const std::byte> data, size_t mode) {
  common::CoreScanner s;
  size_t i = 0;
  size_t step = 0;
  while (i < data.size()) {
    size_t n = data.size() - i;
    if (mode == 1) {
      n = 1;
    } else if (mode == 2) { // split sizes taken from the data itself
      n = std::min<size_t>(n, 1 + (std::to_integer<size_t>(data[step++ % data.size()]) * 7));
    }
    s.observe(data.subspan(i, n));
    i += n;
  }
  s.finish();
  return s.facts();
}

// The facts as text: the record's crash and mappings JSON (dumping throws on invalid UTF-8, so
// this also checks the sanitizing) and the best-effort frames, which the JSON leaves out.
std::string facts_text(const common::CoreFacts& f) {
  std::string text =
      common::crash_to_json(f, common::CrashAnalysis{}).dump() + common::mappings_to_json(f).dump();
  for (const auto& fr : f.frames) {
    text += std::to_string(fr.address) + ":" + fr.module + ":" +
            std::to_string(fr.module_offset.value_or(0)) + ";";
  }
  return text;
}

struct Sink : common::NoteSink {
  bool want(std::string_view, uint32_t) override { return true; }
  void on_note(const common::ElfNote& n) override {
    (void)common::decode_prstatus(n.desc, common::elf::k_em_x86_64);
    (void)common::decode_prstatus(n.desc, common::elf::k_em_aarch64);
    (void)common::decode_siginfo(n.desc);
    (void)common::decode_prpsinfo(n.desc);
    (void)common::decode_auxv(n.desc);
    (void)common::decode_nt_file(n.desc);
  }
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  const auto data = std::as_bytes(std::span(bytes, size));
  const common::CoreFacts whole = scan(data, 0);
  const std::string expected = facts_text(whole);
  if (size <= 4096) { // byte-at-a-time is slow on big inputs; the splits cover those
    if (facts_text(scan(data, 1)) != expected) {
      std::abort();
    }
  }
  if (facts_text(scan(data, 2)) != expected) {
    std::abort();
  }

  // The note layer directly: as a note area (walked and streamed) and as raw descriptors.
  Sink sink;
  common::NoteIterator it(data);
  while (const auto n = it.next()) {
    sink.on_note(*n);
  }
  common::NoteStream stream(1 << 20);
  for (size_t i = 0; i < size; i += 13) {
    stream.feed(data.subspan(i, std::min<size_t>(13, size - i)), sink);
  }
  (void)common::decode_nt_file(data);
  (void)common::find_gnu_build_id(data);
  (void)common::si_code_name(size > 0 ? bytes[0] : 0, size > 1 ? static_cast<int8_t>(bytes[1]) : 0);
  return 0;
}
