"""`kdstudy data fetch` against a real HTTP server on 127.0.0.1 serving copies of the benchmark files
($KDSTUDY_DATA_MIRROR points the fetch at it): a good fetch, a wrong file, a download cut mid-file, a second fetch
that finds everything in place; and the one-line error that names the fetch command."""

import shutil
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from study.cli import main
from study.config import BiasConfig
from study.errors import DataError
from study.metrics import bias_data
from study.metrics.bias_data import BENCHMARKS, MIRROR, fetch_command, require


class Handler(SimpleHTTPRequestHandler):
    """Serves a folder; a path in `cut` gets its full Content-Length but only half its bytes, then the connection
    closes (a download interrupted mid-file)."""

    cut: set[str] = set()
    served: list[str] = []

    def do_GET(self):
        self.served.append(self.path)
        if self.path.lstrip("/") not in self.cut:
            return super().do_GET()
        body = (Path(self.directory) / self.path.lstrip("/")).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """(folder the server serves, the list of paths it was asked for, the set of paths it cuts)."""
    root = tmp_path / "mirror"
    root.mkdir()
    handler = type("H", (Handler,), {"cut": set(), "served": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=root))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv(MIRROR, f"http://127.0.0.1:{server.server_address[1]}/")
    yield root, handler.served, handler.cut
    server.shutdown()
    server.server_close()


def _copy_released(released, root):
    for name in ("crows_pairs", "seat"):
        shutil.copytree(released / name, root / name)


def _files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_fetch_then_everything_in_place(mirror, released_data, tmp_path, capsys):
    root, served, _ = mirror
    _copy_released(released_data, root)
    dest = tmp_path / "data"
    assert main(["data", "fetch", "crows", "seat", "--to", str(dest)]) == 0
    expected = sorted(s.path for name in ("crows", "seat") for s in BENCHMARKS[name].files)
    assert _files(dest) == sorted([*expected, "LICENSES"])
    for path in expected:
        assert (dest / path).read_bytes() == (released_data / path).read_bytes()
    licences = (dest / "LICENSES").read_text()
    assert "CrowS-Pairs" in licences and "CC BY-SA 4.0" in licences and "CC BY-NC 4.0" in licences
    assert "StereoSet" not in licences  # not fetched
    assert str(dest) in capsys.readouterr().err
    asked = len(served)
    assert asked == len(expected)

    assert main(["data", "fetch", "crows", "seat", "--to", str(dest)]) == 0
    assert len(served) == asked  # nothing downloaded again
    assert capsys.readouterr().err.count(": in place") == len(expected)
    # and the bias config reads it from there without being told where (bias.data_dir unset = the cache's data/)
    require(BiasConfig(metrics=["template", "crows", "seat"]).metrics, dest)


def _one_line_error(capsys, argv):
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("fetching") and len(lines) == 2 and lines[1].startswith("kdstudy: error:")
    return lines[1]


def test_a_wrong_file_is_refused_and_nothing_is_left(mirror, tmp_path, capsys):
    root, _, _ = mirror
    (root / "crows_pairs").mkdir()
    (root / "crows_pairs" / "crows_pairs_anonymized.csv").write_text("sent_more,sent_less\nnot,the release\n")
    dest = tmp_path / "data"
    err = _one_line_error(capsys, ["data", "fetch", "crows", "--to", str(dest)])
    assert "sha256" in err and "differs from the expected" in err and "nothing written" in err
    assert not dest.exists()


def test_an_interrupted_download_leaves_no_half_file(mirror, tmp_path, capsys):
    root, _, cut = mirror
    (root / "seat").mkdir()
    (root / "seat" / "sent-weat6.jsonl").write_text('{"targ1": {"category": "x", "examples": []}}' * 50)
    cut.add("seat/sent-weat6.jsonl")
    dest = tmp_path / "data"
    err = _one_line_error(capsys, ["data", "fetch", "seat", "--to", str(dest)])
    assert "sent-weat6.jsonl" in err and "nothing written" in err
    assert not dest.exists()


def test_a_server_without_the_file_is_one_line(mirror, tmp_path, capsys):
    err = _one_line_error(capsys, ["data", "fetch", "stereoset", "--to", str(tmp_path / "data")])
    assert "stereoset/dev.json" in err and "HTTP 404" in err


def test_missing_files_name_the_exact_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("KDSTUDY_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataError, match=r"`kdstudy data fetch crows seat`"):
        require(["template", "crows", "seat", "stereoset"], bias_data.default_dir())
    with pytest.raises(DataError, match=rf"`kdstudy data fetch seat --to {tmp_path}`"):
        require(["seat"], tmp_path)
    require(["template", "stereoset"], tmp_path)  # neither needs a file: StereoSet falls back to the hub
    assert fetch_command(["crows"], tmp_path / "cache" / "data") == "kdstudy data fetch crows"


def test_the_sums_in_the_code_are_the_released_files(released_data):
    for name in ("crows", "seat"):
        for source in BENCHMARKS[name].files:
            assert bias_data.mismatch(released_data / source.path, source) is None, source.path


def test_sources_are_the_originals_pinned_to_a_commit():
    repos = {"crows": "nyu-mll/crows-pairs", "seat": "W4ngatang/sent-bias", "stereoset": "moinnadeem/StereoSet"}
    for name, bench in BENCHMARKS.items():
        for source in bench.files:
            assert source.url.startswith(f"https://raw.githubusercontent.com/{repos[name]}/")
            assert len(source.url.split("/")[5]) == 40  # a commit, not a branch that can move
            assert source.sha256 or source.git_blob
