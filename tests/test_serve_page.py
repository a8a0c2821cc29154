"""The page of ``GET /`` in a real browser: Debian's headless Chromium driven by selenium (chromium-driver)
uploads a photo, waits for the answer, and the page shows the API's top-1 and draws the box on the photo
(a red pixel on the box's edge). The screenshot goes to tmp_path, or to $ELOPE_SERVE_SCREENSHOT when set
(docs/images/serve_page.png is made that way). Skipped, with the reason, where chromium is not installed;
``.ci/run`` installs it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("onnxruntime")
import httpx

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="needs Debian's chromium and chromium-driver (apt-get install, see .ci/run)",
)


def _browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1200,880", "--no-first-run", "--disable-extensions"):  # fmt: skip
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(DRIVER), options=options)


def _red_pixel_on_box(driver) -> bool:
    """Whether the canvas has the box colour (#ff3d57) at the middle of the box's left edge."""
    return driver.execute_script(
        """const c = document.getElementById('canvas'); if (c.dataset.boxDrawn !== 'true') return false;
        const [x1, y1, x2, y2] = JSON.parse(c.dataset.box);
        const p = c.getContext('2d').getImageData(x1, Math.round((y1 + y2) / 2), 1, 1).data;
        return p[0] > 230 && p[1] < 90 && p[2] > 60 && p[2] < 120;"""
    )


def page_screenshot(url: str, image: Path, out: Path, timeout: float = 60) -> dict:
    """Open the page at ``url``, upload ``image``, wait for the answer; screenshot to ``out``."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = _browser()
    try:
        driver.get(url + "/")
        WebDriverWait(driver, timeout).until(lambda d: "classes" in d.find_element(By.ID, "model").text)
        driver.find_element(By.ID, "file").send_keys(str(image))
        WebDriverWait(driver, timeout).until(
            lambda d: d.find_element(By.ID, "status").text in ("done", "failed")
        )
        seen = {
            "status": driver.find_element(By.ID, "status").text,
            "error": driver.find_element(By.ID, "error").text,
            "top1": driver.find_element(By.ID, "top1").text,
            "rows": len(driver.find_elements(By.CSS_SELECTOR, "ol#results li")),
            "box_drawn": _red_pixel_on_box(driver),
        }
        driver.find_element(By.ID, "heat").click()  # the overlay toggles off and on again
        seen["box_after_toggle"] = _red_pixel_on_box(driver)
        driver.find_element(By.ID, "heat").click()
        out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(out))
        return seen
    finally:
        driver.quit()


def test_page_uploads_a_photo_and_draws_the_answer(served_onnx, tmp_path):
    from serve_helpers import jpeg, thread_server

    from elope.serve.app import Limits, create_app
    from elope.serve.model import ServedModel

    image = tmp_path / "bird.jpg"
    image.write_bytes(jpeg(480, 360, 4))
    app = create_app(ServedModel(served_onnx, max_pixels=10**7), Limits())
    with thread_server(app) as url:
        api = httpx.post(
            url + "/predict", files={"image": ("bird.jpg", image.read_bytes(), "image/jpeg")}
        ).json()
        out = Path(os.environ.get("ELOPE_SERVE_SCREENSHOT") or tmp_path / "serve_page.png")
        seen = page_screenshot(url, image, out)
    assert seen["status"] == "done" and not seen["error"], seen
    assert seen["top1"] == api["results"][0]["classes"][0]["class"]
    assert seen["rows"] == 3  # the tiny model has three classes: all of them, best first
    assert seen["box_drawn"] and seen["box_after_toggle"], seen
    assert out.stat().st_size > 10_000
