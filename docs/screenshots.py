"""Screenshots of a finished study in MLflow's UI, the way a user sees it: `mlflow ui` on the study's store, its
pages loaded in headless Chromium (Debian's `chromium` package), each saved as a PNG; and, from a terminal
recording of `kdstudy run`, the live view as the terminal showed it.

    python docs/screenshots.py runs/smoke [--out docs] [--port 5077] [--terminal run.typescript]

Pages: the experiment as it opens in the "Model training" mode (mlflow-experiment.png), the front's shared view
that the parent run's description links to, as a table (mlflow-front.png) and as charts (mlflow-front-charts.png),
the parent run's page (mlflow-parent-run.png), MLflow's scatter of every trial's objectives (mlflow-scatter.png,
the description's first chart link) and, once `kdstudy export` or `kdstudy rerun` registered a student, the study's
registered model (mlflow-registry.png). Images are cropped to the page (MLflow's assistant panel on the right is
left out) and reduced to 256 colours.

`--terminal` takes a recording of the terminal (`script -q -c "kdstudy run search_spaces/smoke.yaml" run.typescript`
on a 120-column terminal; cut it with `head -c` to stop mid-study) and renders the screen it leaves (pyte, a
terminal emulator, from the `docs` extra) as live-view.png.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from PIL import Image, ImageChops

CHROMIUM = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
            # 90 s of virtual time: the runs page draws its charts only after fetching every run's metrics
            "--virtual-time-budget=90000", "--window-size=1600,1000"]
PAGE_WIDTH = 1190  # the page without the assistant panel, at a 1600-pixel window


def serve(store: str, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", store, "--host", "127.0.0.1",
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(120):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("mlflow ui did not come up")


def screenshot(url: str, path: Path, crop: bool = True) -> None:
    with tempfile.TemporaryDirectory() as profile:  # a fresh browser: no view state left from an earlier page
        subprocess.run([*CHROMIUM, f"--user-data-dir={profile}", f"--screenshot={path}", url], check=True,
                       capture_output=True, timeout=120)
    image = Image.open(path).convert("RGB")
    if crop:
        image = image.crop((0, 0, min(PAGE_WIDTH, image.width), image.height))
    else:  # a picture on a white page: cut the page's empty margins
        background = Image.new("RGB", image.size, image.getpixel((image.width - 1, image.height - 1)))
        box = ImageChops.difference(image, background).getbbox()
        image = image.crop(box) if box else image
    image.quantize(256).save(path, optimize=True)
    print(f"{path} ({path.stat().st_size // 1024} KB): {url}")


def terminal(typescript: Path, path: Path, columns: int = 120, lines: int = 40) -> None:
    """The screen a terminal shows after the bytes of `typescript`, drawn as an SVG by rich and saved as a PNG."""
    import pyte
    from rich.console import Console
    from rich.text import Text

    screen = pyte.Screen(columns + 1, lines)  # a column to spare: a line of exactly `columns` never wraps early
    screen.set_mode(pyte.modes.LNM)  # a line feed also returns the carriage, as the tty's output processing did
    data = typescript.read_bytes()
    if data.startswith(b"Script started"):  # script's own header line: in the file, never on the terminal
        data = data.split(b"\n", 1)[-1]
    pyte.ByteStream(screen).feed(data)
    console = Console(record=True, width=columns, force_terminal=True, color_system="truecolor", file=io.StringIO())
    rows = [screen.buffer[y] for y in range(lines)]  # (the spare column is never printed)
    last = max((y for y, row in enumerate(rows) if any(row[x].data.strip() for x in range(columns))), default=0)
    for row in rows[:last + 1]:
        text = Text()
        for x in range(columns):
            char = row[x]
            colour = None if char.fg == "default" else (f"#{char.fg}" if len(char.fg) == 6 else char.fg)
            text.append(char.data, style=(f"bold {colour}" if char.bold else colour) or "")
        text.rstrip()
        console.print(text)
    with tempfile.TemporaryDirectory() as work:
        svg = Path(work) / "view.svg"
        console.save_svg(str(svg), title="kdstudy run search_spaces/smoke.yaml")
        screenshot(svg.as_uri(), path, crop=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("study_dir")
    parser.add_argument("--out", default="docs")
    parser.add_argument("--port", type=int, default=5077)
    parser.add_argument("--terminal", type=Path, help="a recording of `kdstudy run` (script's typescript)")
    args = parser.parse_args()
    meta = json.loads((Path(args.study_dir) / "study.json").read_text())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base, experiment = f"http://127.0.0.1:{args.port}/", meta["experiment_id"]
    front = f"#/experiments/{experiment}/runs?workflowType=machine_learning&viewStateShareKey=front"
    training = "workflowType=machine_learning"  # the "Model training" mode, not the GenAI pages
    pages = {"mlflow-experiment.png": f"#/experiments/{experiment}?{training}",
             "mlflow-front.png": front, "mlflow-front-charts.png": f"{front}&compareRunsMode=CHART",
             "mlflow-parent-run.png": f"#/experiments/{experiment}/runs/{meta['parent_run_id']}?{training}",
             "mlflow-scatter.png": f"#/experiments/{experiment}/runs?{training}&viewStateShareKey=trials"
                                   "&compareRunsMode=CHART"}
    if registered(meta):
        pages["mlflow-registry.png"] = f"#/models/{meta['name']}"
    ui = serve(meta["tracking_uri"], args.port)
    try:
        for name, page in pages.items():
            screenshot(base + page, out / name)
    finally:
        ui.terminate()
        ui.wait()
    if args.terminal is not None:
        terminal(args.terminal, out / "live-view.png")


def registered(meta: dict) -> bool:
    """Whether the study has a registered model (a student exported or rerun)."""
    from mlflow import MlflowClient

    from study.student.registry import has_model

    return has_model(MlflowClient(meta["tracking_uri"]), meta["name"])


if __name__ == "__main__":
    main()
