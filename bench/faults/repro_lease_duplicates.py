#!/usr/bin/env python3
"""Reproduces duplicate webhook deliveries from one single instance when a subscription's in-memory queue takes
longer than `webhooks.lease_secs` to drain (a slow receiver with a backlog).

The worker claims up to `per_subscription_queue` (2048) deliveries at once, all with one lease, and the lane sends
them `per_subscription_concurrency` (64) at a time. When the lease ends before a queued delivery is sent, the row is
due again, the worker claims it a second time while the first claim still waits in its own queue, and the receiver
gets it twice. Nothing is lost, but every delivery queued behind the lease is sent twice.

Here: SQLite, lease 15 s (timeout 10 s), receiver answering in 1 s, 2000 events published at once: the queue needs
about 2000 / 64 x 1 s = 31 s, so the second half of it is claimed again. With the defaults (lease 60 s) the same
happens with a receiver answering in 2 s.

Usage: bench/faults/repro_lease_duplicates.py [--binary target/release/switchboard]
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faults  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--binary", default="target/release/switchboard")
p.add_argument("--events", type=int, default=2000)
p.add_argument("--delay", type=float, default=1.0)
p.add_argument("--lease", default="15")
args = p.parse_args()

d = tempfile.mkdtemp(prefix="switchboard-lease-")
srv = faults.Server(os.path.abspath(args.binary), "lease", f"sqlite://{d}/sb.db", d,
                    {"SWITCHBOARD_WEBHOOKS_LEASE_SECS": args.lease})
rcv = faults.Receiver()
rcv.delay = args.delay
rcv.start()
srv.start()
key, sub = faults.setup_org(srv, rcv, events=["custom.faults.**"])
load = faults.Load([srv], key, 2000, http_workers=8, mllp_workers=0, max_events=args.events).start()
while load.acked() < args.events:
    time.sleep(0.2)
load.stop()
t0 = time.monotonic()
while rcv.delivered(list(load.acked_http.values())) < args.events and time.monotonic() - t0 < 300:
    time.sleep(1)
time.sleep(args.delay + 1)
total = sum(rcv.arrivals.values())
dups = rcv.duplicates()
print(f"{args.events} events, lease {args.lease}s, receiver {args.delay}s per request: {total} requests, "
      f"{dups} duplicates, delivered in {time.monotonic() - t0:.0f}s")
srv.stop()
rcv.stop()
shutil.rmtree(d, ignore_errors=True)
sys.exit(1 if dups else 0)
