"""The TrustLLM dataset: download, verify, locate.

The official archive is the toolkit repository's dataset zip; its sha256 and each file's sha256 are
pinned here, so a download is verified before it is used and a local copy can be checked at any time.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tempfile
import urllib.request
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

from trustwatch.platform import config

DEFAULT_URL = "https://github.com/HowieHwong/TrustLLM/raw/4b86421/dataset/dataset.zip"
DEFAULT_ZIP_SHA256 = "0433f79bc8dc8a5869af253d4a70067eda82f5651b89b7235a0220a8bf775317"
_SUMS = Path(__file__).with_name("SHA256SUMS.txt")


class DatasetDownloadError(RuntimeError):
    pass


def _load_sums() -> dict[str, str]:
    out = {}
    for line in _SUMS.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            out[name.strip().removeprefix("./")] = digest
    return out


FILES: dict[str, str] = _load_sums()  # "<dimension>/<file>.json" -> sha256


def default_dataset_dir() -> Path:
    return config.cache_dir() / "datasets" / "trustllm"


def resolve_data_dir(arg: str | None = None) -> Path:
    """The dataset folder: ``arg``, else TRUSTWATCH_DATA_DIR, else the download cache."""
    raw = arg or config.env("TRUSTWATCH_DATA_DIR")
    return Path(raw).expanduser() if raw else default_dataset_dir()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify(folder: Path) -> list[str]:
    """Problems with a dataset folder (missing or altered files); empty when it is intact."""
    problems = []
    for rel, digest in FILES.items():
        path = Path(folder) / rel
        if not path.is_file():
            problems.append(f"missing: {path}")
        elif _sha256(path.read_bytes()) != digest:
            problems.append(f"checksum mismatch: {path} (re-download it)")
    return problems


def _fetch(url: str, timeout: float) -> bytes:
    if urlsplit(url).scheme == "file":
        return Path(urlsplit(url).path).read_bytes()
    if urlsplit(url).scheme not in ("http", "https"):
        raise DatasetDownloadError(f"unsupported URL {url!r}: use http(s):// or file://")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - scheme checked above
            data: bytes = resp.read()
            return data
    except OSError as exc:
        raise DatasetDownloadError(f"cannot download {url}: {exc}; check the network or pass --url") from exc


def download(url: str, dest: Path, expected_sha256: str | None = DEFAULT_ZIP_SHA256, timeout: float = 120.0) -> Path:
    """Fetch the dataset zip, check its sha256 and every file's, and install it into ``dest``.

    Files are written to a temporary folder first and moved into place only once all are verified,
    so a failed download never leaves a half-written dataset behind.
    """
    data = _fetch(url, timeout)
    if expected_sha256 and _sha256(data) != expected_sha256:
        raise DatasetDownloadError(
            f"{url}: sha256 {_sha256(data)} does not match the expected {expected_sha256}; "
            "the archive is corrupt or not the TrustLLM dataset"
        )
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise DatasetDownloadError(f"{url} is not a zip archive") from exc
    # The archive may nest the files under a folder; find each by its "<dimension>/<file>" suffix.
    by_suffix = {}
    for name in archive.namelist():
        parts = Path(name).parts
        if len(parts) >= 2 and not name.endswith("/") and "__MACOSX" not in parts:
            by_suffix["/".join(parts[-2:])] = name
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        for rel, digest in FILES.items():
            if rel not in by_suffix:
                raise DatasetDownloadError(f"{url}: the archive has no {rel}")
            content = archive.read(by_suffix[rel])
            if _sha256(content) != digest:
                raise DatasetDownloadError(f"{url}: {rel} has sha256 {_sha256(content)}, expected {digest}")
            out = Path(tmp) / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(content)
        if dest.exists():
            shutil.rmtree(dest)
        shutil.move(tmp, dest)
        Path(tmp).mkdir()  # TemporaryDirectory expects to remove something
    return dest
