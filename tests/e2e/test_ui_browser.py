"""The Prefect and MLflow UIs after a real `lmpipe pipeline` run, checked in headless Chromium (Selenium).

Set-up: `python -m flows.services up` on free ports with its state in tmp_path (as tests/flows/test_services_deploy.py
does), then `lmpipe pipeline SPEC` as a subprocess with PREFECT_API_URL and MLFLOW_TRACKING_URI pointing at those
servers (a small spec from tests/flows/test_pipeline_flow.py's `write_pipeline`, GLUE on tests/fixtures/glue_sample).

The REST APIs only find ids and URLs; every assertion is on what the rendered single-page apps show (the DOM after
the page's own API calls came back), waited for with bounded timeouts:

- Prefect, the pipeline's flow run: header state "Completed", its log shows "[<stage>] done in" for every stage;
  its Subflow Runs tab lists curate, pretrain, glue and promote, each with its run name and a Completed state.
- Prefect, the curate subflow's Artifacts tab lists `curate-data-card`; its artifact page renders the markdown
  (an <h1> "Data card: ..." and the Sources section), not the raw text.
- Prefect, the glue subflow's Artifacts tab lists `glue-table`; its artifact page renders a table with the
  candidate column and the sst2 and rte rows, the candidate's numbers as the flow computed them.
- MLflow, the registered model page: the champion version's row carries `@ champion`.
- MLflow, that model version's page: Aliases shows `@ champion`; the Tags table has `glue_score` with its value.
- MLflow, the GLUE evaluation run's page: the Metrics table has `glue_score` (and each task's metric) with the
  logged value.

Screenshots of every page go to `<tmp_path>/screenshots/` (paths printed; `pytest -s` shows them), and one named
`FAILED-...png` of the page that did not show what was expected.

Browser: Debian's `chromium` + `chromium-driver` (`.ci/run` installs them in CI). Without a chromium binary the test
is skipped, except in CI (CI=true), where it must run. 1.5-3 minutes on 2 cores: server start-up 10-20 s, the
pipeline 1-1.5 min (mostly Ray start-up and the two GLUE fine-tunes), the browsing 20-40 s.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tasks.services.processes import _live_members, read_info
from tests.conftest import FIXTURES, REPO
from tests.flows.helpers import free_port, services_cmd
from tests.flows.test_pipeline_flow import write_pipeline

pytestmark = [pytest.mark.ray, pytest.mark.timeout(480)]

IN_CI = os.environ.get("CI", "").lower() == "true"
NAME = "ui-e2e"  # pipeline, registered model and experiment prefix (servers and stores are fresh per test)
STAGES = ("curate", "pretrain", "glue", "promote")
PAGE_TIMEOUT = 60.0  # seconds for one page to show what is expected (the SPA loads, then calls its API)


def _find_binary(*names: str) -> str | None:
    for name in names:
        if path := shutil.which(name):
            return path
    return None


def _unavailable(reason: str) -> None:
    """Skip outside CI; in CI the browser is part of the contract (`.ci/run` installs it), so fail."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: .ci/run should have installed it)")
    pytest.skip(reason)


# ---- servers -------------------------------------------------------------------------------------------------




@dataclass
class Servers:
    prefect_port: int
    mlflow_port: int

    @property
    def prefect_ui(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}"

    @property
    def prefect_api(self) -> str:
        return f"{self.prefect_ui}/api"

    @property
    def mlflow(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    """`services up` on free ports, state in tmp_path; `down` afterwards, then SIGKILL to any group left."""
    state = tmp_path / "services"
    svc = Servers(free_port(), free_port())
    pgids: list[int] = []
    try:
        out = services_cmd("up", "--state-dir", str(state), "--mlflow-dir", str(tmp_path / "mlflow"),
                            "--prefect-port", str(svc.prefect_port), "--mlflow-port", str(svc.mlflow_port),
                            "--timeout", "180")
        pgids = [info["pid"] for name in ("prefect", "mlflow") if (info := read_info(state, name))]
        logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in state.glob("*.log"))
        assert out.returncode == 0, f"services up failed:\n{out.stdout}\n{out.stderr}\n{logs}"
        yield svc
    finally:
        services_cmd("down", "--state-dir", str(state), "--timeout", "15", timeout=120)
        for pgid in pgids:  # nothing this test started may outlive it
            if _live_members(pgid):
                os.killpg(pgid, signal.SIGKILL)


# ---- browser -------------------------------------------------------------------------------------------------


@pytest.fixture
def chromium() -> tuple[str, str]:
    """(browser, driver) paths; skips (fails in CI) before any server starts if either is missing."""
    browser_path = _find_binary("chromium", "chromium-browser")
    if browser_path is None:
        _unavailable("no chromium binary on PATH (Debian: apt-get install chromium chromium-driver)")
    driver_path = _find_binary("chromedriver")
    if driver_path is None:
        _unavailable("chromium found but no chromedriver on PATH (Debian: apt-get install chromium-driver)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        _unavailable("selenium is not installed (pip install -e '.[test]')")
    return browser_path, driver_path


@pytest.fixture
def browser(tmp_path: Path, chromium: tuple[str, str]):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    browser_path, driver_path = chromium
    options = Options()
    options.binary_location = browser_path
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1600,1200", "--no-first-run", "--disable-extensions",
                f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(arg)
    # An explicit driver path: Selenium Manager (which would try to download one) is never consulted.
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(PAGE_TIMEOUT)
    try:
        yield Browser(driver, tmp_path / "screenshots")
    finally:
        driver.quit()


# innerText of every element matching a CSS selector, whitespace (incl. no-break spaces) collapsed
_TEXTS_JS = """return Array.from(document.querySelectorAll(arguments[0]),
    e => (e.innerText || e.textContent || '').replace(/\\s+/g, ' ').trim());"""
# the same for each cell (td, th, [role=cell]) of every row matching the selector: a list of lists
_CELLS_JS = """const text = e => (e.innerText || e.textContent || '').replace(/\\s+/g, ' ').trim();
return Array.from(document.querySelectorAll(arguments[0]),
    r => Array.from(r.querySelectorAll(':scope > td, :scope > th, :scope > [role=cell]'), text));"""


class Browser:
    def __init__(self, driver: Any, shots: Path) -> None:
        self.driver = driver
        self.shots = shots
        shots.mkdir(parents=True, exist_ok=True)
        self.saved: list[Path] = []

    def texts(self, selector: str) -> list[str]:
        return self.driver.execute_script(_TEXTS_JS, selector)

    def rows(self, selector: str = "tr, [role=row]") -> list[list[str]]:
        """Every table row's cells as shown (HTML tables and ARIA grids)."""
        return [r for r in self.driver.execute_script(_CELLS_JS, selector) if r]

    def body(self) -> str:
        return " ".join(self.texts("body"))

    def screenshot(self, name: str) -> Path:
        path = self.shots / f"{len(self.saved) + 1:02d}-{name}.png"
        self.driver.save_screenshot(str(path))
        self.saved.append(path)
        print(f"screenshot: {path}")
        return path

    def wait(self, name: str, what: str, check: Callable[[], Any], timeout: float = PAGE_TIMEOUT) -> Any:
        """Poll `check` (truthy = shown) until it holds; else a screenshot and an error with the page's text."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            try:
                result = check()
                if result:
                    return result
            except Exception as exc:  # a node replaced while the SPA re-renders, a half-built table...
                last_error = exc
            time.sleep(0.5)
        shot = self.screenshot(f"FAILED-{name}")
        raise AssertionError(f"{name}: the page never showed {what} within {timeout:.0f} s "
                             f"({self.driver.current_url}; screenshot {shot}; last error {last_error!r})\n"
                             f"page text: {self.body()[:3000]}")

    def open(self, url: str, name: str, what: str, check: Callable[[], Any]) -> Any:
        self.driver.get(url)
        result = self.wait(name, what, check)
        time.sleep(0.5)  # let the last paint land before the screenshot
        self.screenshot(name)
        return result

    def click(self, selector: str, name: str) -> None:
        from selenium.webdriver.common.by import By

        def clicked() -> bool:
            self.driver.find_element(By.CSS_SELECTOR, selector).click()
            return True

        self.wait(name, f"a clickable {selector}", clicked)


def _row(rows: list[list[str]], first: str) -> list[str] | None:
    """The table row whose first cell shows `first`."""
    return next((r for r in rows if r and r[0] == first), None)


def _number(row: list[str] | None, column: int = 1) -> float | None:
    try:
        return float(row[column]) if row else None
    except (IndexError, ValueError):
        return None


# ---- REST look-ups (ids and URLs only) ------------------------------------------------------------------------


def _post(url: str, body: dict) -> Any:
    response = httpx.post(url, json=body, timeout=30)
    response.raise_for_status()
    return response.json()


def _get(url: str, **params: str) -> Any:
    response = httpx.get(url, params=params, timeout=30)
    response.raise_for_status()
    return response.json()


def _prefect_ids(api: str) -> dict[str, Any]:
    """The pipeline's flow run, its stage subflow runs by flow name, and the two artifacts' ids."""
    (top,) = _post(f"{api}/flow_runs/filter", {"flow_runs": {"tags": {"all_": [f"pipeline:{NAME}"]},
                                                               "parent_task_run_id": {"is_null_": True}}})
    flows = {f["id"]: f["name"] for f in _post(f"{api}/flows/filter", {})}
    children = _post(f"{api}/flow_runs/filter", {"flow_runs": {"parent_flow_run_id": {"any_": [top["id"]]}}})
    subflows = {flows[r["flow_id"]]: r for r in children}
    artifacts = {}
    for key, stage in (("curate-data-card", "curate"), ("glue-table", "glue")):
        found = _post(f"{api}/artifacts/filter", {"artifacts": {"key": {"any_": [key]}}})
        (artifact,) = [a for a in found if a["flow_run_id"] == subflows[stage]["id"]]
        artifacts[key] = artifact
    return {"top": top, "subflows": subflows, "artifacts": artifacts}


def _mlflow_ids(base: str) -> dict[str, Any]:
    champion = _get(f"{base}/api/2.0/mlflow/registered-models/alias", name=NAME, alias="champion")["model_version"]
    tags = {t["key"]: t["value"] for t in champion.get("tags", [])}
    run = _get(f"{base}/api/2.0/mlflow/runs/get", run_id=tags["lmpipe.glue.run_id"])["run"]
    metrics = {m["key"]: m["value"] for m in run["data"].get("metrics", [])}
    return {"version": champion["version"], "glue_tag": tags["glue_score"], "run_id": run["info"]["run_id"],
            "experiment_id": run["info"]["experiment_id"], "metrics": metrics}


# ---- the test --------------------------------------------------------------------------------------------------


def test_prefect_and_mlflow_uis_show_the_pipeline_run(tmp_path: Path, chromium: tuple[str, str], servers: Servers,
                                                       browser: Browser):
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    (tmp_path / "pipe").mkdir()
    spec = write_pipeline(tmp_path / "pipe", NAME, FIXTURES / "glue_sample", max_steps=6, checkpoint_every=6)
    env = {**os.environ, "PREFECT_API_URL": servers.prefect_api, "MLFLOW_TRACKING_URI": servers.mlflow,
           "LMPIPE_STATE_DIR": str(tmp_path / "lmpipe-state"), "RAY_USAGE_STATS_ENABLED": "0",
           "PREFECT_LOGGING_LEVEL": "INFO"}  # tests/conftest.py quiets it to WARNING: the UI would show no logs
    done = subprocess.run([str(Path(sys.executable).parent / "lmpipe"), "pipeline", str(spec)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=360)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    timings["pipeline"] = time.monotonic() - t0

    t1 = time.monotonic()
    prefect = _prefect_ids(servers.prefect_api)
    mlflow = _mlflow_ids(servers.mlflow)
    top, subflows, artifacts = prefect["top"], prefect["subflows"], prefect["artifacts"]
    assert set(STAGES) <= set(subflows), f"subflow runs found through the API: {sorted(subflows)}"
    assert mlflow["metrics"].get("glue_score") is not None
    ui = servers.prefect_ui

    # -- Prefect: the pipeline run, then its Subflow Runs tab
    browser.open(f"{ui}/runs/flow-run/{top['id']}", "prefect-pipeline-run",
                 f"run {top['name']} Completed, with the stage lines in its logs",
                 lambda: top["name"] in " ".join(browser.texts(".page-heading"))
                 and "Completed" in browser.texts(".page-heading .state-badge")
                 and all(f"[{stage}] done in" in browser.body() for stage in STAGES))
    browser.click("li.p-tab#subflow-runs", "prefect-subflow-tab")

    def stage_rows() -> dict[str, str] | None:
        rows = browser.texts("#subflow-runs-content .flow-run-list-item")
        found = {}
        for stage in STAGES:
            run_name = subflows[stage]["name"]
            row = next((r for r in rows if r.startswith(f"{stage} {run_name} ")), None)
            if row is None or "Completed" not in row:
                return None
            found[stage] = row
        return found

    rows = browser.wait("prefect-subflow-runs", "curate, pretrain, glue and promote subflow runs, Completed",
                        stage_rows)
    time.sleep(0.5)
    browser.screenshot("prefect-subflow-runs")
    assert all("Completed" in row for row in rows.values()), rows

    # -- Prefect: the data card on the curate subflow, then rendered on its artifact page
    def open_artifacts_tab(stage: str, key: str) -> None:
        """A subflow's run page, its Artifacts tab, and the card of artifact `key` on it."""
        run = subflows[stage]
        browser.open(f"{ui}/runs/flow-run/{run['id']}", f"prefect-{stage}-run", f"run {run['name']}",
                     lambda: run["name"] in " ".join(browser.texts(".page-heading")))
        browser.click("li.p-tab#artifacts", f"prefect-{stage}-artifacts-tab")
        browser.wait(f"prefect-{stage}-artifacts", f"the {key} artifact card",
                     lambda: key in browser.texts("#artifacts-content .artifact-card__title"))
        browser.screenshot(f"prefect-{stage}-artifacts")

    open_artifacts_tab("curate", "curate-data-card")
    card = artifacts["curate-data-card"]
    headings = browser.open(
        f"{ui}/artifacts/artifact/{card['id']}", "prefect-data-card", "the data card rendered as markdown",
        lambda: (h := browser.texts(".markdown-renderer h1, .markdown-renderer h2"))
        and any(x.startswith("Data card:") for x in h) and h)
    assert any(h.startswith("Data card:") for h in headings), headings  # a rendered heading, not "# Data card"
    assert "Sources" in headings, headings
    assert "curate-data-card" in browser.body()

    # -- Prefect: the GLUE table on the glue subflow, then rendered on its artifact page
    open_artifacts_tab("glue", "glue-table")
    table = artifacts["glue-table"]

    def glue_table() -> dict[str, list[str]] | None:
        header = browser.texts("table th")
        rows = {r[0]: r for r in browser.rows("table tr") if r[0] in ("sst2", "rte")}
        return {"header": header, **rows} if "candidate" in header and {"sst2", "rte"} <= set(rows) else None

    shown = browser.open(f"{ui}/artifacts/artifact/{table['id']}", "prefect-glue-table",
                         "the glue-table with sst2 and rte rows", glue_table)
    candidate_col = shown["header"].index("candidate")
    for task in ("sst2", "rte"):  # percent with one decimal, as tasks/glue/report.py formats it
        expected = mlflow["metrics"][f"{task}_accuracy"] * 100
        assert abs(_number(shown[task], candidate_col) - expected) <= 0.051, (task, shown[task], expected)

    # -- MLflow: the registered model, its champion version's page, the GLUE evaluation run
    m = servers.mlflow
    version = mlflow["version"]

    def close_assistant() -> None:  # MLflow 3's assistant side panel covers part of every screenshot
        browser.driver.execute_script(
            "document.querySelector(\"[data-component-id='mlflow.assistant.chat_panel.close']\")?.click()")

    def version_row() -> str | None:
        rows = [r for r in browser.texts("[role=row], tr") if r.startswith(f"Version {version} ")]
        return rows[0] if rows and "@ champion" in rows[0] else None

    browser.driver.get(f"{m}/#/models/{NAME}")
    row = browser.wait("mlflow-model", f"Version {version} with @ champion", version_row)
    close_assistant()
    time.sleep(0.5)
    browser.screenshot("mlflow-model")
    assert "@ champion" in row

    def version_page() -> tuple[list[str], list[str]] | None:
        aliases = browser.texts("[data-component-id*='alias'], [class*='alias']") or []
        body = browser.body()
        tag = _row(browser.rows("tr"), "glue_score")
        if "@ champion" in body and tag:
            return aliases, tag
        return None

    browser.driver.get(f"{m}/#/models/{NAME}/versions/{version}")
    _, tag_row = browser.wait("mlflow-model-version", "@ champion and the glue_score tag", version_page)
    close_assistant()
    time.sleep(0.5)
    browser.screenshot("mlflow-model-version")
    assert re.search(r"Aliases\s*:?\s*(@ \w+\s*)*@ champion", browser.body()), browser.body()[:2000]
    assert _number(tag_row) == pytest.approx(float(mlflow["glue_tag"]), abs=1e-6), tag_row

    def metric_rows() -> dict[str, float] | None:
        rows = browser.rows()
        values = {k: _number(_row(rows, k)) for k in ("glue_score", "sst2_accuracy", "rte_accuracy")}
        return values if all(v is not None for v in values.values()) else None

    browser.driver.get(f"{m}/#/experiments/{mlflow['experiment_id']}/runs/{mlflow['run_id']}")
    shown_metrics = browser.wait("mlflow-glue-run", "the glue_score metric row", metric_rows)
    close_assistant()
    time.sleep(0.5)
    browser.screenshot("mlflow-glue-run")
    for key, value in shown_metrics.items():
        assert value == pytest.approx(mlflow["metrics"][key], abs=1e-4), (key, value)
    timings["browse"] = time.monotonic() - t1
    print(f"timings: pipeline {timings['pipeline']:.0f} s, browsing {timings['browse']:.0f} s; "
          f"{len(browser.saved)} screenshots in {browser.shots}")
