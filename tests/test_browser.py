"""In a real browser (Debian's headless Chromium, driven by selenium): the example page on another origin, and /docs.

The API runs under gunicorn with CORS_ORIGINS naming the page's origin; the page is served from
examples/browser/ on another port (another origin). `make test` skips these when Chromium is not
installed; .ci/run installs it and sets CHATSTORE_BROWSER_TESTS=required, so there they must run.
"""
import functools
import http.server
import os
import shutil
import threading

import pytest
import requests

from conftest import SESSION_ID, add_chats, app_environ, stored
from serving import ROOT, Gunicorn, free_port

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER):
    if os.environ.get("CHATSTORE_BROWSER_TESTS") == "required":
        raise RuntimeError("browser tests are required here, but chromium or chromedriver is not installed")
    pytest.skip("browser tests skipped: no chromium and chromedriver (apt-get install chromium chromium-driver)",
                allow_module_level=True)

from selenium import webdriver  # noqa: E402  (only where a browser exists)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

EXAMPLE_DIR = os.path.join(ROOT, "examples", "browser")


class PageServer:
    """examples/browser/ over HTTP on its own port: an origin of its own."""

    def __init__(self):
        handler = functools.partial(QuietHandler, directory=EXAMPLE_DIR)
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
        self.origin = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def pages():
    allowed, refused = PageServer(), PageServer()
    yield allowed, refused
    allowed.stop()
    refused.stop()


@pytest.fixture(scope="module")
def api(pages, database_url, identity_provider, tmp_path_factory):
    environ = {**app_environ(database_url, identity_provider), "CORS_ORIGINS": pages[0].origin}
    served = Gunicorn(environ, tmp_path_factory.mktemp("browser") / "gunicorn.log", workers=2)
    yield served.base
    assert "Traceback" not in served.stop()


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--window-size=1000,800"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def wait_for(browser, condition, seconds=15):
    """Until condition() holds; on a time-out, the message says what the page showed."""
    try:
        return WebDriverWait(browser, seconds, poll_frequency=0.1).until(lambda driver: condition())
    except TimeoutException:
        shown = browser.execute_script(
            "const text = (id) => document.getElementById(id) ? document.getElementById(id).textContent : null;"
            "return [location.href, text('status'), text('error'), document.querySelectorAll('#chats li').length,"
            " scrollY, innerHeight, document.getElementById('sentinel').getBoundingClientRect().top, loading];")
        raise AssertionError(f"timed out; the page showed (url, status, error, items): {shown}") from None


def open_example(browser, page_origin, api_base, token):
    browser.get(f"{page_origin}/index.html?base-url={api_base}&session={SESSION_ID}")
    browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.ID, "load").click()


def shown_jids(browser):
    return [item.get_attribute("data-jid") for item in browser.find_elements(By.CSS_SELECTOR, "#chats li")]


def text_of(browser, selector):
    """Read in one script call, so a re-rendered element is never read half-replaced."""
    return browser.execute_script("const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
                                  selector)


def error_text(browser):
    return text_of(browser, "#error")


def test_the_page_lists_the_chats_and_scrolls_for_more(browser, pages, api, keys):
    add_chats(SESSION_ID, *({"jid": f"{n}@s.whatsapp.net", "name": f"Chat {n}", "lastMessageAt": 1_700_000_000_000 + n}
                            for n in range(120)))
    open_example(browser, pages[0].origin, api, keys["read,send"])
    wait_for(browser, lambda: len(shown_jids(browser)) >= 50)
    assert shown_jids(browser)[:2] == ["119@s.whatsapp.net", "118@s.whatsapp.net"]
    while len(shown_jids(browser)) < 120:
        count = len(shown_jids(browser))
        browser.execute_script("window.scrollTo(0, document.documentElement.scrollHeight)")
        wait_for(browser, lambda: len(shown_jids(browser)) > count)
    wait_for(browser, lambda: text_of(browser, "#status") == "120 chats, all shown")
    assert sorted(shown_jids(browser)) == sorted(f"{n}@s.whatsapp.net" for n in range(120))
    assert error_text(browser) == ""


def test_the_pin_button_pins_the_chat(browser, pages, api, keys):
    add_chats(SESSION_ID, {"jid": "1@s.whatsapp.net", "name": "Alice"}, {"jid": "2@s.whatsapp.net", "name": "Bob"})
    open_example(browser, pages[0].origin, api, keys["read,send"])
    wait_for(browser, lambda: len(shown_jids(browser)) == 2)
    item = browser.find_element(By.CSS_SELECTOR, 'li[data-jid="2@s.whatsapp.net"]')
    item.find_element(By.CLASS_NAME, "pin").click()
    wait_for(browser, lambda: text_of(browser, 'li[data-jid="2@s.whatsapp.net"] .flags') == "pinned")
    assert stored("2@s.whatsapp.net")["pinned"] is True
    browser.find_element(By.CSS_SELECTOR, 'li[data-jid="2@s.whatsapp.net"] .mute').click()
    wait_for(browser, lambda: text_of(browser, 'li[data-jid="2@s.whatsapp.net"] .flags') == "pinned · muted")
    assert stored("2@s.whatsapp.net")["muted_until"] == -1


def test_a_bad_token_shows_the_apis_401_message(browser, pages, api, orgs):
    open_example(browser, pages[0].origin, api, "csk_not-a-real-key")
    wait_for(browser, lambda: error_text(browser) != "")
    assert error_text(browser) == "API key is malformed (bad length, characters or checksum)"


def test_a_rule_refusal_shows_the_apis_422_message(browser, pages, api, keys):
    add_chats(SESSION_ID, *({"jid": f"{n}@s.whatsapp.net", "pinned": n < 3} for n in range(4)))
    open_example(browser, pages[0].origin, api, keys["read,send"])
    wait_for(browser, lambda: len(shown_jids(browser)) == 4)
    browser.find_element(By.CSS_SELECTOR, 'li[data-jid="3@s.whatsapp.net"] .pin').click()
    wait_for(browser, lambda: error_text(browser) != "")
    assert error_text(browser).startswith("at most 3 chats can be pinned at once; unpin one first")


def test_an_origin_not_in_cors_origins_is_refused_by_the_browser(browser, pages, api, keys):
    add_chats(SESSION_ID, {"jid": "1@s.whatsapp.net"})
    open_example(browser, pages[1].origin, api, keys["read,send"])
    wait_for(browser, lambda: error_text(browser) != "")
    assert error_text(browser).startswith("Could not reach the API (Failed to fetch).")
    assert shown_jids(browser) == []


def test_docs_renders_the_chat_operations(browser, api):
    browser.get(f"{api}/docs")
    wait_for(browser, lambda: len(browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-description")) >= 5)
    summaries = sorted(element.text for element in browser.find_elements(By.CSS_SELECTOR,
                                                                          ".opblock-summary-description"))
    document = requests.get(f"{api}/openapi.json", timeout=10).json()
    assert summaries == sorted(operation["summary"] for path in document["paths"].values()
                               for operation in path.values() if isinstance(operation, dict) and "summary" in operation)
    assert {"Get a chat", "List chats", "Update a chat (archive/pin/mute)"} <= set(summaries)
    scripts = [element.get_attribute("src") for element in browser.find_elements(By.TAG_NAME, "script")]
    assert scripts and all(src.startswith(api + "/docs/") for src in scripts)


def test_an_admin_mints_sees_once_lists_and_revokes_a_key(browser, pages, api, orgs, identity_provider):
    """keys.html on another origin, with an admin's login JWT: a key minted, shown once, listed, revoked."""
    admin = identity_provider.mint({"org_id": "acme", "org_role": "admin"}, expires_in=600)
    browser.get(f"{pages[0].origin}/keys.html?base-url={api}")
    browser.find_element(By.ID, "token").send_keys(admin)
    browser.find_element(By.ID, "load").click()
    wait_for(browser, lambda: text_of(browser, "#error") == "" and browser.find_element(By.ID, "keys") is not None)
    browser.find_element(By.ID, "name").send_keys("CRM, read-only")
    browser.find_element(By.ID, "create").click()
    wait_for(browser, lambda: (text_of(browser, "#new-key") or "").startswith("csk_"))
    key = text_of(browser, "#new-key")
    url = f"{api}/api/v1/sessions/{SESSION_ID}/chats"
    assert requests.get(url, headers={"Authorization": f"Bearer {key}"}, timeout=10).status_code == 200
    # Loaded afresh, the list shows the key (its name and capability), never the key itself.
    browser.find_element(By.ID, "load").click()
    wait_for(browser, lambda: len(browser.find_elements(By.CSS_SELECTOR, "#keys tr")) == 1
             and text_of(browser, "#new-key") == "")
    assert key not in browser.page_source
    assert text_of(browser, "#keys tr td:nth-child(1)") == "CRM, read-only"
    assert text_of(browser, "#keys tr td:nth-child(2)") == "read"
    browser.find_element(By.CSS_SELECTOR, "#keys tr .revoke").click()
    wait_for(browser, lambda: text_of(browser, "#keys tr .state") == "revoked")
    refused = requests.get(url, headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert refused.status_code == 401 and refused.json()["error"]["message"] == "API key has been revoked"
    assert error_text(browser) == ""


def test_the_keys_page_shows_a_403_for_a_token_without_admin(browser, pages, api, keys):
    browser.get(f"{pages[0].origin}/keys.html?base-url={api}")
    browser.find_element(By.ID, "token").send_keys(keys["read,send"])
    browser.find_element(By.ID, "load").click()
    wait_for(browser, lambda: error_text(browser) != "")
    assert error_text(browser) == "this token lacks the 'admin' capability"
