#!/usr/bin/env python3
"""Benchmark of the scale-out pieces (prints figures; not a test, not run by
ctest).

1. Ingest: one daemon syncs a fixture account of N messages (default
   10,000, bootstrap_max = N so it is one bootstrap, ingest_batch_size
   500) on the SQLite store and then on a private PostgreSQL; printed: the
   seconds from start to the last message stored, messages/s, and the
   PostgreSQL/SQLite ratio (best of --rounds runs each).
2. Takeover: three nodes share --accounts fixture accounts on PostgreSQL
   with lease_ttl = --ttl; one node is SIGKILLed right after it renewed
   its leases, and the time until every one of its accounts is held by a
   live node is printed (the lease TTL is the bound: the leases must run
   out first), then the same after a clean stop (leases given back).

Usage: tests/bench/bench_cluster.py [--build build] [--messages 10000]
       [--rounds 2] [--accounts 30] [--ttl 3]
"""

import argparse
import os
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))


def setup_env(build):
    build = os.path.abspath(build)
    paths = {"MAILPULSED": os.path.join(build, "core", "daemon", "mailpulsed"),
             "MAILPULSECTL": os.path.join(build, "core", "cli", "mailpulsectl"),
             "MP_BUILD_DRIVER_DIR": os.path.join(build, "drivers"),
             "MP_TEST_DRIVER_DIR": os.path.join(build, "tests", "drivers")}
    for key, value in paths.items():
        os.environ.setdefault(key, value)
    if not os.path.exists(os.environ["MAILPULSED"]):
        sys.exit("no daemon at %s (build first, or --build)" % os.environ["MAILPULSED"])


def pg_settings(d, pg, db):
    url_file = d.path("pg.url")
    with open(url_file, "w") as f:
        f.write(pg.url(db) + "\n")
    os.chmod(url_file, 0o600)
    return {"backend": "postgresql", "url_file": url_file}


def stored(pg, db, d):
    """Messages stored: through psql for PostgreSQL, the API otherwise."""
    if pg is not None:
        return int(pg.psql("SELECT count(*) FROM messages", db=db).strip() or 0)
    acct = d.account("big")
    return sum(f["messages"] for f in acct.get("folders", []))


def ingest_once(mptest, pg, messages):
    db = pg.create_db("bench") if pg is not None else None
    d = mptest.Daemon(name="bench-ingest", workers=4, settings={
        "backfill": {"mode": "progressive", "bootstrap_max": messages, "batch_size": 500},
        "sync": {"ingest_batch_size": 500},
        "log_level": "info"})
    if pg is not None:
        d.settings["store"] = pg_settings(d, pg, db)
        d.write_conf()
    # generate: N messages over INBOX and Archive
    d.add_instance("fix", [{"id": "big", "generate": messages, "poll_interval": 3600}])
    try:
        t0 = time.monotonic()
        d.start()
        mptest.wait_until(lambda: stored(pg, db, d) >= messages, timeout=600, interval=0.05,
                          message="%d messages stored" % messages)
        return time.monotonic() - t0
    finally:
        d.stop()
        d.cleanup()


def bench_ingest(mptest, pgserver, messages, rounds):
    pg = pgserver.PgServer().start()
    try:
        best = {}
        for name, server in (("sqlite", None), ("postgresql", pg)):
            times = [ingest_once(mptest, server, messages) for _ in range(rounds)]
            best[name] = min(times)
            print("ingest %-10s %6d messages: %6.2f s (%7.0f msg/s), runs %s" %
                  (name, messages, best[name], messages / best[name],
                   ", ".join("%.2f" % t for t in times)), flush=True)
        print("ingest ratio postgresql/sqlite: %.2f" % (best["postgresql"] / best["sqlite"]))
    finally:
        pg.stop()


def owners(pg, db):
    rows = pg.psql("SELECT l.account, n.name FROM mp_lease l JOIN mp_node n ON "
                   "n.owner = l.owner WHERE l.expires_at > now() AND n.expires_at > now()",
                   db=db)
    return dict(line.split("|") for line in rows.splitlines() if line.strip())


def bench_takeover(mptest, pgserver, accounts, ttl):
    pg = pgserver.PgServer().start()
    nodes = {}
    try:
        db = pg.create_db("takeover")
        ids = ["a%03d" % i for i in range(accounts)]
        for name in ("n1", "n2", "n3"):
            d = mptest.Daemon(name="bench-" + name, settings={"log_level": "info"})
            d.settings["store"] = pg_settings(d, pg, db)
            d.settings["cluster"] = {"node": name, "lease_ttl": ttl}
            d.write_conf()
            d.add_instance("fix", [{"id": a, "generate": 10, "poll_interval": 30}
                                   for a in ids])
            nodes[name] = d
        for d in nodes.values():
            d.start()
        mptest.wait_until(lambda: len(owners(pg, db)) == accounts, timeout=120,
                          message="all accounts owned")
        spread = sorted(list(owners(pg, db).values()).count(n) for n in nodes)
        print("takeover: %d accounts on 3 nodes, spread %s, lease TTL %d s" %
              (accounts, spread, ttl), flush=True)

        # SIGKILL just after n1 renewed (worst case: a whole TTL to wait).
        victim = [a for a, n in owners(pg, db).items() if n == "n1"]
        before = pg.psql("SELECT max(l.expires_at) FROM mp_lease l JOIN mp_node n ON "
                         "n.owner = l.owner WHERE n.name = 'n1'", db=db).strip()
        mptest.wait_until(lambda: pg.psql(
            "SELECT max(l.expires_at) FROM mp_lease l JOIN mp_node n ON n.owner = l.owner "
            "WHERE n.name = 'n1'", db=db).strip() != before, timeout=ttl * 2, interval=0.01,
            message="n1 renewing")
        nodes["n1"].kill()
        t0 = time.monotonic()
        mptest.wait_until(lambda: all(owners(pg, db).get(a) in ("n2", "n3") for a in victim),
                          timeout=ttl * 10, interval=0.02, message="takeover")
        print("takeover after SIGKILL right after a renewal: %d accounts in %.2f s "
              "(TTL %d s)" % (len(victim), time.monotonic() - t0, ttl), flush=True)

        victim = [a for a, n in owners(pg, db).items() if n == "n2"]
        t0 = time.monotonic()
        nodes["n2"].stop()
        stopped = time.monotonic() - t0
        mptest.wait_until(lambda: all(owners(pg, db).get(a) == "n3" for a in victim),
                          timeout=ttl * 10, interval=0.02, message="takeover after stop")
        print("takeover after a clean stop: %d accounts in %.2f s after the stop "
              "(stop took %.2f s)" % (len(victim), time.monotonic() - t0 - stopped, stopped),
              flush=True)
    finally:
        for d in nodes.values():
            try:
                if d.proc is not None and d.proc.poll() is None:
                    d.proc.send_signal(signal.SIGCONT)
                d.stop()
            except Exception:
                pass
            d.cleanup()
        pg.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(TOP, "build"))
    ap.add_argument("--messages", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--accounts", type=int, default=30)
    ap.add_argument("--ttl", type=int, default=3)
    ap.add_argument("--skip-ingest", action="store_true")
    ap.add_argument("--skip-takeover", action="store_true")
    args = ap.parse_args()
    setup_env(args.build)
    import mptest
    import pgserver
    print("load before: %s" % open("/proc/loadavg").read().strip(), flush=True)
    if not args.skip_ingest:
        bench_ingest(mptest, pgserver, args.messages, args.rounds)
    if not args.skip_takeover:
        bench_takeover(mptest, pgserver, args.accounts, args.ttl)
    print("load after: %s" % open("/proc/loadavg").read().strip())


if __name__ == "__main__":
    main()
