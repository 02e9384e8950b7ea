"""Drives a real headless Chromium over the DevTools protocol (a pipe, no
network port) for the HTML report tests.

Input (argv[1], JSON): url, javascript (bool: false runs the page with
scripts disabled), actions: a list of {"eval": JS} (its value, JSON),
{"pdf": PATH, "width": INCHES, "height": INCHES} (printed at that paper
size, portrait, the page's own margins) or {"screenshot": PATH}.
Prints one JSON object: results (one per action), violations (Content
Security Policy violations the page reported), dialogs (alert/confirm/prompt
the page opened), console (messages), errors (uncaught exceptions).
"""
import base64
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

# Stopped from outside: still close Chromium and remove its profile.
signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped"))
cfg = json.load(open(sys.argv[1], encoding="utf-8"))
chromium = shutil.which("chromium") or shutil.which("chromium-browser")
if not chromium:
    sys.exit("chromium is required by the tests (Debian package chromium; .ci/run installs it)")

profile = tempfile.mkdtemp(prefix="at-chromium-")
to_child_r, to_child_w = os.pipe()
from_child_r, from_child_w = os.pipe()


def child_fds():
    # Chromium reads commands from fd 3 and writes to fd 4.
    a, b = os.dup(to_child_r), os.dup(from_child_w)
    os.dup2(a, 3)
    os.dup2(b, 4)
    for fd in (a, b, to_child_w, from_child_r):
        if fd > 4:
            os.close(fd)


proc = subprocess.Popen(
    [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--remote-debugging-pipe",
        "--user-data-dir=" + profile,
        "--window-size=1400,1000",
        "about:blank",
    ],
    close_fds=False,
    preexec_fn=child_fds,
    stdin=subprocess.DEVNULL,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
)
os.close(to_child_r)
os.close(from_child_w)
out = os.fdopen(to_child_w, "wb", buffering=0)
inp = os.fdopen(from_child_r, "rb", buffering=0)
buf = b""
next_id = 0
events = []
deadline = time.time() + cfg.get("timeout", 60)


def read_message():
    global buf
    while b"\0" not in buf:
        left = deadline - time.time()
        if left <= 0 or not select.select([inp], [], [], left)[0]:
            raise SystemExit("chromium did not answer in time (after %d of the actions)" % len(results))
        chunk = inp.read(1 << 16)
        if not chunk:
            raise SystemExit("chromium closed the DevTools pipe")
        buf += chunk
    msg, buf = buf.split(b"\0", 1)
    return json.loads(msg)


def send(method, params=None, session=None):
    global next_id
    next_id += 1
    msg = {"id": next_id, "method": method, "params": params or {}}
    if session:
        msg["sessionId"] = session
    out.write(json.dumps(msg).encode() + b"\0")
    while True:
        m = read_message()
        if m.get("id") == next_id:
            if "error" in m:
                raise SystemExit("%s failed: %s" % (method, m["error"]))
            return m["result"]
        events.append(m)
        handle(m, session)


results = []
dialogs = []
console = []
errors = []


def handle(m, session):
    method = m.get("method")
    p = m.get("params", {})
    if method == "Page.javascriptDialogOpening":
        dialogs.append(p.get("message"))
        # Answered without waiting for our own reply: the page is blocked until then.
        global next_id
        next_id += 1
        out.write(json.dumps({"id": next_id, "method": "Page.handleJavaScriptDialog",
                              "params": {"accept": False}, "sessionId": session}).encode() + b"\0")
    elif method == "Runtime.consoleAPICalled":
        console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
    elif method == "Runtime.exceptionThrown":
        errors.append(p.get("exceptionDetails", {}).get("text", "") + " " +
                      str(p.get("exceptionDetails", {}).get("exception", {}).get("description", "")))
    elif method == "Log.entryAdded":
        console.append(p.get("entry", {}).get("text", ""))


def wait_for(method, session):
    for i, m in enumerate(events):
        if m.get("method") == method and m.get("sessionId") == session:
            del events[i]
            return m
    while True:
        m = read_message()
        handle(m, session)
        if m.get("method") == method and m.get("sessionId") == session:
            return m
        events.append(m)


try:
    target = send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Page", "Runtime", "Log"):
        send(domain + ".enable", {}, session)
    # Reports Content-Security-Policy violations (the page's own scripts never
    # listen for them; this script runs outside the page's policy).
    send("Page.addScriptToEvaluateOnNewDocument", {"source": """
        window.__violations = [];
        document.addEventListener('securitypolicyviolation', function (e) {
          window.__violations.push(e.violatedDirective + ' ' + (e.blockedURI || '') + ' ' + (e.sample || ''));
        });"""}, session)
    if not cfg.get("javascript", True):
        send("Emulation.setScriptExecutionDisabled", {"value": True}, session)
    send("Page.navigate", {"url": cfg["url"]}, session)
    wait_for("Page.loadEventFired", session)
    for action in cfg.get("actions", []):
        if "eval" in action:
            r = send("Runtime.evaluate", {"expression": action["eval"], "returnByValue": True,
                                          "awaitPromise": True}, session)
            if "exceptionDetails" in r:
                raise SystemExit("evaluating %r failed: %s" % (action["eval"], r["exceptionDetails"]))
            results.append(r["result"].get("value"))
        elif "pdf" in action:
            r = send("Page.printToPDF", {"paperWidth": action["width"], "paperHeight": action["height"],
                                         "landscape": False, "printBackground": True,
                                         "displayHeaderFooter": False, "preferCSSPageSize": False}, session)
            with open(action["pdf"], "wb") as f:
                f.write(base64.b64decode(r["data"]))
            results.append(action["pdf"])
        elif "screenshot" in action:
            r = send("Page.captureScreenshot", {"format": "png"}, session)
            with open(action["screenshot"], "wb") as f:
                f.write(base64.b64decode(r["data"]))
            results.append(action["screenshot"])
    violations = send("Runtime.evaluate", {"expression": "JSON.stringify(window.__violations || [])",
                                           "returnByValue": True}, session)["result"].get("value")
    print(json.dumps({"results": results, "violations": json.loads(violations or "[]"),
                      "dialogs": dialogs, "console": console, "errors": errors}))
finally:
    try:
        send("Browser.close")
    except BaseException:
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    shutil.rmtree(profile, ignore_errors=True)
