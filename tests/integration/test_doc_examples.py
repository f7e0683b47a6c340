"""The examples of the man pages, the README and the runbook, run as written.

Each example command is taken from its document (corectl(1) and process-core(8) EXAMPLES, the
exporter's, the README's "Using it" block, the commands the runbook tells an operator to type)
and run with bash against a store the real handler wrote from real cores: crashes of ruby and
python3, of host web1, of pid 3756, last night's and this hour's. Only what cannot be the
machine's is replaced: `corectl` is the built one, pointed at the test's store; the exporter's
port is a free one; the runbook's placeholders (HOST, EXE, SIG, ID) are values of the store.
An example that fails as written, or that matches nothing of what it promises, fails here.
"""
import os
import pathlib
import re
import shlex
import socket
import subprocess
import time

import pytest

import corefixture
import pctest

SOURCE = pathlib.Path(__file__).resolve().parents[2]
MAN = SOURCE / "packaging" / "man"

# The README's examples name this id; the store's first crash is given it.
README_ID = "4d65897c0a1b2c3d"


def roff_examples(page):
    """The commands of a man page's EXAMPLES section: `.B` lines after `.TP`, and `.nf` blocks."""
    text = (MAN / page).read_text()
    section = re.search(r"^\.SH EXAMPLES\n(.*?)(?=^\.SH )", text, re.M | re.S).group(1)
    commands, literal = [], False
    for line in section.splitlines():
        if line.startswith(".nf"):
            literal = True
        elif line.startswith(".fi"):
            literal = False
        elif literal:
            commands.append(line)
        elif line.startswith(".B "):
            commands.append(line[3:])
    return [c.replace("\\-", "-").replace("\\(aq", "'") for c in commands]


def readme_examples():
    text = (SOURCE / "README.md").read_text()
    block = re.search(r"^## Using it\n```sh\n(.*?)^```", text, re.M | re.S).group(1)
    return [re.sub(r"\s+#.*$", "", line).strip() for line in block.splitlines() if line.strip()]


def runbook_commands():
    """Every `corectl …` the runbook gives in backticks (they may wrap across lines)."""
    text = (SOURCE / "docs" / "runbook.md").read_text()
    found = [" ".join(m.split()) for m in re.findall(r"`(corectl [^`]+)`", text)]
    return list(dict.fromkeys(found))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The store, a `corectl` wrapper on PATH that uses it, and the ids of its crashes."""
    base = tmp_path_factory.mktemp("examples")
    store = pctest.make_store(base)
    config = pctest.write_config(base / "c.conf", store)
    handler = str(pctest.env_path("PC_HANDLER"))
    now = int(time.time())
    yesterday_noon = int(time.mktime(time.localtime(now - 86400)[:3] + (12, 0, 0, 0, 0, -1)))
    crashes = [  # host, executable, signal, time, pid, core
        ("web1", "!usr!bin!ruby", 11, now - 1800, 3756, "segv"),
        ("web1", "!usr!bin!python3", 6, now - 600, 4100, "abort"),
        ("db1", "!usr!bin!python3", 11, yesterday_noon, 4200, "segv"),
    ]
    ids = []
    for host, exe, signo, when, pid, kind in crashes:
        before = {p.name for p in store.glob("*/*/*.json")}
        subprocess.run([handler, "--config", str(config), f"-t{when}", f"-P{pid}", f"-I{pid}",
                        "-u0", "-g0", "-d1", "--", host, str(signo), exe],
                       input=corefixture.crasher_core(kind), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        new = [p for p in store.glob("*/*/*.json") if p.name not in before]
        assert len(new) == 1
        ids.append(new[0].name[:-len(".json")])
    # The README's id for the first crash (its record, core and the id inside).
    first = next(store.glob(f"*/*/{ids[0]}.json"))
    corefixture.rename(first, README_ID, None)
    ids[0] = README_ID
    bindir = base / "bin"
    bindir.mkdir()
    wrapper = bindir / "corectl"
    wrapper.write_text("#!/bin/sh\nexec %s --config=%s \"$@\"\n"
                       % (shlex.quote(str(pctest.env_path("PC_CORECTL"))), shlex.quote(str(config))))
    wrapper.chmod(0o755)
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "LC_ALL": "C.UTF-8", "TZ": "UTC",
           "HOME": str(base)}
    return {"base": base, "store": store, "config": config, "env": env, "ids": ids}


def run(site, command, cwd=None):
    return subprocess.run(["bash", "-o", "pipefail", "-c", command], env=site["env"],
                          cwd=cwd or site["base"], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=120)


def check_corectl(site, command, tmp_path):
    r = run(site, command, cwd=tmp_path)
    assert r.returncode == 0, f"{command!r} failed ({r.returncode}): {r.stdout}{r.stderr}"
    words = shlex.split(command.split("|")[0])
    verb = next((w for w in words[1:] if not w.startswith("-")), "list")
    if verb in ("list", "groups", "info") and "--json" not in command:
        assert r.stdout.strip(), f"{command!r} printed nothing: {r.stderr}"
    if verb == "dump":
        out = words[words.index("-o") + 1]
        assert (tmp_path / out).read_bytes()[:4] == b"\x7fELF", command
    if verb == "debug":
        # gdb ran on the core (stdin is not a terminal: it reads EOF and quits).
        assert "core" in (r.stdout + r.stderr).lower(), r.stdout + r.stderr
    return r


def test_corectl_man_page_examples(site, tmp_path):
    examples = roff_examples("corectl.1")
    assert len(examples) >= 8, examples
    for command in examples:
        r = check_corectl(site, command, tmp_path)
        if "--json=pretty" in command:
            # Last night's crash, and only it (this hour's are after today 08:00 or not).
            assert site["ids"][2] in r.stdout, r.stdout
        if "ruby" in command and command.startswith("corectl list"):
            assert site["ids"][0] in r.stdout or site["ids"][0][:8] in r.stdout, r.stdout


def test_handler_man_page_examples(site, tmp_path):
    examples = roff_examples("process-core.8")
    handler = [c for c in examples if c.startswith("process-core ")]
    assert len(handler) == 1, examples
    store = pctest.make_store(tmp_path)
    pctest.write_config(tmp_path / "test.conf", store)
    (tmp_path / "core").write_bytes(corefixture.crasher_core("segv"))
    env = dict(site["env"], PATH=f"{pathlib.Path(pctest.env_path('PC_HANDLER')).parent}:/usr/bin:/bin")
    r = subprocess.run(["bash", "-c", handler[0]], env=env, cwd=tmp_path, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    records = list(store.glob("web1/*app/*.json"))
    assert len(records) == 1 and list(store.glob("web1/*app/*.core.zst"))
    # `corectl info` (the page's other example) reads the newest crash.
    assert "corectl info" in examples
    check_corectl(site, "corectl info", tmp_path)
    # corectl install changes the machine's kernel settings: the package tests run it.
    assert [c for c in examples if c.split()[0] in ("corectl", "process-core")] == examples


def test_exporter_man_page_examples(site):
    examples = roff_examples("process-core-exporter.8")
    port = str(free_port())
    served = [c for c in examples if c.startswith("process-core-exporter")]
    scrapes = [c for c in examples if c.startswith("curl") and "--cacert" not in c]
    assert served and scrapes, examples
    # Both addresses of the example, on a port of the test's.
    argv = shlex.split(served[0].replace("19464", port))
    ipv6 = socket.has_ipv6 and os.path.exists("/proc/net/if_inet6")
    if not ipv6:
        argv = [a for a in argv if "[::1]" not in a]
        argv = [a for i, a in enumerate(argv)
                if not (a == "--web.listen-address" and (i + 1 >= len(argv) or argv[i + 1].startswith("-")))]
    argv[0] = str(pctest.env_path("PC_EXPORTER"))
    exporter = subprocess.Popen(argv + ["--config", str(site["config"])], stderr=subprocess.PIPE,
                                text=True)
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            line = exporter.stderr.readline()
            if "listening on" in line and ("[::1]" in line or not ipv6 or "127.0.0.1" in line):
                break
            assert exporter.poll() is None, line
        for command in scrapes:
            r = run(site, command.replace("19464", port))
            assert r.returncode == 0, command + r.stderr
            assert "processcore_coredumps_total{" in r.stdout, r.stdout
    finally:
        exporter.terminate()
        exporter.wait(timeout=10)


def test_readme_examples(site, tmp_path):
    examples = readme_examples()
    assert any(c.startswith("corectl remove") for c in examples), examples
    for command in examples:
        if command.startswith("curl"):
            continue  # the exporter's examples are run above
        check_corectl(site, command, tmp_path)
    # The last examples removed ruby's core (vacuum) and then the crash itself (remove).
    assert not list(site["store"].glob(f"*/*/{README_ID}.*"))


def test_runbook_commands(site, tmp_path):
    commands = runbook_commands()
    assert len(commands) >= 6, commands
    ids = site["ids"]
    for command in commands:
        if command.startswith(("corectl install", "corectl debug")):
            continue  # install changes the kernel (package tests); debug is run above
        for placeholder, value in (("HOST", "web1"), ("EXE", "/usr/bin/python3"),
                                   ("SIG", "ABRT"), ("ID", ids[1])):
            command = re.sub(rf"\b{placeholder}\b", value, command)
        check_corectl(site, command, tmp_path)
