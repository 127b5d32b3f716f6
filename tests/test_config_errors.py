"""Config errors as an administrator meets them: each names the file, the line, the key,
the brand, what is expected and the closest valid name, and one run shows them all.

The files are the shipped config.toml with a few words changed, as an admin would
mistype them; the line each error must name is found by searching the edited text.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mailbot.config import ConfigError, load_config
from mailbot.ops.checks import check_file
from mailbot.toml_lines import KeyLines
from tests.conftest import ROOT

pytestmark = pytest.mark.slow  # processes, servers or corpora: left out by `make test-fast`

SHIPPED = (ROOT / "config.toml").read_text()


def edited(tmp_path: Path, *changes: tuple[str, str], name: str = "config.toml") -> tuple[Path, str]:
    """The shipped config with each (old, new) replaced once, its templates the repo's, and
    the token secret file it names (var/secret, as `make run` makes it)."""
    text = SHIPPED.replace('templates_dir = "templates"', f"templates_dir = {json.dumps(str(ROOT / 'templates'))}")
    for old, new in changes:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path = tmp_path / name
    path.write_text(text)
    (tmp_path / "var").mkdir(exist_ok=True)  # the token secret `make run` makes beside it
    (tmp_path / "var" / "secret").write_text("0123456789abcdef0123456789abcdef\n")
    (tmp_path / "var" / "secret").chmod(0o600)
    return path, text


def line_of(text: str, fragment: str) -> int:
    (n,) = [i for i, line in enumerate(text.splitlines(), 1) if fragment in line]
    return n


def test_one_run_shows_schema_cross_key_and_staff_errors_each_at_its_line(tmp_path: Path) -> None:
    path, text = edited(
        tmp_path,
        ("ack_limit = 5", "ack_limmit = 5"),                                   # schema: unknown key
        ('timezone = "America/Marigot"', 'timezone = "America/Marrigot"'),     # schema: bad value
        ('default_tier = "standard"', 'default_tier = "standart"'),            # across keys
        ('supervisor = "supervisor@divikeys.com"', 'supervisor = "supervisr@divikeys.com"'),  # staff
    )
    report = check_file(str(path))
    got = {e.key: e for e in report.errors}
    assert set(got) == {"limits.ack_limmit", "brands[1].timezone", "brands[1].sla.default_tier",
                        "brands[1].supervisor"}, [str(e) for e in report.errors]
    assert [e.line for e in report.errors] == sorted(e.line or 0 for e in report.errors)  # top to bottom
    unknown = got["limits.ack_limmit"]
    assert unknown.line == line_of(text, "ack_limmit = 5")
    assert unknown.render(str(path)).startswith(f"{path}:{unknown.line}: key limits.ack_limmit: ")
    assert "did you mean 'ack_limit'?" in unknown.message and "auto_per_case" in unknown.message
    tz = got["brands[1].timezone"]
    assert tz.line == line_of(text, "America/Marrigot") and tz.item == "brand divikeys"
    assert "'America/Marrigot'" in tz.message and "did you mean 'America/Marigot'?" in tz.message
    tier = got["brands[1].sla.default_tier"]
    assert tier.line == line_of(text, '"standart"') and "did you mean 'standard'?" in tier.message
    boss = got["brands[1].supervisor"]
    assert boss.line == line_of(text, "supervisr@") and boss.item == "brand divikeys"
    assert "not a configured agent" in boss.message and "did you mean 'supervisor@divikeys.com'?" in boss.message


@pytest.mark.parametrize(("change", "key", "words"), [
    pytest.param(('supervisor = "supervisor@kalra-plus.com"', 'supervisor = "supervisor@kalra-plus.co"'),
                 "brands[0].supervisor", ["not a configured agent", "external_staff"], id="misspelt-supervisor"),
    pytest.param(('oncall = "astreinte@kalra-plus.com"', 'oncall = "astriente@kalra-plus.com"'),
                 "brands[0].oncall", ["astriente@kalra-plus.com", "external_staff"], id="misspelt-oncall"),
    pytest.param(('team = ["agent@divikeys.com"]', 'team = ["agent@kalra-plus.com"]   # the other brand\'s'),
                 "brands[1].team[0]", ["an agent of kalra-plus, not of divikeys"], id="team-of-another-brand"),
    pytest.param(('oncall = "astreinte@kalra-plus.com"', 'oncall = "agent@divikeys.com"'),
                 "brands[0].oncall", ["an agent of divikeys, not of kalra-plus"], id="oncall-of-another-brand"),
])
def test_every_staff_address_of_a_brand_reaches_someone(
    tmp_path: Path, change: tuple[str, str], key: str, words: list[str],
) -> None:
    path, text = edited(tmp_path, change)
    (error,) = check_file(str(path)).errors
    assert error.key == key and error.line == line_of(text, change[1])
    for w in words:
        assert w in error.message, error.message


def test_an_external_staff_address_is_accepted_only_where_it_is_listed(tmp_path: Path) -> None:
    path, _ = edited(tmp_path, ('external_staff = ["astreinte@kalra-plus.com"]', "external_staff = []"))
    (error,) = check_file(str(path)).errors
    assert error.key == "brands[0].oncall"
    path, _ = edited(tmp_path, ('supervisor = "supervisor@divikeys.com"', 'supervisor = "boss@divikeys.com"\n'
                                'external_staff = ["boss@divikeys.com"]'))
    assert check_file(str(path)).errors == []


@pytest.mark.parametrize(("change", "fragment", "key", "words"), [
    pytest.param(('prefix = "DK"', 'prefix = "dk"'), '"dk"', "brands[1].prefix", ["1 to 6 capital letters"],
                 id="prefix"),
    pytest.param(('key = "divikeys"', 'key = "Divikeys"'), 'key = "Divikeys"', "brands[1].key", ["lower-case"],
                 id="brand-key"),
    pytest.param(("holidays_subdiv", "holiday_subdiv"), "holiday_subdiv", "brands[1].holiday_subdiv",
                 ["did you mean 'holidays_subdiv'?"], id="unknown-brand-key"),
    pytest.param(("[[brands.categories]]\nkey = \"technique\"", "[[brands.categories]]\nkye = \"technique\""),
                 'kye = "technique"', "brands[1].categories[0].kye", ["did you mean 'key'?"],
                 id="unknown-category-key"),
    pytest.param(('brands = ["divikeys"]\n\n[[agents]]\nemail = "supervisor@divikeys.com"',
                  'brands = ["divikey"]\n\n[[agents]]\nemail = "supervisor@divikeys.com"'), '["divikey"]',
                 "agents[2].brands", ["unknown brand 'divikey'", "did you mean 'divikeys'?"], id="agent-brand"),
    pytest.param(("tiers = { standard = 15 }", 'tiers = { standard = "fifteen" }'), "fifteen", "brands[1].sla.tiers.standard",
                 ["integer"], id="inline-table-value"),
    pytest.param(("data_wait = 30", "data_wait = 75"), "data_wait = 75", "pipe.data_wait",
                 ["must be under pipe.timeout (60 s)", "ingest in process"], id="pipe-waits-past-its-timeout"),
    pytest.param(("max_data_sessions = 4                  # mails the daemon receives",
                  "max_data_sessions = 0                  # mails the daemon receives"),
                 "max_data_sessions = 0", "pipe.max_data_sessions", ["greater than or equal to 1"],
                 id="pipe-without-a-turn"),
    pytest.param(("max_sessions = 50 ", "max_sessions = 0  "), "max_sessions = 0 ", "pipe.max_sessions",
                 ["greater than or equal to 1"], id="pipe-without-a-session"),
    pytest.param(("idle_timeout = 60 ", "idle_timeout = 30 "), "data_wait = 30", "pipe.data_wait",
                 ["must be under pipe.idle_timeout (30 s)", "still waiting for its turn"],
                 id="pipe-closes-a-session-waiting-for-its-turn"),
])
def test_each_error_names_line_key_brand_and_expectation(
    tmp_path: Path, change: tuple[str, str], fragment: str, key: str, words: list[str],
) -> None:
    path, text = edited(tmp_path, change)
    errors = check_file(str(path)).errors
    assert key in [e.key for e in errors], [str(e) for e in errors]
    error = next(e for e in errors if e.key == key)
    assert error.line == line_of(text, fragment)
    if key.startswith("brands[1]"):
        assert error.item.lower() == "brand divikeys"
    for w in words:
        assert w in error.message, error.message


def test_a_missing_required_key_points_at_its_table_and_says_what_it_is(tmp_path: Path) -> None:
    path, text = edited(tmp_path, ('prefix = "DK"\n', ""))
    (error,) = check_file(str(path)).errors
    assert error.key == "brands[1].prefix" and "required" in error.message and "capital letters" in error.message
    assert error.line == [i for i, line in enumerate(text.splitlines(), 1) if line == "[[brands]]"][1]


def test_not_toml_names_the_line(tmp_path: Path) -> None:
    path, text = edited(tmp_path, ("[limits]", "[limits"))
    (error,) = check_file(str(path)).errors
    assert error.line == line_of(text, "[limits") and "not valid TOML" in error.message


def test_every_command_refuses_a_broken_file_with_the_located_errors(tmp_path: Path) -> None:
    """Not only check-config: `mailbot run`, `cases list`… print the same lines (exit 2)."""
    path, text = edited(tmp_path, ("ack_limit = 5", "ack_limmit = 5"),
                        ('timezone = "Europe/Paris"', 'timezone = "Europe/Pari"'))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.lines() == [
        f"{path}:{line_of(text, 'ack_limmit')}: key limits.ack_limmit: unknown key 'ack_limmit' in limits; "
        "did you mean 'ack_limit'? (valid keys: ack_limit, auto_per_case, first_contact_acks, max_attachment_size, blocked_extensions)",
        f"{path}:{line_of(text, 'Europe/Pari')}: key brands[0].timezone (brand kalra-plus): unknown time zone "
        "'Europe/Pari'; did you mean 'Europe/Paris'?",
    ]
    done = subprocess.run([sys.executable, "-m", "mailbot.cli", "--config", str(path), "cases", "list"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2 and done.stderr.splitlines() == caught.value.lines()


# -- the locator ------------------------------------------------------------------------------

LOCATED = '''\
top = 1                      # line 1
[a]
x = "has # not a comment"
"quoted key" = 2
dotted.inner = 3             # line 5
s = """
[not.a.table]
y = 4
"""
lit = \'\'\'
z = 5\'\'\'
arr = [
  1,                         # line 13
  { k = 1, m = 2 },
  [3, 4],
]
inl = { p = { q = 1 } }      # line 17
[[b]]
n = 1
[[b]]                        # line 20
n = 2
[b.c]
o = 1
[[b.d]]
r = 1                        # line 25
'''

LOCATED_LINES = [
    (("top",), 1), (("a",), 2), (("a", "x"), 3), (("a", "quoted key"), 4), (("a", "dotted", "inner"), 5),
    (("a", "s"), 6), (("a", "lit"), 10), (("a", "arr"), 12), (("a", "arr", 0), 13), (("a", "arr", 1, "m"), 14),
    (("a", "arr", 2, 1), 15), (("a", "inl", "p", "q"), 17), (("b", 0, "n"), 19), (("b", 1), 20),
    (("b", 1, "n"), 21), (("b", 1, "c", "o"), 23), (("b", 1, "d", 0, "r"), 25),
    (("a", "y"), 2), (("not",), None), (("b", 1, "zz"), 20),  # not written: the closest ancestor
]


def test_the_locator_follows_strings_arrays_inline_and_array_tables() -> None:
    import tomllib

    tomllib.loads(LOCATED)  # it is TOML
    lines = KeyLines(LOCATED)
    assert [(path, lines.line(path)) for path, _ in LOCATED_LINES] == LOCATED_LINES


def test_the_locator_finds_every_key_of_the_shipped_config_on_its_own_line() -> None:
    import tomllib

    lines = KeyLines(SHIPPED)
    text_lines = SHIPPED.splitlines()

    def walk(value: object, path: tuple[str | int, ...]) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                n = lines.lines.get(path + (k,))
                assert n is not None, path + (k,)
                assert k in text_lines[n - 1], (path + (k,), text_lines[n - 1])
                walk(v, path + (k,))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                assert path + (i,) in lines.lines, path + (i,)
                walk(v, path + (i,))

    walk(tomllib.loads(SHIPPED), ())


def test_an_smtp_turn_longer_than_the_idle_timeout_is_a_warning_not_an_error(tmp_path: Path) -> None:
    """`[smtp] idle_timeout = 60` with the shipped `data_wait = 90`: the config works (the mail is
    retried by its MTA either way), and check-config says which key to lower."""
    path, text = edited(tmp_path, ("idle_timeout = 120 ", "idle_timeout = 60  "))
    report = check_file(str(path))
    assert report.errors == []
    (warning,) = [w for w in report.warnings if w.key == "smtp.data_wait"]
    assert warning.line == line_of(text, "data_wait = 90 ")
    assert "not under smtp.idle_timeout (60 s)" in warning.message and "lower data_wait" in warning.message
