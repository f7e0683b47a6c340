"""The shipped units under a real systemd: the package installed into a Debian 12 container
booted with systemd-nspawn (tests/lib/nspawn.py), the exporter serving, the vacuum timer's service
removing a core under quota, the uploader waiting for its credentials, and their sandboxes in
force.

Needs root, debootstrap and systemd-nspawn (packages debootstrap, systemd-container) and the
Debian mirror of this machine's apt sources the first time (the tree is cached). Every check of
what a unit may do runs as that unit inside the container: the shipped unit with only its command
replaced by a probe (a drop-in), or the unit itself. Memory and task limits are not checked:
the container gets no cgroup controllers.
"""
import json
import os
import pathlib
import textwrap

import pytest

import corefixture
import nspawn
import pctest

EXPORTER = "process-core-exporter.service"
UPLOADER = "process-core-uploader.service"
VACUUM = "process-core-vacuum.service"
TIMER = "process-core-vacuum.timer"
STORE = "/var/lib/process-core"
CONFIG = "/etc/process-core/process-core.conf"
PKG_DIR = "/mnt/process-core-package"
CRASHER_UID = 1000  # the crashing user; no such user in the container, as none in a unit's view


def pid_namespaces():
    """The PID namespaces that have a process on the host (a container left running has one)."""
    out = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            out.add(os.readlink(f"/proc/{pid}/ns/pid"))
        except OSError:
            pass  # ended meanwhile
    return out


def host_state():
    """What a run must leave exactly as it found on the host."""
    nspawn_dirs = sorted(str(p) for p in pathlib.Path("/run/systemd").glob("nspawn/**/*"))
    return {
        "mounts": sorted(line.split(" ", 4)[4] for line in
                         pathlib.Path("/proc/self/mountinfo").read_text().splitlines()),
        "core_pattern": pathlib.Path(pctest.CORE_PATTERN).read_text(),
        "nspawn state": (os.path.exists("/run/systemd/nspawn"), nspawn_dirs),
    }


@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    try:
        nspawn.check_host()
    except nspawn.Unavailable as e:
        pytest.skip(str(e))
    return pctest.build_deb(tmp_path_factory.mktemp("deb"))


@pytest.fixture(scope="module")
def machine(deb):
    try:
        root = nspawn.tree(nspawn.deb_depends(deb))
    except nspawn.Unavailable as e:
        pytest.skip(str(e))
    # The machine lock: tests that crash through the kernel set core_pattern meanwhile, and the
    # host's must be seen unchanged by the package's postinst inside.
    with pctest.machine_lock():
        pristine = nspawn.fingerprint(root)
        before = host_state()
        namespaces = pid_namespaces()
        try:
            with nspawn.Machine(nspawn.deb_depends(deb), binds=[(deb.parent, PKG_DIR)]) as m:
                m.install_deb(f"{PKG_DIR}/{deb.name}")
                yield m
        except nspawn.Unavailable as e:
            pytest.skip(str(e))
        finally:
            assert host_state() == before, "the container left the host changed"
            assert pid_namespaces() <= namespaces, "a process of the container is left"
            assert nspawn.fingerprint(root) == pristine, "a boot changed the cached tree"


def unit_log(m, unit):
    """What `unit` itself printed, every run of it so far (journald takes a finished unit's
    lines asynchronously: wait for what is expected)."""
    return m.nsenter(["journalctl", "--no-pager", "-o", "cat", f"_SYSTEMD_UNIT={unit}"]).stdout


# The checks a probe runs, each printing one `probe:NAME=yes|no` line. Each is a "yes" for the
# store user outside any sandbox (test_probes_can_see_yes).
PROBES = {
    # The store user owns the store: only the unit's file system view makes it read-only.
    "store_writable": f"touch {STORE}/.probe && rm -f {STORE}/.probe",
    # chown() of a file to its own owner needs no privilege: only a seccomp filter refuses it.
    "chown_allowed": 'f=$(mktemp) && chown "$(id -u):$(id -g)" "$f"; r=$?; rm -f "$f"; exit $r',
    # Lowering one's own priority needs no privilege either (setpriority, in @resources).
    "setpriority_allowed": "renice -n 19 -p $$ >/dev/null",
    # An AF_INET socket at all (connecting to a closed port is refused, which is fine).
    "inet_socket_allowed": "! (exec 3<>/dev/tcp/127.0.0.1/9) 2>&1 | grep -q 'not supported'",
}
PROBE_SCRIPT = "/run/process-core-probe.sh"


def write_probe(m):
    script = "".join(f"if ( {check} ) 2>/dev/null; then echo probe:{name}=yes; "
                     f"else echo probe:{name}=no; fi\n" for name, check in PROBES.items())
    path = pathlib.Path(f"/proc/{m.pid}/root{PROBE_SCRIPT}")
    path.write_text("#!/bin/bash\n" + script)
    path.chmod(0o755)


def parse_probe(text):
    return dict(line.removeprefix("probe:").split("=", 1) for line in text.splitlines()
                if line.startswith("probe:"))


def probe_as(m, unit):
    """Runs the PROBES as `unit` itself: its shipped sandbox, with only ExecStart= (and where
    its output goes) replaced by a runtime drop-in, removed after. Returns {name: "yes"|"no"}."""
    write_probe(m)
    dropin = pathlib.Path(f"/proc/{m.pid}/root/run/systemd/system/{unit}.d")
    out = pathlib.Path(f"/proc/{m.pid}/root/run/probe-{unit}.out")
    dropin.mkdir(parents=True, exist_ok=True)
    # The output file is opened by the container's systemd, before the sandbox is set up.
    (dropin / "probe.conf").write_text(textwrap.dedent(f"""\
        [Service]
        Type=oneshot
        Restart=no
        StandardOutput=truncate:/run/probe-{unit}.out
        ExecStart=
        ExecStart={PROBE_SCRIPT}
        """))
    m.nsenter(["systemctl", "daemon-reload"])
    try:
        m.nsenter(["systemctl", "stop", unit])
        m.nsenter(["systemctl", "start", unit])
        text = out.read_text()
    finally:
        (dropin / "probe.conf").unlink()
        dropin.rmdir()
        out.unlink(missing_ok=True)
        m.nsenter(["systemctl", "daemon-reload"])
    return parse_probe(text)


def metrics_inside(m):
    """GET /metrics from inside the container, as an unprivileged transient unit."""
    script = ("exec 3<>/dev/tcp/127.0.0.1/19464 && "
              "printf 'GET /metrics HTTP/1.0\\r\\nHost: 127.0.0.1\\r\\nConnection: close\\r\\n\\r\\n' >&3 "
              "&& cat <&3")
    return m.run_unit(["bash", "-c", script], DynamicUser="yes")


def test_exporter_serves_metrics(machine):
    pctest.wait_until(lambda: machine.show(EXPORTER, "ActiveState")["ActiveState"] == "active",
                      timeout=30, what="the exporter to be active")
    r = None

    def served():
        nonlocal r
        r = metrics_inside(machine)
        return r.returncode == 0 and "processcore_" in r.stdout

    pctest.wait_until(served, timeout=30, what="the exporter to serve /metrics")
    assert r.stdout.startswith("HTTP/1.") and " 200 " in r.stdout.splitlines()[0], r.stdout[:200]
    props = machine.show(EXPORTER, "MainPID", "User", "NRestarts")
    assert props["User"] == "process-core" and props["NRestarts"] == "0"
    status = pathlib.Path(f"/proc/{machine.pid}/root/proc/{props['MainPID']}/status")
    fields = dict(line.split(":", 1) for line in status.read_text().splitlines())
    uid = machine.nsenter(["id", "-u", "process-core"]).stdout.strip()
    assert fields["Uid"].split()[:2] == [uid, uid]
    assert fields["NoNewPrivs"].strip() == "1" and fields["Seccomp"].strip() == "2"
    # CAP_SYSLOG at most (systemd-nspawn gives the container's own bounding set none of it).
    assert int(fields["CapEff"], 16) & ~(1 << 34) == 0 and int(fields["CapBnd"], 16) & ~(1 << 34) == 0


def test_probes_can_see_yes(machine):
    """The store user in a unit without a sandbox: every probe passes, so a "no" below is the
    sandbox's doing."""
    write_probe(machine)
    r = machine.run_unit([PROBE_SCRIPT], User="process-core")
    assert parse_probe(r.stdout) == {name: "yes" for name in PROBES}, r.stdout + r.stderr


def test_exporter_sandbox_in_force(machine):
    out = probe_as(machine, EXPORTER)
    assert out == {"store_writable": "no", "chown_allowed": "no", "setpriority_allowed": "no",
                   "inet_socket_allowed": "yes"}, out
    # The probe replaced the exporter for a moment: it serves again once restarted.
    machine.nsenter(["systemctl", "restart", EXPORTER])
    pctest.wait_until(lambda: metrics_inside(machine).returncode == 0, timeout=30,
                      what="the exporter to serve again")


def test_vacuum_sandbox_in_force(machine):
    out = probe_as(machine, VACUUM)
    assert out == {"store_writable": "yes", "chown_allowed": "no", "setpriority_allowed": "no",
                   "inet_socket_allowed": "no"}, out


def test_vacuum_timer_is_active(machine):
    props = machine.show(TIMER, "ActiveState", "UnitFileState", "NextElapseUSecRealtime", "Unit")
    assert props["ActiveState"] == "active" and props["UnitFileState"] == "enabled", props
    assert props["Unit"] == VACUUM and props["NextElapseUSecRealtime"], props


def test_vacuum_service_removes_a_core_over_quota(machine):
    m = machine
    # A crash of a user's process, written by the shipped handler run as the kernel would (root,
    # the core on stdin), so the store holds what it holds in production: the store user's
    # record and core, with the crashing user's ACL entry.
    inside = pathlib.Path(f"/proc/{m.pid}/root/root/core")
    inside.write_bytes(corefixture.elf_core())
    handler = (f"exec /usr/sbin/process-core -P4242 -I4242 -u{CRASHER_UID} -g{CRASHER_UID} -d1 "
               f"-t$(date +%s) -- web1 11 '!usr!bin!app' < /root/core")
    r = m.run_unit(["sh", "-c", handler])
    assert r.returncode == 0, r.stderr
    records = m.sh(f"find {STORE} -name '*.json' -not -path '*/.*'").stdout.split()
    assert len(records) == 1, records
    record = records[0]
    core = record.removesuffix(".json") + ".core.zst"
    assert m.sh(f"stat -c %U {record} {core}").stdout.split() == ["process-core"] * 2
    m.sh(f"setfacl -m u:{CRASHER_UID}:r {record}")  # the handler's grant, made sure of
    acl_before = m.nsenter(["getfacl", "--omit-header", "--numeric", record]).stdout
    assert f"user:{CRASHER_UID}:r--" in acl_before

    # Room for the record but not for its core (records count toward max_use too).
    blocks, block_size = m.sh(f"stat -c '%b %B' {record}").stdout.split()
    max_use = int(blocks) * int(block_size)
    m.sh(f"cp {CONFIG} {CONFIG}.orig && printf 'max_use = {max_use}\\nkeep_free = 0\\n' >> {CONFIG}")
    try:
        m.nsenter(["systemctl", "start", VACUUM], check=False)
    finally:
        m.sh(f"mv {CONFIG}.orig {CONFIG}")
    props = m.show(VACUUM, "Result", "ExecMainStatus")
    summaries = lambda: [l for l in unit_log(m, VACUUM).splitlines() if "core(s)" in l]
    log = unit_log(m, VACUUM)
    assert props["Result"] == "success" and props["ExecMainStatus"] == "0", (props, log)
    pctest.wait_until(summaries, timeout=30, what="the vacuum's summary in the journal")
    assert summaries()[-1].startswith("Removed 0 record(s) and 1 core(s)"), unit_log(m, VACUUM)
    assert m.sh(f"test -e {core} && echo kept || echo gone").stdout.strip() == "gone", log
    data = json.loads(m.nsenter(["cat", record]).stdout)
    assert data["core"].get("removed"), data["core"]
    assert m.sh(f"stat -c '%U %G %a' {record}").stdout.split() == ["process-core", "process-core",
                                                                     "640"]
    assert m.nsenter(["getfacl", "--omit-header", "--numeric", record]).stdout == acl_before


def test_a_user_removes_their_own_crash_through_the_shipped_socket(machine):
    """The package's removal socket under a real systemd: a user's corectl remove reaches a
    process-core-remove@ instance (the shipped sandbox), which removes that user's crash and
    refuses another user's; root's corectl removes any crash directly."""
    m = machine
    socket_unit = "process-core-remove.socket"
    props = m.show(socket_unit, "ActiveState", "UnitFileState", "Accept")
    assert props == {"ActiveState": "active", "UnitFileState": "enabled", "Accept": "yes"}, props
    inside = pathlib.Path(f"/proc/{m.pid}/root/root/core-remove")
    ids = {}
    for uid in (2001, 2002):
        inside.write_bytes(corefixture.elf_core(auxv_ids=(uid, uid)))
        r = m.run_unit(["sh", "-c", f"exec /usr/sbin/process-core -P4242 -I4242 -u{uid} -g{uid} "
                                    f"-d1 -t$(date +%s) -- web1 11 '!usr!bin!rm-me' "
                                    f"< /root/core-remove"])
        assert r.returncode == 0, r.stderr
        records = [json.loads(m.nsenter(["cat", p]).stdout) for p in
                   m.sh(f"find {STORE}/web1 -name '*.json' -not -name '.*'").stdout.split()]
        theirs = [rec["id"] for rec in records if rec.get("uid") == uid]
        assert len(theirs) == 1, records
        ids[uid] = theirs[0]
    as_user = lambda uid, *args: m.sh(
        f"setpriv --reuid {uid} --regid {uid} --clear-groups env CORECTL_CACHE=0 "
        f"corectl --no-pager {' '.join(args)}; echo rc=$?", check=False)
    # Another user's crash: the service answers "not yours" (corectl cannot even see it).
    r = as_user(2002, "remove", ids[2001])
    assert "rc=0" not in r.stdout, r.stdout + r.stderr
    assert m.sh(f"ls {STORE}/web1/usr!bin!rm-me/{ids[2001]}.json").returncode == 0
    # Their own: removed by the service, core and record, counted in the ledger.
    r = as_user(2001, "remove", ids[2001])
    assert r.stdout.rstrip().endswith("rc=0") and f"Removed {ids[2001]}" in r.stdout, \
        r.stdout + r.stderr
    left = m.sh(f"find {STORE}/web1 -name '{ids[2001]}*'").stdout.split()
    assert left == [], left
    ledger = json.loads(m.nsenter(["cat", f"{STORE}/.ledger.json"]).stdout)
    assert any(s["executable"] == "/usr/bin/rm-me" and s["count"] >= 1
               for s in ledger["series"]), ledger
    log = lambda: m.nsenter(["journalctl", "--no-pager", "-o", "cat", "-u",
                             "process-core-remove@*"], check=False).stdout
    pctest.wait_until(lambda: f"uid 2001: removed web1/usr!bin!rm-me/{ids[2001]}" in log(),
                      timeout=30, what="the service's line in the journal")
    # Root, directly (no service involved).
    r = m.sh(f"corectl --no-pager remove {ids[2002]}")
    assert f"Removed {ids[2002]}" in r.stdout, r.stdout + r.stderr


def test_uploader_waits_for_credentials_then_runs_in_its_sandbox(machine):
    """The uploader's unit does nothing until the credentials file exists; then it runs as the
    store user with the credentials systemd copied for it alone (LoadCredential=), the store
    read-only, its own state directory writable, in its seccomp filter. The container has no
    network: the endpoint is a closed port, and the failure it logs is a connection's, never a
    credentials' or a configuration's."""
    m = machine
    creds = "/etc/process-core/s3-credentials"
    dropin = "/etc/process-core/process-core.conf.d/50-upload.conf"
    m.nsenter(["systemctl", "start", UPLOADER], check=False)
    props = m.show(UPLOADER, "ActiveState", "ConditionResult", "UnitFileState")
    assert props["ActiveState"] == "inactive" and props["ConditionResult"] == "no", props
    m.sh(f"mkdir -p {dropin.rsplit('/', 1)[0]} && printf 'upload_url = s3://crashes/fleet\n"
         f"upload_endpoint = http://127.0.0.1:9\nupload_node = node-c\n' > {dropin} && "
         f"printf '[default]\naws_access_key_id = AK\naws_secret_access_key = SK\n' > {creds} "
         f"&& chmod 0600 {creds}")
    try:
        m.nsenter(["systemctl", "start", UPLOADER])
        pctest.wait_until(lambda: m.show(UPLOADER, "ActiveState")["ActiveState"] == "active",
                          timeout=30, what="the uploader to be active")
        props = m.show(UPLOADER, "MainPID", "User", "NRestarts")
        assert props["User"] == "process-core" and props["NRestarts"] == "0", props
        status = pathlib.Path(f"/proc/{m.pid}/root/proc/{props['MainPID']}/status")
        fields = {}

        def executed():  # "active" comes with the fork; the sandbox is complete at the exec
            fields.update(line.split(":", 1) for line in status.read_text().splitlines())
            return fields["Name"].strip() == "process-core-up"  # the comm, 15 characters

        pctest.wait_until(executed, timeout=30, what="the uploader's exec")
        assert fields["NoNewPrivs"].strip() == "1" and fields["Seccomp"].strip() == "2"
        assert int(fields["CapEff"], 16) == 0, fields["CapEff"]
        # Its view: the credential systemd copied (0400, its user's), the store read-only.
        view = m.nsenter(["nsenter", "-t", props["MainPID"], "-m", "--", "sh", "-c",
                          "stat -c '%a %U' $(ls -d /run/credentials/*/s3); "
                          f"touch {STORE}/.probe 2>/dev/null && echo store-writable || "
                          "echo store-read-only"]).stdout.split("\n")
        assert view[0] == "400 process-core", view
        assert view[1] == "store-read-only", view
        # A crash to send: the sweep tries, and fails on the network only.
        inside = pathlib.Path(f"/proc/{m.pid}/root/root/core-upload")
        inside.write_bytes(corefixture.elf_core())
        r = m.run_unit(["sh", "-c", "exec /usr/sbin/process-core -P4242 -I4242 -u1000 -g1000 -d1 "
                                    "-t$(date +%s) -- web1 11 '!usr!bin!up' < /root/core-upload"])
        assert r.returncode == 0, r.stderr
        failed = lambda: "Failed to upload crash" in unit_log(m, UPLOADER)
        pctest.wait_until(failed, timeout=60, what="the uploader's attempt in the journal")
        log = unit_log(m, UPLOADER)
        assert "Refusing credentials" not in log and "Failed to open credentials" not in log, log
        assert "SK" not in log.split(), log  # the secret never reaches the journal
        assert m.show(UPLOADER, "ActiveState")["ActiveState"] == "active"
        state = m.sh("ls /var/lib/process-core-uploader").stdout.split()
        assert any(n.endswith(".json") for n in state), state
    finally:
        m.nsenter(["systemctl", "stop", UPLOADER], check=False)
        m.sh(f"rm -f {creds} {dropin}")

