"""A real browser for the patron page's tests: Debian's chromium, headless, driven by Selenium through
Debian's chromedriver (the two packages always match; Selenium Manager is never asked to download
one), plus axe-core for the accessibility checks and screenshots kept under ``test-artifacts/``.

Without a browser the tests skip and say why; in CI (``CI=true``) or with ``NLR_REQUIRE_BROWSER=1``
they fail instead, as the PostgreSQL variants do (tests/conftest.py). The same holds for axe-core,
which `make axe` installs, pinned, from npm into ``.cache/axe-core`` (git-ignored).

Plain helpers only: the test module makes the fixtures (tests/conftest.py: fixtures are found, not
imported).
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = os.environ.get("NLR_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("NLR_CHROMEDRIVER", "/usr/bin/chromedriver")
AXE_JS = REPO / ".cache" / "axe-core" / "node_modules" / "axe-core" / "axe.min.js"
REQUIRE_BROWSER = os.environ.get("CI", "").lower() == "true" or os.environ.get("NLR_REQUIRE_BROWSER") == "1"
WINDOW = (1280, 900)
# WCAG 2.0 and 2.1, levels A and AA: the criteria Norwegian public bodies must meet.
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


def unavailable(reason: str) -> None:
    """Skip with ``reason`` on a developer's machine; fail where the browser tests are required."""
    if REQUIRE_BROWSER:
        pytest.fail(f"{reason}; CI requires the browser tests (.ci/run installs chromium, chromium-driver and npm; "
                    "or unset CI/NLR_REQUIRE_BROWSER)", pytrace=False)
    pytest.skip(f"{reason}; skipped here (required in CI)")


def browser_problem() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (Path(path).is_file() and os.access(path, os.X_OK)):
            return f"{path} not found (apt-get install chromium chromium-driver: Debian's package {package})"
    return None


def start_browser() -> Any:
    """A headless chromium at 1280×900 with a fresh profile, or a skip/fail saying why not."""
    problem = browser_problem()
    if problem:
        unavailable(problem)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", f"--window-size={WINDOW[0]},{WINDOW[1]}", "--no-sandbox",  # root, in a container
                "--disable-dev-shm-usage", "--disable-gpu", "--no-first-run", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--lang=nb-NO", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    # No password manager or "save password?" bubble; downloads would go nowhere on their own.
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})  # the HTTP statuses: see statuses()
    options.add_experimental_option("perfLoggingPrefs", {"enableNetwork": True, "enablePage": False})
    options.add_experimental_option("prefs", {"credentials_enable_service": False,
                                              "profile.password_manager_enabled": False,
                                              "intl.accept_languages": "nb-NO,nb,no"})
    service = Service(CHROMEDRIVER, log_output=str(ARTIFACTS / "chromedriver.log") if ARTIFACTS.is_dir() else None)
    try:
        driver = webdriver.Chrome(service=service, options=options)
    except Exception as exc:  # noqa: BLE001 - a browser that will not start is reported, never a traceback
        unavailable(f"chromium did not start ({exc.__class__.__name__}: {str(exc).strip()[:300]})")
    driver.set_window_size(*WINDOW)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(60)
    return driver


@contextmanager
def browser() -> Iterator[Any]:
    ARTIFACTS.mkdir(exist_ok=True)
    driver = start_browser()
    try:
        yield driver
    finally:
        driver.quit()


def statuses(driver: Any) -> list[tuple[str, int]]:
    """(URL, HTTP status) of every page (document) the browser loaded since the last call, redirects
    included, in order: what WebDriver itself does not tell."""
    out: list[tuple[str, int]] = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message.get("params", {})
        if message["method"] == "Network.requestWillBeSent" and params.get("redirectResponse") \
                and params.get("type") == "Document":
            out.append((params["redirectResponse"]["url"], params["redirectResponse"]["status"]))
        elif message["method"] == "Network.responseReceived" and params.get("type") == "Document":
            out.append((params["response"]["url"], params["response"]["status"]))
    return out


def last_status(driver: Any) -> int:
    """The HTTP status of the page the browser shows (the last document loaded since the last call)."""
    seen = statuses(driver)
    assert seen, f"no page was loaded (at {driver.current_url})"
    return seen[-1][1]


def artifact_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "page"


def screenshot(driver: Any, name: str) -> Path:
    """The whole page (not just the window) as ``test-artifacts/<name>.png``."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{artifact_name(name)}.png"
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics.get("cssContentSize") or metrics["contentSize"]
    width, height = max(WINDOW[0], int(size["width"])), max(WINDOW[1], int(size["height"]))
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": min(height, 8000), "scale": 1}})
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def axe_source() -> str:
    if not AXE_JS.is_file():
        unavailable(f"axe-core not found at {AXE_JS.relative_to(REPO)} (`make axe` installs it with npm)")
    return AXE_JS.read_text(encoding="utf-8")


def _readable(violations: list[dict[str, Any]]) -> str:
    lines = []
    for v in violations:
        lines.append(f"- {v['id']} ({v.get('impact')}): {v['help']} [{', '.join(v.get('tags', []))}]\n"
                     f"  {v.get('helpUrl', '')}")
        for node in v.get("nodes", [])[:10]:
            summary = (node.get("failureSummary") or "").replace("\n", "\n      ")
            lines.append(f"    at {' '.join(map(str, node.get('target', [])))}\n      {node.get('html', '')[:200]}"
                         f"\n      {summary}")
        if len(v.get("nodes", [])) > 10:
            lines.append(f"    … and {len(v['nodes']) - 10} more")
    return "\n".join(lines)


def axe_run(driver: Any) -> dict[str, Any]:
    """axe-core's full result for the current page (WCAG 2.0/2.1 A and AA rules only)."""
    # WebDriver's scripts run outside the page's Content-Security-Policy, which forbids inline script.
    driver.execute_script(axe_source() + "\n;window.__nlrAxe = axe;")
    result: dict[str, Any] | None = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "window.__nlrAxe.run(document, {runOnly: {type: 'tag', values: arguments[0]}, resultTypes: ['violations']})"
        ".then(r => done({violations: r.violations, incomplete: r.incomplete.map(i => i.id),"
        " passes: r.passes.length, version: r.testEngine.version, url: r.url}))"
        ".catch(e => done({error: String(e)}));", WCAG_TAGS)
    assert result is not None and "error" not in result, f"axe-core failed on {driver.current_url}: {result}"
    return result


def axe_check(driver: Any, page_name: str) -> dict[str, Any]:
    """Run axe-core on the page the browser shows; assert it reports no WCAG 2.1 A/AA violation.

    The result goes to ``test-artifacts/axe-<page_name>.json`` and, with a screenshot, shows what to fix."""
    result = axe_run(driver)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"axe-{artifact_name(page_name)}.json").write_text(json.dumps(result, indent=2, ensure_ascii=False),
                                                                    encoding="utf-8")
    violations = result["violations"]
    if violations:
        screenshot(driver, f"axe-{page_name}")
    assert not violations, (f"axe-core {result['version']}: {len(violations)} WCAG 2.1 A/AA violation(s) on "
                            f"{page_name} ({result['url']}):\n{_readable(violations)}")
    return result
