"""Signatures of crashes that a language runtime's own handler reports before the core is
written, through the real kernel and the shipped settings: the runtime's crash or fatal-error
path (Ruby's rb_bug and sigsegv, HotSpot's VMError::report_and_die and os::abort, V8's
OS::Abort ← Isolate::CreateMessageOrAbort) does not enter
the signature, which is taken from the frames the fault interrupted. Each crash's frames are
compared with gdb's `bt` on the stored core. Skipped without root or a writable core_pattern.
"""
import os
import pathlib
import shutil
import tempfile

import pytest

import pcexporter
import pctest

if not pctest.can_set_core_pattern():
    pytest.skip("needs root and a writable core_pattern", allow_module_level=True)
if shutil.which("gdb") is None:
    pytest.skip("needs gdb", allow_module_level=True)

HERE = pathlib.Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def kernel():
    with pctest.kernel_rig("pcr-", rate_limit_burst=0) as rig:
        yield rig.store


def crash(store, argv, env=None, cwd=None):
    return pctest.crash_for_core(store, argv, env=env, cwd=cwd, timeout=180)


def below_signal_frame(names):
    """The frames the innermost signal frame interrupted."""
    assert "<signal>" in names, names
    return names[names.index("<signal>") + 1:]


def test_two_ruby_crashes_in_c_functions_get_two_signatures(kernel, tmp_path):
    ruby = shutil.which("ruby")
    if ruby is None:
        pytest.skip("needs ruby (packaging/test-deps.txt)")
    # Both fault in libc under Fiddle, are reported by Ruby's rb_bug and abort: one in memcpy
    # (reading 8 bytes at 0x10), one in strlen (a C string at 0x10).
    runs = {}
    for name, code in (("memcpy", "Fiddle::Pointer.new(16)[0, 8]"),
                       ("strlen", "Fiddle::Pointer.new(16).to_s")):
        record, core = crash(kernel, [ruby, "-rfiddle", "-e", code])
        crashing = record["crash"]["stacks"][0]
        ours = pctest.frame_names(crashing["frames"])
        theirs = pctest.gdb_threads(ruby, core)[0][1]
        # The interrupted frames, as gdb names them (memcpy/memmove and strlen are each one
        # function with several names in libc: compare from the caller).
        mine, gdbs = below_signal_frame(ours), below_signal_frame(theirs)
        n = min(len(mine), len(gdbs), 4)
        assert n >= 2, (ours, theirs)
        assert mine[1:n] == gdbs[1:n], f"record {ours} != gdb {theirs}"
        chain = record["crash"]["signature_chain"]
        assert record["crash"]["signature_version"] == 2
        # The killing signal is Ruby's abort(); the signature is the SIGSEGV's, taken from the
        # frames below the signal frame, never from rb_bug's report or abort().
        links = chain.split(" ← ")
        assert not any(l in ("abort", "rb_bug", "rb_bug_for_fatal_signal", "sigsegv", "die")
                       for l in links), chain
        # The chain is the interrupted frames in order: a name where the record has one, else
        # the frame's build-id and offset (Debian's libruby has no symbols for its statics).
        for link, frame in zip(links[1:], mine[1:]):
            assert link == frame if frame != "??" else link.startswith("b:"), (chain, mine)
        runs[name] = record["crash"]["signature"]
        # The SIGSEGV that started it is recorded; the process died of SIGABRT.
        assert record["signal"] == 6 and record["crash"]["original_fault"]["si_signo"] == 11
    assert runs["memcpy"] != runs["strlen"], runs
    # The exporter counts what the process died of: ABRT, as the kernel reported it.
    config = pctest.write_config(tmp_path / "e.conf", kernel)
    with pcexporter.Exporter(kernel, config, tmp_path) as exporter:
        ruby_series = {k: v for k, v in pcexporter.crashes(exporter.scrape()).items()
                       if "ruby" in k[1]}
    assert sum(ruby_series.values()) == 2 and {k[2] for k in ruby_series} == {"ABRT"}, \
        ruby_series


def test_jvm_fatal_error_signature_is_the_problematic_frame(kernel):
    java = shutil.which("java")
    if java is None:
        pytest.skip("needs openjdk-17-jdk-headless (packaging/test-deps.txt)")
    with tempfile.TemporaryDirectory(prefix="pcr-jvm-") as tmp:
        work = pathlib.Path(tmp)
        os.chmod(work, 0o777)
        src = work / "PutLong.java"
        shutil.copy(HERE.parent / "programs" / "runtimes" / "PutLong.java", src)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp}
        # -Xint: the write goes through the native Unsafe_PutLong, not a compiled intrinsic.
        record, core = crash(kernel, [java, "-Xint", "-XX:+CreateCoredumpOnCrash", src],
                             env=env, cwd=work)
        assert list(work.glob("hs_err_pid*.log")), "the JVM wrote no hs_err report"
        crashing = record["crash"]["stacks"][0]
        ours = pctest.frame_names(crashing["frames"])
        theirs = pctest.gdb_threads(os.path.realpath(java), core)[0][1]
        mine, gdbs = below_signal_frame(ours), below_signal_frame(theirs)
        # hs_err's "Problematic frame": the native method that faulted, first below the signal
        # frame, as gdb names it.
        assert mine[0] == gdbs[0] == "Unsafe_PutLong", (ours, theirs)
        chain = record["crash"]["signature_chain"].split(" ← ")
        assert chain[0] == "Unsafe_PutLong", chain
        assert not any("VMError" in l or l == "os::abort" for l in chain), chain


def test_uncaught_javascript_errors_are_not_one_signature(kernel):
    node = shutil.which("node")
    if node is None:
        pytest.skip("needs nodejs (packaging/test-deps.txt)")
    # V8 aborts in OS::Abort ← Isolate::CreateMessageOrAbort for any uncaught exception; what
    # differs is the code that threw.
    chains = {}
    for name, code in (("json", "JSON.parse('{')"),
                       ("type", "function f(o) { return o.x.y; } f({})")):
        record, core = crash(kernel, [node, "--abort-on-uncaught-exception", "-e", code])
        ours = pctest.frame_names(record["crash"]["stacks"][0]["frames"])
        theirs = pctest.gdb_threads(os.path.realpath(node), core)[0][1]
        assert "v8::base::OS::Abort" in " ".join(theirs[:8]), theirs
        chain = record["crash"]["signature_chain"]
        # The chain starts at the code that threw, below V8's throw-and-abort path.
        assert "OS::Abort" not in chain and "CreateMessageOrAbort" not in chain, (chain, ours)
        assert not chain.startswith("v8::internal::Isolate::"), (chain, ours)
        chains[name] = (record["crash"]["signature"], chain, ours[:12], theirs[:12])
    assert chains["json"][0] != chains["type"][0], chains
