"""The shell completions shipped for corectl, exercised in a real interactive bash (compgen-style,
through COMP_WORDS) and a real interactive zsh (typing Tab through zpty), against a store the
real handler wrote."""
import os
import pathlib
import shutil
import subprocess

import pytest

import corefixture
import pctest

SOURCE = pathlib.Path(__file__).resolve().parent.parent.parent / "packaging" / "completion"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    base = tmp_path_factory.mktemp("completion")
    store, config, _ = corefixture.build_store(base)
    # A hostname that would run a command if a completion ever evaluated it.
    pwned = base / "pwned"
    hostile = f"$(touch {pwned})"
    subprocess.run([str(pctest.env_path("PC_HANDLER")), "--config", str(config), "-t1763790000",
                    "--", hostile, "11", "!usr!bin!app"], input=corefixture.elf_core(), check=True)
    return config, pwned


def complete(config, *words):
    """The completions bash offers for `corectl --config CONFIG WORDS…` (the last word is the
    one being completed)."""
    line = ["corectl", "--config", str(config), *words]
    script = (f"source {SOURCE / 'corectl.bash'}\n"
              f"COMP_WORDS=({' '.join(_q(w) for w in line)})\n"
              f"COMP_CWORD={len(line) - 1}\n"
              "_corectl\n"
              "printf '%s\\n' \"${COMPREPLY[@]}\"\n")
    env = dict(os.environ, PATH=f"{pctest.env_path('PC_CORECTL').parent}:{os.environ['PATH']}",
               CORECTL_CACHE="0", HOME="/nonexistent")
    r = subprocess.run(["bash", "--norc", "--noprofile", "-i", "-c", script], capture_output=True,
                       env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    return [l for l in r.stdout.decode().splitlines() if l]


def _q(word):
    return "'" + word.replace("'", "'\\''") + "'"


def test_verbs_and_per_verb_options(store):
    config, _ = store
    assert complete(config, "") == ["list", "info", "dump", "debug", "groups", "resolve",
                                    "unresolve", "vacuum", "remove", "install", "uninstall"]
    assert "--in" in complete(config, "resolve", "--")
    assert complete(config, "in") == ["info", "install"]
    assert "--dry-run" in complete(config, "vacuum", "--")
    assert "--host" not in complete(config, "vacuum", "--")
    assert "--output" in complete(config, "dump", "--")
    assert "--output" not in complete(config, "list", "--")
    assert {"--no-legend", "--json", "--since", "-1"} <= set(complete(config, "list", "-"))
    assert complete(config, "list", "--json", "=", "p") == ["pretty"]
    assert complete(config, "--color", "n") == ["never"]
    # coredumpctl's -F, -A, -q and UNIT=.
    assert "--field" in complete(config, "list", "--") and "--field" not in complete(config, "info", "--")
    assert complete(config, "list", "-F", "COREDUMP_E") == ["COREDUMP_EXE"]
    assert "--debugger-arguments" in complete(config, "debug", "--")
    assert "--quiet" in complete(config, "info", "--q")
    assert complete(config, "list", "UN") == ["UNIT="]
    assert "--file" in complete(config, "debug", "--f") and "--file" not in complete(config, "list", "--f")


def test_store_values(store):
    config, pwned = store
    ids = complete(config, "info", "c0ffee")
    assert ids == ["c0ffee00a", "c0ffee00b"]
    assert complete(config, "dump", "/usr/") == ["/usr/bin/app"]
    assert complete(config, "list", "--exe", "/opt") == ["/opt/db/bin/dbd"]
    assert complete(config, "list", "--host", "web") == ["web1", "web2"]
    assert "pc_crasher" in complete(config, "list", "pc_")
    assert complete(config, "list", "SIG") == ["SIGNAL=", "SIGNATURE="]
    # The hostile hostname is offered quoted, and nothing ran it.
    hosts = complete(config, "list", "--host", "$")
    assert hosts == ["\\$\\(touch\\ " + str(pwned) + "\\)"], hosts
    assert not pwned.exists()


def test_zsh_completion_parses():
    if shutil.which("zsh") is None:
        pytest.skip("zsh is not installed")
    r = subprocess.run(["zsh", "-n", str(SOURCE / "_corectl")], capture_output=True)
    assert r.returncode == 0, r.stderr
    # compinit finds it through fpath and binds it to corectl. -D: no dump file at all. Naming
    # /dev/null as the dump (-d) makes zsh write /dev/null.$HOST.$$ and mv it over /dev/null.
    script = (f"fpath=({SOURCE} $fpath); autoload -Uz compinit; compinit -u -D; "
              "print -r -- $_comps[corectl]")
    r = subprocess.run(["zsh", "-f", "-c", script], capture_output=True, timeout=60)
    assert r.stdout.decode().strip() == "_corectl", r.stdout + r.stderr


def zsh_complete(config, line):
    """What zsh's line editor shows after typing `line` and Tab in an interactive zsh (zpty)."""
    script = f"""
zmodload zsh/zpty
zpty z zsh -f -i
zpty -w z "stty columns 1000; bindkey -e; PS1='> '; pc-done() {{ zle -R; print -r -- __PC_\\${{BUFFER}}__DO''NE__ }}; \\
zle -N pc-done; bindkey '^T' pc-done; fpath=({SOURCE} \\$fpath); autoload -Uz compinit; compinit -u -D; \\
PATH={pctest.env_path('PC_CORECTL').parent}:\\$PATH; export CORECTL_CACHE=0 HOME=/nonexistent"
zpty -w -n z {_q(f"corectl --config {config} {line}")}$'\\t'
# Keys are handled in order: once the completion is done, a widget redraws the line and prints
# it between markers (zle redraws nothing while more keys are pending).
zpty -w -n z $'\\x14'
out=
for i in {{1..600}}; do  # at most 30 s
  while zpty -r -t z chunk; do out+=$chunk; done
  [[ $out == *__DONE__* ]] && break
  sleep 0.05
done
print -r -- $out
zpty -d z
"""
    r = subprocess.run(["zsh", "-f", "-c", script], capture_output=True, timeout=60)
    return r.stdout.decode(errors="replace")


def test_zsh_completes_from_the_store(store):
    if shutil.which("zsh") is None:
        pytest.skip("zsh is not installed")
    config, pwned = store
    assert "list --host web" in zsh_complete(config, "list --host we")
    assert "info c0ffee00" in zsh_complete(config, "info c0f")
    assert "--exe /opt/db/bin/dbd" in zsh_complete(config, "groups --exe /op")
    assert "vacuum --dry-run" in zsh_complete(config, "vacuum --dr")
    # The hostile hostname is inserted quoted, and never run.
    assert "--host \\$\\(touch" in zsh_complete(config, "list --host \\$")
    assert not pwned.exists()
