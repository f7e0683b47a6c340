"""Right on every host, through the real kernel: core limits decided centrally
(honour_rlimit_core), the node's identity in the record (machine-id, boot-id, its own name, a
pod's identity), and kernels without %F (pidfd, before 6.16, as Debian 12's 6.1).

Needs root and a writable core_pattern (else skipped, exit code 77); every pattern is set under
the machine lock and restored.
"""
import contextlib
import os
import pathlib
import resource
import shutil
import subprocess
import uuid

import pytest

import pctest

if not pctest.can_set_core_pattern():
    pytest.skip("needs root and a writable core_pattern", allow_module_level=True)

ARGS_WITHOUT_PIDFD = pctest.RECOMMENDED_ARGS.replace(" -F%F", "")


@pytest.fixture(scope="module")
def rig():
    with pctest.kernel_rig("pcn-", install=False) as rig:
        for honour in ("yes", "no"):
            rig.config(honour, rate_limit_burst=0, honour_rlimit_core=honour)
        yield rig


def no_cores():
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def crash(argv, preexec=pctest.allow_cores):
    proc = subprocess.Popen([str(a) for a in argv], preexec_fn=preexec,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc.wait(timeout=60)
    assert proc.returncode < 0, f"{argv} exited with {proc.returncode}"
    return proc.pid


def crash_with(rig, config, argv, preexec=pctest.allow_cores, args=pctest.RECOMMENDED_ARGS):
    with pctest.core_pattern(rig.pattern(config, args)):
        pid = crash(argv, preexec)
        return pctest.record_for(rig.store, pid)


def test_ulimit_c_0_is_honoured_by_default(rig):
    r = crash_with(rig, "yes", [pctest.env_path("PC_CRASHER"), "segv"], preexec=no_cores)
    assert r["rlimit_core"] == 0
    assert not r["core"]["present"] and r["core"]["reason"] == "rlimit", r["core"]
    # No core was read, but the crash is recorded with its identity.
    assert r["signal_name"] == "SEGV" and r["comm"] == "pc_crasher"


def test_ulimit_c_0_not_honoured_keeps_the_core(rig):
    """honour_rlimit_core = no: the kernel streams the whole core whatever the limit."""
    r = crash_with(rig, "no", [pctest.env_path("PC_CRASHER"), "segv"], preexec=no_cores)
    assert r["rlimit_core"] == 0
    assert r["core"]["present"] and r["core"]["reason"] == "stored", r["core"]
    core = pctest.zstd_decompress(rig.store / r["core"]["path"])
    assert core[:4] == b"\x7fELF" and len(core) == r["core"]["size"]
    assert r["crash"]["symbol"]["name"] == "pc_crash_null_write"
    assert any("not honoured" in w for w in r["handler"]["warnings"]), r["handler"]["warnings"]


def test_the_node_is_the_handlers_not_the_crashers(rig):
    """In a UTS namespace of its own the crasher names its host (%h); the node section is the
    host's own: its name, machine-id and boot-id."""
    argv = ["unshare", "--uts", "sh", "-c",
            f'hostname not-the-node && exec "{pctest.env_path("PC_CRASHER")}" segv']
    r = crash_with(rig, "yes", argv)
    assert r["hostname"] == "not-the-node"
    node = r["node"]
    assert node["hostname"] == os.uname().nodename
    assert node["machine_id"] == pathlib.Path("/etc/machine-id").read_text().strip()
    boot_id = pathlib.Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert node["boot_id"] == boot_id
    info = subprocess.run([str(pctest.env_path("PC_CORECTL")), "--store", str(rig.store), "info",
                           "--no-pager", r["id"]], capture_output=True, text=True)
    assert info.returncode == 0, info.stderr
    assert f"machine-id {node['machine_id']}" in info.stdout
    assert f"boot-id {boot_id}" in info.stdout


@contextlib.contextmanager
def pod_cgroup():
    """A cgroup named as the kubelet names a pod's (systemd driver), removed afterwards."""
    unified = pathlib.Path("/sys/fs/cgroup")
    if (unified / "unified").is_dir():  # hybrid hierarchy: v2 is mounted below
        unified = unified / "unified"
    if not (unified / "cgroup.procs").exists():
        pytest.skip("no cgroup v2 hierarchy")
    pod = uuid.uuid4()
    slice_ = unified / f"pctest-kubepods-pod{str(pod).replace('-', '_')}.slice"
    container = slice_ / f"cri-containerd-{uuid.uuid4().hex}{uuid.uuid4().hex}.scope"
    try:
        container.mkdir(parents=True)
    except OSError as e:
        pytest.skip(f"cannot make a cgroup: {e}")
    try:
        yield str(pod), container
    finally:
        for d in (container, slice_):
            with contextlib.suppress(OSError):
                d.rmdir()


def test_pod_identity_from_cgroup_and_claimed_names(rig):
    with pod_cgroup() as (pod_uid, container):
        def in_pod():
            pctest.allow_cores()
            (container / "cgroup.procs").write_text(str(os.getpid()))

        env = dict(os.environ, POD_NAME="web-5d8f7-x2k", POD_NAMESPACE="shop",
                   SECRET_TOKEN="never-recorded")
        with pctest.core_pattern(rig.pattern("yes")):
            proc = subprocess.Popen([str(pctest.env_path("PC_CRASHER")), "segv"],
                                    preexec_fn=in_pod, env=env, stderr=subprocess.DEVNULL)
            proc.wait(timeout=60)
            r = pctest.record_for(rig.store, proc.pid)
    c = r["container"]
    assert c["pod_uid"] == pod_uid
    assert c["container_id"] == container.name[len("cri-containerd-"):-len(".scope")]
    assert c["claimed_pod_name"] == "web-5d8f7-x2k" and c["claimed_pod_namespace"] == "shop"
    text = (rig.store / r["store"]["host"] / r["store"]["executable"] / f"{r['id']}.json")
    assert "never-recorded" not in text.read_text()


@pytest.mark.parametrize("pidfd_arg", ["", "-F%Z"], ids=["no-F", "F-unexpanded"])
def test_kernel_without_pidfd(rig, pidfd_arg):
    """A pattern without %F (corectl install writes it so before 6.16), and -F%F as a kernel
    without %F expands it ("-F", as any unknown specifier): captured and analysed, and the
    record says what was missing."""
    args = ARGS_WITHOUT_PIDFD.replace(" --", f" {pidfd_arg} --") if pidfd_arg else \
        ARGS_WITHOUT_PIDFD
    r = crash_with(rig, "yes", [pctest.env_path("PC_CRASHER"), "segv"], args=args)
    assert r["core"]["present"] and r["core"]["reason"] == "stored", r["core"]
    assert r["crash"]["symbol"]["name"] == "pc_crash_null_write" and r["crash"]["symbol"]["verified"]
    assert r["crash"]["stacks"], "no backtrace"
    # /proc was read by pid, checked against the executable.
    assert "segv" in r["cmdline"] and r["executable"] == str(pctest.env_path("PC_CRASHER"))
    warnings = r["handler"]["warnings"]
    assert any("no pidfd from the kernel" in w for w in warnings), warnings
    if pidfd_arg:
        assert any("does not expand %F" in w for w in warnings), warnings


def test_an_executable_on_a_mount_only_its_namespace_had_is_named(rig, tmp_path):
    """A container's case: the program runs from a bind mount that only its own mount namespace
    has, and that namespace dies with it. The handler opened the module through map_files while
    the process existed, so the frames are named although the path leads nowhere on the host."""
    image = tmp_path / "image"
    image.mkdir()
    shutil.copy(pctest.env_path("PC_CRASHER"), image / "app")
    volume = tmp_path / "volume"
    volume.mkdir()
    script = f"mount --bind {image} {volume} && exec {volume}/app segv"
    r = crash_with(rig, "yes", ["unshare", "--mount", "--propagation", "private",
                                "sh", "-c", script])
    assert r["executable"] == f"{volume}/app"
    assert not (volume / "app").exists()  # the bind mount went with the namespace
    assert r["crash"]["symbol"]["name"] == "pc_crash_null_write", r["crash"]
    frames = r["crash"]["stacks"][0]["frames"]
    assert "pc_crash_null_write" in pctest.frame_names(frames)


def test_debugging_a_crash_whose_executable_went_with_its_namespace(rig, tmp_path):
    """`corectl debug` of that crash: the file is nowhere on the host and the record keeps no
    copy, so corectl says exactly that (and that only its build-id could bring it back), and
    still hands the debugger the core."""
    image = tmp_path / "image"
    image.mkdir()
    shutil.copy(pctest.env_path("PC_CRASHER"), image / "app")
    volume = tmp_path / "volume"
    volume.mkdir()
    script = f"mount --bind {image} {volume} && exec {volume}/app segv"
    r = crash_with(rig, "yes", ["unshare", "--mount", "--propagation", "private",
                                "sh", "-c", script])
    assert r["core"]["present"], r["core"]
    assert not (volume / "app").exists()
    build_id = next(m["build_id"] for m in r["mappings"] if m.get("path") == r["executable"])
    env = {k: v for k, v in os.environ.items() if k != "DEBUGINFOD_URLS"}
    out = subprocess.run([str(pctest.env_path("PC_CORECTL")), "--config", str(rig.work / "yes"),
                          "debug", r["id"], "--debugger", "gdb -nx -batch -ex bt"],
                         capture_output=True, env=env, timeout=120, stdin=subprocess.DEVNULL)
    err = out.stderr.decode(errors="replace")
    assert f"the executable '{volume}/app' is not on this host's file system" in err, err
    assert "gone with it" in err and "keeps no copy of the file" in err, err
    assert f"by build-id {build_id} from debuginfod (DEBUGINFOD_URLS) or not at all" in err, err
    # The debugger ran on the core all the same (gdb names the signal from the core).
    assert "SIGSEGV" in out.stdout.decode(errors="replace"), out.stdout + out.stderr
