#!/usr/bin/python3
"""Checks that every first-party #include goes in the direction the layers allow.

The table below is the one in docs/ARCHITECTURE.md ("Libraries: what links what"): a folder of
common/ or a binary's folder may include its own headers and those of the layers listed for it,
nothing else of the project. Includes are rooted at the repository ("common/store/store.hpp"); a
quoted include that names no folder is an error unless it is a generated header of the build.
Exit 0 when every include is allowed, 1 with one line per violation otherwise.

usage: check_layers.py SOURCE_DIR
"""

import pathlib
import re
import sys

# layer -> the other layers it may include. common/record sits between base and store/crash.
ALLOWED = {
    "common/base": set(),
    "common/config": {"common/base"},
    "common/record": {"common/base"},
    "common/store": {"common/base", "common/record"},
    "common/crash": {"common/base", "common/record"},
    "common/sandbox": {"common/base"},
    "common/s3": {"common/base"},
    "common/index": {"common/base"},
    "common/packages": {"common/base"},
    "handler": {"common/base", "common/config", "common/record", "common/store", "common/crash",
                "common/sandbox", "common/packages"},
    "cli": {"common/base", "common/config", "common/record", "common/store", "common/crash",
            "common/sandbox", "common/index", "common/packages", "common/s3"},
    "exporter": {"common/base", "common/config", "common/record", "common/store",
                 "common/index", "common/packages"},
    "uploader": {"common/base", "common/config", "common/record", "common/store", "common/s3",
                 "common/packages"},
}
# Files with more than their layer's rights: pc_retention (in common/store) reads its settings.
EXTRA = {
    "common/store/retention.hpp": {"common/config"},
    "common/store/retention.cpp": {"common/config"},
}
# Headers the build generates (configure_file), on every layer's include path.
GENERATED = {"process_core_version.hpp"}
SOURCES = (".cpp", ".hpp", ".h", ".c")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.MULTILINE)


def layer_of(path: str):
    parts = path.split("/")
    if parts[0] == "common" and len(parts) > 2:
        return "common/" + parts[1]
    if parts[0] in ("handler", "cli", "exporter", "uploader") and len(parts) > 1:
        return parts[0]
    return None


def check(root: pathlib.Path) -> list[str]:
    problems = []
    for top in ("common", "handler", "cli", "exporter", "uploader"):
        for file in sorted((root / top).rglob("*")):
            if file.suffix not in SOURCES or not file.is_file():
                continue
            rel = file.relative_to(root).as_posix()
            layer = layer_of(rel)
            if layer is None:
                continue
            if layer not in ALLOWED:
                problems.append(f"{rel}: folder '{layer}' is in no layer of check_layers.py")
                continue
            allowed = ALLOWED[layer] | EXTRA.get(rel, set()) | {layer}
            text = file.read_text(encoding="utf-8", errors="replace")
            for m in INCLUDE.finditer(text):
                target = m.group(1)
                line = text.count("\n", 0, m.start()) + 1
                if target in GENERATED:
                    continue
                to = layer_of(target)
                if to is None:
                    problems.append(f"{rel}:{line}: '{target}' is not rooted at a layer's folder")
                elif to not in allowed:
                    problems.append(f"{rel}:{line}: {layer} must not include '{target}' ({to})")
    return problems


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    problems = check(pathlib.Path(sys.argv[1]))
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
