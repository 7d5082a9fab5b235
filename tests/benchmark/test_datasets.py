"""Dataset download and verification against local files (tests never reach the network)."""

import hashlib
import io
import zipfile

import pytest

from trustwatch.benchmark import datasets


def _zip(data_dir, skip=None, alter=None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for rel in datasets.FILES:
            if rel == skip:
                continue
            content = (data_dir / rel).read_bytes()
            if rel == alter:
                content = content.replace(b"prompt", b"prompT", 1)
            z.writestr(f"dataset/{rel}", content)  # nested under a folder, as archives often are
    return buf.getvalue()


def test_download_verifies_and_installs(tmp_path, data_dir):
    blob = _zip(data_dir)
    src = tmp_path / "dataset.zip"
    src.write_bytes(blob)
    dest = datasets.download(src.as_uri(), tmp_path / "cache" / "trustllm", hashlib.sha256(blob).hexdigest())
    assert datasets.verify(dest) == []
    assert len(list(dest.glob("*/*.json"))) == 24


def test_download_refuses_a_wrong_archive_and_leaves_nothing(tmp_path, data_dir):
    src = tmp_path / "dataset.zip"
    src.write_bytes(_zip(data_dir))
    dest = tmp_path / "out"
    with pytest.raises(datasets.DatasetDownloadError, match="does not match the expected"):
        datasets.download(src.as_uri(), dest, "0" * 64)
    src.write_bytes(_zip(data_dir, alter="safety/misuse.json"))
    with pytest.raises(datasets.DatasetDownloadError, match="safety/misuse.json has sha256"):
        datasets.download(src.as_uri(), dest, None)
    src.write_bytes(_zip(data_dir, skip="ethics/awareness.json"))
    with pytest.raises(datasets.DatasetDownloadError, match="has no ethics/awareness.json"):
        datasets.download(src.as_uri(), dest, None)
    assert not dest.exists()
    with pytest.raises(datasets.DatasetDownloadError, match="cannot download"):
        datasets.download("http://127.0.0.1:1/dataset.zip", dest, None, timeout=2)


def test_verify_reports_problems(tmp_path, data_dir):
    assert datasets.verify(data_dir) == []
    (tmp_path / "safety").mkdir()
    (tmp_path / "safety/misuse.json").write_text("[]")
    problems = datasets.verify(tmp_path)
    assert any("checksum mismatch" in p and "misuse" in p for p in problems)
    assert sum("missing" in p for p in problems) == 23
