"""The API-key proxy's key loader, run with a real POSIX shell on a keys file.

The script turns a Secret (one key per line) into nginx ``map`` entries; here each entry's regex is
checked to match its key exactly (not a prefix, not another case), and bad input to fail the pod
without printing the offending key.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tgi_autoscaler.render.auth_proxy import LOAD_KEYS_SCRIPT

pytestmark = pytest.mark.integration

_ENTRY = re.compile(r'^"~(?P<regex>.+)" 1;$')


def _load(tmp_path: Path, keys: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    script = tmp_path / "load-keys.sh"
    script.write_text(LOAD_KEYS_SCRIPT)
    source = tmp_path / "keys"
    source.write_text(keys)
    out = tmp_path / "keys.map"
    env = {"PATH": "/usr/bin:/bin", "API_KEYS_FILE": str(source), "KEYS_MAP_FILE": str(out)}
    result = subprocess.run(
        ["sh", str(script)], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    return result, out


def _regexes(out: Path) -> list[re.Pattern[str]]:
    patterns = []
    for line in out.read_text().splitlines():
        match = _ENTRY.match(line)
        assert match, f"not a map entry: {line!r}"
        # nginx keeps backslash escapes inside double quotes for PCRE; Python's re reads them alike.
        patterns.append(re.compile(match.group("regex")))
    return patterns


def test_keys_become_exact_case_sensitive_matches(tmp_path: Path) -> None:
    keys = ["sk-live.AbC_123~x+y/z=", "0123456789abcdef"]
    result, out = _load(tmp_path, f"# production keys\n{keys[0]}\r\n\n   {keys[1]}   \n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "loaded 2 api keys"
    patterns = _regexes(out)
    assert len(patterns) == 2
    for key, pattern in zip(keys, patterns, strict=True):
        assert pattern.fullmatch(key)
        assert pattern.search(key)
        assert not pattern.search(key + "x")
        assert not pattern.search(key[:-1])
        assert not pattern.search(key.swapcase())
    assert not patterns[0].search("sk-liveXAbC_123~x+y/z="), "a dot must not match any character"


def test_key_with_characters_that_could_inject_configuration_is_rejected(tmp_path: Path) -> None:
    secret = 'good-key-1234\nbad"key;include /etc/passwd\n'
    result, out = _load(tmp_path, secret)
    assert result.returncode == 1
    assert "api key on line 2 rejected" in result.stderr
    assert "passwd" not in result.stderr + result.stdout
    assert not out.exists()


def test_short_key_is_rejected(tmp_path: Path) -> None:
    result, _ = _load(tmp_path, "short\n")
    assert result.returncode == 1
    assert "line 1 rejected" in result.stderr


def test_secret_without_keys_fails_instead_of_admitting_nobody(tmp_path: Path) -> None:
    result, out = _load(tmp_path, "# nothing yet\n\n")
    assert result.returncode == 1
    assert "no api keys found" in result.stderr
    assert not out.exists()
