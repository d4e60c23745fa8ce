"""Screenshots of a finished study in MLflow's UI, the way a user sees it: `mlflow ui` on the study's store, its
pages loaded in headless Chromium (Debian's `chromium` package), each saved as a PNG.

    python docs/screenshots.py runs/smoke [--out docs] [--port 5077]

Pages: the experiment as it opens in the "Model training" mode (mlflow-experiment.png), the front's shared view
that the parent run's description links to, as a table (mlflow-front.png) and as charts (mlflow-front-charts.png),
and the parent run's page (mlflow-parent-run.png); the README shows mlflow-front.png and mlflow-parent-run.png.
Images are cropped to the page (MLflow's assistant panel on the right is left out) and reduced to 256 colours.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from PIL import Image

CHROMIUM = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
            "--virtual-time-budget=20000", "--window-size=1600,1000"]
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


def screenshot(url: str, path: Path) -> None:
    with tempfile.TemporaryDirectory() as profile:  # a fresh browser: no view state left from an earlier page
        subprocess.run([*CHROMIUM, f"--user-data-dir={profile}", f"--screenshot={path}", url], check=True,
                       capture_output=True, timeout=120)
    image = Image.open(path).convert("RGB")
    image.crop((0, 0, min(PAGE_WIDTH, image.width), image.height)).quantize(256).save(path, optimize=True)
    print(f"{path} ({path.stat().st_size // 1024} KB): {url}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("study_dir")
    parser.add_argument("--out", default="docs")
    parser.add_argument("--port", type=int, default=5077)
    args = parser.parse_args()
    meta = json.loads((Path(args.study_dir) / "study.json").read_text())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base, experiment = f"http://127.0.0.1:{args.port}/", meta["experiment_id"]
    front = f"#/experiments/{experiment}/runs?workflowType=machine_learning&viewStateShareKey=front"
    training = "workflowType=machine_learning"  # the "Model training" mode, not the GenAI pages
    pages = {"mlflow-experiment.png": f"#/experiments/{experiment}?{training}",
             "mlflow-front.png": front, "mlflow-front-charts.png": f"{front}&compareRunsMode=CHART",
             "mlflow-parent-run.png": f"#/experiments/{experiment}/runs/{meta['parent_run_id']}?{training}"}
    ui = serve(meta["tracking_uri"], args.port)
    try:
        for name, page in pages.items():
            screenshot(base + page, out / name)
    finally:
        ui.terminate()
        ui.wait()


if __name__ == "__main__":
    main()
