"""Independent check of what a syslog receiver stored from audit-trail.

Input (argv[1], JSON): mode ("raw": rsyslog's lines, the RFC 5424 message as
received; "sng": syslog-ng's "SOURCE TAB HOST TAB PROGRAM TAB MSGID TAB MSG"),
format ("json" or "cef"), udp (bool: values may be shortened with the
marker), app (the APP-NAME of this run), host (the archiver's host name),
records (the log's export, JSON), expect (ids that must arrive exactly once),
lines (what the receiver stored). Prints one problem per line; nothing when
everything holds.
"""
import ipaddress
import json
import re
import sys
from datetime import datetime

cfg = json.load(open(sys.argv[1], encoding="utf-8"))
records = {r["id"]: r for r in cfg["records"]}
problems = []
TRUNC = re.compile(r"\.\.\.\[truncated, (\d+) bytes\]$")
NEVER_SHORT = {"id", "timestamp", "source_ip"}


def bad(msg):
    problems.append(msg)


def is_control(c):
    o = ord(c)
    return o < 0x20 or 0x7F <= o <= 0x9F or o in (0x2028, 0x2029)


def hostname(node, fallback):
    try:
        ipaddress.ip_address(node)
        return node
    except ValueError:
        pass

    def tok(s):
        return "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in s[:255])

    for cand in (tok(node), tok(fallback)):
        if any(c.isascii() and c.isalnum() for c in cand):
            return cand
    return "-"


def cef_enc(v, header):
    out = []
    for c in v:
        if c in "\n\r" and not header:
            out.append(c)
        elif is_control(c):
            out.append("\\u%04X" % ord(c))
        else:
            out.append(c)
    return "".join(out)


def same(got, want, udp, what):
    """got == want, or (over UDP) a prefix of want and the marker naming its length."""
    if got == want:
        return
    m = TRUNC.search(got) if udp else None
    if m and want.startswith(got[: m.start()]):
        return
    bad("%s: got %r, want %r" % (what, got[:200], want[:200]))


def same_shortened(got, orig, enc, udp, what):
    if got == enc(orig):
        return
    m = TRUNC.search(got) if udp else None
    if m and int(m.group(1)) == len(orig.encode()) and enc(orig).startswith(got[: m.start()]):
        return
    bad("%s: got %r, want %r" % (what, got[:200], enc(orig)[:200]))


KEY = re.compile(r"([A-Za-z0-9_]+)=")


def parse_cef(s):
    """A strict CEF:0 parser: 7 header fields with only \\| and \\\\ escapes,
    then key=value pairs whose values allow only \\\\ \\= \\n \\r escapes and no
    unescaped '='."""
    if not s.startswith("CEF:0|"):
        raise ValueError("not CEF:0")
    fields, cur, i = [], [], 6
    while len(fields) < 6:
        if i >= len(s):
            raise ValueError("header ends early")
        c = s[i]
        if c == "\\":
            n = s[i + 1 : i + 2]
            if n not in ("\\", "|"):
                raise ValueError("bad header escape \\%s" % n)
            cur.append(n)
            i += 2
        elif c == "|":
            fields.append("".join(cur))
            cur = []
            i += 1
        else:
            cur.append(c)
            i += 1
    ext = s[i:]
    pairs = {}
    m = KEY.match(ext, 0)
    if ext and not m:
        raise ValueError("extension does not start with a key: %r" % ext[:40])
    while m:
        key, j, val = m.group(1), m.end(), []
        while j < len(ext):
            c = ext[j]
            if c == "\\":
                n = ext[j + 1 : j + 2]
                esc = {"\\": "\\", "=": "=", "n": "\n", "r": "\r"}
                if n not in esc:
                    raise ValueError("bad extension escape \\%s in %s" % (n, key))
                val.append(esc[n])
                j += 2
                continue
            if c == "=":
                raise ValueError("unescaped = in the value of %s" % key)
            if c == " " and KEY.match(ext, j + 1):
                break
            val.append(c)
            j += 1
        if key in pairs:
            raise ValueError("key %s twice" % key)
        pairs[key] = "".join(val)
        m = KEY.match(ext, j + 1) if j < len(ext) else None
    return ["0"] + fields, pairs


CEF_KEYS = [
    ("act", "action_type"), ("suser", "user_name"), ("dvchost", "node"), ("cat", "category"),
    ("outcome", "outcome"), ("msg", "action_data"), ("cs1", "app_name"), ("cs2", "app_context"),
    ("cs3", "tenant"), ("cs4", "session_id"), ("cs5", "auth_type"), ("cs6", "detail_level"),
    ("flexString1", "first_name"), ("flexString2", "last_name"),
]
LABELS = {"cs1": "AppName", "cs2": "AppContext", "cs3": "Tenant", "cs4": "SessionId", "cs5": "AuthType",
          "cs6": "DetailLevel", "flexString1": "FirstName", "flexString2": "LastName"}


def check_cef(msg, udp):
    hdr, ext = parse_cef(msg)
    if "externalId" not in ext:
        raise ValueError("no externalId")
    rid = int(ext["externalId"])
    rec = records.get(rid)
    if rec is None:
        raise ValueError("unknown id %d" % rid)
    w = "record %d (cef)" % rid
    if hdr[1:4] != ["audit-trail", "audit-trail", hdr[3]]:
        bad("%s: header %r" % (w, hdr[:4]))
    same_shortened(hdr[4], rec["action_type"], lambda v: cef_enc(v, True), udp, w + " header event class")
    if not hdr[5].endswith(": " + hdr[4]) and not udp:
        bad("%s: header name %r" % (w, hdr[5]))
    if not udp:
        same(hdr[5], cef_enc(rec["app_name"], True) + ": " + cef_enc(rec["action_type"], True), False, w + " name")
    want_keys = {"externalId", "rt"}
    ms = int(datetime.fromisoformat(rec["timestamp"]).timestamp() * 1000 + 0.5)
    if ext.get("rt") != str(ms):
        bad("%s: rt %r, want %d" % (w, ext.get("rt"), ms))
    for key, field in CEF_KEYS:
        if field in rec:
            want_keys.add(key)
            if key in LABELS:
                want_keys.add(key + "Label")
                if ext.get(key + "Label") != LABELS[key]:
                    bad("%s: %sLabel %r" % (w, key, ext.get(key + "Label")))
            if key not in ext:
                bad("%s: key %s missing" % (w, key))
                continue
            same_shortened(ext[key], rec[field], lambda v: cef_enc(v, False), udp, "%s %s" % (w, key))
    if "source_ip" in rec:
        ip = rec["source_ip"]
        key = "c6a2" if ":" in ip else "src"
        want_keys.add(key)
        if key == "c6a2":
            want_keys.add("c6a2Label")
        if ext.get(key) != ip:
            bad("%s: %s %r, want %r" % (w, key, ext.get(key), ip))
    if set(ext) != want_keys:
        bad("%s: keys %s, want %s" % (w, sorted(ext), sorted(want_keys)))
    return rid


def check_json(msg, udp):
    obj = json.loads(msg)
    rid = obj.get("id")
    rec = records.get(rid)
    if rec is None:
        raise ValueError("unknown id %r" % rid)
    w = "record %d (json)" % rid
    if set(obj) != set(rec):
        bad("%s: keys %s, want %s" % (w, sorted(obj), sorted(rec)))
    for k, v in rec.items():
        if k not in obj:
            continue
        if k in NEVER_SHORT or k == "id":
            if obj[k] != v:
                bad("%s: %s %r, want %r" % (w, k, obj[k], v))
        else:
            same_shortened(obj[k], v, lambda x: x, udp, "%s %s" % (w, k))
    return rid


seen = {}
for line in cfg["lines"]:
    if cfg["mode"] == "sng":
        parts = line.split("\t", 4)
        if len(parts) != 5:
            bad("unparsable stored line %r" % line[:200])
            continue
        _, host, app, msgid, msg = parts
    else:
        m = re.match(r"<(\d+)>1 (\S+) (\S+) (\S+) (\S+) (\S+) - (.*)$", line, re.S)
        if not m:
            bad("not an RFC 5424 message: %r" % line[:200])
            continue
        _, _, host, app, _, msgid, msg = m.groups()
    if app != cfg["app"]:
        # Another run's messages, or a receiver's own; a garbled message shows here.
        if cfg["app"] in line:
            bad("a message of this run was not understood by the receiver: %r" % line[:300])
        continue
    if any(is_control(c) for c in line.replace("\t", "") if cfg["mode"] == "sng") or (
        cfg["mode"] == "raw" and any(is_control(c) for c in line)
    ):
        bad("control character in a stored message: %r" % line[:200])
    if msgid == "anchor":
        if host != hostname(cfg["host"], cfg["host"]):
            bad("anchor HOSTNAME %r" % host)
        continue
    if msgid != "audit":
        bad("MSGID %r in %r" % (msgid, line[:200]))
        continue
    try:
        rid = check_cef(msg, cfg["udp"]) if cfg["format"] == "cef" else check_json(msg, cfg["udp"])
    except Exception as e:  # noqa: BLE001 - any parse failure is a finding
        bad("cannot parse %s message (%s): %r" % (cfg["format"], e, msg[:300]))
        continue
    want_host = hostname(records[rid].get("node", cfg["host"]), cfg["host"])
    if host != want_host:
        bad("record %d: HOSTNAME %r, want %r (node %r)" % (rid, host, want_host, records[rid].get("node")))
    seen[rid] = seen.get(rid, 0) + 1
for rid in cfg["expect"]:
    if seen.get(rid, 0) != 1:
        bad("record %d arrived %d times" % (rid, seen.get(rid, 0)))
for rid, n in seen.items():
    if n > 1:
        bad("record %d arrived %d times" % (rid, n))
print("\n".join(problems[:40]))
