"""README's config reference table, written from components/config/keys.py.

`python -m components.config.reference` prints the table; `--write README.md` puts it in place of the
one between the two marker lines of README.md ("Configuration") and leaves the rest of the file as it is
(`make config-reference`). Pure: tests/test_config_reference.py checks that README's table is this one.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from components.config.checks import SECRET_KEYS, SECTION_KEYS
from components.config.keys import KEYS, Key

BEGIN: Final = "<!-- config-reference: written by `make config-reference` from components/config/keys.py; edit the rows there -->"
END: Final = "<!-- end of config-reference -->"
COMMAND: Final = "make config-reference"


def known_keys() -> set[str]:
    """Every key the readers know, as a row names it: `appName`, `web.replicas`, `roles.<name>.command`, the secrets."""
    return {"appName", *(f"{section}.{key}" for section, keys in SECTION_KEYS.items() for key in keys), *SECRET_KEYS}


def coverage(rows: Sequence[Key] = KEYS) -> tuple[list[str], list[str]]:
    """(keys the readers know that no row documents, keys rows document that no reader knows)."""
    documented = [k for row in rows for k in row.keys]
    known = known_keys()
    return sorted(known - set(documented)), sorted(k for k in documented if k not in known)


def _cell(text: str, where: str) -> str:
    if "\n" in text or "|" in text.replace("\\|", ""):
        raise ValueError(f"{where}: a table cell is one line without an unescaped '|': {text!r}")
    return text


def _row(key: Key) -> str:
    name = f"`{key.name}`"
    meaning = key.meaning
    if key.covers:
        meaning += ": " + ", ".join(f"`{k}`" for k in key.covers)
    cells = [f"secret {name}" if key.secret else name, key.default_text, meaning]
    return "|" + "|".join(f" {_cell(c, key.name)} " if c else " " for c in cells) + "|"


def render_table(rows: Sequence[Key] = KEYS) -> str:
    """The markdown table, one row per key; refused when a key the readers know has no row or a row names another."""
    undocumented, unknown = coverage(rows)
    if undocumented or unknown:
        raise ValueError(
            f"components/config/keys.py: keys the readers know with no row: {undocumented};"
            f" rows for keys no reader knows: {unknown} (components/config/checks.py SECTION_KEYS, SECRET_KEYS)"
        )
    lines = ["| key | default | meaning |", "|---|---|---|", *(_row(k) for k in rows)]
    return "\n".join(lines) + "\n"


def rewrite(text: str, table: str | None = None) -> str:
    """`text` (README.md) with the lines between BEGIN and END replaced by the table, set off by a blank line
    each side (so that no renderer reads a marker as a row of it)."""
    lines = text.splitlines(keepends=True)
    begins = [i for i, line in enumerate(lines) if line.rstrip("\n") == BEGIN]
    ends = [i for i, line in enumerate(lines) if line.rstrip("\n") == END]
    if len(begins) != 1 or len(ends) != 1 or begins[0] > ends[0]:
        raise ValueError(f"expected one line {BEGIN!r} and, after it, one line {END!r}")
    return "".join([*lines[: begins[0] + 1], "\n", table if table is not None else render_table(), "\n", *lines[ends[0] :]])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m components.config.reference", description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--write", metavar="FILE", type=Path, help="rewrite the table between the markers of FILE (README.md); print it otherwise"
    )
    args = parser.parse_args(argv)
    if args.write is None:
        print(render_table(), end="")
        return 0
    before = args.write.read_text(encoding="utf-8")
    after = rewrite(before)
    if after != before:
        args.write.write_text(after, encoding="utf-8")
    print(f"{args.write}: {'written' if after != before else 'up to date'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
