"""Packaging files that need no root: the dashboard, the sysctl drop-in, maintainer scripts, the
init script and cron entry for hosts without systemd."""
import json
import pathlib
import re
import subprocess
import time
import urllib.request

import pytest

import pctest

SOURCE = pctest.env_path("PC_SOURCE_DIR")
PACKAGING = SOURCE / "packaging"


def settings(text):
    return dict(re.findall(r"^([a-z_.]+)\s*=\s*(.+?)\s*$", text, re.M))


def test_shipped_sysctl_dropin_matches_corectl_install(tmp_path):
    """The package's drop-in says what `corectl install` applies on a 6.16+ kernel."""
    handler = pctest.env_path("PC_HANDLER")  # install checks that the handler exists
    proc = tmp_path / "proc"
    (proc / "kernel").mkdir(parents=True)
    (proc / "fs").mkdir()
    for name, value in [("kernel/core_pattern", "core"), ("kernel/core_pipe_limit", "0"),
                        ("fs/suid_dumpable", "0")]:
        (proc / name).write_text(value + "\n")
    r = subprocess.run([str(pctest.env_path("PC_CORECTL")), "install", "--kernel-release",
                        "6.18.0", "--handler", str(handler), "--sysctl-dir",
                        str(tmp_path / "sysctl.d"), "--state-dir", str(tmp_path / "state"),
                        "--proc-sys", str(proc)], capture_output=True)
    assert r.returncode == 0, r.stderr
    written = settings((tmp_path / "sysctl.d" / "50-process-core.conf").read_text()
                       .replace(str(handler), "/usr/sbin/process-core"))
    shipped = settings((PACKAGING / "sysctl" / "50-process-core.conf").read_text())
    assert shipped == written
    assert len(shipped["kernel.core_pattern"]) <= 127


DEBIAN = SOURCE / "debian"


def test_maintainer_scripts_are_valid_sh():
    for script in ("process-core.postinst", "process-core.prerm", "process-core.postrm",
                   "process-core.process-core-exporter.init", "rules"):
        path = DEBIAN / script
        assert path.stat().st_mode & 0o111, f"{script} is not executable"
        if script != "rules":
            r = subprocess.run(["sh", "-n", str(path)], capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
    for script in ("postinst", "prerm", "postrm"):
        assert "\n#DEBHELPER#\n" in (DEBIAN / f"process-core.{script}").read_text(), script


def test_source_package_lintian_pedantic_is_clean(tmp_path):
    """The source package (3.0 quilt: the tree without debian/ as the upstream tarball) builds
    with dpkg-source, and lintian finds nothing at --pedantic with info tags that is not
    overridden with a reason (debian/source/lintian-overrides)."""
    import shutil
    if not shutil.which("lintian") or not shutil.which("dpkg-source"):
        pytest.skip("needs lintian and dpkg-dev")
    version = re.match(r"process-core \(([^-)]+)-", (DEBIAN / "changelog").read_text()).group(1)
    tree = tmp_path / f"process-core-{version}"
    ignore = pctest._package_sources(SOURCE)
    shutil.copytree(SOURCE, tree, symlinks=True,
                    ignore=lambda d, names: ignore(d, names) | ({"debian"} if d == str(SOURCE) else set()))
    subprocess.run(["tar", "-czf", f"process-core_{version}.orig.tar.gz", tree.name],
                   cwd=tmp_path, check=True)
    shutil.copytree(DEBIAN, tree / "debian", symlinks=True)
    r = subprocess.run(["dpkg-source", "-b", tree.name], cwd=tmp_path, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    (dsc,) = tmp_path.glob("process-core_*.dsc")
    r = subprocess.run(["lintian", "--pedantic", "--display-info", "--tag-display-limit", "0",
                        str(dsc)], capture_output=True, text=True)
    problems = [l for l in r.stdout.splitlines() if l.startswith(("E:", "W:", "I:", "P:"))]
    assert not problems and r.returncode == 0, r.stdout + r.stderr


def unit_command(name):
    unit = (SOURCE / "systemd" / name).read_text()
    return (re.search(r"^ExecStart=(.+)$", unit, re.M).group(1),
            re.search(r"^User=(.+)$", unit, re.M).group(1), unit)


def test_init_script_runs_the_exporter_as_its_unit_does():
    """Without systemd the init script runs what process-core-exporter.service runs."""
    command, user, unit = unit_command("process-core-exporter.service")
    init = (DEBIAN / "process-core.process-core-exporter.init").read_text()
    daemon = re.search(r"^DAEMON=(\S+)$", init, re.M).group(1)
    args = re.search(r'^\s+"\$DAEMON" (.+?)(?: \|\| return)?$', init, re.M).group(1)
    assert f"{daemon} {args}" == command
    assert f"--reuid={user} --regid={user}" in init
    assert "AmbientCapabilities=CAP_SYSLOG" in unit and "--ambient-caps=-all,+syslog" in init
    assert "UMask=0077" in unit and "--umask 077" in init
    # Nothing of its own where systemd is PID 1, before anything else.
    code = init.split("### END INIT INFO", 1)[1]
    assert code.lstrip().split("\n")[2:3] == ["if [ -d /run/systemd/system ]; then"], code[:300]


def test_cron_entry_runs_retention_as_the_timer_does():
    command, user, unit = unit_command("process-core-vacuum.service")
    cron = (DEBIAN / "process-core.cron.d").read_text()
    (line,) = [l for l in cron.splitlines() if l and l[0].isdigit()]
    fields = line.split(None, 6)
    assert fields[5] == user
    assert fields[6].startswith("[ -d /run/systemd/system ] || ")
    assert "XDG_CACHE_HOME=/var/cache/process-core" in fields[6]
    assert "Environment=XDG_CACHE_HOME=/var/cache/process-core" in unit
    assert re.search(r" corectl vacuum >/dev/null$", fields[6]) and command == "/usr/bin/corectl vacuum"
    assert "OnCalendar=hourly" in (SOURCE / "systemd" / "process-core-vacuum.timer").read_text()


# PromQL words that are not metric names.
PROMQL_WORDS = {
    "sum", "by", "without", "increase", "rate", "topk", "bottomk", "count", "max", "min", "avg",
    "label_values", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "offset", "bool", "time", "vector", "absent", "changes", "delta", "irate", "resets",
    "sort_desc", "sort",
}


def dashboard_metrics(dashboard):
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["query"]["query"] for v in dashboard["templating"]["list"]
              if isinstance(v.get("query"), dict)]
    names = set()
    for expr in exprs:
        # Drop label matchers, strings and [ranges]; what remains are functions and metrics.
        # Grafana variables ($__range, ${__interval_ms}) first: their braces are not matchers.
        bare = re.sub(r'\$\{?\w+\}?', " ", expr)
        bare = re.sub(r'\{[^}]*\}|"[^"]*"|\[[^\]]*\]', " ", bare)
        for word in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", bare):
            if word not in PROMQL_WORDS and not word.startswith("$"):
                names.add(word)
    # Label names inside by (...) are not metrics either.
    for expr in exprs:
        for group in re.findall(r"(?:by|on) \(([^)]*)\)", expr):
            names -= {g.strip() for g in group.split(",")}
    return exprs, names


def test_dashboard_queries_use_only_metrics_the_exporter_serves(tmp_path):
    dashboard = json.loads((PACKAGING / "grafana" / "process-core.json").read_text())
    assert dashboard["panels"], "no panels"
    exprs, used = dashboard_metrics(dashboard)
    assert "processcore_coredumps_total" in used

    # Serve a store with a crash in it from the real exporter and read which families exist.
    store = pctest.make_store(tmp_path)
    conf = pctest.write_config(tmp_path / "pc.conf", store)
    subprocess.run([str(pctest.env_path("PC_HANDLER")), "--config", str(conf), "--", "h", "11",
                    "!usr!bin!x"], input=b"\x7fELF" + b"\0" * 64, check=True)
    exporter = subprocess.Popen([str(pctest.env_path("PC_EXPORTER")), "--store", str(store),
                                 "--web.listen-address", "127.0.0.1:0"], stderr=subprocess.PIPE,
                                text=True)
    try:
        port = None
        deadline = time.time() + 20
        while port is None and time.time() < deadline:
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", exporter.stderr.readline())
            port = int(m.group(1)) if m else None
        assert port, "exporter did not start"
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        exporter.terminate()
        exporter.wait(timeout=10)
    served = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    assert used <= served, f"dashboard uses metrics the exporter does not serve: {used - served}"


def test_retention_timer_and_service_verify(tmp_path):
    """The timer that runs `corectl vacuum` and its hardened service pass systemd-analyze verify."""
    import shutil
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze not installed")
    units = pctest.env_path("PC_SOURCE_DIR") / "systemd"
    service = (units / "process-core-vacuum.service").read_text()
    # verify checks that ExecStart exists: point it at the built corectl.
    service = service.replace("/usr/bin/corectl", str(pctest.env_path("PC_CORECTL")))
    (tmp_path / "process-core-vacuum.service").write_text(service)
    timer = tmp_path / "process-core-vacuum.timer"
    timer.write_text((units / "process-core-vacuum.timer").read_text())
    r = subprocess.run(["systemd-analyze", "verify", str(timer),
                        str(tmp_path / "process-core-vacuum.service")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"^ExecStart=\S+ vacuum$", service, re.M)
    for key in ["User=process-core", "ProtectSystem=strict", "ReadWritePaths=/var/lib/process-core",
                "NoNewPrivileges=yes", "PrivateNetwork=yes", "SystemCallFilter=@system-service",
                # the uploader's state, read to spare what is not uploaded yet
                "ReadOnlyPaths=-/var/lib/process-core-uploader"]:
        assert key in service, key
    assert "Persistent=true" in timer.read_text()
    r = subprocess.run(["systemd-analyze", "calendar", "hourly"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # The package installs both (exporter/CMakeLists.txt); debhelper enables and starts them.
    cmake = (pctest.env_path("PC_SOURCE_DIR") / "exporter" / "CMakeLists.txt").read_text()
    assert "process-core-vacuum.timer" in cmake and "process-core-vacuum.service" in cmake
    # debhelper (dh_installsystemd) enables and starts the units the build installs.
    assert "debhelper-compat (= 13)" in (DEBIAN / "control").read_text()


def test_uploader_service_verify(tmp_path):
    """The uploader's hardened unit passes systemd-analyze verify, reads the store without
    writing it, takes its credentials through LoadCredential=, and leaves room for the parts in
    flight: MemoryMax above the uploader's bound on part buffers, a task per connection."""
    import shutil
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze not installed")
    service = (SOURCE / "systemd" / "process-core-uploader.service").read_text()
    unit = tmp_path / "process-core-uploader.service"
    # verify checks that ExecStart exists: point it at the built binary.
    unit.write_text(service.replace("/usr/sbin/process-core-uploader",
                                    str(pctest.env_path("PC_UPLOADER"))))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"^ExecStart=/usr/sbin/process-core-uploader --config \S+ "
                     r"--credentials \$\{CREDENTIALS_DIRECTORY\}/s3$", service, re.M)
    for key in ["User=process-core", "LoadCredential=s3:/etc/process-core/s3-credentials",
                "ConditionPathExists=/etc/process-core/s3-credentials", "ProtectSystem=strict",
                "ReadOnlyPaths=/var/lib/process-core\n", "StateDirectory=process-core-uploader",
                "NoNewPrivileges=yes", "CapabilityBoundingSet=\n",
                "SystemCallFilter=@system-service"]:
        assert key in service, key
    assert "ReadWritePaths=/var/lib/process-core\n" not in service
    client = (SOURCE / "common" / "s3" / "client.hpp").read_text()
    memory = int(re.search(r"k_upload_memory = (\d+)ULL << 20;", client)[1]) << 20
    connections = int(re.search(r"k_max_parts_in_flight = (\d+);", client)[1])
    memory_max = int(re.search(r"^MemoryMax=(\d+)M$", service, re.M)[1]) << 20
    tasks_max = int(re.search(r"^TasksMax=(\d+)$", service, re.M)[1])
    assert memory_max >= memory + (32 << 20), (memory_max, memory)
    assert tasks_max >= connections + 8, (tasks_max, connections)
    assert "process-core-uploader.service" in (SOURCE / "uploader" / "CMakeLists.txt").read_text()


def test_removal_socket_and_service_verify(tmp_path):
    """The socket users' corectl remove talks to and its per-connection hardened service pass
    systemd-analyze verify, are installed and enabled by the package, and are removed with it."""
    import shutil
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze not installed")
    units = pctest.env_path("PC_SOURCE_DIR") / "systemd"
    socket_unit = (units / "process-core-remove.socket").read_text()
    service = (units / "process-core-remove@.service").read_text()
    built = pctest.env_path("PC_REMOVE")
    (tmp_path / "process-core-remove.socket").write_text(socket_unit)
    # verify checks that ExecStart exists: point it at the built binary.
    (tmp_path / "process-core-remove@.service").write_text(
        service.replace("/usr/libexec/process-core/process-core-remove", str(built)))
    r = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "process-core-remove.socket"),
                        str(tmp_path / "process-core-remove@.service")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    for key in ["ListenStream=/run/process-core-remove.sock", "Accept=yes", "MaxConnections=",
                "SocketMode=0666"]:
        assert key in socket_unit, key
    for key in ["User=process-core", "StandardInput=socket", "ProtectSystem=strict",
                "ReadWritePaths=/var/lib/process-core", "NoNewPrivileges=yes",
                "PrivateNetwork=yes", "CapabilityBoundingSet=\n", "RuntimeMaxSec=",
                "SystemCallFilter=@system-service"]:
        assert key in service, key
    assert re.search(r"^ExecStart=/usr/libexec/process-core/process-core-remove$", service, re.M)
    cmake = (PACKAGING / "CMakeLists.txt").read_text()
    assert "process-core-remove.socket" in cmake and "process-core-remove@.service" in cmake
    # debhelper enables, starts and stops every installed unit but those debian/rules excludes.
    rules = (PACKAGING.parent / "debian" / "rules").read_text()
    assert "-Xprocess-core-remove" not in rules and "--no-start process-core-remove" not in rules


def config_table():
    """The configuration table (common/config) as pc_config_keys prints it, in its order."""
    out = subprocess.run([str(pctest.env_path("PC_CONFIG_KEYS"))], capture_output=True,
                         check=True, text=True).stdout
    return [(row["name"], row["default"]) for row in json.loads(out)]


def test_documented_sample_shows_exactly_the_table():
    """The shipped file has one commented line "#key = default" for every key of the table, with
    the table's default, in the table's order, and no other key."""
    table = config_table()
    assert len(table) >= 20 and ("store", "/var/lib/process-core") in table
    shipped = (PACKAGING / "process-core.conf").read_text()
    documented = re.findall(r"^#([a-z_]+) = ?(.*?)[ \t]*$", shipped, re.M)
    assert documented == table, (set(documented) ^ set(table))
    # Nothing else looks like a setting (an uncommented or misspelt key).
    others = [l for l in shipped.splitlines() if l and not l.startswith("#")]
    assert not others, others


def test_man_page_shows_exactly_the_table():
    """process-core(8)'s CONFIGURATION section has an entry ".B key = default" for every key of
    the table, with the table's default, and none for a key the table does not have."""
    man = (PACKAGING / "man" / "process-core.8").read_text()
    section = man.split(".SH CONFIGURATION\n", 1)[1].split("\n.SH ", 1)[0]
    entries = re.findall(r"^\.TP\n\.B ([a-z_]+) = ?(.*?)[ \t]*$", section, re.M)
    entries = [(k, v.replace("\\-", "-")) for k, v in entries]
    assert entries == config_table(), set(entries) ^ set(config_table())


def test_corectl_man_page_covers_every_option():
    """Each option `corectl VERB --help` lists is in corectl(1), with the sections users look for."""
    man = (PACKAGING / "man" / "corectl.1").read_text().replace("\\-", "-").replace("\\fB", "")
    for section in ("ENVIRONMENT", "FILES", "EXAMPLES", "EXIT STATUS", "MATCHES"):
        assert f".SH {section}" in man or f'.SH "{section}"' in man, section
    corectl = str(pctest.env_path("PC_CORECTL"))
    for verb in ["", "list", "info", "dump", "debug", "groups", "vacuum", "remove", "install",
                 "uninstall"]:
        out = subprocess.run([corectl, *([verb] if verb else []), "--help"], capture_output=True,
                             check=True).stdout.decode()
        for opt in set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+|-[a-zA-Z1])\b", out)):
            assert opt in man, f"corectl {verb} --help lists {opt}, corectl.1 does not"
