"""README's config reference table is written from components/config/keys.py, and the rows hold to the readers."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from components.config.keys import KEYS, UNSET, Key
from components.config.load import parse_config
from components.config.reference import BEGIN, COMMAND, END, coverage, main, render_table, rewrite
from tests.harness import ROOT

SHA = "0123456789abcdef0123456789abcdef01234567"
# every section at its defaults, with one role (so that the roles' keys have one to be set in)
BASE: dict[str, Any] = {
    "appName": "web",
    "image": {"repository": "ghcr.io/acme/web"},
    "roles": {"worker": {"command": ["python", "-m", "worker"], "healthcheck": {"command": ["true"]}}},
}


def test_readmes_table_is_the_one_the_rows_give() -> None:
    readme = (ROOT / "README.md").read_text()
    assert rewrite(readme) == readme, f"README.md's config table differs from components/config/keys.py: run `{COMMAND}`"


def test_every_key_the_readers_know_has_a_row_and_no_row_names_another() -> None:
    assert coverage() == ([], [])
    names = [k for row in KEYS for k in row.keys]
    assert len(names) == len(set(names)), "one row per key"


def test_a_key_left_out_is_named_when_the_table_is_written() -> None:
    rows = [k for k in KEYS if k.name != "web.replicas"]
    with pytest.raises(ValueError, match=r"no row: \['web.replicas'\]"):
        render_table(rows)
    with pytest.raises(ValueError, match=r"no reader knows: \['web.replica'\]"):
        render_table([*KEYS, Key("web.replica", "a typo")])


def _set(raw: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
    """`raw` with `name` (`web.replicas`, `roles.<name>.healthcheck.interval`) set to `value`."""
    out = copy.deepcopy(raw)
    path = name.replace("roles.<name>", "roles.worker").split(".")
    obj = out
    for part in path[:-1]:
        obj = obj.setdefault(part, {})
    obj[path[-1]] = value
    return out


@pytest.mark.parametrize("row", [k for k in KEYS if k.default is not UNSET], ids=lambda k: k.name)
def test_each_default_the_table_gives_is_the_readers_own(row: Key) -> None:
    """Setting a key to the default its row gives changes nothing: the reader takes that value when it is not set."""
    unset = parse_config(BASE, set(), "dev", SHA)
    assert parse_config(_set(BASE, row.name, row.default), set(), "dev", SHA) == unset


def test_the_table_is_rewritten_between_the_markers_only() -> None:
    text = f"# title\n\nbefore\n{BEGIN}\n| old |\n{END}\nafter\n"
    out = rewrite(text, "| new |\n")
    assert out == f"# title\n\nbefore\n{BEGIN}\n\n| new |\n\n{END}\nafter\n"
    assert rewrite(out, "| new |\n") == out
    for broken in ("no markers\n", f"{END}\n{BEGIN}\n", f"{BEGIN}\n{BEGIN}\n{END}\n"):
        with pytest.raises(ValueError, match="expected one line"):
            rewrite(broken, "| new |\n")


def test_cells_are_one_line_without_a_bare_bar() -> None:
    for meaning in ("two\nlines", "a | b"):
        with pytest.raises(ValueError, match="one line without an unescaped"):
            render_table([*KEYS[:-1], Key(KEYS[-1].name, meaning, shown="none", secret=True)])


def test_the_command_writes_the_file_and_then_finds_it_up_to_date(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{BEGIN}\n| stale |\n{END}\nrest\n")
    assert main(["--write", str(readme)]) == 0
    assert readme.read_text() == rewrite(f"intro\n{BEGIN}\n{END}\nrest\n") and "| stale |" not in readme.read_text()
    assert main(["--write", str(readme)]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{readme}: written", f"{readme}: up to date"]
    assert main([]) == 0 and capsys.readouterr().out == render_table()
