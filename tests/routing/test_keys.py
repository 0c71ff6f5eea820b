"""API keys: created once, stored hashed (file mode 0600), authenticated from the Authorization header."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from routing import keys, keys_cli
from routing.keys import Caller, KeyFileError, KeyStore, create_key, hash_key
from routing.levels import Level


def test_create_stores_only_the_hash_and_authenticates(tmp_path: Path) -> None:
    path = tmp_path / "var" / "keys.json"
    key = create_key(path, "team-a", floor="OFFICIAL-SENSITIVE", ceiling=Level.SECRET, rate_per_minute=30)
    assert key.startswith("sk-sov-") and len(key) > 40
    text = path.read_text()
    assert key not in text and key[len("sk-sov-") :] not in text
    assert os.stat(path).st_mode & 0o777 == 0o600
    [entry] = json.loads(text)
    assert entry["key_sha256"] == hash_key(key)
    assert (entry["caller"], entry["floor"], entry["ceiling"]) == ("team-a", "OFFICIAL-SENSITIVE", "SECRET")
    assert set(entry) == {"caller", "key_sha256", "floor", "ceiling", "rate_per_minute", "created"}

    store = KeyStore.load(path)
    assert len(store) == 1
    assert store.authenticate(f"Bearer {key}") == Caller("team-a", Level.OFFICIAL_SENSITIVE, Level.SECRET, 30)
    assert store.authenticate(f"bearer   {key} ") is not None  # scheme is case-insensitive


def test_keys_accumulate_and_each_maps_to_its_caller(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    made = {name: create_key(path, name) for name in ("a", "b", "c")}
    made["a2"] = create_key(path, "a")  # a second key for one caller (rotation)
    store = KeyStore.load(path)
    assert len(store) == 4
    for name, key in made.items():
        caller = store.authenticate(f"Bearer {key}")
        assert caller is not None and caller.name == name.rstrip("2")
        assert caller.floor is None and caller.ceiling is None and caller.rate_per_minute is None
    assert len(set(made.values())) == 4


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "sk-sov-abc",
        "Bearer sk-sov-unknown",
        "Bearer two tokens",
        "Bearer " + "x" * 5000,
        "Bearer sk-sov-é",
    ],
)
def test_missing_malformed_or_unknown_keys_are_refused(tmp_path: Path, header: str | None) -> None:
    path = tmp_path / "keys.json"
    create_key(path, "a")
    assert KeyStore.load(path).authenticate(header) is None


def test_empty_store_refuses_everything() -> None:
    store = KeyStore.empty()
    assert len(store) == 0
    assert store.authenticate("Bearer sk-sov-anything") is None


def test_invalid_limits_are_refused_and_nothing_is_written(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    with pytest.raises(ValueError, match="above ceiling"):
        create_key(path, "a", floor=Level.SECRET, ceiling=Level.OFFICIAL)
    with pytest.raises(ValueError):
        create_key(path, "a", floor="SUPER SECRET")
    with pytest.raises(ValueError):
        create_key(path, "a", rate_per_minute=0)
    with pytest.raises(ValueError):
        create_key(path, "not a name")
    assert not path.exists()


@pytest.mark.parametrize(
    "content,message",
    [
        ("not json", "not valid JSON"),
        ('{"caller": "a"}', "JSON list"),
        ('[{"caller": "a"}]', "entry 1"),
        ('[{"caller": "a", "key_sha256": "00", "created": "x"}]', "key_sha256"),
        (
            '[{"caller": "a", "key_sha256": "' + "0" * 64 + '", "created": "x", "floor": "NOPE"}]',
            "floor",
        ),
        (
            '[{"caller": "a", "key_sha256": "' + "0" * 64 + '", "created": "x", "extra": 1}]',
            "extra",
        ),
        (
            '[{"caller": "a", "key_sha256": "' + "0" * 64 + '", "created": "x", "floor": "SECRET",'
            ' "ceiling": "OFFICIAL"}]',
            "floor is above ceiling",
        ),
    ],
)
def test_malformed_keys_file_gives_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "keys.json"
    path.write_text(content)
    with pytest.raises(KeyFileError, match=message):
        KeyStore.load(path)
    with pytest.raises(KeyFileError):  # never overwritten by create
        create_key(path, "b")
    assert path.read_text() == content


def test_duplicate_hashes_and_missing_file_are_errors(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    create_key(path, "a")
    entries = json.loads(path.read_text())
    path.write_text(json.dumps(entries * 2))
    with pytest.raises(KeyFileError, match="duplicate"):
        KeyStore.load(path)
    with pytest.raises(KeyFileError, match="not found"):
        KeyStore.load(tmp_path / "missing.json")


def test_cli_create_prints_the_key_last_and_list_hides_hashes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "keys.json"
    argv = ["create", "--caller", "analytics", "--ceiling", "official", "--rate", "120", "--keys-file", str(path)]
    assert keys_cli.main(argv) == 0
    out = capsys.readouterr().out.rstrip("\n").splitlines()
    key = out[-1]
    assert key.startswith("sk-sov-") and len(out) > 1
    caller = KeyStore.load(path).authenticate(f"Bearer {key}")
    assert caller == Caller("analytics", None, Level.OFFICIAL, 120)

    assert keys_cli.main(["list", "--keys-file", str(path)]) == 0
    listing = capsys.readouterr().out
    assert "analytics" in listing and "OFFICIAL" in listing and "120" in listing
    assert hash_key(key) not in listing and key not in listing

    assert (
        keys_cli.main(
            ["create", "--caller", "x", "--floor", "SECRET", "--ceiling", "OFFICIAL", "--keys-file", str(path)]
        )
        == 1
    )
    assert keys_cli.main(["create", "--caller", "x", "--floor", "BOGUS", "--keys-file", str(path)]) == 2
    assert keys_cli.main(["create", "--keys-file", str(path)]) == 2
    assert keys_cli.main(["list", "--keys-file", str(tmp_path / "none.json")]) == 1
    assert keys_cli.main([]) == 2
    assert len(KeyStore.load(path)) == 1


def test_cli_default_keys_file_is_under_var(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert keys_cli.main(["create", "--caller", "dev"]) == 0
    key = capsys.readouterr().out.splitlines()[-1]
    assert KeyStore.load(tmp_path / "var" / "keys.json").authenticate(f"Bearer {key}") is not None


def test_revoke_by_caller_or_by_sha256_prefix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "keys.json"
    a1, a2 = create_key(path, "analytics"), create_key(path, "analytics")
    b = create_key(path, "batch")
    c = create_key(path, "chat")

    assert keys_cli.main(["revoke", "--caller", "analytics", "--keys-file", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.count("revoked caller 'analytics'") == 2 and a1 not in out and hash_key(a1) not in out
    store = KeyStore.load(path)
    assert store.authenticate(f"Bearer {a1}") is None and store.authenticate(f"Bearer {a2}") is None
    assert store.authenticate(f"Bearer {b}") is not None

    shown = f"sha256:{hash_key(b)[:8]}…"  # as `keys list` shows it
    assert keys_cli.main(["revoke", "--sha256", shown, "--keys-file", str(path)]) == 0
    store = KeyStore.load(path)
    assert store.authenticate(f"Bearer {b}") is None and store.authenticate(f"Bearer {c}") is not None
    assert os.stat(path).st_mode & 0o777 == 0o600

    # Nothing matches, too short a prefix, both or neither selector: an error, and the file is unchanged.
    before = path.read_bytes()
    assert keys_cli.main(["revoke", "--caller", "analytics", "--keys-file", str(path)]) == 1
    assert keys_cli.main(["revoke", "--sha256", hash_key(c)[:6], "--keys-file", str(path)]) == 1
    assert keys_cli.main(["revoke", "--sha256", "zz" * 8, "--keys-file", str(path)]) == 1
    assert keys_cli.main(["revoke", "--keys-file", str(path)]) == 2
    assert keys_cli.main(["revoke", "--caller", "chat", "--sha256", hash_key(c), "--keys-file", str(path)]) == 2
    assert keys_cli.main(["revoke", "--caller", "x", "--keys-file", str(tmp_path / "none.json")]) == 1
    assert "no key for caller 'analytics'" in capsys.readouterr().err
    assert path.read_bytes() == before


def test_revoke_refuses_an_ambiguous_prefix(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    entries = [
        {"caller": name, "key_sha256": digest, "created": "2026-11-29T00:00:00Z"}
        for name, digest in (("a", "ab" * 32), ("b", "ab" * 31 + "cd"))
    ]
    path.write_text(json.dumps(entries))
    with pytest.raises(ValueError, match="2 keys match"):
        keys.revoke_keys(path, sha256_prefix="abababab")
    assert [e.caller for e in keys.revoke_keys(path, sha256_prefix="ab" * 31 + "c")] == ["b"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_running_store_follows_the_file_and_fails_closed_on_a_bad_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "keys.json"
    old = create_key(path, "old")
    clock = FakeClock()
    store = keys.ReloadingKeyStore(path, check_every_s=1.0, clock=clock)
    assert store.authenticate(f"Bearer {old}") is not None

    new = create_key(path, "new")
    keys.revoke_keys(path, caller="old")
    clock.now = 0.5  # within the check interval: one stat per second at most, so the change is not seen yet
    assert store.authenticate(f"Bearer {new}") is None
    clock.now = 1.0
    assert store.authenticate(f"Bearer {new}") == Caller("new", None, None, None)
    assert store.authenticate(f"Bearer {old}") is None

    path.write_text("[{not json")  # a broken edit: no key at all is accepted until it is fixed
    clock.now = 2.0
    assert store.authenticate(f"Bearer {new}") is None
    assert "every key is refused" in caplog.text and new not in caplog.text
    path.unlink()
    clock.now = 3.0
    assert store.authenticate(f"Bearer {new}") is None

    fixed = create_key(path, "fixed")
    clock.now = 4.0
    assert store.authenticate(f"Bearer {fixed}") is not None and len(store) == 1
