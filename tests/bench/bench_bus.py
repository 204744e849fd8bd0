#!/usr/bin/env python3
"""Benchmark of the NATS JetStream relay (prints figures; not a test, not
run by ctest).

The daemon first bootstraps N accounts of the fixture driver (M messages
each) with the bus pointing at a private nats-server -js. Then, for each
bus.max_pending value asked for, the daemon is stopped, the relay's stored
cursor is set to 0 and the stream deleted, and the daemon started again:
the whole outbox is published as after a long NATS outage. Printed per
run: events, events/s from the daemon's start until the relay caught up
(lag 0; start included), the daemon's CPU seconds for the run, the
messages in the stream and the Msg-Ids stored twice (must be 0).

Usage: tests/bench/bench_bus.py [--build build] [--accounts 20]
       [--messages 500] [--pending 1,16,256] [--rounds 1]
"""

import argparse
import os
import sqlite3
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(TOP, "build"))
    ap.add_argument("--accounts", type=int, default=20)
    ap.add_argument("--messages", type=int, default=500)
    ap.add_argument("--pending", default="1,16,256")
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    os.environ.setdefault("MAILPULSED", os.path.join(args.build, "core/daemon/mailpulsed"))
    os.environ.setdefault("MP_TEST_DRIVER_DIR", os.path.join(args.build, "tests/drivers"))
    import mptest
    import natsjs

    nats = natsjs.NatsServer(name="bench-bus").start()
    client = natsjs.Client(nats.port)
    accounts = ["acct%03d" % i for i in range(args.accounts)]
    d = mptest.Daemon(name="bench-bus", workers=4, settings={
        "log_level": "info",
        "backfill": {"mode": "progressive", "bootstrap_max": args.messages},
        "bus": {"nats_url": nats.url, "stream": "MAILPULSE"},
    })
    d.add_instance("fix", [{"id": a, "generate": args.messages, "poll_interval": 3600}
                           for a in accounts])
    d.start()
    for a in accounts:
        d.wait_bootstrapped(a, ["INBOX", "Archive"], timeout=600)
    mptest.wait_until(lambda: d.get("/v1/status")["bus"]["lag"] == 0, 600,
                      message="first publish")
    total = d.get("/v1/status")["events"]["last_seq"]
    d.stop()
    print("outbox: %d events (%d accounts x %d messages); nats-server %s"
          % (total, args.accounts, args.messages, nats.url))
    print("%-12s %8s %10s %8s %9s %6s" % ("max_pending", "events", "events/s", "cpu s",
                                          "stored", "dups"))
    db = os.path.join(d.state_dir, "mailpulse.db")
    for pending in [int(p) for p in args.pending.split(",")]:
        for _ in range(args.rounds):
            client.delete_stream("MAILPULSE")
            with sqlite3.connect(db) as c:
                c.execute("UPDATE webhook_cursors SET cursor = 0 WHERE endpoint = '@bus'")
            d.settings["bus"]["max_pending"] = pending
            d.write_conf()
            t0 = time.monotonic()
            d.start()
            b = mptest.wait_until(
                lambda: (lambda s: s if s["lag"] == 0 and s["cursor"] >= total else None)(
                    d.get("/v1/status")["bus"]), 900, interval=0.02, message="caught up")
            elapsed = time.monotonic() - t0
            cpu = cpu_seconds(d.pid)
            d.stop()
            info = client.stream_info("MAILPULSE")
            client.add_durable("MAILPULSE", "bench")
            msgs = client.fetch_all("MAILPULSE", "bench")
            ids = [m.headers.get("Nats-Msg-Id") for m in msgs]
            print("%-12d %8d %10.0f %8.2f %9d %6d" % (
                pending, b["published"], b["published"] / elapsed, cpu,
                info["state"]["messages"], len(ids) - len(set(ids))))
    client.close()
    d.cleanup()
    nats.cleanup()


if __name__ == "__main__":
    main()
