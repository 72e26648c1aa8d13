#!/usr/bin/env python3
"""The admin console in a real browser (issue 13).

Starts redis-server, the fake upstream and the tollgate binary on free loopback ports, sends
traffic from three callers (allowed, forbidden, rate limited, unauthenticated), waits until
GET /usage counts all of it, then drives headless Chromium over the DevTools protocol
(--remote-debugging-pipe: NUL-separated JSON on fds 3 and 4, so no websocket client is needed):
it types the admin token into the login form, waits for the chart, and checks the page against
the API: per-caller totals equal /usage's, the refusals' request ids are listed, no console
error or CSP violation, the token is in sessionStorage and in no URL. Screenshots at desktop and
phone widths, light and dark, go to --out.

Python 3 standard library only. Every wait polls a condition with a generous deadline.

Usage: console_test.py --tollgate BIN --fake-upstream BIN --out DIR [--chromium BIN]
"""

import argparse
import base64
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

DEADLINE_S = 60  # for each wait; a loaded 2-core machine is slow, a wrong page is never right
ADMIN_TOKEN = "tga_console_browser_test_token_0123456789"
KEYS = {
    "data-team": "tg_browser_data_team_key_0001",
    "ops-team": "tg_browser_ops_team_key_00002",
    "web-team": "tg_browser_web_team_key_00003",
}
DEVIN_TOKEN = "fake-devin-token"
SELF = "/devin/v3beta1/enterprise/self"


class Failure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failure(message)


def wait_for(what, probe, deadline_s=DEADLINE_S, interval_s=0.1):
    """Polls probe() until it returns a true value; that value, or Failure naming `what`."""
    end = time.monotonic() + deadline_s
    last = None
    while True:
        try:
            last = probe()
        except (OSError, ValueError, KeyError) as e:
            last = None
            error = e
        else:
            error = None
        if last:
            return last
        if time.monotonic() >= end:
            raise Failure("timed out waiting for %s%s" % (what, " (%s)" % error if error else ""))
        time.sleep(interval_s)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def sha256(text):
    return hashlib.sha256(text.encode()).hexdigest()


def http(method, url, headers=None, body=None):
    """(status, headers dict lower-case, body text); HTTP errors are answers, not exceptions."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=20) as r:
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read().decode()


class Processes:
    """Child processes, each stopped (SIGTERM, then SIGKILL) at the end."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.children = []

    def start(self, name, argv, env=None, **kwargs):
        log = open(os.path.join(self.workdir, name + ".log"), "wb")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                             start_new_session=True, **kwargs)
        self.children.append((name, p, log))
        return p

    def log(self, name):
        try:
            with open(os.path.join(self.workdir, name + ".log"), "rb") as f:
                return f.read().decode(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop_all(self):
        for _, p, _ in reversed(self.children):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for _, p, log in reversed(self.children):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
            log.close()


class DevTools:
    """The DevTools protocol over --remote-debugging-pipe: Chromium reads commands from its fd 3
    and writes answers and events to its fd 4, each message a JSON text ended by a NUL byte."""

    def __init__(self, processes, chromium, profile_dir):
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def place_fds():
            # Moved above 9 first, so that placing one on 3 or 4 cannot close the other.
            a = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        argv = [chromium, "--headless=new", "--no-sandbox", "--disable-gpu",
                "--remote-debugging-pipe", "--user-data-dir=" + profile_dir,
                "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars",
                "--mute-audio", "--password-store=basic", "about:blank"]
        self.process = processes.start("chromium", argv, preexec_fn=place_fds, close_fds=False)
        os.close(to_child_r)
        os.close(from_child_w)
        self._next_id = 0
        self._answers = {}
        self.events = []
        self._cv = threading.Condition()
        self._closed = False
        threading.Thread(target=self._read, daemon=True).start()
        self.session = None

    def _read(self):
        buf = b""
        while True:
            try:
                chunk = os.read(self._from_child, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self._cv:
                    self._closed = True
                    self._cv.notify_all()
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                message = json.loads(raw.decode())
                with self._cv:
                    if "id" in message:
                        self._answers[message["id"]] = message
                    else:
                        self.events.append(message)
                    self._cv.notify_all()

    def send(self, method, params=None, session=True, deadline_s=DEADLINE_S):
        with self._cv:
            self._next_id += 1
            mid = self._next_id
        message = {"id": mid, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._to_child, data):]
        end = time.monotonic() + deadline_s
        with self._cv:
            while mid not in self._answers:
                if self._closed:
                    raise Failure("Chromium closed the DevTools pipe during " + method)
                left = end - time.monotonic()
                if left <= 0:
                    raise Failure("no DevTools answer to " + method)
                self._cv.wait(left)
            answer = self._answers.pop(mid)
        if "error" in answer:
            raise Failure("%s: %s" % (method, answer["error"]))
        return answer.get("result", {})

    def evaluate(self, expression):
        """The value of a JavaScript expression in the page (awaited if it is a promise)."""
        r = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                           "awaitPromise": True})
        if "exceptionDetails" in r:
            raise Failure("page script failed: %s: %s" % (expression, r["exceptionDetails"]))
        return r["result"].get("value")

    def events_named(self, method):
        with self._cv:
            return [e for e in self.events if e.get("method") == method]

    def close(self):
        try:
            self.send("Browser.close", session=False, deadline_s=10)
        except Failure:
            pass
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass


def config_text(ports, redis_port, workdir):
    def caller(name, roles, limits=None):
        c = {"key_sha256": [sha256(KEYS[name])], "roles": roles}
        if limits:
            c["limits"] = limits
        return c

    config = {
        "listen": "127.0.0.1:%d" % ports["listen"],
        "admin_listen": "127.0.0.1:%d" % ports["admin"],
        "threads": 2,
        "redis": {"url": "redis://127.0.0.1:%d" % redis_port},
        "audit": {"file": os.path.join(workdir, "audit.log")},
        "usage": {"flush_interval_seconds": 1},
        "admin": {"tokens": [{"name": "console", "sha256": sha256(ADMIN_TOKEN),
                              "scopes": ["read", "usage"]}]},
        "upstreams": {"devin": {"base_url": "http://127.0.0.1:%d" % ports["upstream"],
                                "auth": {"type": "bearer", "secret_env": "BT_DEVIN_TOKEN"}}},
        "roles": {
            "devin-all": {"rules": [{"upstream": "devin", "path": "/**"}]},
            "devin-self": {"rules": [{"upstream": "devin", "methods": ["GET"],
                                      "path": "/v3beta1/enterprise/self"}]},
        },
        "callers": {
            "data-team": caller("data-team", ["devin-all"]),
            "ops-team": caller("ops-team", ["devin-all"],
                               [{"name": "ops-burst", "rate": "1/h", "burst": 3,
                                 "scope": "caller"}]),
            "web-team": caller("web-team", ["devin-self"],
                               [{"name": "web-quota", "quota": "1000/day", "scope": "caller"}]),
        },
    }
    return json.dumps(config, indent=1)


def send_traffic(gateway):
    """Requests from three callers and one unknown key; the request ids of the refusals."""
    refusals = []

    def call(method, path, key):
        status, headers, _ = http(method, gateway + path, {"Authorization": "Bearer " + key})
        if status in (401, 403, 429):
            refusals.append((status, headers.get("x-request-id", "")))
        return status

    for _ in range(5):
        check(call("GET", SELF, KEYS["data-team"]) == 200, "data-team GET self not 200")
    statuses = [call("GET", SELF, KEYS["ops-team"]) for _ in range(5)]
    check(statuses.count(200) == 3 and statuses.count(429) == 2,
          "ops-team: expected 3 allowed and 2 rate limited, got %s" % statuses)
    check(call("GET", SELF, KEYS["web-team"]) == 200, "web-team GET self not 200")
    check(call("GET", SELF, KEYS["web-team"]) == 200, "web-team GET self not 200")
    check(call("GET", "/devin/v3beta1/enterprise/members", KEYS["web-team"]) == 403,
          "web-team: a path outside its role was not refused")
    check(call("GET", SELF, "tg_browser_not_a_known_key_000") == 401,
          "an unknown key was not refused")
    check(all(rid for _, rid in refusals), "a refusal without X-Request-Id: %s" % refusals)
    return refusals, 5 + 5 + 3 + 1


def usage_totals(admin, token):
    status, _, body = http("GET", admin + "/usage?group_by=day,caller",
                           {"Authorization": "Bearer " + token})
    check(status == 200, "GET /usage: %d %s" % (status, body[:300]))
    totals = {}
    for row in json.loads(body)["items"]:
        t = totals.setdefault(row["caller"], {"requests": 0, "denials": 0})
        t["requests"] += row["requests"]
        t["denials"] += row["forbidden"] + row["rate_limited"] + row["unauthenticated"]
    return totals


# What the page shows, read from its stable data attributes.
PAGE_TOTALS_JS = r"""(() => {
  const out = {};
  document.querySelectorAll('#usage-totals tbody tr[data-caller]').forEach(tr => {
    out[tr.dataset.caller] = {
      requests: Number(tr.querySelector('[data-total-requests]').dataset.totalRequests),
      denials: Number(tr.querySelector('[data-total-denials]').dataset.totalDenials)};
  });
  return out;
})()"""

CHART_STATE_JS = r"""(() => {
  const canvas = document.getElementById('usage-chart');
  const chart = window.Chart && Chart.getChart(canvas);
  if (!chart || !canvas.width || !canvas.height) return null;
  const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let drawn = 0;
  for (let i = 3; i < pixels.length; i += 4) if (pixels[i]) drawn++;
  const sums = {};
  chart.data.datasets.forEach(d => { sums[d.label] = d.data.reduce((a, b) => a + b, 0); });
  return {drawn, sums, metric: canvas.dataset.metric, stacked: chart.options.scales.x.stacked &&
          chart.options.scales.y.stacked, type: chart.config.type};
})()"""

CSP_RECORDER_JS = r"""window.__csp = [];
document.addEventListener('securitypolicyviolation',
  e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"""


def screenshot(dt, out_dir, name, width, height, dark, mobile, chart=True):
    dt.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height,
                                                   "deviceScaleFactor": 1, "mobile": mobile})
    dt.send("Emulation.setEmulatedMedia", {"features": [
        {"name": "prefers-color-scheme", "value": "dark" if dark else "light"}]})
    # The page's own colours follow the media query; the chart redraws on its change event.
    wait_for("%s: the page in %s mode" % (name, "dark" if dark else "light"), lambda: dt.evaluate(
        "matchMedia('(prefers-color-scheme: dark)').matches === %s && %s" % (
            "true" if dark else "false",
            "!!Chart.getChart(document.getElementById('usage-chart'))" if chart else "true")))
    # No horizontal scroll at this width, once the chart has followed its box (Chart.js resizes
    # its canvas from a ResizeObserver callback, after the new layout).
    try:
        wait_for("%s: no horizontal scroll" % name, lambda: dt.evaluate(
            "document.documentElement.scrollWidth <= document.documentElement.clientWidth && "
            "document.getElementById('usage-chart').getBoundingClientRect().right <= "
            "document.documentElement.clientWidth"), deadline_s=20)
    except Failure:
        raise Failure("%s: horizontal scroll: %s" % (name, dt.evaluate(
            "[document.documentElement.scrollWidth, document.documentElement.clientWidth]")))
    if chart:
        # The chart's text follows the page's colours (redrawn on the media change).
        wait_for("%s: the chart in the page's colours" % name, lambda: dt.evaluate(
            "Chart.getChart(document.getElementById('usage-chart')).options.color === "
            "getComputedStyle(document.documentElement).getPropertyValue('--fg').trim()"))
    background = dt.evaluate("getComputedStyle(document.body).backgroundColor")
    check((background == "rgb(245, 246, 248)") != dark,
          "%s: the page's background %s is not the %s one" % (
              name, background, "dark" if dark else "light"))
    # Two animation frames: the redrawn chart and the re-laid-out page are painted.
    if chart:
        dt.evaluate("new Promise(r => requestAnimationFrame(() => "
                    "requestAnimationFrame(() => r(1))))")
    metrics = dt.send("Page.getLayoutMetrics")
    size = metrics.get("cssContentSize") or metrics["contentSize"]
    shot = dt.send("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": max(height, size["height"]),
                 "scale": 1}})
    path = os.path.join(out_dir, name + ".png")
    with open(path, "wb") as f:
        f.write(base64.b64decode(shot["data"]))
    return path


def run(args, workdir):
    procs = Processes(workdir)
    dt = None
    try:
        ports = {"listen": free_port(), "admin": free_port(), "upstream": free_port()}
        redis_port = free_port()
        procs.start("redis", ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no", "--dir", workdir])
        procs.start("fake_upstream", [args.fake_upstream, "--listen",
                                      "127.0.0.1:%d" % ports["upstream"], "--devin-token",
                                      DEVIN_TOKEN])
        wait_for("redis-server", lambda: port_open(redis_port))
        wait_for("the fake upstream", lambda: port_open(ports["upstream"]))
        config_path = os.path.join(workdir, "tollgate.json")
        with open(config_path, "w") as f:
            f.write(config_text(ports, redis_port, workdir))
        env = dict(os.environ, BT_DEVIN_TOKEN=DEVIN_TOKEN)
        gw = procs.start("tollgate", [args.tollgate, "serve", "--config", config_path], env=env)
        gateway = "http://127.0.0.1:%d" % ports["listen"]
        admin = "http://127.0.0.1:%d" % ports["admin"]
        try:
            wait_for("the gateway's ports", lambda: gw.poll() is None and port_open(
                ports["listen"]) and port_open(ports["admin"]))
            wait_for("the gateway to be ready", lambda: http("GET", admin + "/readyz")[0] == 200)
        except Failure:
            raise Failure("the gateway did not start:\n" + procs.log("tollgate"))

        refusals, sent = send_traffic(gateway)
        # The usage counters reach Redis with the next flush (usage.flush_interval_seconds).
        api_totals = wait_for("GET /usage to count every request", lambda: (
            lambda t: t if sum(v["requests"] for v in t.values()) == sent else None)(
                usage_totals(admin, ADMIN_TOKEN)))
        check(api_totals.get("ops-team", {}).get("denials") == 2, "usage: %s" % api_totals)

        profile = os.path.join(workdir, "chromium-profile")
        os.makedirs(profile)
        dt = DevTools(procs, args.chromium, profile)
        target = dt.send("Target.createTarget", {"url": "about:blank"}, session=False)
        dt.session = dt.send("Target.attachToTarget", {"targetId": target["targetId"],
                                                       "flatten": True}, session=False)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            dt.send(domain + ".enable")
        dt.send("Page.addScriptToEvaluateOnNewDocument", {"source": CSP_RECORDER_JS})
        dt.send("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 800,
                                                       "deviceScaleFactor": 1, "mobile": False})
        dt.send("Emulation.setEmulatedMedia", {"features": [
            {"name": "prefers-color-scheme", "value": "light"}]})

        # /console redirects to /console/.
        dt.send("Page.navigate", {"url": admin + "/console"})
        wait_for("the login form", lambda: dt.evaluate(
            "location.pathname === '/console/' && document.readyState === 'complete' && "
            "!!document.getElementById('login') && !document.getElementById('login').hidden"))
        check(dt.evaluate("typeof Chart") == "function", "Chart.js did not load")

        # Log in the way a person does: type the token, press the button.
        dt.evaluate("document.getElementById('token').focus(), 1")
        dt.send("Input.insertText", {"text": ADMIN_TOKEN})
        box = dt.evaluate("(() => { const r = document.getElementById('login-submit')"
                          ".getBoundingClientRect(); return [r.x + r.width / 2, "
                          "r.y + r.height / 2]; })()")
        for kind in ("mousePressed", "mouseReleased"):
            dt.send("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1],
                                                 "button": "left", "clickCount": 1})

        # Every section filled in, the chart drawn.
        chart = wait_for("the usage chart", lambda: (
            lambda c: c if c and c["drawn"] > 0 and c["sums"] else None)(
                dt.evaluate(CHART_STATE_JS)))
        check(chart["type"] == "bar" and chart["stacked"], "not a stacked bar chart: %s" % chart)
        page_totals = wait_for("the per-caller totals", lambda: dt.evaluate(PAGE_TOTALS_JS))
        check(page_totals == api_totals,
              "page totals %s != /usage totals %s" % (page_totals, api_totals))
        total = dt.evaluate("Number(document.getElementById('usage-total-requests')"
                            ".dataset.totalRequests)")
        check(total == sent, "page total %s != %d requests sent" % (total, sent))
        # The chart's stacks hold the same numbers, per caller.
        for caller, t in api_totals.items():
            label = caller if caller != "-" else "- (unauthenticated)"
            check(chart["sums"].get(label) == t["requests"],
                  "chart %s: %s != %s" % (caller, chart["sums"], api_totals))
        # Denials: forbidden + rate limited + unauthenticated.
        dt.evaluate("(() => { const s = document.getElementById('usage-metric'); "
                    "s.value = 'denials'; s.dispatchEvent(new Event('change')); return 1; })()")
        denials = wait_for("the denials chart", lambda: (
            lambda c: c if c and c["metric"] == "denials" else None)(dt.evaluate(CHART_STATE_JS)))
        for caller, t in api_totals.items():
            label = caller if caller != "-" else "- (unauthenticated)"
            check(denials["sums"].get(label) == t["denials"],
                  "denials chart %s != %s" % (denials["sums"], api_totals))
        dt.evaluate("(() => { const s = document.getElementById('usage-metric'); "
                    "s.value = 'requests'; s.dispatchEvent(new Event('change')); return 1; })()")

        ids = [rid for _, rid in refusals]
        shown = wait_for("the refusals' request ids", lambda: (
            lambda got: got if all(i in got for i in ids) else None)(dt.evaluate(
                "[...document.querySelectorAll('#refusals tr[data-request-id]')]"
                ".map(tr => tr.dataset.requestId)")))
        check(len(shown) >= len(ids), "refusals shown: %s" % shown)
        wait_for("the callers and their keys", lambda: dt.evaluate(
            "['data-team', 'ops-team', 'web-team'].every(c => document.querySelector("
            "'#callers [data-caller=\"' + c + '\"] tr[data-key-id]'))"))
        wait_for("the limit levels", lambda: dt.evaluate(
            "!!document.querySelector('#limits [data-caller=\"ops-team\"] "
            "[data-limit=\"ops-burst\"] meter') && !!document.querySelector("
            "'#limits [data-caller=\"web-team\"] [data-limit=\"web-quota\"]')"))
        wait_for("the status", lambda: dt.evaluate(
            "document.querySelector('#status [data-field=\"config-version\"]') !== null && "
            "document.querySelector('#status [data-field=\"config-version\"]').textContent "
            "!== '-'"))
        check(dt.evaluate("[...document.querySelectorAll('[data-error-for]')]"
                          ".every(e => e.textContent === '')"),
              "a section shows an error: %s" % dt.evaluate(
                  "[...document.querySelectorAll('[data-error-for]')].map(e => e.textContent)"))

        # The levels are live: one more request shows on the page without a reload. (A level
        # read while Redis is slow is this replica's local one, flagged "fallback"; the page
        # then catches up with the next refresh.)
        level_js = ("Number(document.querySelector('#limits [data-caller=\"web-team\"] "
                    "[data-limit=\"web-quota\"]').dataset.remaining)")
        check(http("GET", gateway + SELF, {"Authorization": "Bearer " + KEYS["web-team"]})[0]
              == 200, "web-team's extra request was refused")

        def api_level():
            status, _, body = http("GET", admin + "/limits?caller=web-team",
                                   {"Authorization": "Bearer " + ADMIN_TOKEN})
            doc = json.loads(body) if status == 200 else {}
            if doc.get("fallback", True):
                return None
            return [i["remaining"] for i in doc["items"] if i["name"] == "web-quota"][0]

        # web-team had 3 requests allowed: the quota shows them, and the page shows the quota.
        wait_for("the quota bar to show web-team's 3 requests", lambda: (
            lambda api: api == 1000 - 3 and dt.evaluate(level_js) == api)(api_level()))

        # The token: in this tab's sessionStorage, never in a URL.
        check(dt.evaluate("sessionStorage.getItem('tollgate.admin_token')") == ADMIN_TOKEN,
              "the token is not in sessionStorage")
        check(dt.evaluate("localStorage.length") == 0, "something was put in localStorage")
        check(ADMIN_TOKEN not in dt.evaluate("location.href"), "the token is in the address")
        check(ADMIN_TOKEN not in dt.evaluate("document.documentElement.outerHTML"),
              "the token is in the page")
        urls = [e["params"]["request"]["url"] for e in dt.events_named("Network.requestWillBeSent")]
        check(urls, "no network requests were seen")
        check(all(u.startswith(admin + "/") or u.startswith("data:") for u in urls),
              "a request left the gateway's origin: %s" % urls)
        check(not any(ADMIN_TOKEN in u for u in urls), "the token was in a URL")

        out = args.out
        os.makedirs(out, exist_ok=True)
        saved = [screenshot(dt, out, "console-desktop-light", 1280, 800, False, False),
                 screenshot(dt, out, "console-desktop-dark", 1280, 800, True, False),
                 screenshot(dt, out, "console-phone-light", 390, 844, False, True),
                 screenshot(dt, out, "console-phone-dark", 390, 844, True, True)]

        # Nothing went wrong in the page: no script error, no failed load, no CSP violation.
        errors = [e["params"]["entry"] for e in dt.events_named("Log.entryAdded")
                  if e["params"]["entry"].get("level") == "error"]
        errors += [e["params"]["exceptionDetails"] for e in dt.events_named("Runtime.exceptionThrown")]
        errors += [e["params"]["args"] for e in dt.events_named("Runtime.consoleAPICalled")
                   if e["params"].get("type") in ("error", "assert")]
        check(not errors, "errors in the page: %s" % json.dumps(errors)[:2000])
        csp = dt.evaluate("window.__csp")
        check(csp == [], "CSP violations: %s" % csp)

        # Log out: the token is gone and the form is back.
        dt.send("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 800,
                                                       "deviceScaleFactor": 1, "mobile": False})
        dt.evaluate("document.getElementById('logout').click(), 1")
        wait_for("the logout", lambda: dt.evaluate(
            "sessionStorage.getItem('tollgate.admin_token') === null && "
            "!document.getElementById('login').hidden && "
            "document.querySelectorAll('#refusals tr[data-request-id]').length === 0"))
        # With JavaScript off the page explains itself and links the endpoints.
        dt.send("Emulation.setScriptExecutionDisabled", {"value": True})
        dt.send("Page.navigate", {"url": admin + "/console/"})
        links = wait_for("the page without JavaScript", lambda: dt.evaluate(
            "document.readyState === 'complete' && location.pathname === '/console/' && "
            "document.body.innerText.includes('cannot show any data') && "
            "[...document.querySelectorAll('#noscript a')].map(a => a.getAttribute('href'))"))
        for href in ("/status", "/callers", "/limits", "/refusals",
                     "/usage?group_by=day,caller&format=csv"):
            check(href in links, "the no-JavaScript page does not link %s: %s" % (href, links))
        saved.append(screenshot(dt, out, "console-nojs", 1280, 800, False, False, chart=False))
        print("console_test: ok (%d requests, %d refusals; screenshots: %s)" %
              (sent, len(ids), ", ".join(saved)))
    except Failure:
        sys.stderr.write("--- tollgate log ---\n%s\n" % procs.log("tollgate"))
        raise
    finally:
        if dt is not None:
            dt.close()
        procs.stop_all()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tollgate", required=True)
    parser.add_argument("--fake-upstream", required=True)
    parser.add_argument("--out", required=True, help="directory for the screenshots")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="tollgate-browser-")
    try:
        run(args, workdir)
    except Failure as e:
        print("console_test: FAILED: %s" % e, file=sys.stderr)
        print("(kept %s for a look)" % workdir, file=sys.stderr)
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
