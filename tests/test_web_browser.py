"""Min side (issue 10) in a real browser: Debian's chromium, headless, driven by Selenium, against a
running `nlr serve` with SIP2 and HTTP listeners and the demo data; what a patron would notice.

One browser per module (tests/browser_helpers.py: it skips with the reason on a machine without
chromium, and fails in CI); every test starts its own daemon on a fresh register (SQLite, and
PostgreSQL where the backend matters). Screenshots of every page and axe-core's results are kept
under test-artifacts/.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import browser_helpers as bh
import pytest
from daemon_helpers import Daemon, free_port, start, write_config
from lxml import etree
from ncip_gateway_helpers import lookup_user
from register_helpers import BERGEN, OSLO, TRONDHEIM
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait
from sip2_server_helpers import Client, fields, patron_information, patron_status

from gateway.demo import DEMO_PIN, load_demo, synthetic_fnr
from gateway.register import Register
from gateway.register.views import OPERATOR

KARI, OLA, EMMA, PER, LISE_LOST, LISE, SOFIE = ("N000100001", "N000200001", "N000100002", "N000300001",
                                                 "N000100003", "N000100004", "N000200002")
KARI_NID = synthetic_fnr(date(1985, 3, 14), 10)
SOFIE_NID = synthetic_fnr(date(1979, 12, 9), 60)
TERMINAL, TERMINAL_PASSWORD = "deichman-kiosk-7", "kiosk-pass-7"
CLIENT = "Deichman Bibliofil"
FAILED = "Feil lånenummer eller PIN-kode"
NCIP_Q = "{http://www.niso.org/2008/ncip}"
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def masked(nid: str) -> str:
    return nid[:6] + "*****"


# ---------------------------------------------------------------------- the daemon
@dataclass
class Site:
    base: str
    sip2_port: int
    token: str
    register: Register
    daemon: Daemon

    def url(self, path: str) -> str:
        return self.base + path

    def sip2(self, message: str) -> Any:
        """Log in as the demo kiosk over a fresh SIP2 connection and ask ``message``."""
        with Client(self.sip2_port) as kiosk:
            assert kiosk.ask(f"9300CN{TERMINAL}|CO{TERMINAL_PASSWORD}|") == b"941"
            return fields(kiosk.ask(message))

    def cq(self, card: str, pin: str) -> str | None:
        """SIP2 23 (patron status) with ``pin``: the CQ field, Y for a valid PIN."""
        return self.sip2(patron_status(card, pin)).get("CQ")

    def ncip(self, body: bytes) -> etree._Element:
        conn = http.client.HTTPConnection("127.0.0.1", int(self.base.rsplit(":", 1)[1]), timeout=20)
        conn.request("POST", "/ncip", body, {"Authorization": f"Bearer {self.token}",
                                             "Content-Type": "application/xml"})
        response = conn.getresponse()
        data = response.read()
        conn.close()
        assert response.status == 200, (response.status, data[:500])
        return etree.fromstring(data)

    def home_library(self, card: str) -> str | None:
        """The home library NCIP LookupUser shows: the LIBRARY privilege described "Home library"."""
        root = self.ncip(lookup_user(card))
        assert root.find(f".//{NCIP_Q}Problem") is None, etree.tostring(root)[:800]
        for privilege in root.iter(f"{NCIP_Q}UserPrivilege"):
            if privilege.findtext(f"{NCIP_Q}UserPrivilegeDescription") == "Home library":
                return privilege.findtext(f"{NCIP_Q}AgencyId")
        return None


@pytest.fixture
def serve(register: Register, database_url: str, keys_path: Path, tmp_path: Path,
          daemons: list[Daemon]) -> Callable[..., Site]:
    """A factory: `nlr serve` (SIP2 and HTTP) on the demo register, a kiosk and an NCIP client added."""
    list(load_demo(register))
    register.add_terminal(OPERATOR, TERMINAL, TERMINAL_PASSWORD, OSLO, "kiosk")
    token = register.add_client(OPERATOR, CLIENT, OSLO, ["lookup"]).token
    assert token is not None

    def start_site(extra: str = "") -> Site:
        http_port, sip2_port = free_port(), free_port()
        cfg = write_config(tmp_path / "nlr.yaml", database_url, keys_path,
                           http=[f"tcp:{http_port}:interface=127.0.0.1"],
                           sip2=[f"tcp:{sip2_port}:interface=127.0.0.1"], extra=extra)
        daemon = start(daemons, cfg, tmp_path)
        base = f"http://127.0.0.1:{http_port}"
        daemon.health(base, 200)
        return Site(base, sip2_port, token, register, daemon)

    return start_site


@pytest.fixture
def site(serve: Callable[..., Site]) -> Site:
    return serve()


# ---------------------------------------------------------------------- the browser
@pytest.fixture(scope="module")
def browser_session() -> Iterator[Any]:
    with bh.browser() as driver:
        yield driver


@pytest.fixture
def driver(browser_session: Any) -> Any:
    """The module's browser with no cookies and an empty status log."""
    browser_session.execute_cdp_cmd("Network.clearBrowserCookies", {})
    browser_session.get("about:blank")
    bh.statuses(browser_session)
    return browser_session


def text(driver: Any) -> str:
    return driver.find_element(By.TAG_NAME, "body").text


def path_of(driver: Any) -> str:
    return urllib.parse.urlsplit(driver.current_url).path


def submit(driver: Any, form: Any) -> None:
    """Press the form's submit button and wait for the next page."""
    buttons = form.find_elements(By.CSS_SELECTOR, "button:not([type]), button[type=submit], input[type=submit]")
    assert buttons, f"no submit button in the form at {driver.current_url}"
    buttons[0].click()
    # While the old page goes, chromedriver may answer "node does not belong to the document" rather
    # than "stale": both mean it is going.
    wait = WebDriverWait(driver, 15, ignored_exceptions=(WebDriverException,))
    wait.until(ec.staleness_of(form))
    wait.until(lambda d: d.execute_script("return document.readyState") == "complete")


def form_with(driver: Any, field: str) -> Any:
    """The form on the page that has an input, select or textarea named ``field``."""
    for form in driver.find_elements(By.TAG_NAME, "form"):
        if form.find_elements(By.NAME, field):
            return form
    raise AssertionError(f"no form with a field {field!r} at {driver.current_url}:\n{text(driver)}")


def form_to(driver: Any, action_suffix: str) -> Any:
    for form in driver.find_elements(By.TAG_NAME, "form"):
        if urllib.parse.urlsplit(form.get_attribute("action") or driver.current_url).path.endswith(action_suffix):
            return form
    raise AssertionError(f"no form posting to …{action_suffix} at {driver.current_url}")


def fill(form: Any, **values: str) -> None:
    for name, value in values.items():
        element = form.find_element(By.NAME, name)
        element.clear()
        element.send_keys(value)


def log_in(driver: Any, site: Site, card: str, pin: str = DEMO_PIN, *, query: str = "") -> None:
    driver.get(site.url("/min-side/logg-inn" + query))
    assert bh.last_status(driver) == 200
    form = form_with(driver, "card")
    fill(form, card=card, pin=pin)
    submit(driver, form)


def logged_in(driver: Any, site: Site, card: str) -> None:
    log_in(driver, site, card)
    assert path_of(driver) == "/min-side/", (driver.current_url, text(driver))
    assert card in text(driver)


def look(driver: Any, name: str, *, axe: bool = True) -> None:
    """Keep a screenshot of the page; run axe-core on it."""
    bh.screenshot(driver, name)
    if axe:
        bh.axe_check(driver, name)


# ---------------------------------------------------------------------- plain HTTP beside the browser
@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def header(self, name: str) -> str:
        return self.headers.get(name, "")


def session_cookie(driver: Any) -> str:
    cookie = driver.get_cookie("nlr_session")
    assert cookie, f"no nlr_session cookie: {driver.get_cookies()}"
    return f"nlr_session={cookie['value']}"


def fetch(site: Site, path: str, *, cookie: str = "", method: str = "GET", form: dict[str, str] | None = None,
          headers: dict[str, str] | None = None) -> Answer:
    conn = http.client.HTTPConnection("127.0.0.1", int(site.base.rsplit(":", 1)[1]), timeout=20)
    all_headers = dict(headers or {})
    if cookie:
        all_headers["Cookie"] = cookie
    body = None
    if form is not None:
        body = urllib.parse.urlencode(form)
        all_headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
    conn.request(method, path, body, all_headers)
    response = conn.getresponse()
    answer = Answer(response.status, response.headers, response.read())
    conn.close()
    return answer


def hidden_fields(page: bytes, field: str) -> dict[str, str]:
    """The hidden inputs of the form on ``page`` that has ``field`` (as a browser would submit them)."""
    root = etree.HTML(page)
    form = next((f for f in root.iter("form") if f.xpath(".//*[@name=$n]", n=field)), None)
    assert form is not None, page[:2000]
    return {i.get("name"): i.get("value", "") for i in form.iter("input")
            if (i.get("type") or "").lower() == "hidden" and i.get("name")}


def http_login(site: Site, card: str, pin: str = DEMO_PIN) -> str:
    """A session of its own, by plain HTTP (not the browser's): its Cookie header."""
    page = fetch(site, "/min-side/logg-inn")
    pre = "; ".join(c.split(";", 1)[0] for c in page.headers.get_all("Set-Cookie") or [])
    answer = fetch(site, "/min-side/logg-inn", method="POST", cookie=pre,
                   form=hidden_fields(page.body, "card") | {"card": card, "pin": pin}, headers={"Origin": site.base})
    assert answer.status in (302, 303), (answer.status, answer.body[:300])
    cookies = [c.split(";", 1)[0] for c in answer.headers.get_all("Set-Cookie") or []]
    session = [c for c in cookies if c.startswith("nlr_session=")]
    assert session, cookies
    return session[0]


def redirects_to_login(answer: Answer) -> bool:
    return answer.status in (302, 303, 307) and "/min-side/logg-inn" in answer.header("Location")


def check_headers(answer: Answer, personal: bool = True) -> None:
    csp = answer.header("Content-Security-Policy")
    directives = {d.strip().split(" ", 1)[0]: d.strip() for d in csp.split(";") if d.strip()}
    assert directives.get("default-src") == "default-src 'self'", csp
    assert directives.get("frame-ancestors") == "frame-ancestors 'none'", csp
    assert directives.get("form-action") == "form-action 'self'", csp
    assert "unsafe-inline" not in directives.get("script-src", "") and "unsafe-eval" not in csp, csp
    assert answer.header("X-Content-Type-Options") == "nosniff"
    assert answer.header("Referrer-Policy") == "no-referrer"
    if personal:
        assert "no-store" in answer.header("Cache-Control"), answer.header("Cache-Control")


# ---------------------------------------------------------------------- the tests
def test_log_in_see_the_data_and_who_looked(site: Site, driver: Any) -> None:
    """The patron's visit: the login form, the overview, innsyn naming the kiosk and the library system
    that looked the patron up over SIP2 and NCIP earlier, and the JSON copy."""
    # Earlier today: a kiosk at Deichman and Deichman's library system look Kari up.
    sip2 = site.sip2(patron_information(KARI, DEMO_PIN))
    assert (sip2.get("BL"), sip2.get("CQ")) == ("Y", "Y")
    assert site.home_library(KARI) == OSLO

    assert redirects_to_login(fetch(site, "/min-side/"))
    front = fetch(site, "/")
    assert front.status in (301, 302, 303, 307, 308) and front.header("Location").endswith("/min-side/"), front

    driver.get(site.url("/min-side/"))
    assert path_of(driver) == "/min-side/logg-inn"  # no session: to the login form
    assert driver.find_element(By.TAG_NAME, "html").get_attribute("lang") in ("nb", "nb-NO", "no")
    form = form_with(driver, "card")
    for name, label in (("card", "Lånenummer"), ("pin", "PIN-kode")):
        field = form.find_element(By.NAME, name)
        labels = driver.find_elements(By.CSS_SELECTOR, f"label[for='{field.get_attribute('id')}']") \
            + field.find_elements(By.XPATH, "ancestor::label")
        assert any(label in x.text for x in labels), (name, [x.text for x in labels])
    assert form.find_element(By.NAME, "pin").get_attribute("type") == "password"
    assert not driver.find_elements(By.CSS_SELECTOR, "script:not([src])")  # no inline script
    bh.screenshot(driver, "login")

    fill(form, card=KARI, pin=DEMO_PIN)
    submit(driver, form)
    assert path_of(driver) == "/min-side/", text(driver)
    assert bh.last_status(driver) == 200
    page = text(driver)
    for shown in ("Kari", "Nordmann", KARI, "Deichman Oslo", masked(KARI_NID), "Storgata 1", "0155",
                  "kari@example.org", "22334455"):
        assert shown in page, (shown, page)
    assert "1985" in page  # the birth date
    assert "meråpent" in page.lower()  # the door agreement of the Oslo activation
    assert KARI_NID not in driver.page_source
    bh.screenshot(driver, "overview")

    cookie = driver.get_cookie("nlr_session")
    assert cookie is not None
    assert cookie["httpOnly"] and cookie.get("sameSite") == "Strict" and cookie["path"] == "/min-side", cookie
    assert len(cookie["value"]) >= 22, "at least 128 bits"
    assert "nlr_session" not in driver.execute_script("return document.cookie")

    driver.get(site.url("/min-side/innsyn"))
    assert bh.last_status(driver) == 200
    trail = text(driver)
    assert TERMINAL in trail, trail  # the SIP2 lookup, by the kiosk's login
    assert CLIENT in trail, trail  # the NCIP lookup, by the client's name
    assert trail.index(CLIENT) < trail.index(TERMINAL), "newest first: the NCIP lookup came after the SIP2 one"
    assert "Deichman Oslo" in trail and OSLO in trail
    bh.screenshot(driver, "innsyn")

    # The JSON copy, with the browser's session cookie.
    cookie_header = session_cookie(driver)
    copy = fetch(site, "/min-side/innsyn.json", cookie=cookie_header)
    assert copy.status == 200
    assert copy.header("Content-Type").startswith("application/json"), copy.header("Content-Type")
    assert copy.header("Content-Disposition").startswith("attachment"), copy.header("Content-Disposition")
    check_headers(copy)
    data = json.loads(copy.body)
    assert KARI_NID.encode() not in copy.body and masked(KARI_NID) in copy.body.decode()
    assert KARI in copy.body.decode() and "Storgata 1" in copy.body.decode()
    assert TERMINAL in copy.body.decode() and CLIENT in copy.body.decode()
    full = site.register.export_patron(OPERATOR, KARI)  # `nlr patron export`: the same keys
    assert set(data) == set(full), (sorted(set(data) ^ set(full)))

    for path in ("/min-side/", "/min-side/innsyn", "/min-side/hjemmebibliotek", "/min-side/pin", "/min-side/om"):
        answer = fetch(site, path, cookie=cookie_header)
        assert answer.status == 200, (path, answer.status)
        check_headers(answer, personal=path != "/min-side/om")
    check_headers(fetch(site, "/min-side/logg-inn"), personal=False)


def test_what_a_card_and_pin_login_shows(site: Site, driver: Any) -> None:
    """A secret address is never shown or sent; a blocked patron logs in (innsyn is a right); a
    replaced card shows both cards; a lost card never logs in."""
    logged_in(driver, site, SOFIE)
    page = text(driver)
    assert "Sofie" in page and masked(SOFIE_NID) in page
    for hidden in ("Hemmelig vei", "5003"):
        assert hidden not in driver.page_source, hidden
    assert any(word in page.lower() for word in ("skjult", "hemmelig")), page  # says one is held, and hidden
    bh.screenshot(driver, "overview-secret-address")
    copy = fetch(site, "/min-side/innsyn.json", cookie=session_cookie(driver))
    assert copy.status == 200
    assert b"Hemmelig vei" not in copy.body and b"5003" not in copy.body and SOFIE_NID.encode() not in copy.body
    assert masked(SOFIE_NID) in copy.body.decode()
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})

    logged_in(driver, site, PER)  # blocked
    assert "Blokk" in text(driver)
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})

    logged_in(driver, site, LISE)  # the replacement of a lost card: both cards, current and earlier
    assert LISE_LOST in text(driver)
    bh.screenshot(driver, "overview-replaced-card")
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})

    log_in(driver, site, LISE_LOST)
    assert path_of(driver) == "/min-side/logg-inn" and FAILED in text(driver)


def test_a_home_library_change_reaches_ncip(site: Site, driver: Any) -> None:
    """Ola (home Bergen, also activated in Oslo) moves his home library to Oslo; NCIP LookupUser shows it."""
    assert site.home_library(OLA) == BERGEN
    logged_in(driver, site, OLA)
    driver.get(site.url("/min-side/hjemmebibliotek"))
    assert bh.last_status(driver) == 200
    form = form_with(driver, "library")
    offered = {e.get_attribute("value") for e in form.find_elements(By.CSS_SELECTOR, "[name=library], option")
               if e.get_attribute("value")}
    assert {OSLO, BERGEN} <= offered and TRONDHEIM not in offered, offered  # the libraries he is activated at
    bh.screenshot(driver, "hjemmebibliotek")

    # A library he is not activated at (slipped into the form): refused, the form again, nothing changed.
    choose(driver, form, TRONDHEIM, force=True)
    submit(driver, form)
    assert bh.last_status(driver) == 200
    form_with(driver, "library")
    assert site.home_library(OLA) == BERGEN

    form = form_with(driver, "library")
    choose(driver, form, OSLO)
    submit(driver, form)
    assert bh.last_status(driver) in (200, 303)
    assert site.home_library(OLA) == OSLO
    driver.get(site.url("/min-side/"))
    page = text(driver)
    assert "Deichman Oslo" in page
    driver.get(site.url("/min-side/innsyn"))
    assert "hjemmebibliotek" in text(driver).lower()  # the change, in the trail


def choose(driver: Any, form: Any, isil: str, *, force: bool = False) -> None:
    """Pick ``isil`` in the form's ``library`` field (a select or radio buttons); ``force`` adds it first."""
    field = form.find_element(By.NAME, "library")
    if field.tag_name == "select":
        if force:
            driver.execute_script("const o = document.createElement('option'); o.value = arguments[1];"
                                  "o.text = arguments[1]; arguments[0].add(o);", field, isil)
        Select(field).select_by_value(isil)
        return
    if force:
        driver.execute_script("arguments[0].value = arguments[1]; arguments[0].checked = true;", field, isil)
        return
    form.find_element(By.CSS_SELECTOR, f"[name=library][value='{isil}']").click()


def test_a_pin_change_works_at_once_over_sip2_and_ncip(site: Site, driver: Any) -> None:
    other = http_login(site, KARI)  # another session of Kari's, elsewhere
    assert fetch(site, "/min-side/", cookie=other).status == 200
    logged_in(driver, site, KARI)
    driver.get(site.url("/min-side/pin"))
    assert bh.last_status(driver) == 200
    for name in ("old_pin", "new_pin", "new_pin_again"):
        assert form_with(driver, "old_pin").find_element(By.NAME, name).get_attribute("type") == "password"
    fresh = text(driver)
    bh.screenshot(driver, "pin")

    # PINs that differ: the form again with the reason; nothing changed.
    form = form_with(driver, "old_pin")
    fill(form, old_pin=DEMO_PIN, new_pin="5678", new_pin_again="5679")
    submit(driver, form)
    assert bh.last_status(driver) == 200
    form_with(driver, "old_pin")
    assert text(driver) != fresh, "the reason is shown"
    bh.screenshot(driver, "pin-refused")
    assert site.cq(KARI, DEMO_PIN) == "Y"

    form = form_with(driver, "old_pin")
    fill(form, old_pin=DEMO_PIN, new_pin="5678", new_pin_again="5678")
    submit(driver, form)
    assert bh.last_status(driver) in (200, 303)
    bh.screenshot(driver, "pin-changed")
    assert site.cq(KARI, DEMO_PIN) == "N"
    assert site.cq(KARI, "5678") == "Y"
    with_pin = site.ncip(lookup_user(KARI, pin="5678"))
    assert with_pin.find(f".//{NCIP_Q}Problem") is None, etree.tostring(with_pin)[:500]
    assert site.ncip(lookup_user(KARI, pin=DEMO_PIN)).find(f".//{NCIP_Q}Problem") is not None

    driver.get(site.url("/min-side/"))
    assert path_of(driver) == "/min-side/"  # this session goes on
    assert redirects_to_login(fetch(site, "/min-side/", cookie=other))  # the other one has ended


def test_five_wrong_pins_on_the_page_lock_sip2_too(site: Site, driver: Any) -> None:
    # An unknown card and a lost card get the very page a wrong PIN gets.
    log_in(driver, site, "N000199999")
    assert bh.last_status(driver) == 200 and FAILED in text(driver)
    unknown = text(driver)
    bh.screenshot(driver, "login-failed")
    log_in(driver, site, LISE_LOST)
    assert text(driver) == unknown

    for attempt in range(5):
        log_in(driver, site, EMMA, "9999")
        assert bh.last_status(driver) == 200, attempt
        assert path_of(driver) == "/min-side/logg-inn" and text(driver) == unknown, attempt
    log_in(driver, site, EMMA, DEMO_PIN)  # the right PIN, now locked: the same answer
    assert path_of(driver) == "/min-side/logg-inn" and text(driver) == unknown
    assert driver.get_cookie("nlr_session") is None
    assert site.cq(EMMA, DEMO_PIN) == "N"  # the register's lockout, on every channel


def test_a_form_with_a_tampered_token_or_another_sites_origin_is_refused(site: Site, driver: Any) -> None:
    logged_in(driver, site, OLA)
    driver.get(site.url("/min-side/hjemmebibliotek"))
    form = form_with(driver, "library")
    hidden = form.find_elements(By.CSS_SELECTOR, "input[type=hidden]")
    assert hidden, "the form carries a token"
    driver.execute_script("for (const i of arguments[0].querySelectorAll('input[type=hidden]'))"
                          " i.value = i.value.split('').reverse().join('') + 'x';", form)
    choose(driver, form, OSLO)
    submit(driver, form)
    assert bh.last_status(driver) == 403
    look(driver, "csrf-refused")
    assert site.home_library(OLA) == BERGEN

    driver.get(site.url("/min-side/pin"))
    form = form_with(driver, "old_pin")
    driver.execute_script("for (const i of arguments[0].querySelectorAll('input[type=hidden]')) i.value = '';", form)
    fill(form, old_pin=DEMO_PIN, new_pin="5678", new_pin_again="5678")
    submit(driver, form)
    assert bh.last_status(driver) == 403
    assert site.cq(OLA, DEMO_PIN) == "Y"

    # The right token from another site's page: refused too; from our own origin it goes through.
    cookie = session_cookie(driver)
    page = fetch(site, "/min-side/hjemmebibliotek", cookie=cookie)
    token = hidden_fields(page.body, "library")
    refused = fetch(site, "/min-side/hjemmebibliotek", method="POST", cookie=cookie, form=token | {"library": OSLO},
                    headers={"Origin": "https://elsewhere.example"})
    assert refused.status == 403
    assert site.home_library(OLA) == BERGEN
    accepted = fetch(site, "/min-side/hjemmebibliotek", method="POST", cookie=cookie, form=token | {"library": OSLO},
                     headers={"Origin": site.base})
    assert accepted.status in (200, 303), accepted.status
    assert site.home_library(OLA) == OSLO


def test_log_out(site: Site, driver: Any) -> None:
    logged_in(driver, site, KARI)
    cookie = session_cookie(driver)
    submit(driver, form_to(driver, "/min-side/logg-ut"))
    bh.screenshot(driver, "logged-out")
    driver.get(site.url("/min-side/"))
    assert path_of(driver) == "/min-side/logg-inn"
    assert redirects_to_login(fetch(site, "/min-side/", cookie=cookie))  # the session is gone, not just the cookie
    assert redirects_to_login(fetch(site, "/min-side/innsyn.json", cookie=cookie))


@SQLITE_ONLY
def test_a_session_ends_after_the_configured_idle_time(serve: Callable[..., Site], driver: Any) -> None:
    site = serve("web:\n  session_idle_seconds: 2\n")
    logged_in(driver, site, KARI)
    driver.get(site.url("/min-side/innsyn"))
    assert path_of(driver) == "/min-side/innsyn"
    time.sleep(3)
    driver.get(site.url("/min-side/innsyn"))
    assert path_of(driver) == "/min-side/logg-inn", text(driver)


@SQLITE_ONLY
def test_english_on_request_and_remembered(site: Site, driver: Any) -> None:
    def lang() -> str:
        return driver.find_element(By.TAG_NAME, "html").get_attribute("lang") or ""

    driver.get(site.url("/min-side/logg-inn?lang=en"))
    assert lang().startswith("en")
    assert "Lånenummer" not in text(driver) and "card" in text(driver).lower()
    look(driver, "login-en")
    driver.get(site.url("/min-side/logg-inn"))
    assert lang().startswith("en"), "remembered"
    form = form_with(driver, "card")
    fill(form, card=KARI, pin=DEMO_PIN)
    submit(driver, form)
    assert path_of(driver) == "/min-side/" and lang().startswith("en")
    look(driver, "overview-en")
    driver.get(site.url("/min-side/innsyn"))
    assert lang().startswith("en")
    look(driver, "innsyn-en")
    driver.get(site.url("/min-side/logg-inn?lang=nb"))
    assert lang().startswith("nb") and "Lånenummer" in text(driver)

    assert b'lang="en' in fetch(site, "/min-side/logg-inn", headers={"Accept-Language": "en-GB,en;q=0.9"}).body
    assert b'lang="nb' in fetch(site, "/min-side/logg-inn").body


@SQLITE_ONLY
def test_keyboard_alone_logs_in(site: Site, driver: Any) -> None:
    def focused() -> tuple[str, str]:
        el = driver.switch_to.active_element
        return el.tag_name, el.get_attribute("name") or el.get_attribute("type") or el.text

    def tab_to(name: str, limit: int = 25) -> list[tuple[str, str]]:
        seen = []
        for _ in range(limit):
            ActionChains(driver).send_keys(Keys.TAB).perform()
            seen.append(focused())
            if seen[-1][1] == name:
                return seen
        raise AssertionError(f"Tab never reached {name!r}: {seen}")

    driver.get(site.url("/min-side/logg-inn"))
    buttons = form_with(driver, "card").find_elements(By.CSS_SELECTOR,
                                                      "button:not([type]), button[type=submit], input[type=submit]")
    seen: list[tuple[str, str, str]] = []
    for _ in range(25):
        ActionChains(driver).send_keys(Keys.TAB).perform()
        el = driver.switch_to.active_element
        seen.append((el.tag_name, el.get_attribute("name") or "", el.get_attribute("type") or ""))
        if el in buttons:
            break
    else:
        raise AssertionError(f"Tab never reached the login button: {seen}")
    names = [name for _, name, _ in seen]
    assert "card" in names and "pin" in names and names.index("card") < names.index("pin"), seen
    button = driver.switch_to.active_element
    style = driver.execute_script("const s = getComputedStyle(arguments[0]);"
                                  "return [s.outlineStyle, s.outlineWidth, s.boxShadow];", button)
    assert style[0] != "none" or style[2] != "none", f"the focused button shows no focus: {style}"

    driver.get(site.url("/min-side/logg-inn"))
    tab_to("card")
    ActionChains(driver).send_keys(" " + KARI.lower() + " ").perform()  # normalised as everywhere
    ActionChains(driver).send_keys(Keys.TAB).perform()
    assert focused()[1] == "pin"
    ActionChains(driver).send_keys(DEMO_PIN, Keys.ENTER).perform()
    deadline = time.monotonic() + 15
    while path_of(driver) != "/min-side/" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert path_of(driver) == "/min-side/", text(driver)
    assert KARI in text(driver)


@SQLITE_ONLY
def test_every_page_passes_axe_and_is_kept_as_a_screenshot(site: Site, driver: Any) -> None:
    """axe-core (WCAG 2.0/2.1 A and AA) on every page and its error states; screenshots of all."""
    driver.get(site.url("/min-side/logg-inn"))
    look(driver, "login")
    log_in(driver, site, KARI, "9999")
    assert FAILED in text(driver)
    look(driver, "login-failed")
    logged_in(driver, site, KARI)
    look(driver, "overview")
    if os.environ.get("NLR_DOCS_SCREENSHOT") == "1":  # the README's picture: docs/min-side.png
        (bh.REPO / "docs").mkdir(exist_ok=True)
        shutil.copy(bh.ARTIFACTS / "overview.png", bh.REPO / "docs" / "min-side.png")
    for path, name in (("/min-side/innsyn", "innsyn"), ("/min-side/hjemmebibliotek", "hjemmebibliotek"),
                       ("/min-side/pin", "pin"), ("/min-side/om", "om")):
        driver.get(site.url(path))
        assert bh.last_status(driver) == 200, path
        look(driver, name)
    page = text(driver)
    assert "Nasjonalbiblioteket" in page and "Deichman Oslo" in page, page  # om: who answers, her libraries
    driver.get(site.url("/min-side/pin"))
    form = form_with(driver, "old_pin")
    fill(form, old_pin="0000", new_pin="5678", new_pin_again="5678")  # a wrong old PIN
    submit(driver, form)
    assert bh.last_status(driver) == 200
    look(driver, "pin-refused")
    driver.get(site.url("/min-side/finnes-ikke"))
    assert bh.last_status(driver) == 404
    look(driver, "not-found")



PAGES = ("/min-side/", "/min-side/innsyn", "/min-side/hjemmebibliotek", "/min-side/pin", "/min-side/om")


@SQLITE_ONLY
def test_every_page_reflows_at_320_px_and_the_header_stays_put(site: Site, driver: Any) -> None:
    """WCAG 1.4.10: at 320 CSS px no page scrolls sideways, in any language; at 1280 px the header's
    row ("Logget inn som Kari Nordmann", Logg ut) is the same on every page."""
    logged_in(driver, site, KARI)
    header = "const r = document.querySelector('.nav-row').getBoundingClientRect(); return [r.height, r.width];"
    rows = {}
    for lang in ("nb", "nn", "en"):
        for path in PAGES:
            driver.get(site.url(f"{path}?lang={lang}"))
            rows[lang, path] = tuple(driver.execute_script(header))
        assert len({rows[lang, path] for path in PAGES}) == 1, rows
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 320, "height": 800, "deviceScaleFactor": 1, "mobile": False})
    try:
        for lang in ("nb", "nn", "en"):
            for path in (*PAGES, "/min-side/logg-inn"):
                driver.get(site.url(f"{path}?lang={lang}"))
                wide = driver.execute_script("const e = document.documentElement;"
                                             "return [e.scrollWidth, e.clientWidth];")
                assert wide[0] <= wide[1], (lang, path, wide)
        bh.screenshot(driver, "om-320")
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


@SQLITE_ONLY
def test_a_refused_form_puts_the_focus_on_its_error_summary(site: Site, driver: Any) -> None:
    """Designsystemet's error summary: after a refused login or PIN change the focus is on the summary,
    without JavaScript (`autofocus`), and its link leads to the field."""
    def focused() -> str:
        return driver.execute_script("return document.activeElement.className || document.activeElement.tagName")

    log_in(driver, site, KARI, "9999")
    assert FAILED in text(driver)
    assert focused() == "error-summary"
    logged_in(driver, site, KARI)
    assert focused() != "error-summary"
    driver.get(site.url("/min-side/pin"))
    form = form_with(driver, "old_pin")
    fill(form, old_pin="0000", new_pin="5678", new_pin_again="5678")
    submit(driver, form)
    assert focused() == "error-summary"
    driver.find_element(By.CSS_SELECTOR, ".error-summary a").click()
    assert driver.switch_to.active_element.get_attribute("name") == "old_pin"
