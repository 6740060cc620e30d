"""Property-based: whatever a site file holds, loading it gives a Site or a clear SiteFileError.

Hostile and malformed files (random YAML trees, the lab's file with a field deleted, replaced
or retyped, text edits, random bytes, huge strings, deep nesting, alias bombs) must never end
in another exception (a traceback from deep inside PyYAML or pydantic), and loading must never
open a network connection.
"""

from __future__ import annotations

import copy
import socket
from pathlib import Path
from unittest import mock

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from site_recovery.site import Site, SiteFileError, load_site

LAB_SITE = Path(__file__).resolve().parents[2] / "include" / "sites" / "lab.yaml"
LAB_TEXT = LAB_SITE.read_text()
LAB = yaml.safe_load(LAB_TEXT)

BOUNDED = settings(max_examples=200, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FEWER = settings(BOUNDED, max_examples=60)


@pytest.fixture(scope="module", autouse=True)
def no_network():
    """Any attempt to reach the network is recorded (and refused), whoever catches the error."""
    attempts: list[str] = []

    def refuse(name):
        def refused(*args, **kwargs):
            attempts.append(name)
            raise AssertionError(f"site loading tried the network ({name})")
        return refused
    with mock.patch.object(socket.socket, "connect", refuse("socket.connect")), \
            mock.patch.object(socket.socket, "connect_ex", refuse("socket.connect_ex")), \
            mock.patch.object(socket, "create_connection", refuse("create_connection")), \
            mock.patch.object(socket, "getaddrinfo", refuse("getaddrinfo")):
        yield attempts
    assert attempts == []


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sites")


def check(path: Path, content: str | bytes) -> Site | None:
    """Write ``content``, load it, and hold the loader to its contract."""
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", errors="surrogatepass")
    try:
        return load_site(path)
    except SiteFileError as exc:
        message = str(exc)
        assert message.startswith(f"{path}: "), message
        assert all(line.startswith(f"{path}: ") for line in message.splitlines()), message
        assert "Traceback" not in message and len(message) < 20_000
        return None


# ------------------------------------------------------------------------------- strategies
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                    st.text(max_size=40), st.sampled_from(["300", "12h", "PT15M", "Gold-Prod", "kerberos", "offline",
                                                           "0 2 * * 6", "Europe/Amsterdam", "*", "password"]))
keys = st.one_of(st.text(max_size=20), st.sampled_from(list(LAB) + ["conn_id", "secret", "kind", "port"]))
trees = st.recursive(scalars, lambda children: st.one_of(st.lists(children, max_size=5),
                                                         st.dictionaries(keys, children, max_size=6)), max_leaves=30)


def paths_in(node, prefix=()):
    """Every place in a parsed YAML tree: (path, value)."""
    yield prefix, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from paths_in(value, prefix + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from paths_in(value, prefix + (index,))


LAB_PATHS = [p for p, _ in paths_in(LAB) if p]


def retyped(value):
    """The same value in another YAML type, as a careless edit would leave it."""
    return st.sampled_from([str(value), [value], {"value": value}, None, 0, -1, True, 10**30, 3.5, ""])


@st.composite
def mutated_lab(draw):
    data = copy.deepcopy(LAB)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(LAB_PATHS))
        parent = data
        try:
            for part in path[:-1]:
                parent = parent[part]
            current = parent[path[-1]]
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit removed or reshaped this place
        if not isinstance(parent, (dict, list)):
            continue  # ... or turned its parent into text
        action = draw(st.sampled_from(["delete", "replace", "retype", "huge"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "replace":
            parent[path[-1]] = draw(trees)
        elif action == "retype":
            parent[path[-1]] = draw(retyped(current))
        else:
            parent[path[-1]] = draw(st.sampled_from(["x", "9", "Prod-App", "-"])) * draw(st.integers(1000, 60_000))
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


@st.composite
def edited_text(draw):
    """The lab file's text with characters inserted, removed or a line replaced."""
    text = LAB_TEXT
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        edit = draw(st.sampled_from(["insert", "delete", "line"]))
        if edit == "insert":
            yaml_syntax = st.sampled_from(list(":-[]{}&*!|>'\"#%@`\t\n ?,"))
            text = text[:at] + draw(st.text(alphabet=yaml_syntax | st.characters(), min_size=1, max_size=8)) + text[at:]
        elif edit == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 40)):]
        else:
            lines = text.splitlines()
            lines[draw(st.integers(0, len(lines) - 1))] = draw(st.text(max_size=60))
            text = "\n".join(lines)
    return text


# ------------------------------------------------------------------------------- properties
@BOUNDED
@given(tree=trees | st.dictionaries(st.sampled_from(list(LAB)), trees, min_size=1))
def test_random_yaml_trees(folder, tree):
    check(folder / "tree.yaml", yaml.safe_dump(tree, allow_unicode=True))


@BOUNDED
@given(content=mutated_lab())
def test_the_lab_file_with_a_field_deleted_replaced_or_retyped(folder, content):
    check(folder / "mutated.yaml", content)


@BOUNDED
@given(content=edited_text())
def test_the_lab_file_with_text_edits(folder, content):
    check(folder / "edited.yaml", content)


@BOUNDED
@given(content=st.binary(max_size=2048) | st.text(max_size=2048))
def test_random_bytes_and_text(folder, content):
    check(folder / "noise.yaml", content)


@FEWER
@given(depth=st.integers(1, 3000), kind=st.sampled_from(["[", "{a: ", "- ", "a:\n"]))
def test_deep_nesting(folder, depth, kind):
    closing = {"[": "]", "{a: ": "}"}.get(kind, "")
    if kind == "- ":
        content = "".join("  " * i + "-\n" for i in range(min(depth, 400)))
    elif kind == "a:\n":
        content = "".join("  " * i + "a:\n" for i in range(min(depth, 400)))
    else:
        content = "x: " + kind * depth + "1" + closing * depth
    assert check(folder / "deep.yaml", content) is None


@FEWER
@given(levels=st.integers(2, 12), width=st.integers(2, 10))
def test_alias_bombs(folder, levels, width):
    lines = ["l0: &l0 [lol]"] + [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    assert check(folder / "bomb.yaml", "\n".join(lines)) is None


@FEWER
@given(size=st.integers(1_000, 400_000), where=st.sampled_from(["name: lab", "vault_name: rsv-dr-weu-01",
                                                               "timezone: Europe/Amsterdam", "- cloud: Gold-Prod"]),
       char=st.sampled_from(["y", "9", "-", "é", "*"]))
def test_huge_strings_and_files(folder, size, where, char):
    key = where.split(": ")[0]
    assert check(folder / "huge.yaml", LAB_TEXT.replace(where, f"{key}: '{char * size}'", 1)) is None
