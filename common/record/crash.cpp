#include "common/record/crash.hpp"

#include "common/base/escape.hpp"

namespace common::record {

using nlohmann::json;

namespace {

json to_json(const OriginalFault& o);
json to_json(const BlockedSyscall& b);
json to_json(const Goroutine& g);

json optional_object(const auto& v) {
  return v ? to_json(*v) : json(nullptr);
}

Frame frame_from_json(const json& j) {
  Frame f;
  FieldReader in(j);
  in.text("pc", f.pc);
  in.text("trust", f.trust);
  in.text("module", f.module);
  in.text("module_offset", f.module_offset);
  in.text("build_id", f.build_id);
  in.object("symbol", f.symbol, symbol_from_json);
  in.text("file", f.file);
  in.integer("line", f.line);
  in.boolean("inlined", f.inlined);
  in.boolean("signal_frame", f.signal_frame);
  in.boolean("jit", f.jit);
  f.unknown = std::move(in).finish();
  return f;
}

json to_json(const Frame& f) {
  FieldWriter out(f.unknown);
  out.text("pc", f.pc);
  out.text("trust", f.trust);
  out.text("module", f.module);
  out.text("module_offset", f.module_offset);
  out.text("build_id", f.build_id);
  out.put("symbol", optional_object(f.symbol));
  out.text("file", f.file);
  out.number("line", f.line);
  out.put("inlined", f.inlined);
  out.put("signal_frame", f.signal_frame);
  out.put("jit", f.jit);
  return std::move(out).finish();
}

Thread thread_from_json(const json& j) {
  Thread t;
  FieldReader in(j);
  in.integer("tid", t.tid);
  in.text("name", t.name);
  in.text("state", t.state);
  in.boolean("crashing", t.crashing);
  in.objects("frames", t.frames, frame_from_json);
  in.text("error", t.error);
  t.unknown = std::move(in).finish();
  return t;
}

json to_json(const Thread& t) {
  FieldWriter out(t.unknown);
  out.number("tid", t.tid);
  out.text("name", t.name);
  out.text("state", t.state);
  out.put("crashing", t.crashing);
  json frames = json::array();
  for (const auto& f : t.frames) {
    frames.push_back(to_json(f));
  }
  out.put("frames", std::move(frames));
  out.text("error", t.error);
  return std::move(out).finish();
}

OriginalFault original_fault_from_json(const json& j) {
  OriginalFault o;
  FieldReader in(j);
  in.integer("si_signo", o.si_signo);
  in.text("signal_name", o.signal_name);
  in.integer("si_code", o.si_code);
  in.text("si_code_name", o.si_code_name);
  in.text("fault_address", o.fault_address);
  in.text("pc", o.pc);
  in.object("symbol", o.symbol, symbol_from_json);
  o.unknown = std::move(in).finish();
  return o;
}

json to_json(const OriginalFault& o) {
  FieldWriter out(o.unknown);
  out.number("si_signo", o.si_signo);
  out.text("signal_name", o.signal_name);
  out.number("si_code", o.si_code);
  out.text("si_code_name", o.si_code_name);
  out.text("fault_address", o.fault_address);
  out.text("pc", o.pc);
  out.put("symbol", optional_object(o.symbol));
  return std::move(out).finish();
}

Goroutine goroutine_from_json(const json& j) {
  Goroutine g;
  FieldReader in(j);
  in.integer("goid", g.goid);
  in.text("g", g.g);
  in.text("layout", g.layout);
  in.integer("first_frame", g.first_frame);
  in.text("error", g.error);
  g.unknown = std::move(in).finish();
  return g;
}

json to_json(const Goroutine& g) {
  FieldWriter out(g.unknown);
  out.number("goid", g.goid);
  out.text("g", g.g);
  out.text("layout", g.layout);
  out.number("first_frame", g.first_frame);
  out.text("error", g.error);
  return std::move(out).finish();
}

BlockedSyscall blocked_syscall_from_json(const json& j) {
  BlockedSyscall b;
  FieldReader in(j);
  in.integer("number", b.number);
  in.text("name", b.name);
  in.text("arch", b.arch);
  b.unknown = std::move(in).finish();
  return b;
}

json to_json(const BlockedSyscall& b) {
  FieldWriter out(b.unknown);
  out.number("number", b.number);
  out.text("name", b.name);
  out.text("arch", b.arch);
  return std::move(out).finish();
}

std::string valid(const std::optional<std::string>& s) {
  return s ? to_valid_utf8(*s) : std::string();
}

} // namespace

Symbol symbol_from_json(const json& j) {
  Symbol s;
  FieldReader in(j);
  in.text("name", s.name);
  in.text("offset", s.offset);
  in.boolean("verified", s.verified);
  s.unknown = std::move(in).finish();
  return s;
}

json to_json(const Symbol& s) {
  FieldWriter out(s.unknown);
  out.text("name", s.name);
  out.text("offset", s.offset);
  out.put("verified", s.verified);
  return std::move(out).finish();
}

Crash crash_from_json(const json& j) {
  Crash c;
  if (!j.is_object()) {
    return c;
  }
  FieldReader in(j);
  in.text("machine", c.machine);
  in.integer("si_signo", c.si_signo);
  in.integer("si_code", c.si_code);
  in.text("si_code_name", c.si_code_name);
  in.integer("si_errno", c.si_errno);
  in.text("fault_address", c.fault_address);
  in.integer("sender_pid", c.sender_pid);
  in.integer("sender_uid", c.sender_uid);
  in.object("blocked_syscall", c.blocked_syscall, blocked_syscall_from_json);
  in.text("pc", c.pc);
  in.text("sp", c.sp);
  in.integer("tid", c.tid);
  in.integer("threads", c.threads);
  in.text("module", c.module);
  in.text("module_offset", c.module_offset);
  in.text("build_id", c.build_id);
  in.object("symbol", c.symbol, symbol_from_json);
  in.object("original_fault", c.original_fault, original_fault_from_json);
  in.object("goroutine", c.goroutine, goroutine_from_json);
  in.text("signature", c.signature);
  in.integer("signature_version", c.signature_version);
  in.text("signature_chain", c.signature_chain);
  in.text("signature_refines", c.signature_refines);
  in.objects("stacks", c.stacks, thread_from_json);
  in.array("frames", c.frames_v1);
  in.count("expected_size", c.expected_size);
  in.count("received", c.received);
  in.boolean("truncated", c.truncated);
  in.text("format_error", c.format_error);
  in.texts("warnings", c.warnings);
  c.unknown = std::move(in).finish();
  return c;
}

json to_json(const Crash& c) {
  FieldWriter out(c.unknown);
  out.text("machine", c.machine);
  out.number("si_signo", c.si_signo);
  out.number("si_code", c.si_code);
  out.text("si_code_name", c.si_code_name);
  out.number("si_errno", c.si_errno);
  out.text("fault_address", c.fault_address);
  out.number("sender_pid", c.sender_pid);
  out.number("sender_uid", c.sender_uid);
  out.put("blocked_syscall", optional_object(c.blocked_syscall));
  out.text("pc", c.pc);
  out.text("sp", c.sp);
  out.number("tid", c.tid);
  out.number("threads", c.threads);
  out.text("module", c.module);
  out.text("module_offset", c.module_offset);
  out.text("build_id", c.build_id);
  out.put("symbol", optional_object(c.symbol));
  out.put("original_fault", optional_object(c.original_fault));
  out.put("goroutine", optional_object(c.goroutine));
  out.text("signature", c.signature);
  out.number("signature_version", c.signature_version);
  out.text("signature_chain", c.signature_chain);
  out.present_text("signature_refines", c.signature_refines); // v3 only
  json stacks = json::array();
  for (const auto& t : c.stacks) {
    stacks.push_back(to_json(t));
  }
  out.put("stacks", std::move(stacks));
  // Schema 1's key, written back only by a record that had it.
  if (c.frames_v1) {
    out.put("frames", valid_utf8_json(*c.frames_v1));
  }
  out.number("expected_size", c.expected_size);
  out.number("received", c.received);
  out.put("truncated", c.truncated);
  out.text("format_error", c.format_error);
  out.texts("warnings", c.warnings);
  return std::move(out).finish();
}

std::string cause_detail(const Crash& crash) {
  if (const auto& o = crash.original_fault) {
    const std::string name = valid(o->signal_name);
    // A Go program's SIGSEGV is turned into a panic by its runtime, which then aborts.
    const char* by = crash.goroutine ? " raised by the Go runtime after "
                                     : " raised by the program's crash handler after ";
    std::string out = by + (name.empty() ? std::string("a fault") : "SIG" + name);
    if (const std::string code = valid(o->si_code_name); !code.empty()) {
      out += " (" + code + ")";
    }
    if (const std::string addr = valid(o->fault_address); !addr.empty()) {
      out += " at " + addr;
    }
    const std::string fn = o->symbol ? valid(o->symbol->name) : "";
    if (!fn.empty()) {
      out += " in " + fn;
    } else if (const std::string pc = valid(o->pc); !pc.empty()) {
      out += " in " + pc;
    }
    return out;
  }
  if (const auto& s = crash.blocked_syscall) {
    if (!s->number) {
      return {};
    }
    const std::string name = valid(s->name);
    const std::string number = std::to_string(*s->number);
    std::string out = " (seccomp blocked " +
                      (name.empty() ? "system call " + number : name + " (" + number + ")");
    if (const std::string arch = valid(s->arch); !arch.empty()) {
      out += " on " + arch;
    }
    return out + ")";
  }
  return {};
}

} // namespace common::record
