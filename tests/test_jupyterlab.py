"""JupyterLab in headless Chromium: 02_candidate_evolution runs, its widget renders, and moving
the epoch slider redraws the plot. Debian's chromium is installed here when missing."""
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-quic", "--disable-sync"]


def _ensure_chromium():
    if Path(CHROMIUM).exists():
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.fail("Debian's chromium is needed for this test and cannot be installed here (needs apt-get as root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    r = subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
        r = subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], env=env, capture_output=True, text=True)
    assert r.returncode == 0 and Path(CHROMIUM).exists(), r.stderr[-2000:]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    _ensure_chromium()
    import papermill as pm
    from lion_kit.demo import NOTEBOOKS
    from lion_kit.train import train
    run_dir = tmp_path / "run"
    train("smoke", out=str(run_dir), method="lion", epochs=3, iters=6, relabel_epoch=10, delta_neg=0.14)
    pm.execute_notebook(str(NOTEBOOKS / "02_candidate_evolution.ipynb"), str(tmp_path / "02.ipynb"),
                        parameters={"run_dir": str(run_dir), "out_dir": str(tmp_path / "out")}, prepare_only=True)
    port, token = _free_port(), "lion-kit-test"
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt")}
    # The server's (and its kernels') output goes to a file: an unread pipe fills up and stalls the server.
    log = tmp_path / "jupyter.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
                                 f"--ServerApp.token={token}", f"--ServerApp.root_dir={tmp_path}", "--allow-root",
                                 "--LabApp.news_url=", "--LabApp.expose_app_in_browser=True",
                                 "--LabServerApp.workspaces_dir=" + str(tmp_path / "ws")],
                                env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=tmp_path)
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None, f"JupyterLab exited early:\n{log.read_text()[-3000:]}"
            time.sleep(0.5)
    else:  # it listened after 8 s on this 2-core machine under full load (two trainings and pytest): 90 s is a margin
        proc.kill()
        raise TimeoutError(f"JupyterLab did not listen on port {port} within 90 s:\n{log.read_text()[-3000:]}")
    yield f"http://127.0.0.1:{port}/lab/tree/02.ipynb?token={token}", tmp_path, log
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


# The notebook panel's state, read from JupyterLab's own model: its kernel, and each code cell's
# errors, stderr and widget views. It is what a failure reports.
NOTEBOOK_STATE = """() => {
  const app = window.jupyterapp, panel = app && app.shell.currentWidget;
  if (!panel || !panel.content || !panel.content.model) return {panel: String(panel)};
  const cells = panel.content.model.cells, lines = [];
  for (let i = 0; i < cells.length; i++) {
    const c = cells.get(i);
    if (c.type !== 'code') continue;
    for (const o of c.outputs.toJSON()) {
      if (o.output_type === 'error') lines.push(`cell ${i}: ${o.ename}: ${o.evalue}`);
      else if (o.output_type === 'stream' && o.name === 'stderr') lines.push(`cell ${i} stderr: ${String(o.text).slice(-400)}`);
      else if (o.data && o.data['application/vnd.jupyter.widget-view+json']) lines.push(`cell ${i}: widget view`);
    }
  }
  const s = panel.sessionContext;
  return {kernel: s.kernelDisplayName, status: s.kernelDisplayStatus, outputs: lines};
}"""

RUN_ALL = """async () => {
  const app = window.jupyterapp, panel = app.shell.currentWidget;
  await panel.context.ready;
  await panel.sessionContext.ready;
  return await app.commands.execute('notebook:run-all-cells');
}"""

SLIDER = ".widget-slider .noUi-handle, .widget-slider input[type=range]"
PLOT = ".jupyter-widgets .jp-OutputArea-output img"


def test_widget_renders_and_slider_changes_the_plot(lab):
    from playwright.sync_api import sync_playwright
    url, tmp, log = lab
    with sync_playwright() as p:
        # a fresh --user-data-dir, which playwright passes itself for a persistent context
        browser = p.chromium.launch_persistent_context(str(tmp / "chrome"), executable_path=CHROMIUM, args=FLAGS,
                                                       headless=True, viewport={"width": 1400, "height": 1000})
        page = browser.new_page()
        console = []
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"[:300]) if m.type in ("error", "warning") else None)

        def fail(what):
            page.screenshot(path=str(tmp / "failure.png"))
            try:
                state = page.evaluate(NOTEBOOK_STATE)
            except Exception as e:  # the page itself may be what broke
                state = repr(e)
            return AssertionError(f"{what}\nnotebook: {state}\nbrowser console (last 15): {console[-15:]}\n"
                                  f"jupyter log (tail):\n{log.read_text(errors='replace')[-3000:]}")

        try:
            page.goto(url)
            page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                                   " && window.jupyterapp.shell.currentWidget.sessionContext", timeout=180_000)
            ran = page.evaluate(RUN_ALL)
            if not ran:
                raise fail("running all cells of 02_candidate_evolution.ipynb in JupyterLab failed")
            slider = page.wait_for_selector(SLIDER, timeout=120_000)
            out = page.locator(PLOT).last
            out.wait_for(timeout=120_000)
        except AssertionError:
            raise
        except Exception as e:
            raise fail(f"the widget did not render: {e!r}"[:1500]) from None
        before = out.get_attribute("src")
        page.screenshot(path=str(tmp / "before.png"))
        slider.focus()
        page.keyboard.press("ArrowLeft")
        page.keyboard.press("ArrowLeft")
        deadline = time.time() + 60
        after = before
        while time.time() < deadline and after == before:
            time.sleep(0.5)
            after = page.locator(PLOT).last.get_attribute("src")
        page.screenshot(path=str(tmp / "after.png"))
        label = page.locator(".widget-slider .widget-readout").first.inner_text()
        browser.close()
    assert before and before.startswith("data:image/png")
    assert after != before, "moving the epoch slider did not redraw the plot"
    assert label.strip() == "1"  # 3 epochs, two steps left
