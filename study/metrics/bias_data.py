"""The bias benchmarks' files: where each comes from, its checksum and licence, fetching them (`kdstudy data fetch`),
and the error that names the fetch command when one is missing.

    <cache root>/data/                            the default bias.data_dir ($KDSTUDY_CACHE or ~/.cache/kdstudy)
        crows_pairs/crows_pairs_anonymized.csv    CrowS-Pairs (Nangia et al. 2020)          CC BY-SA 4.0
        seat/sent-weat{6,6b,7,7b,8,8b}.jsonl      SEAT gender tests (May et al. 2019)       CC BY-NC 4.0
        stereoset/dev.json                        StereoSet dev set (Nadeem et al. 2021)    CC BY-SA 4.0
        LICENSES                                  which licence covers which file, and where it came from

Each file comes from its authors' repository, pinned to a commit so that its content cannot change under the
checksum kept here, and is written atomically (a temporary file beside it, checked, then renamed into place): an
interrupted or corrupted download leaves nothing behind. $KDSTUDY_DATA_MIRROR (a base URL, http(s):// or file://,
holding the same layout as the data folder) replaces the original sources, e.g. for a mirror inside a firewall.
Standard library only, so that the command answers quickly.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from study.errors import DataError
from study.runtime import cache_root

log = logging.getLogger(__name__)

MIRROR = "KDSTUDY_DATA_MIRROR"
LICENSES = "LICENSES"
TIMEOUT = 60  # seconds without a byte before a download counts as failed


@dataclass(frozen=True)
class Source:
    path: str  # in the data folder's layout, which --data-dir and bias.data_dir read
    url: str  # the original, pinned to a commit
    sha256: str | None  # of the file; None where it could not be computed here (then git_blob checks it)
    git_blob: str | None = None  # the file's id in its repository's tree: sha1 of b"blob <size>\0" + content


@dataclass(frozen=True)
class Benchmark:
    title: str
    licence: str
    home: str
    files: tuple[Source, ...]


def _github(repo: str, commit: str, path: str) -> str:
    return f"https://raw.githubusercontent.com/{repo}/{commit}/{path}"


_CROWS = ("nyu-mll/crows-pairs", "8aaac11c485473159ec9328a65253a5be9a479dc")
_SEAT = ("W4ngatang/sent-bias", "e3559fb669ca4832743b42fee715994c15c7f1af")
_STEREOSET = ("moinnadeem/StereoSet", "ead7d086a64a192a1eca88e0dd2fd163de375218")
# sha256 of SEAT's gender tests, computed from the released files (their git blob ids match the repository's tree)
_SEAT_SHA256 = {
    "sent-weat6": "bcf1a6864e3da0e8982d70451721877f23e2efaf6aea33628df843d826b68ae2",
    "sent-weat6b": "8d1dd09833d1854784503c2eb9986d1951d684fb3289a18da85e72fa1e59e4ff",
    "sent-weat7": "86c151b640bc9ebf6f60cd94920ab1f5bff68ea1a993f322f729cf3620173e0f",
    "sent-weat7b": "16b7c23eb529421b411b508b2928b0d62e52cbb80cf40f8e9acbdfb52cd75350",
    "sent-weat8": "352fea8d5440800a219dd6141a6f5e414a708770bc2717bfc581bc249e108ded",
    "sent-weat8b": "c410535cac813f806d20a7f76f4bea62ee44f98d8828f8f0ac6a4b7694c414bc",
}

BENCHMARKS = {
    "crows": Benchmark(
        "CrowS-Pairs (Nangia, Vania, Bhalerao, Bowman 2020, EMNLP)", "CC BY-SA 4.0",
        "https://github.com/nyu-mll/crows-pairs",
        (Source("crows_pairs/crows_pairs_anonymized.csv", _github(*_CROWS, "data/crows_pairs_anonymized.csv"),
                "dfb36986ce0502abbaf7055b9176da3d08d48e07df1251991b5dfbcbceab9d0c"),)),
    "seat": Benchmark(
        "SEAT gender tests 6-8b (May, Wang, Bordia, Bowman, Rudinger 2019, NAACL)", "CC BY-NC 4.0",
        "https://github.com/W4ngatang/sent-bias",
        tuple(Source(f"seat/{name}.jsonl", _github(*_SEAT, f"tests/{name}.jsonl"), digest)
              for name, digest in _SEAT_SHA256.items())),
    # Its sha256 is unverified here (no copy of the file was at hand to compute it); the file is checked instead by
    # its git blob id in the repository's tree at the pinned commit, which is as binding on the content.
    "stereoset": Benchmark(
        "StereoSet dev set (Nadeem, Bethke, Reddy 2021, ACL)", "CC BY-SA 4.0", "https://github.com/moinnadeem/StereoSet",
        (Source("stereoset/dev.json", _github(*_STEREOSET, "data/dev.json"), None,
                git_blob="637b1e3d284a3c629b74a4659c583b8eca9bd13e"),)),
}
NEEDED = ("crows", "seat")  # StereoSet falls back to the hub (McGill-NLP/stereoset) when its file is not here


def default_dir() -> Path:
    """Where `kdstudy data fetch` puts the files, and where bias.data_dir points unless set."""
    return cache_root() / "data"


def fetch_command(names, data_dir: str | Path | None = None) -> str:
    """The exact command that fetches `names` into `data_dir`."""
    to = "" if data_dir is None or Path(data_dir).resolve() == default_dir().resolve() else f" --to {data_dir}"
    return f"kdstudy data fetch {' '.join(names)}{to}"


def require(metrics, data_dir: str | Path) -> None:
    """Raise a one-line DataError naming the fetch command if a file the metrics need is not in `data_dir`."""
    names = [n for n in NEEDED if n in metrics]
    root = Path(data_dir)
    gone = [s.path for n in names for s in BENCHMARKS[n].files  # the loaders also read the files flat in the folder
            if not ((root / s.path).is_file() or (root / Path(s.path).name).is_file())]
    if gone:
        short = gone if len(gone) <= 2 else [*gone[:2], f"... ({len(gone)} files)"]
        wanted = [n for n in names if any(s.path in gone for s in BENCHMARKS[n].files)]
        raise DataError(f"bias data not found in {data_dir}: {', '.join(short)}; fetch it with "
                        f"`{fetch_command(wanted, data_dir)}` (or point --data-dir / bias.data_dir at a copy)")


# --- fetching --------------------------------------------------------------------------------------------------


def digests(path: Path) -> tuple[str, str]:
    """(sha256, git blob id) of a file."""
    sha256, blob = hashlib.sha256(), hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha256.update(chunk)
            blob.update(chunk)
    return sha256.hexdigest(), blob.hexdigest()


def mismatch(path: Path, source: Source) -> str | None:
    """None if the file is the expected one, else what differs."""
    sha256, blob = digests(path)
    if source.sha256 is not None and sha256 != source.sha256:
        return f"sha256 {sha256} differs from the expected {source.sha256}"
    if source.git_blob is not None and blob != source.git_blob:
        return f"git blob id {blob} differs from the expected {source.git_blob}"
    return None


def url_of(source: Source) -> str:
    mirror = os.environ.get(MIRROR)
    return f"{mirror.rstrip('/')}/{source.path}" if mirror else source.url


def download(source: Source, dest: Path) -> None:
    """Download `source` to `dest`: into a temporary file beside it, checked, then renamed into place."""
    import urllib.error
    import urllib.request
    from http.client import HTTPException

    url = url_of(source)
    made = not dest.parent.exists()
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "kdstudy"})
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            expected = response.headers.get("Content-Length")
            for chunk in iter(lambda: response.read(1 << 16), b""):
                out.write(chunk)
            if expected is not None and out.tell() != int(expected):
                raise DataError(f"{url}: download interrupted after {out.tell()} of {expected} bytes; nothing written")
        wrong = mismatch(Path(tmp), source)
        if wrong:
            raise DataError(f"{url}: {wrong}; nothing written")
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would keep the data from the other users of a shared cache
        os.replace(tmp, dest)
    except urllib.error.HTTPError as err:
        raise DataError(f"{url}: download failed (HTTP {err.code} {err.reason}); nothing written") from None
    except (OSError, HTTPException) as err:  # URLError and a timeout are OSErrors; IncompleteRead an HTTPException
        reason = getattr(err, "reason", None) or str(err) or type(err).__name__
        raise DataError(f"{url}: download failed ({reason}); nothing written") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if made and not any(dest.parent.iterdir()):
            dest.parent.rmdir()


def fetch(names, to: str | Path | None = None) -> Path:
    """Fetch the named benchmarks into `to` (default: default_dir()); files already there and intact are kept.
    Writes the LICENSES note; returns the folder."""
    root = Path(to).expanduser() if to else default_dir()
    if root.exists() and not root.is_dir():
        raise DataError(f"{root}: not a folder; --to takes the folder to fetch the bias data into")
    made = not root.exists()
    try:
        for name in names:
            for source in BENCHMARKS[name].files:
                dest = root / source.path
                if dest.is_file() and mismatch(dest, source) is None:
                    log.info(f"  {source.path}: in place")
                    continue
                download(source, dest)
                log.info(f"  {source.path}: fetched from {url_of(source)} ({dest.stat().st_size:,} bytes, "
                         f"checksum ok)")
    finally:  # the files fetched before a failure keep their note; a folder made for nothing goes
        if root.is_dir():
            write_licenses(root)
            if made and not any(root.iterdir()):
                root.rmdir()
    return root


def write_licenses(root: Path) -> None:
    """The LICENSES note for the benchmarks present in `root`."""
    if not any((root / s.path).is_file() for bench in BENCHMARKS.values() for s in bench.files):
        return
    parts = ["Third-party benchmark data fetched by `kdstudy data fetch`: not part of kdstudy, each under its own "
             "licence.\n"]
    for bench in BENCHMARKS.values():
        present = [s for s in bench.files if (root / s.path).is_file()]
        if present:
            parts.append(f"{bench.title}\n  licence: {bench.licence}\n  source:  {bench.home}\n  files:   "
                         + ", ".join(s.path for s in present) + "\n")
    fd, tmp = tempfile.mkstemp(prefix=f".{LICENSES}.", dir=root)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(parts))
    os.chmod(tmp, 0o644)
    os.replace(tmp, root / LICENSES)
