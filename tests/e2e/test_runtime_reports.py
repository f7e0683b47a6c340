"""The runtime's own crash report kept beside the record, through the real kernel: the JVM's
hs_err_pid<pid>.log (or its -XX:ErrorFile=), Node's diagnostic report on a fatal error, and a
file named by RUBY_CRASH_REPORT (Debian's Ruby 3.1 does not write one, so a small crasher
carries the variable and the test writes, or does not write, the file while it runs). The handler reads it with the crashing user's rights, never through a symbolic
link, only a regular file of that user written since the process started; `corectl info` shows
it. Skipped without root or a writable core_pattern.
"""
import os
import pathlib
import shutil
import subprocess
import tempfile
import time

import pytest

import pctest

if not pctest.can_set_core_pattern():
    pytest.skip("needs root and a writable core_pattern", allow_module_level=True)

HERE = pathlib.Path(__file__).resolve().parent
NOBODY = 65534


@pytest.fixture(scope="module")
def kernel():
    with pctest.kernel_rig("pcrr-", rate_limit_burst=0) as rig:
        yield rig


def info(rig, rid):
    r = subprocess.run([str(pctest.env_path("PC_CORECTL")), "--store", str(rig.store), "info",
                        rid], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def as_user(uid):
    def become():
        pctest.allow_cores()
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    return become


def crash_with_report(rig, work, report, prepare, uid=NOBODY):
    """Runs the crasher as nobody with RUBY_CRASH_REPORT=`report`; `prepare(start)` runs while it
    waits (after its start), then it crashes. Returns its record."""
    env = {b"PATH": b"/usr/bin:/bin",
           b"RUBY_CRASH_REPORT": report if isinstance(report, bytes) else report.encode()}
    proc = subprocess.Popen([str(pctest.env_path("PC_CRASHER")), "segv-on-eof"],
                            preexec_fn=as_user(uid), env=env, cwd=work, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout.readline() == b"ready\n"
    time.sleep(1.2)  # what prepare() writes is later than the start, to the second
    prepare()
    proc.stdin.close()
    proc.wait(timeout=60)
    proc.stdout.close()
    assert proc.returncode < 0
    return pctest.record_for(rig.store, proc.pid, timeout=60)


@pytest.fixture
def work():
    with tempfile.TemporaryDirectory(prefix="pcrr-w-") as tmp:
        os.chmod(tmp, 0o777)
        yield pathlib.Path(tmp)


def stored_report(rig, record):
    return pathlib.Path(record["_path"]).parent / f"{record['id']}.report"


def test_a_report_the_crashing_user_wrote_is_kept_and_shown(kernel, work):
    report = work / "ruby-crash.log"

    def write():
        report.write_text("-- Control frame information --\nc:0001 p:0000 \x1b[31mred\n")
        os.chown(report, NOBODY, NOBODY)

    record = crash_with_report(kernel, work, str(report), write)
    rr = record["runtime_report"]
    assert rr["runtime"] == "ruby" and rr["path"] == str(report), rr
    assert "refused" not in rr, rr
    kept = stored_report(kernel, record)
    assert kept.read_bytes() == report.read_bytes()
    assert rr["size"] == len(report.read_bytes()) and rr["truncated"] is False
    st = kept.stat()
    assert st.st_mode & 0o777 == 0o600
    shown = info(kernel, record["id"])
    assert "Runtime report" in shown and "-- Control frame information --" in shown
    assert "\x1b" not in shown and "\\x1b[31mred" in shown  # escaped


def test_a_large_report_is_cut(kernel, work):
    report = work / "big.log"

    def write():
        report.write_bytes(b"x" * (300 << 10))
        os.chown(report, NOBODY, NOBODY)

    record = crash_with_report(kernel, work, str(report), write)
    rr = record["runtime_report"]
    assert rr["truncated"] is True and rr["size"] == 256 << 10, rr
    assert rr["file_size"] == 300 << 10
    assert stored_report(kernel, record).stat().st_size == 256 << 10


def test_etc_shadow_is_not_stored(kernel, work):
    record = crash_with_report(kernel, work, "/etc/shadow", lambda: None)
    rr = record["runtime_report"]
    assert rr["path"] == "/etc/shadow" and rr["refused"], rr
    assert "stored" not in rr
    assert not stored_report(kernel, record).exists()
    assert "not kept" in info(kernel, record["id"])


def test_a_symbolic_link_is_refused(kernel, work):
    target = work / "target.log"
    link = work / "link.log"

    def write():
        target.write_text("report\n")
        os.chown(target, NOBODY, NOBODY)
        link.symlink_to(target)
        os.lchown(link, NOBODY, NOBODY)

    record = crash_with_report(kernel, work, str(link), write)
    rr = record["runtime_report"]
    assert rr["refused"] == "a symbolic link on the way", rr
    assert not stored_report(kernel, record).exists()


def test_a_file_of_another_uid_is_refused(kernel, work):
    report = work / "root.log"
    record = crash_with_report(kernel, work, str(report), lambda: report.write_text("root's\n"))
    rr = record["runtime_report"]
    assert rr["refused"].startswith("owned by uid 0"), rr
    assert not stored_report(kernel, record).exists()


def test_a_file_older_than_the_process_is_refused(kernel, work):
    report = work / "old.log"

    def write():
        report.write_text("from an earlier run\n")
        os.chown(report, NOBODY, NOBODY)
        old = time.time() - 3600
        os.utime(report, (old, old))

    record = crash_with_report(kernel, work, str(report), write)
    rr = record["runtime_report"]
    assert rr["refused"] == "last modified before the process started", rr
    assert not stored_report(kernel, record).exists()


def test_a_report_that_was_not_written_is_recorded_as_missing(kernel, work):
    record = crash_with_report(kernel, work, "crash-%p.log", lambda: None)
    rr = record["runtime_report"]
    assert rr["path"] == "crash-%p.log" and rr["refused"] == "not found", rr


@pytest.mark.parametrize("error_file", [None, "reports/jvm-%p.err"], ids=["default", "ErrorFile"])
def test_the_jvm_hs_err_report_is_kept_and_shown(kernel, work, error_file):
    """hs_err_pid<pid>.log in the working directory, or where -XX:ErrorFile= says (%p the pid)."""
    java = shutil.which("java")
    if java is None:
        pytest.skip("needs openjdk-17-jdk-headless (packaging/test-deps.txt)")
    src = work / "PutLong.java"
    shutil.copy(HERE.parent / "programs" / "runtimes" / "PutLong.java", src)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work)}
    options = []
    if error_file:
        (work / "reports").mkdir()
        options = [f"-XX:ErrorFile={work / error_file}"]
    proc = subprocess.Popen([java, "-Xint", "-XX:+CreateCoredumpOnCrash", *options, str(src)],
                            preexec_fn=pctest.allow_cores, env=env, cwd=work,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc.wait(timeout=180)
    assert proc.returncode < 0
    record = pctest.record_for(kernel.store, proc.pid, timeout=90)
    hs_err = list(work.glob("reports/jvm-*.err" if error_file else "hs_err_pid*.log"))
    assert hs_err, "the JVM wrote no hs_err report"
    rr = record["runtime_report"]
    named = str(work / error_file) if error_file else hs_err[0].name
    assert rr["runtime"] == "jvm" and rr["path"] == named, rr
    assert "refused" not in rr, rr
    kept = stored_report(kernel, record).read_bytes()
    assert kept == hs_err[0].read_bytes()[:256 << 10]
    assert b"Problematic frame" in kept
    shown = info(kernel, record["id"])
    assert "Runtime report" in shown and "Problematic frame" in shown


def test_a_node_fatal_error_report_is_kept_and_shown(kernel, work):
    """Node with --report-on-fatalerror and --report-directory: out of heap, it writes its
    diagnostic report (report.<date>.<time>.<pid>.<thread>.<seq>.json) and aborts; the
    handler finds the newest report of that pid in the directory."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("needs nodejs (packaging/test-deps.txt)")
    reports = work / "node-reports"
    reports.mkdir()
    reports.chmod(0o777)
    grow = "const a = []; for (;;) a.push(new Array(1e5).fill(a.length));"
    proc = subprocess.Popen([node, "--report-on-fatalerror", f"--report-directory={reports}",
                             "--max-old-space-size=24", "-e", grow],
                            preexec_fn=as_user(NOBODY), env={"PATH": "/usr/bin:/bin"}, cwd=work,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc.wait(timeout=180)
    assert proc.returncode < 0, proc.returncode
    record = pctest.record_for(kernel.store, proc.pid, timeout=90)
    written = list(reports.glob(f"report.*.{proc.pid}.*.json"))
    assert len(written) == 1, list(reports.iterdir())
    rr = record["runtime_report"]
    assert rr["runtime"] == "node" and "refused" not in rr, rr
    # The path as searched for (the directory's newest report of that pid), and its size.
    assert rr["path"] == str(reports / f"report.*.{proc.pid}.*.json"), rr
    assert rr["file_size"] == written[0].stat().st_size, rr
    kept = stored_report(kernel, record).read_bytes()
    assert kept == written[0].read_bytes()[:256 << 10]
    assert b'"event": "Allocation failed' in kept or b"heap out of memory" in kept, kept[:400]
    assert "Runtime report" in info(kernel, record["id"])


def test_a_path_that_is_not_text_is_recorded_escaped(kernel, work):
    record = crash_with_report(kernel, work, b"bad-\xff\x1b[2J.log", lambda: None)
    rr = record["runtime_report"]
    assert rr["refused"] == "not found", rr
    assert rr["path"] == "bad-\ufffd\x1b[2J.log", rr  # valid UTF-8 in the record
    shown = info(kernel, record["id"])
    assert "\x1b" not in shown and "bad-\ufffd\\x1b[2J.log" in shown


def test_a_user_who_may_read_their_core_may_read_their_report(kernel, work):
    uid = 4242  # a person's uid (not a system one): the handler grants them their crash
    report = work / "mine.log"

    def write():
        report.write_text("my report\n")
        os.chown(report, uid, uid)

    record = crash_with_report(kernel, work, str(report), write, uid=uid)
    assert record["core"]["access"] == "owner", record["core"]
    kept = stored_report(kernel, record)
    acl = subprocess.run(["getfacl", "-cn", str(kept)], capture_output=True, text=True,
                         check=True).stdout.split()
    assert f"user:{uid}:r--" in acl, acl
