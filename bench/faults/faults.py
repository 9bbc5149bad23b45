#!/usr/bin/env python3
"""Fault suite for Switchboard: real `switchboard serve` processes under load while things break.

Each scenario starts the release binary on free ports with a fresh database, drives load (HTTP `POST /api/events`
with an org key and an Idempotency-Key per event, HL7 ADT^A01 over MLLP waiting for the ACK), runs a local webhook
receiver that verifies every Standard Webhooks signature, breaks something, and ends with a zero-loss check:
every acknowledged event (HTTP 201/200, MLLP AA/CA) is in the history and, where a subscription matches it, reached
the receiver at least once.

Usage: bench/faults/faults.py --quick|--full [--binary PATH] [--out results.json] [--only NAME,...]
Needs root for the disk-full scenario (loop mount) and a local PostgreSQL 15 cluster for the PostgreSQL ones.
"""

import argparse
import collections
import http.client
import http.server
import json
import os
import random
import re
import shutil
import signal
import socket
import socketserver
import string
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse

import hl7
import hl7.client
from standardwebhooks.webhooks import Webhook

ADMIN = "faults-admin-" + "".join(random.choices(string.ascii_lowercase, k=16))
ORG = "faults"
PG_BASE = os.environ.get("SWITCHBOARD_FAULTS_PG_URL", "postgres://postgres@127.0.0.1:5432/test")
LIVE = []  # servers and receivers of the running scenario, cleaned up after it whatever happened
ANSI = re.compile(r"\x1b\[[0-9;]*m")
PG_CLUSTER = os.environ.get("SWITCHBOARD_FAULTS_PG_CLUSTER", "15 main").split()


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values, p):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


# ---------------------------------------------------------------------------------------------------------- HTTP


def request(base, method, path, body=None, token=None, headers=None, timeout=15):
    """One HTTP request on a fresh connection; returns (status, parsed JSON or text). Raises on network errors."""
    u = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        h = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["content-type"] = "application/json"
        if token:
            h["authorization"] = f"Bearer {token}"
        conn.request(method, path, data, h)
        r = conn.getresponse()
        raw = r.read()
        try:
            return r.status, json.loads(raw) if raw else None
        except ValueError:
            return r.status, raw.decode(errors="replace")
    finally:
        conn.close()


# -------------------------------------------------------------------------------------------------------- server


class Server:
    """One `switchboard serve` child on fixed ports (kept across restarts), stderr appended to a log file."""

    def __init__(self, binary, name, db_url, workdir, env=None):
        self.binary, self.name, self.db_url = binary, name, db_url
        self.http_port, self.mllp_port = free_port(), free_port()
        self.base = f"http://127.0.0.1:{self.http_port}"
        self.mllp = ("127.0.0.1", self.mllp_port)
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.env = dict(os.environ)
        self.env.update(
            {
                "SWITCHBOARD_HTTP_ADDR": f"127.0.0.1:{self.http_port}",
                "SWITCHBOARD_MLLP_ADDR": f"127.0.0.1:{self.mllp_port}",
                "SWITCHBOARD_MLLP_ORG": ORG,
                "SWITCHBOARD_DATABASE_URL": db_url,
                "SWITCHBOARD_ADMIN_TOKEN": ADMIN,
                "SWITCHBOARD_LOG": "warn",
                "NO_COLOR": "1",
                "SWITCHBOARD_WEBHOOKS_ALLOW_INSECURE": "true",
                "SWITCHBOARD_WEBHOOKS_ALLOWED_NETWORKS": "127.0.0.0/8",
            }
        )
        self.env.update(env or {})
        self.proc = None
        self.starts = 0
        LIVE.append(self)

    def start(self, timeout=60):
        """Starts the process and waits for /health/ready; returns the seconds it took."""
        t0 = time.monotonic()
        logf = open(self.log_path, "ab")
        logf.write(f"\n=== start {self.starts} at {time.strftime('%H:%M:%S')}\n".encode())
        logf.flush()
        self.proc = subprocess.Popen(
            [self.binary, "serve"], env=self.env, stdout=subprocess.DEVNULL, stderr=logf, cwd=os.path.dirname(self.log_path)
        )
        logf.close()
        self.starts += 1
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} at start (see {self.log_path})")
            try:
                status, _ = request(self.base, "GET", "/health/ready", timeout=2)
                if status == 200:
                    return time.monotonic() - t0
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"{self.name} not ready after {timeout}s (see {self.log_path})")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        """SIGTERM; returns the exit code (None if it had to be killed)."""
        if not self.alive():
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None

    def log_summary(self):
        """Counts of ERROR lines by message and panics in the log."""
        errors = collections.Counter()
        panics = 0
        try:
            with open(self.log_path, errors="replace") as f:
                for line in f:
                    if "panicked" in line:
                        panics += 1
                    line = ANSI.sub("", line)
                    if " ERROR " in line or "ERROR" in line[:60]:
                        # keep the target and message, drop the timestamp and the fields
                        msg = line.split("ERROR", 1)[1].strip().split("=", 1)[0][:100]
                        errors[msg] += 1
        except OSError:
            pass
        return errors, panics


def setup_org(server, receiver=None, events=None, retry=None):
    """Creates the org key and (optionally) a webhook subscription to the receiver; returns (key, subscription)."""
    status, body = request(server.base, "POST", "/api/keys", {"orgId": ORG, "name": "faults"}, token=ADMIN)
    assert status == 201, (status, body)
    key = body["key"]
    sub = None
    if receiver is not None:
        spec = {
            "name": "faults receiver",
            "url": receiver.url,
            "events": events or ["custom.faults.**", "hl7.received"],
            "retryConfig": retry or {"maxAttempts": 10, "backoffType": "exponential", "initialDelay": 1000},
        }
        status, sub = request(server.base, "POST", "/api/webhooks", spec, token=key)
        assert status == 201, (status, sub)
        receiver.set_secret(sub["secret"])
    return key, sub


# ------------------------------------------------------------------------------------------------------ receiver


class Receiver:
    """A webhook endpoint: verifies Standard Webhooks signatures, counts arrivals per webhook-id.

    mode: `up` (answers 204 after `delay` seconds) or `down` (listening socket closed: connection refused)."""

    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.wh = None
        self.lock = threading.Lock()
        self.arrivals = collections.Counter()  # webhook-id -> verified requests
        self.answered = collections.Counter()  # webhook-id -> 2xx written back
        self.last_answer = 0.0
        self.first_arrival = {}  # webhook-id -> monotonic time of the first arrival
        self.arrival_times = {}  # webhook-id -> monotonic times of every arrival
        self.bad_signatures = 0
        self.delay = 0.0
        self.httpd = None
        LIVE.append(self)
        self.conns = set()
        self.last_arrival = 0.0

    def set_secret(self, secret):
        self.wh = Webhook(secret)

    def start(self):
        rcv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                with rcv.lock:
                    rcv.conns.add(self.connection)

            def finish(self):
                with rcv.lock:
                    rcv.conns.discard(self.connection)
                try:
                    super().finish()
                except OSError:
                    pass

            def log_message(self, *args):
                pass

            def do_POST(self):
                n = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(n)
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    rcv.wh.verify(body, headers)
                except Exception:
                    with rcv.lock:
                        rcv.bad_signatures += 1
                    self.send_response(401)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                wid = headers.get("webhook-id", "")
                with rcv.lock:
                    rcv.arrivals[wid] += 1
                    rcv.last_arrival = time.monotonic()
                    rcv.first_arrival.setdefault(wid, rcv.last_arrival)
                    rcv.arrival_times.setdefault(wid, []).append(rcv.last_arrival)
                delay = rcv.delay
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(204)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    self.wfile.flush()
                    with rcv.lock:
                        rcv.answered[wid] += 1
                        rcv.last_answer = time.monotonic()
                except OSError:
                    self.close_connection = True

        class Srv(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def handle_error(self, request, client_address):
                pass  # connections cut by a killed server or by stop()
            request_queue_size = 256

        self.httpd = Srv(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()

    def stop(self):
        """Down: the listening socket is closed and every open connection is cut, so the hub sees refusals."""
        if self.httpd is None:
            return
        self.httpd.shutdown()
        self.httpd.server_close()
        self.httpd = None
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def delivered(self, ids):
        with self.lock:
            return sum(1 for i in ids if self.arrivals.get(i))

    def duplicates(self):
        with self.lock:
            return sum(c - 1 for c in self.arrivals.values() if c > 1)


# ---------------------------------------------------------------------------------------------------------- load


ADT = (
    "MSH|^~\\&|FAULTS|FAULTS HOSPITAL|SWITCHBOARD|HUB|{ts}||ADT^A01^ADT_A01|{ctrl}|P|2.5.1\r"
    "EVN|A01|{ts}\r"
    "PID|1||{mrn}^^^FAULTS^MR||DOE^JANE^Q||19800101|F|||1 MAIN ST^^SPRINGFIELD^IL^62701\r"
    "PV1|1|I|WARD^101^A||||1234^WELBY^MARCUS\r"
)


class Load:
    """Closed-loop emitters, paced to `rate` events/s in total. Every event is retried (same Idempotency-Key, same
    MLLP control id) until it is acknowledged or the load stops; an event is counted once acknowledged."""

    def __init__(self, targets, key, rate, http_workers=6, mllp_workers=2, event_type="custom.faults.load",
                 max_events=None, tag="", pad=120):
        self.targets = list(targets)  # servers; workers move to the next one when a connection fails
        self.key, self.rate, self.event_type = key, rate, event_type
        self.http_workers, self.mllp_workers = http_workers, mllp_workers
        self.max_events, self.tag, self.pad = max_events, tag or "".join(random.choices(string.ascii_lowercase, k=6)), pad
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()
        self.issued = 0
        self.acked_http = {}  # token -> event id
        self.acked_via = {}  # event id -> name of the server that answered
        self.acked_mllp = {}  # control id -> ack code
        self.replayed = 0  # 200 + Idempotent-Replayed (a retry of an event stored before a failure)
        self.errors = collections.Counter()
        self.latencies = []  # (monotonic time of the answer, seconds, "http"|"mllp")
        self.first_error_t = None
        self.last_error_t = None
        self.threads = []

    def _err(self, kind):
        now = time.monotonic()
        with self.lock:
            self.errors[kind] += 1
            if self.first_error_t is None:
                self.first_error_t = now
            self.last_error_t = now

    def _next(self):
        with self.lock:
            if self.max_events is not None and self.issued >= self.max_events:
                return None
            self.issued += 1
            return self.issued

    def start(self):
        n = self.http_workers + self.mllp_workers
        for i in range(self.http_workers):
            self.threads.append(threading.Thread(target=self._http, args=(i, n), daemon=True))
        for i in range(self.mllp_workers):
            self.threads.append(threading.Thread(target=self._mllp, args=(i, n), daemon=True))
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(timeout=30)

    def _pace(self, state, n):
        interval = n / self.rate
        now = time.monotonic()
        state[0] = max(state[0] + interval, now - 1.0)
        if state[0] > now:
            time.sleep(state[0] - now)

    def _http(self, i, n):
        conn, target, pace = None, i, [time.monotonic()]
        while not self.stop_ev.is_set():
            self._pace(pace, n)
            num = self._next()
            if num is None:
                return
            token = f"{self.tag}-h{i}-{num}"
            body = json.dumps({"eventType": self.event_type, "data": {"token": token, "pad": "x" * self.pad}}).encode()
            headers = {"authorization": f"Bearer {self.key}", "content-type": "application/json",
                       "idempotency-key": token}
            backoff = 0.05
            while not self.stop_ev.is_set():
                t0 = time.monotonic()
                try:
                    if conn is None:
                        srv = self.targets[target % len(self.targets)]
                        conn = http.client.HTTPConnection("127.0.0.1", srv.http_port, timeout=15)
                    conn.request("POST", "/api/events", body, headers)
                    r = conn.getresponse()
                    raw = r.read()
                    if r.status in (200, 201):
                        ev = json.loads(raw)
                        with self.lock:
                            self.acked_http[token] = ev["id"]
                            self.acked_via[ev["id"]] = srv.name
                            self.latencies.append((time.monotonic(), time.monotonic() - t0, "http"))
                            if r.status == 200:
                                self.replayed += 1
                        break
                    try:
                        code = json.loads(raw)["error"]["code"]
                    except Exception:
                        code = raw[:40].decode(errors="replace")
                    self._err(f"http {r.status} {code}")
                    if r.getheader("connection", "").lower() == "close":
                        conn.close()
                        conn = None
                except (OSError, http.client.HTTPException) as e:
                    self._err(f"http {type(e).__name__}")
                    if conn is not None:
                        conn.close()
                    conn, target = None, target + 1
                time.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
        if conn is not None:
            conn.close()

    def _mllp(self, i, n):
        client, target, pace = None, i, [time.monotonic()]
        while not self.stop_ev.is_set():
            self._pace(pace, n)
            num = self._next()
            if num is None:
                break
            ctrl = f"{self.tag}m{i}n{num}"
            msg = ADT.format(ts=time.strftime("%Y%m%d%H%M%S"), ctrl=ctrl, mrn=f"MRN{num}")
            backoff = 0.05
            while not self.stop_ev.is_set():
                t0 = time.monotonic()
                try:
                    if client is None:
                        srv = self.targets[target % len(self.targets)]
                        client = hl7.client.MLLPClient(*srv.mllp)
                        client.socket.settimeout(15)
                    raw = client.send_message(msg)
                    if not raw:
                        raise ConnectionResetError("closed without an ACK")
                    ack = hl7.parse(raw.decode().strip("\x0b\x1c\r\n"))
                    code = str(ack.segment("MSA")[1])
                    if str(ack.segment("MSA")[2]) != ctrl:
                        raise ValueError("ACK for another message")
                    if code in ("AA", "CA"):
                        with self.lock:
                            self.acked_mllp[ctrl] = code
                            self.latencies.append((time.monotonic(), time.monotonic() - t0, "mllp"))
                        break
                    self._err(f"mllp NAK {code}")
                except (OSError, ValueError, KeyError, IndexError, hl7.ParseException) as e:
                    self._err(f"mllp {type(e).__name__}")
                    if client is not None:
                        client.close()
                    client, target = None, target + 1
                time.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
        if client is not None:
            client.close()

    def acked(self):
        with self.lock:
            return len(self.acked_http) + len(self.acked_mllp)

    def latency_between(self, t0, t1):
        with self.lock:
            vals = [l for (t, l, _) in self.latencies if t0 <= t < t1]
        return {"n": len(vals), "p50_ms": round(1000 * (pct(vals, 50) or 0), 1),
                "p99_ms": round(1000 * (pct(vals, 99) or 0), 1), "max_ms": round(1000 * max(vals or [0]), 1)}

    def first_ack_after(self, t):
        with self.lock:
            later = [a for (a, _, _) in self.latencies if a >= t]
        return min(later) if later else None


# --------------------------------------------------------------------------------------------------------- check


def history(server, key, types):
    """Every event of the org with these types, oldest first, by cursor paging (limit 1000)."""
    out, cursor = [], None
    while True:
        q = {"limit": "1000", "order": "asc", "eventType": ",".join(types)}
        if cursor:
            q["cursor"] = cursor
        status, body = request(server.base, "GET", "/api/events?" + urllib.parse.urlencode(q), token=key, timeout=60)
        if status != 200:
            raise RuntimeError(f"history page: {status} {body}")
        out.extend(body["events"])
        cursor = body.get("nextCursor")
        if not cursor:
            return out


def delivery_counts(server, key, sub_id):
    """Open (pending+failed) and dead deliveries of the subscription, from the delivery log (first page of 500)."""
    counts = {}
    for status in ("pending", "failed", "dead"):
        code, body = request(server.base, "GET", f"/api/webhooks/{sub_id}/deliveries?status={status}&limit=500",
                             token=key, timeout=60)
        counts[status] = len(body) if code == 200 and isinstance(body, list) else f"error {code}"
    return counts


def all_deliveries(server, key, sub_id):
    out, before = [], None
    while True:
        path = f"/api/webhooks/{sub_id}/deliveries?limit=500" + (f"&before={before}" if before else "")
        code, body = request(server.base, "GET", path, token=key, timeout=60)
        if code != 200 or not body:
            return out
        out.extend(body)
        before = body[-1]["id"]


def verify(server, key, load_list, receiver=None, sub=None, hooked=None, drain_timeout=60, result=None):
    """The zero-loss check. Fills `result` and returns True when nothing acknowledged is missing."""
    result = result if result is not None else {}
    types = ["custom.faults.**", "hl7.received"]
    events = history(server, key, types)
    ids = {e["id"] for e in events}
    by_token = collections.defaultdict(int)
    by_ctrl = collections.defaultdict(list)
    for e in events:
        if e["eventType"] == "hl7.received":
            by_ctrl[e.get("messageControlId")].append(e["id"])
        elif isinstance(e.get("data"), dict) and "token" in e["data"]:
            by_token[e["data"]["token"]] += 1
    acked_http, acked_mllp = {}, {}
    for ld in load_list:
        acked_http.update(ld.acked_http)
        acked_mllp.update(ld.acked_mllp)
    lost_http = [t for t, i in acked_http.items() if i not in ids]
    lost_mllp = [c for c in acked_mllp if c not in by_ctrl]
    http_dups = sum(c - 1 for c in by_token.values() if c > 1)
    mllp_twice = sum(len(v) - 1 for v in by_ctrl.values() if len(v) > 1)
    result.update({
        "acked_http": len(acked_http), "acked_mllp": len(acked_mllp), "acked": len(acked_http) + len(acked_mllp),
        "found": len(acked_http) - len(lost_http) + len(acked_mllp) - len(lost_mllp),
        "lost": len(lost_http) + len(lost_mllp), "lost_sample": (lost_http + lost_mllp)[:5],
        "stored_events": len(events), "stored_unacked": len(events) - (len(acked_http) + len(acked_mllp)),
        "http_stored_twice": http_dups, "mllp_stored_twice": mllp_twice,
    })
    ok = not lost_http and not lost_mllp and http_dups == 0
    if receiver is not None:
        hooked = hooked or (lambda e: True)
        want = [e["id"] for e in events if hooked(e)]
        want_set = set(want)
        # one unit per acknowledged event: an HTTP event id, or the hl7.received events of one acked control id
        # (an MLLP resend after a kill may have stored the message twice; one delivery of either counts)
        units = [[i] for i in acked_http.values() if i in want_set]
        units += [[i for i in by_ctrl.get(c, []) if i in want_set] for c in acked_mllp]
        units = [u for u in units if u]
        t0 = time.monotonic()
        while receiver.delivered(want) < len(want) and time.monotonic() - t0 < drain_timeout:
            time.sleep(0.5)
        result["drain_s"] = round(time.monotonic() - t0, 1)
        got = receiver.delivered(want)
        with receiver.lock:
            got_acked = sum(1 for u in units if any(receiver.arrivals.get(i) for i in u))
        result.update({
            "hooked_acked": len(units), "hooked_acked_delivered": got_acked,
            "hooked_stored": len(want), "hooked_stored_delivered": got,
            "undelivered": len(want) - got, "bad_signatures": receiver.bad_signatures,
        })
        if sub is not None:
            # the hub records an attempt after the receiver's answer: wait until no delivery is open any more
            while time.monotonic() - t0 < drain_timeout:
                counts = delivery_counts(server, key, sub["id"])
                if counts.get("pending") == 0 and counts.get("failed") == 0:
                    break
                time.sleep(0.5)
            result["settle_s"] = round(time.monotonic() - t0, 1)
            result["deliveries_open_dead"] = delivery_counts(server, key, sub["id"])
            if result["deliveries_open_dead"].get("dead"):
                ok = False
        result["duplicates_delivered"] = receiver.duplicates()
        ok = ok and got == len(want) and receiver.bad_signatures == 0
    return ok


# ----------------------------------------------------------------------------------------------------- scenarios


class Ctx:
    def __init__(self, args):
        self.args = args
        self.quick = args.quick
        self.binary = os.path.abspath(args.binary)
        self.root = tempfile.mkdtemp(prefix="switchboard-faults-")

    def workdir(self, name):
        d = os.path.join(self.root, name)
        os.makedirs(d, exist_ok=True)
        return d


def load_errors(loads):
    c = collections.Counter()
    for ld in loads:
        c.update(ld.errors)
    return dict(c.most_common(8))


def server_notes(res, servers):
    errs, panics = collections.Counter(), 0
    for s in servers:
        e, p = s.log_summary()
        errs.update(e)
        panics += p
    res["server_log_errors"] = dict(errs.most_common(6))
    res["panics"] = panics
    return panics == 0


def scenario_kill(ctx, res):
    """kill -9 of the server every `interval` seconds under load, restarted on the same SQLite database."""
    interval, duration, rate = (10, 40, 400) if ctx.quick else (20, 300, 600)
    wd = ctx.workdir("kill")
    srv = Server(ctx.binary, "kill", f"sqlite://{wd}/sb.db", wd)
    rcv = Receiver()
    rcv.start()
    srv.start()
    key, sub = setup_org(srv, rcv)
    load = Load([srv], key, rate).start()
    res["params"] = {"interval_s": interval, "duration_s": duration, "rate": rate, "backend": "sqlite"}
    kills, ready, recovery, wal_at_kill = 0, [], [], []
    t_start = time.monotonic()
    for k in range(1, duration // interval + 1):
        time.sleep(max(0.0, t_start + k * interval - time.monotonic()))  # kills at fixed times, not after restarts
        before = load.acked()
        srv.kill9()
        kills += 1
        t_kill = time.monotonic()
        wal_at_kill.append(round(os.path.getsize(f"{wd}/sb.db-wal") / 2**20) if os.path.exists(f"{wd}/sb.db-wal") else 0)
        ready.append(srv.start())
        t_ack = None
        while time.monotonic() - t_kill < 30:
            t_ack = load.first_ack_after(t_kill + ready[-1] - 0.001)
            if t_ack:
                break
            time.sleep(0.05)
        recovery.append(round((t_ack or time.monotonic()) - t_kill, 2))
        log(f"  kill #{kills}: {before} acked before; WAL {wal_at_kill[-1]} MiB; ready after {ready[-1]:.2f}s, "
            f"first ack after {recovery[-1]}s")
    time.sleep(3)
    load.stop()
    res["kills"] = kills
    res["wal_mib_at_kill"] = wal_at_kill
    res["restart_ready_each_s"] = [round(x, 2) for x in ready]
    res["restart_ready_s"] = {"max": round(max(ready), 2), "mean": round(sum(ready) / len(ready), 2)}
    res["recovery_first_ack_s"] = {"max": max(recovery), "mean": round(sum(recovery) / len(recovery), 2)}
    res["client_errors"] = load_errors([load])
    res["idempotent_replays"] = load.replayed
    ok = verify(srv, key, [load], rcv, sub, drain_timeout=120, result=res)
    ok = server_notes(res, [srv]) and ok
    res["exit_code_sigterm"] = srv.stop()
    rcv.stop()
    return ok


def scenario_receiver_down(ctx, res):
    """The webhook receiver refuses connections for `outage` seconds, then comes back."""
    outage, rate = (20, 200) if ctx.quick else (120, 200)
    wd = ctx.workdir("receiver_down")
    srv = Server(ctx.binary, "receiver_down", f"sqlite://{wd}/sb.db", wd)
    rcv = Receiver()
    rcv.start()
    srv.start()
    key, sub = setup_org(srv, rcv)
    res["params"] = {"outage_s": outage, "rate": rate, "retryConfig": "maxAttempts 10, exponential, initialDelay 1000"}
    load = Load([srv], key, rate).start()
    time.sleep(3)
    rcv.stop()
    t_down = time.monotonic()
    log(f"  receiver down ({load.acked()} acked so far)")
    time.sleep(outage)
    mid = delivery_counts(srv, key, sub["id"])
    rcv.start()
    t_up = time.monotonic()
    log(f"  receiver back after {t_up - t_down:.0f}s; deliveries open/dead at that moment (first 500): {mid}")
    res["deliveries_at_end_of_outage"] = mid
    time.sleep(3)
    load.stop()
    res["publish_latency_during_outage"] = load.latency_between(t_down, t_up)
    res["client_errors"] = load_errors([load])
    ok = verify(srv, key, [load], rcv, sub, drain_timeout=outage + 90, result=res)
    res["all_delivered_s_after_back"] = round(rcv.last_arrival - t_up, 1) if rcv.last_arrival > t_up else None
    subs = all_deliveries(srv, key, sub["id"])
    att = collections.Counter(d["attempts"] for d in subs)
    res["attempts_histogram"] = dict(sorted(att.items()))
    res["max_attempts_used"] = max(att) if att else 0
    ok = server_notes(res, [srv]) and ok and srv.alive()
    srv.stop()
    rcv.stop()
    return ok


def scenario_slow(ctx, res):
    """The receiver answers after 9 s. Run once with the attempt timeout above 9 s and once below it."""
    hooked_n = 15 if ctx.quick else 150
    slow_phase = 8 if ctx.quick else 40
    runs = {}
    ok_all = True
    for label, timeout_ms in (("timeout_12s", 12000), ("timeout_5s", 5000)):
        r = runs[label] = {"timeout_ms": timeout_ms}
        wd = ctx.workdir(f"slow_{label}")
        srv = Server(ctx.binary, f"slow_{label}", f"sqlite://{wd}/sb.db", wd,
                     {"SWITCHBOARD_WEBHOOKS_TIMEOUT_MS": str(timeout_ms)})
        rcv = Receiver()
        rcv.start()
        srv.start()
        key, sub = setup_org(srv, rcv, events=["custom.faults.hook"])
        # baseline: publish latency with a fast receiver
        bg = Load([srv], key, 150, http_workers=3, mllp_workers=1, event_type="custom.faults.bg").start()
        t_base = time.monotonic()
        time.sleep(3)
        rcv.delay = 9.0
        t_slow = time.monotonic()
        hook = Load([srv], key, hooked_n / 3.0, http_workers=2, mllp_workers=0, event_type="custom.faults.hook",
                    max_events=hooked_n)
        hook.start()
        time.sleep(slow_phase)
        if timeout_ms < 9000:
            rcv.delay = 0.0  # the endpoint recovers: retries now succeed
        t_fast = time.monotonic()
        bg.stop()
        hook.stop()
        r["publish_latency_baseline"] = bg.latency_between(t_base, t_slow)
        r["publish_latency_slow_receiver"] = bg.latency_between(t_slow, t_fast)
        r["client_errors"] = load_errors([bg, hook])
        ok = verify(srv, key, [bg, hook], rcv, sub, hooked=lambda e: e["eventType"] == "custom.faults.hook",
                    drain_timeout=120, result=r)
        t_done = time.monotonic()
        r["last_answer_s_after_slow_start"] = round(rcv.last_answer - t_slow, 1)
        dels = all_deliveries(srv, key, sub["id"])
        r["delivery_status"] = dict(collections.Counter(d["status"] for d in dels))
        r["attempts_histogram"] = dict(sorted(collections.Counter(d["attempts"] for d in dels).items()))
        errs = collections.Counter()
        for d in dels:
            for a in d.get("attemptLog") or []:
                if a.get("error"):
                    errs[a["error"][:80]] += 1
        r["attempt_errors"] = dict(errs.most_common(3))
        # the answered counter lags by the 9 s sleep: wait for the handlers in flight
        while time.monotonic() - t_done < 10 and sum(rcv.answered.values()) < sum(rcv.arrivals.values()):
            time.sleep(0.5)
        r["receiver_requests"] = sum(rcv.arrivals.values())
        ok = server_notes(r, [srv]) and ok and srv.alive()
        ok = ok and r["delivery_status"].get("succeeded", 0) == hooked_n
        srv.stop()
        rcv.stop()
        ok_all = ok_all and ok
        log(f"  {label}: {json.dumps({k: r[k] for k in ('publish_latency_baseline', 'publish_latency_slow_receiver', 'attempts_histogram', 'duplicates_delivered')})}")
    res["runs"] = runs
    for k in ("acked", "found", "lost", "duplicates_delivered", "undelivered", "hooked_acked", "hooked_acked_delivered"):
        res[k] = sum(r.get(k, 0) for r in runs.values())
    res["deliveries_open_dead"] = {"dead": sum(r["deliveries_open_dead"].get("dead", 0) for r in runs.values())}
    res["params"] = {"receiver_delay_s": 9, "hooked_events_per_run": hooked_n, "slow_phase_s": slow_phase}
    return ok_all


class Filler:
    """Keeps a file system full: grows a filler file to leave only `keep` bytes free, every 0.1 s, until stopped.
    (SQLite's WAL shrinks back to its size limit after a checkpoint, which would hand space back to the server.)"""

    def __init__(self, mnt, keep=1 << 20):
        self.path = os.path.join(mnt, "filler")
        self.mnt, self.keep = mnt, keep
        self.size = 0
        self.stop_ev = threading.Event()
        self.thread = None

    def fill_once(self):
        st = os.statvfs(self.mnt)
        free = st.f_bavail * st.f_frsize
        if free > self.keep + (64 << 10):
            with open(self.path, "ab") as f:
                try:
                    os.posix_fallocate(f.fileno(), self.size, free - self.keep)
                    self.size += free - self.keep
                except OSError:
                    self.size = os.fstat(f.fileno()).st_size
        return free

    def start(self):
        def run():
            while not self.stop_ev.is_set():
                self.fill_once()
                time.sleep(0.1)

        self.fill_once()
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def free_space(self):
        self.stop_ev.set()
        if self.thread:
            self.thread.join()
        os.unlink(self.path)


def file_sizes(d, prefix):
    out = {}
    for f in os.listdir(d):
        if f.startswith(prefix):
            try:
                out[f] = os.path.getsize(os.path.join(d, f))
            except OSError:
                pass
    return out


def scenario_disk_full(ctx, res):
    """SQLite on a small loop-mounted ext4, kept full under load, then space freed."""
    wd = ctx.workdir("disk_full")
    img = os.path.join(wd, "disk.img")
    mnt = os.path.join(wd, "mnt")
    os.makedirs(mnt, exist_ok=True)
    full_phase = 10 if ctx.quick else 30
    rate = 300
    # 1 GiB (sparse): the WAL alone reaches 64-300 MB under this load (journal_size_limit is 64 MiB), so a 64 MiB
    # file system is full within seconds of the start, before the scenario fills it on purpose.
    size = "1G"
    subprocess.run(["truncate", "-s", size, img], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", img], check=True)
    m = subprocess.run(["mount", "-o", "loop", img, mnt], capture_output=True, text=True)
    if m.returncode != 0:
        res["status"] = "SKIP"
        res["notes"] = [f"loop mount impossible here ({m.stderr.strip()}); not run"]
        return None
    res["params"] = {"fs": f"ext4 {size} loop, -m 0", "full_phase_s": full_phase, "rate": rate, "keep_free": "1 MiB"}
    srv = rcv = None
    try:
        # attempts that could not be recorded while the disk was full are sent again after the lease
        srv = Server(ctx.binary, "disk_full", f"sqlite://{mnt}/sb.db", wd, {"SWITCHBOARD_WEBHOOKS_LEASE_SECS": "15"})
        rcv = Receiver()
        rcv.start()
        srv.start()
        key, sub = setup_org(srv, rcv)
        load = Load([srv], key, rate).start()
        peak = {}
        for _ in range(20):
            time.sleep(0.25)
            for f, n in file_sizes(mnt, "sb.db").items():
                peak[f] = max(peak.get(f, 0), n)
        res["db_files_peak_mib_before_fill"] = {f: round(n / 2**20, 1) for f, n in peak.items()}
        filler = Filler(mnt)
        filler.start()
        st = os.statvfs(mnt)
        res["free_after_fill_bytes"] = st.f_bavail * st.f_frsize
        t_fill = time.monotonic()
        log(f"  filled: {res['free_after_fill_bytes']} bytes left; {load.acked()} acked so far; "
            f"peak files before: {res['db_files_peak_mib_before_fill']} MiB")
        while load.first_error_t is None and time.monotonic() - t_fill < 60:
            time.sleep(0.2)
        res["first_error_s_after_fill"] = round(load.first_error_t - t_fill, 1) if load.first_error_t else None
        acked_at_full = load.acked()
        time.sleep(full_phase)
        res["acked_while_full"] = load.acked() - acked_at_full
        res["errors_while_full"] = load_errors([load])
        res["server_alive_while_full"] = srv.alive()
        res["ready_while_full"] = request(srv.base, "GET", "/health/ready")[0] if srv.alive() else None
        filler.free_space()
        t_free = time.monotonic()
        log(f"  space freed; errors while full: {res['errors_while_full']}")
        t_ack = None
        while time.monotonic() - t_free < 30:
            t_ack = load.first_ack_after(t_free)
            if t_ack:
                break
            time.sleep(0.05)
        res["recovery_first_ack_s"] = round(t_ack - t_free, 2) if t_ack else None
        time.sleep(5)
        load.stop()
        res["acked_after_free"] = sum(1 for (t, _, _) in load.latencies if t >= t_free)
        res["client_errors"] = load_errors([load])
        ok = verify(srv, key, [load], rcv, sub, drain_timeout=120, result=res)
        ok = server_notes(res, [srv]) and ok and res["server_alive_while_full"] and srv.alive()
        ok = ok and res["recovery_first_ack_s"] is not None and bool(load.errors)
        bad = [k for k in load.errors if k.startswith("http 5") and "507" not in k]
        if bad:
            res.setdefault("notes", []).append(f"unexpected HTTP statuses while full: {bad}")
        srv.stop()
        return ok
    finally:
        if srv is not None and srv.alive():
            srv.proc.kill()
            srv.proc.wait()
        if rcv is not None:
            rcv.stop()
        subprocess.run(["umount", mnt], capture_output=True)
        try:
            os.unlink(img)
        except OSError:
            pass


def pg_cluster(action):
    return subprocess.run(["pg_ctlcluster", *PG_CLUSTER, action], capture_output=True, text=True, timeout=120)


def pg_is_up():
    r = subprocess.run(["pg_isready", "-d", PG_BASE, "-t", "2"], capture_output=True, text=True)
    return r.returncode == 0


def pg_ensure_up():
    if not pg_is_up():
        pg_cluster("start")
        for _ in range(60):
            if pg_is_up():
                break
            time.sleep(0.5)
    return pg_is_up()


def pg_drop_schema(schema):
    subprocess.run(["psql", PG_BASE, "-qAt", "-c", f"DROP SCHEMA IF EXISTS {schema} CASCADE"],
                   capture_output=True, env=dict(os.environ, PGOPTIONS="-c client_min_messages=warning"))


def pg_available():
    return shutil.which("pg_ctlcluster") and shutil.which("psql") and pg_is_up()


def scenario_pg_restart(ctx, res):
    """PostgreSQL stopped (fast) for a few seconds and started again, under load."""
    if not pg_available():
        res["status"] = "SKIP"
        res["notes"] = ["no local PostgreSQL cluster"]
        return None
    down, after, rounds = (3, 5, 1) if ctx.quick else (8, 20, 2)
    schema = "faults_" + "".join(random.choices(string.ascii_lowercase, k=10))
    url = f"{PG_BASE}?schema={schema}&connect_timeout=2"
    wd = ctx.workdir("pg_restart")
    # attempts that could not be recorded while PostgreSQL was down are sent again after the lease
    srv = Server(ctx.binary, "pg_restart", url, wd, {"SWITCHBOARD_WEBHOOKS_LEASE_SECS": "15"})
    rcv = Receiver()
    res["params"] = {"down_s": down, "rounds": rounds, "rate": 300, "schema": schema, "lease_secs": 15}
    try:
        rcv.start()
        srv.start()
        key, sub = setup_org(srv, rcv)
        load = Load([srv], key, 300).start()
        recov, outages = [], []
        for n in range(rounds):
            time.sleep(5)
            t0 = time.monotonic()
            r = pg_cluster("stop")
            t_stopped = time.monotonic()
            log(f"  PostgreSQL stopped ({r.returncode}) in {t_stopped - t0:.1f}s; {load.acked()} acked so far")
            time.sleep(down)
            try:
                res.setdefault("ready_while_pg_down", []).append(request(srv.base, "GET", "/health/ready", timeout=10)[0])
            except OSError as e:
                res.setdefault("ready_while_pg_down", []).append(type(e).__name__)
            r = pg_cluster("start")
            t_up = time.monotonic()
            outages.append(round(t_up - t0, 1))
            log(f"  PostgreSQL started ({r.returncode}) after {t_up - t0:.1f}s")
            t_ack = None
            while time.monotonic() - t_up < 60:
                t_ack = load.first_ack_after(t_up)
                if t_ack:
                    break
                time.sleep(0.05)
            recov.append(round(t_ack - t_up, 2) if t_ack else None)
            time.sleep(after)
        load.stop()
        res["outage_s"] = outages
        res["recovery_first_ack_after_pg_up_s"] = recov
        res["client_errors"] = load_errors([load])
        res["server_alive"] = srv.alive()
        ok = verify(srv, key, [load], rcv, sub, drain_timeout=120, result=res)
        ok = server_notes(res, [srv]) and ok and srv.alive() and all(x is not None for x in recov)
        srv.stop()
        return ok
    finally:
        if srv.alive():
            srv.proc.kill()
            srv.proc.wait()
        rcv.stop()
        pg_ensure_up()
        pg_drop_schema(schema)


def scenario_pg_two_instances(ctx, res):
    """Two instances on one PostgreSQL schema; one is killed -9 under load, the other finishes its deliveries."""
    if not pg_available():
        res["status"] = "SKIP"
        res["notes"] = ["no local PostgreSQL cluster"]
        return None
    before, after = (6, 6) if ctx.quick else (20, 30)
    schema = "faults_" + "".join(random.choices(string.ascii_lowercase, k=10))
    url = f"{PG_BASE}?schema={schema}&pool_size=8"
    wd = ctx.workdir("pg_two")
    env = {"SWITCHBOARD_WEBHOOKS_LEASE_SECS": "5", "SWITCHBOARD_WEBHOOKS_TIMEOUT_MS": "3000"}
    a = Server(ctx.binary, "pg_two_a", url, wd, env)
    b = Server(ctx.binary, "pg_two_b", url, wd, env)
    rcv = Receiver()
    rcv.delay = 0.1  # keeps deliveries in flight on both instances at the kill (without a backlog: see repro_lease_duplicates.py)
    res["params"] = {"lease_secs": 5, "timeout_ms": 3000, "rate": 300, "schema": schema, "receiver_delay_s": 0.1}
    try:
        rcv.start()
        a.start()
        b.start()
        key, sub = setup_org(a, rcv)
        time.sleep(1.5)  # B reloads routing on the NOTIFY
        load = Load([a, b], key, 300, http_workers=6, mllp_workers=2).start()
        time.sleep(before)
        acked_before = load.acked()
        a.kill9()
        t_kill = time.monotonic()
        load.targets = [b]
        log(f"  instance A killed; {acked_before} acked so far")
        time.sleep(after)
        load.stop()
        res["client_errors"] = load_errors([load])
        ok = verify(b, key, [load], rcv, sub, drain_timeout=90, result=res)
        res["last_delivery_s_after_kill"] = round(rcv.last_arrival - t_kill, 1)
        # HTTP events A acknowledged that reached the receiver after the kill (first time or again): B sent them
        # once A's lease on them ran out
        late = []
        with rcv.lock:
            for i, via in load.acked_via.items():
                if via == a.name:
                    after = [t - t_kill for t in rcv.arrival_times.get(i, []) if t > t_kill + 0.5]
                    if after:
                        late.append(min(after))
        res["a_acked_http_sent_by_b_after_kill"] = len(late)
        res["a_taken_over_after_s"] = {"min": round(min(late), 1), "max": round(max(late), 1)} if late else None
        ok = server_notes(res, [a, b]) and ok and b.alive()
        b.stop()
        return ok
    finally:
        for s in (a, b):
            if s.alive():
                s.proc.kill()
                s.proc.wait()
        rcv.stop()
        pg_drop_schema(schema)


SCENARIOS = [
    ("kill9", "kill -9 every 20 s (quick 10 s) under load, SQLite", scenario_kill),
    ("receiver_down", "webhook receiver refuses connections, then returns", scenario_receiver_down),
    ("slow_receiver", "receiver answers after 9 s; attempt timeout 12 s / 5 s", scenario_slow),
    ("disk_full", "SQLite on a full loop-mounted ext4 (kept full), then space freed", scenario_disk_full),
    ("pg_restart", "PostgreSQL stopped and started under load", scenario_pg_restart),
    ("pg_two_instances", "two instances on PostgreSQL, one killed -9", scenario_pg_two_instances),
]


def fmt_row(cols, widths):
    return " | ".join(str(c).ljust(w) for c, w in zip(cols, widths))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="short version for CI (under 4 minutes)")
    mode.add_argument("--full", action="store_true", help="the long version (about 13 minutes)")
    p.add_argument("--binary", default="target/release/switchboard")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    p.add_argument("--only", default=None, help="comma-separated scenario names")
    args = p.parse_args()
    if not args.full:
        args.quick = True
    ctx = Ctx(args)
    only = set(args.only.split(",")) if args.only else None
    started = time.time()
    results = []
    log(f"fault suite ({'quick' if args.quick else 'full'}), binary {ctx.binary}, work dir {ctx.root}")
    for name, title, fn in SCENARIOS:
        if only and name not in only:
            continue
        res = {"name": name, "title": title}
        log(f"== {name}: {title}")
        t0 = time.monotonic()
        try:
            ok = fn(ctx, res)
            if "status" not in res:
                res["status"] = "PASS" if ok else "FAIL"
        except Exception as e:
            res["status"] = "FAIL"
            res["exception"] = f"{type(e).__name__}: {e}"
            traceback.print_exc()
        while LIVE:
            obj = LIVE.pop()
            if isinstance(obj, Server):
                if obj.alive():
                    obj.proc.kill()
                    obj.proc.wait()
            else:
                obj.stop()
        res["duration_s"] = round(time.monotonic() - t0, 1)
        log(f"   {res['status']} in {res['duration_s']}s: " + json.dumps(
            {k: v for k, v in res.items() if k not in ("name", "title", "runs")}, default=str))
        results.append(res)
    if shutil.which("pg_ctlcluster") and any(r["name"].startswith("pg_") for r in results):
        pg_ensure_up()  # whatever happened, leave the shared PostgreSQL running

    widths = [17, 6, 15, 9, 5, 17, 6, 4, 7]
    print()
    print(fmt_row(["scenario", "result", "acked http/mllp", "found", "lost", "hooked delivered", "dups", "DLQ",
                   "time s"], widths))
    print("-+-".join("-" * w for w in widths))
    for r in results:
        ah, am = r.get("acked_http"), r.get("acked_mllp")
        acked = f"{ah}/{am}" if ah is not None else str(r.get("acked", "-"))
        hooked = f"{r.get('hooked_acked_delivered', '-')}/{r.get('hooked_acked', '-')}"
        dead = (r.get("deliveries_open_dead") or {}).get("dead", "-")
        print(fmt_row([r["name"], r["status"], acked, r.get("found", "-"), r.get("lost", "-"), hooked,
                       r.get("duplicates_delivered", "-"), dead, r["duration_s"]], widths))
    total = round(time.time() - started, 1)
    failed = [r["name"] for r in results if r["status"] == "FAIL"]
    print(f"\n{len(results)} scenarios in {total}s; " + (f"FAILED: {', '.join(failed)}" if failed else "all passed"))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"mode": "quick" if args.quick else "full", "started": time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)), "total_s": total, "machine": machine(),
                "results": results}, f, indent=2, default=str)
        print(f"results: {args.out}")
    if not failed:
        shutil.rmtree(ctx.root, ignore_errors=True)
    else:
        print(f"server logs kept in {ctx.root}")
    return 1 if failed else 0


def machine():
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) // 1024 // 1024
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "mem_gib": mem, "kernel": os.uname().release}


if __name__ == "__main__":
    sys.exit(main())
