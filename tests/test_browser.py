"""The real app in a real browser: `streamlit run app.py` headless, each page opened in Debian's Chromium.

Skips only when /usr/bin/chromium is absent (CI installs it). Screenshots go to
``$DASHBOARD_SCREENSHOTS`` (default ``build/screenshots``) for a human to look at.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[1]
SHOTS = Path(os.environ.get("DASHBOARD_SCREENSHOTS", ROOT / "build" / "screenshots"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
RENDER_TIMEOUT_MS = 60_000  # a page's first visit compiles its JAX functions

# screenshot name -> (url path, texts that only appear once the page has computed its outputs;
# the last one is rendered last). The default page lives at the root URL.
PAGES = {
    "saliency": ("", ("Prediction:", "integrated_gradients for", "convergence δ")),
    "sensitivity": ("sensitivity", ("Global ranking", "Prediction:", "Strongest pairs:")),
    "adversarial": ("adversarial", ("Adversarial lab", "perturbation ×", "Compute the robustness curve")),
    "gradflow": ("gradflow", ("Chain rule and gradient flow", "at depth 10:", "σ′(z) ≤ 0.25 always")),
    # The evaluation itself waits for its button (a minute on shapes_cnn's defaults): the offer is the last text.
    "trust": ("trust", ("Which map to trust", "on the object", "the first run compiles", "Evaluate")),
}

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    yield from serve({})


@pytest.fixture(scope="module")
def user_server(tmp_path_factory):
    """The app started the way a deployment names a user's model: only that model, by spec, from env."""
    from usermodel_testlib import CNN, env_for, trained_package

    folder = trained_package(tmp_path_factory)
    yield from serve({**env_for(folder), "EXPLAIN_MODELS": CNN, "EXPLAIN_ONLY": "1"})


def serve(extra_env: dict[str, str]):
    port = free_port()
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"),
        "--server.headless=true", "--server.address=127.0.0.1", f"--server.port={port}",
        "--browser.gatherUsageStats=false", "--server.fileWatcherType=none",
    ]  # fmt: skip
    # Shares the persistent compilation cache that the AppTest tests fill (tests/dashboard/conftest.py).
    env = {
        **os.environ,
        "EXPLAIN_JAX_CACHE": os.environ.get("EXPLAIN_JAX_CACHE", str(ROOT / "build" / "jax-cache")),
        **extra_env,
    }
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read() if proc.poll() is not None else ""
                pytest.fail(f"streamlit did not start on {url}:\n{out}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from playwright import sync_api  # a missing playwright fails the test: only a missing browser skips it

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as pw:
        # A persistent context is how a fresh --user-data-dir is given to Chromium under Playwright.
        ctx = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 3200},  # Streamlit scrolls inside its own container
        )
        try:
            yield ctx
        finally:
            ctx.close()


@pytest.mark.parametrize("name", list(PAGES))
def test_page_renders_in_chromium(server, browser, name):
    render(server, browser, name, *PAGES[name])


def test_the_users_cnn_renders_in_chromium(user_server, browser):
    """Issue 12: the NNX CNN of tests/user_package, the only model, explained in a real browser."""
    render(user_server, browser, "user_saliency", "", ("Prediction:", "top-", "integrated_gradients for"))


def render(server: str, browser, name: str, path: str, texts: tuple[str, ...]) -> None:
    page = browser.new_page()
    try:
        page.goto(f"{server}/{path}", wait_until="domcontentloaded")
        for text in texts:
            page.get_by_text(text).first.wait_for(timeout=RENDER_TIMEOUT_MS)
        # Images and charts paint after the script's last message arrives.
        page.wait_for_load_state("networkidle")
        page.wait_for_timeout(1000)
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
        assert page.get_by_text("Page not found").count() == 0
        assert page.locator('[data-testid="stException"]').count() == 0
        errors = page.locator('[data-testid="stAlertContentError"]')
        assert errors.count() == 0, errors.first.inner_text()
    finally:
        page.close()
