"""Take docs/images/mlflow_parallel_coordinates.png: the clicks README's "Compare a sweep" section
describes, done by a headless Chromium on a running `mlflow ui`. Not part of the package (playwright is not
a dependency):

    pip install playwright                      # the Python package only; Chromium from the system
    mlflow ui --backend-store-uri sqlite:///$PWD/mlflow.db --port 5000 &
    python docs/images/mlflow_parallel_coordinates.py --ui http://127.0.0.1:5000
"""

from __future__ import annotations

import argparse
import json
import urllib.parse
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def rest(ui: str, endpoint: str, body: dict | None = None, **query: str) -> dict:
    url = f"{ui}/api/2.0/mlflow/{endpoint}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def newest_sweep(ui: str, experiment: str) -> tuple[str, int]:
    """The experiment's id and the number of jobs of its newest sweep (the top row of the runs table)."""
    exp_id = rest(ui, "experiments/get-by-name", experiment_name=experiment)["experiment"]["experiment_id"]
    search = {"experiment_ids": [exp_id], "max_results": 1, "order_by": ["attributes.start_time DESC"],
              "filter": "tags.`sweep.is_parent` = 'true'"}
    parent = rest(ui, "runs/search", search)["runs"][0]["info"]["run_id"]
    search = {"experiment_ids": [exp_id], "max_results": 1000,
              "filter": f"tags.`mlflow.parentRunId` = '{parent}'"}
    return exp_id, len(rest(ui, "runs/search", search).get("runs", []))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ui", default="http://127.0.0.1:5000")
    parser.add_argument("--experiment", default="romp_hydra")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).with_name("mlflow_parallel_coordinates.png"))
    args = parser.parse_args()
    ui = args.ui.rstrip("/")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        # "Model training" (top left) opens experiments on their runs table; the URL parameter does the same.
        exp_id, num_jobs = newest_sweep(ui, args.experiment)
        page.goto(f"{ui}/#/experiments/{exp_id}?workflowType=machine_learning")
        page.wait_for_timeout(4000)
        if page.get_by_role("button", name="Close").count():
            page.get_by_role("button", name="Close").first.click()  # the assistant panel
        expander = '[data-component-id$="runnamecellrenderer.tsx_46"]'
        page.locator(expander).first.click()  # expand the newest sweep
        page.wait_for_timeout(1500)
        rows = page.locator(".ag-row .ag-selection-checkbox")
        for index in range(1, num_jobs + 1):  # tick its jobs (row 0 is the parent)
            rows.nth(index).click()
        page.get_by_role("button", name="Compare").click()
        page.get_by_text("Parallel Coordinates Plot").first.wait_for()
        page.wait_for_timeout(4000)
        page.screenshot(path=str(args.out), clip={"x": 0, "y": 0, "width": 1600, "height": 640})
        browser.close()
    print(args.out)


if __name__ == "__main__":
    main()
