#!/usr/bin/env python3
"""Scale benchmark: one mailpulsed with N push-live IMAP accounts against a
private local Dovecot (prints figures; not a test, not run by ctest).

For each N of --accounts (default 1000,5000,10000) it starts a fresh
Dovecot with N users (INBOX with 20 messages, Sent with 5, written straight
into the Maildirs; Dovecot configured for many connections, see
DOVECOT_SCALE below) and a fresh mailpulsed with N accounts (imap.so, push
on, folders INBOX and Sent), and reports:

- time from start until every account is push-live (/v1/accounts counts)
  and until every folder is bootstrapped (the daemon's "bootstrapped" log
  lines, 2 per account);
- RSS: the fixed part (the same daemon with 0 accounts, measured once) and
  per account ((RSS at N, settled) - fixed) / N;
- threads and descriptors at their peak during start and when settled;
- idle CPU over --idle seconds (default 60) once everything is settled
  (at least 75 s after start-up and the descriptor count steady for 15 s:
  the first syncs' connections are closed after imap.so's sync_idle_close);
- push latency: APPEND on another connection -> message.new on the SSE
  stream, p50/p99 over --samples APPENDs spread over 20 accounts, against
  the floor at that N: a bare Python IDLE connection per sampled account
  receiving "* N EXISTS" for the same APPENDs;
- API answer times: /v1/accounts?limit=100, /v1/status, /metrics;
- accounts `fatal` (and why), and the other statuses and push states.

Everything (Dovecot, mailpulsed, temporary directories, the raised inotify
limit) is undone at the end, on failure and on Ctrl-C/SIGTERM.

Usage: tests/bench/bench_scale.py [--build build] [--accounts 1000,5000,10000]
       [--idle 60] [--settle-min 75] [--settle-max 180] [--samples 60] [--tls]
       [--timeout 600]
       [--work-dir DIR]
       [--connect-rate N] [--connect-concurrency N] [--keep-going]
Needs: a built tree (mailpulsed, drivers/imap.so) and dovecot-imapd
(packaging/deps.sh test). Run as root for the inotify limit and for more
than ~1,000 accounts (Dovecot's users are mapped to `nobody`).
"""

import argparse
import http.client
import json
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
sys.path.insert(0, HERE)

from bench_imap import cpu_seconds, log, pct, setup_env  # noqa: E402

PASSWORD = "bench-scale-secret"
INBOX_MESSAGES = 20
SENT_MESSAGES = 5
SAMPLE_ACCOUNTS = 20

# What Dovecot needs to carry this many connections (also in README,
# "Benchmark (10,000 accounts)"): long-lived imap and imap-login processes
# serving many clients each, client limits above the connection count for
# the master, anvil and auth, and no hibernation of NOTIFY/IDLE sessions
# (imap_hibernate_timeout = 0, Dovecot's default, said explicitly).
DOVECOT_SCALE = """
default_client_limit = 20000
imap_hibernate_timeout = 0
"""
INOTIFY = {"max_user_instances": 65536, "max_user_watches": 1048576}


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def threads_of(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


def fds_of(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def user_name(i):
    return "u%05d" % i


# --------------------------------------------------------------------------
# Dovecot with many users

def scale_dovecot(n, work_dir):
    """A Dovecot (not started) with users u00000.. and their mail."""
    import dovecot

    class ScaleDovecot(dovecot.Dovecot):
        def _write_conf(self):
            super()._write_conf()
            with open(self.conf) as f:
                text = f.read()
            subs = [("mail_max_userip_connections = 512", "mail_max_userip_connections = 100"),
                    ("  process_min_avail = 0\n  service_count = 1\n",
                     "  process_min_avail = 0\n  service_count = 0\n  client_limit = 4000\n"),
                    ("service imap {\n  process_limit = 1024\n}",
                     "service imap {\n  service_count = 0\n  client_limit = 50\n"
                     "  process_limit = 1000\n}"),
                    ("service anvil {\n  chroot =\n", "service anvil {\n  chroot =\n"
                     "  client_limit = 20000\n"),
                    ("service auth {\n", "service auth {\n  client_limit = 20000\n")]
            for old, new in subs:
                if old not in text:
                    raise RuntimeError("dovecot.py's configuration changed: %r not found" % old)
                text = text.replace(old, new)
            with open(self.conf, "w") as f:
                f.write(text + DOVECOT_SCALE)

        def _write_passwd(self):
            # one line per user, as the base class, without a dict lookup each
            with open(self.passwd, "w") as f:
                for user in self.users:
                    f.write("%s:{PLAIN}%s:%d:%d::%s::\n"
                            % (user, PASSWORD, self.mail_uid, self.mail_gid, self.home(user)))
            os.chmod(self.passwd, 0o644)

        def ensure_folder(self, user, folder):
            # the Maildirs are written by fill_mail() in bulk
            return self.folder_dir(user, folder)

    users = {user_name(i): PASSWORD for i in range(n)}
    server = ScaleDovecot(name="bench-scale-dovecot", users=users, start=False,
                          folders=("INBOX", "Sent"),
                          directory=tempfile.mkdtemp(prefix="bench-scale-dovecot-",
                                                     dir=work_dir))
    fill_mail(server, n)
    return server


def message_bytes(user, folder, k):
    date = 1700000000 + k * 3600
    body = ("Line %d of a benchmark message for %s in %s.\r\n" % (k, user, folder)) * 6
    return ("Message-ID: <bench-%s-%s-%d@mailpulse.test>\r\n"
            "Date: %s\r\n"
            "From: Sender %d <sender%d@example.org>\r\n"
            "To: %s@localhost\r\n"
            "Subject: Benchmark %s %d\r\n"
            "MIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            "\r\n%s" % (user, folder, k, time.strftime("%a, %d %b %Y %H:%M:%S +0000",
                                                        time.gmtime(date)),
                        k, k, user, folder, k, body)).encode()


def fill_mail(server, n):
    """Maildir++ files written directly (Dovecot indexes them on first
    access): 20 messages in INBOX and 5 in Sent per user, then one chown
    of the whole tree. 10,000 users take seconds this way; 250,000
    APPENDs would take many minutes."""
    t0 = time.monotonic()
    for i in range(n):
        user = user_name(i)
        home = server.home(user)
        for folder, count in (("INBOX", INBOX_MESSAGES), ("Sent", SENT_MESSAGES)):
            d = server.folder_dir(user, folder)
            for sub in ("cur", "new", "tmp"):
                os.makedirs(os.path.join(d, sub), mode=0o700)
            for k in range(count):
                raw = message_bytes(user, folder, k)
                name = "%d.M%dP%d.bench,S=%d:2,S" % (1700000000 + k * 3600, k, i, len(raw))
                fd = os.open(os.path.join(d, "cur", name), os.O_WRONLY | os.O_CREAT, 0o600)
                os.write(fd, raw)
                os.close(fd)
        with open(os.path.join(home, "subscriptions"), "w") as f:
            f.write("Sent\n")
    if server.root:
        subprocess.run(["chown", "-R", "%d:%d" % (server.mail_uid, server.mail_gid),
                        server.mail_root], check=True)
    log("    Dovecot: %d users, %d messages written in %.1f s"
        % (n, n * (INBOX_MESSAGES + SENT_MESSAGES), time.monotonic() - t0))


class InotifyLimits:
    """fs.inotify limits raised for the run (root only), restored after:
    each Dovecot session watching a mailbox holds inotify watches."""

    def __init__(self):
        self.saved = {}

    def raise_(self):
        if os.geteuid() != 0:
            log("    note: not root, fs.inotify limits left as they are")
            return
        for key, want in INOTIFY.items():
            path = "/proc/sys/fs/inotify/" + key
            try:
                with open(path) as f:
                    old = int(f.read())
                if old < want:
                    with open(path, "w") as f:
                        f.write(str(want))
                    self.saved[path] = old
            except OSError as exc:
                log("    note: cannot raise %s: %s" % (path, exc))

    def restore(self):
        for path, old in self.saved.items():
            try:
                with open(path, "w") as f:
                    f.write(str(old))
            except OSError as exc:
                log("    warning: cannot restore %s to %d: %s" % (path, old, exc))
        self.saved = {}


# --------------------------------------------------------------------------
# mailpulsed

def make_daemon(work_dir, name):
    import dovecot
    import mptest
    tempfile.tempdir = work_dir
    try:
        return mptest.Daemon(name=name, driver_dir=dovecot.imap_driver_dir(), workers=4,
                             settings={"log_level": "info"})
    finally:
        tempfile.tempdir = None


def add_accounts(d, server, n, tls, instance_keys=None):
    """One instance with n accounts sharing one password file."""
    secret = json.dumps(d.write_secret("password", PASSWORD.encode()))
    port = server.imaps_port if tls else server.imap_port
    mode = "implicit" if tls else "none"
    ca = ("    ca_file: %s\n" % json.dumps(server.ca.pem)) if tls else ""
    parts = ["driver: imap\n"]
    parts += ["%s: %d\n" % kv for kv in sorted((instance_keys or {}).items())]
    parts.append("accounts:\n")
    for i in range(n):
        parts.append("  - id: %s\n    host: localhost\n    port: %d\n    tls: %s\n"
                     "    username: %s\n    password_file: %s\n%s"
                     "    folders: [INBOX, Sent]\n    push: auto\n    poll_interval: 3600\n"
                     % (user_name(i), port, mode, user_name(i), secret, ca))
    d.write_instance("bench", "".join(parts))


def fixed_rss(args):
    """RSS of the daemon with imap.so loaded and no account (one disabled)."""
    d = make_daemon(args.work_dir, "bench-scale-fixed")
    try:
        d.write_instance("bench", "driver: imap\naccounts:\n  - id: none\n    host: localhost\n"
                         "    username: none\n    password_file: /nonexistent\n"
                         "    enabled: false\n")
        d.start(timeout=60)
        time.sleep(5)
        return rss_kib(d.pid), threads_of(d.pid), fds_of(d.pid)
    finally:
        d.stop()
        d.cleanup()


class SSEArrivals(threading.Thread):
    """Arrival time of every message.new on one SSE stream, by subject."""

    def __init__(self, daemon):
        super().__init__(daemon=True)
        self.arrivals = {}
        self.cond = threading.Condition()
        self.stream = daemon.sse("/v1/events?types=message.new&after=%d" % daemon.last_seq(),
                                 timeout=30)

    def run(self):
        import http.client
        while True:
            try:
                ev = self.stream.next_event(timeout=86400)
            except (EOFError, OSError, AttributeError, ValueError, http.client.HTTPException):
                return
            if ev is None or ev["event"] != "message.new":
                continue
            now = time.monotonic()
            subject = json.loads(ev["data"]).get("subject")
            with self.cond:
                self.arrivals[subject] = now
                self.cond.notify_all()

    def wait(self, subject, timeout):
        with self.cond:
            self.cond.wait_for(lambda: subject in self.arrivals, timeout)
            return self.arrivals.get(subject)


def measure_latency(d, server, n, samples):
    import dovecot
    users = [user_name(i * n // min(n, SAMPLE_ACCOUNTS)) for i in range(min(n, SAMPLE_ACCOUNTS))]
    watchers, appenders, exists = {}, {}, {}
    sse = SSEArrivals(d)
    sse.start()
    mp, floor, lost = [], [], 0
    try:
        for u in users:
            watchers[u] = dovecot.IdleWatcher(server, "INBOX", user=u, tls=False)
            appenders[u] = server.connect(u, tls=False)
            exists[u] = server.status("INBOX", user=u)["MESSAGES"]
        for i in range(samples):
            u = users[i % len(users)]
            subject = "Latency probe %d %d" % (os.getpid(), i)
            msg = dovecot.make_message(200000 + i, int(time.time()), tag="scale-lat",
                                       subject=subject, to="%s@localhost" % u)
            dovecot.Dovecot.append_on(appenders[u], "INBOX", msg)
            t0 = time.monotonic()
            exists[u] += 1
            got = watchers[u].wait_exists(10)
            while got is not None and got[1] < exists[u]:
                got = watchers[u].wait_exists(10)
            if got is not None:
                floor.append((got[0] - t0) * 1000)
            t_mp = sse.wait(subject, 30)
            if t_mp is None:
                lost += 1
            else:
                mp.append((t_mp - t0) * 1000)
            time.sleep(0.1)
    finally:
        for w in watchers.values():
            w.close()
        for a in appenders.values():
            try:
                a.logout()
            except Exception:  # noqa: BLE001 - best effort at the end
                pass
        sse.stream.close()
    return mp, floor, lost


def report_latency(mp, floor, lost):
    def line(name, values):
        if not values:
            return "    %-24s no samples" % name
        return ("    %-24s p50 %7.1f ms   p99 %7.1f ms   max %7.1f ms   (n=%d)"
                % (name, pct(values, 50), pct(values, 99), max(values), len(values)))
    log(line("push latency mailpulse", mp))
    log(line("floor (bare IDLE)", floor))
    if lost:
        log("    %d message.new events did not arrive within 30 s" % lost)
    if mp and floor:
        log("    difference               p50 %+7.1f ms   p99 %+7.1f ms"
            % (pct(mp, 50) - pct(floor, 50), pct(mp, 99) - pct(floor, 99)))


def api_times(d, rounds=20):
    out = {}
    for path in ("/v1/accounts?limit=100", "/v1/status", "/metrics"):
        times = []
        for _ in range(rounds):
            t0 = time.monotonic()
            status, _, _ = d.request("GET", path)
            times.append((time.monotonic() - t0) * 1000)
            if status != 200:
                raise RuntimeError("GET %s -> %d" % (path, status))
        out[path] = times
    return out


def counts_of(d):
    return d.get("/v1/accounts?limit=1", timeout=10)["counts"]


def fatal_reasons(d):
    reasons = {}
    after = None
    while True:
        q = "/v1/accounts?status=fatal&limit=1000" + ("&after=" + after if after else "")
        page = d.get(q, timeout=30)
        for a in page["accounts"]:
            reasons[a.get("last_error")] = reasons.get(a.get("last_error"), 0) + 1
        after = page["next_after"]
        if not after:
            return reasons


class LogCounter:
    """Counts "bootstrapped (" lines of the daemon's log as it grows and
    remembers the stamp of the last one."""

    def __init__(self, path):
        self.path = path
        self.offset = 0
        self.count = 0
        self.last_stamp = None
        self.tail = b""

    def update(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return
        self.offset += len(data)
        data = self.tail + data
        lines = data.split(b"\n")
        self.tail = lines.pop()
        for line in lines:
            if b": bootstrapped (" in line:
                self.count += 1
                self.last_stamp = line.split(b" ", 1)[0].decode()


def stamp_elapsed(stamp, t0_wall):
    try:
        h, m, rest = stamp.split(":")
        of_day = int(h) * 3600 + int(m) * 60 + float(rest)
    except (AttributeError, ValueError):
        return None
    elapsed = of_day - (t0_wall % 86400)
    return elapsed + 86400 if elapsed < -43200 else elapsed


def run_n(args, n, fixed):
    import mptest
    log("\n== %d accounts (%s) ==" % (n, "TLS" if args.tls else "plaintext"))
    server = scale_dovecot(n, args.work_dir)
    d = None
    try:
        server.start(timeout=60)
        d = make_daemon(args.work_dir, "bench-scale-%d" % n)
        keys = {k: v for k, v in (("connect_rate", args.connect_rate),
                                  ("connect_concurrency", args.connect_concurrency))
                if v is not None}
        add_accounts(d, server, n, args.tls, keys)
        logc = LogCounter(d.log_path)
        peak_threads = peak_fds = peak_rss = 0
        t_live = t_boot = None
        t0_wall = time.time()
        t0 = time.monotonic()
        d.start(wait=False)
        d.wait_ready(timeout=120)
        t_api = time.monotonic() - t0
        last_print = 0
        counts = {}
        while time.monotonic() - t0 < args.timeout:
            if not d.running():
                raise RuntimeError("mailpulsed exited (%s)" % d.proc.returncode)
            peak_threads = max(peak_threads, threads_of(d.pid))
            peak_fds = max(peak_fds, fds_of(d.pid))
            peak_rss = max(peak_rss, rss_kib(d.pid))
            try:
                counts = counts_of(d)
            except Exception as exc:  # noqa: BLE001 - a slow answer is a figure too
                counts = {"error": str(exc)}
            logc.update()
            now = time.monotonic() - t0
            if t_live is None and counts.get("push", {}).get("live") == n:
                t_live = now
            if t_boot is None and logc.count >= 2 * n:
                t_boot = stamp_elapsed(logc.last_stamp, t0_wall) or now
            if t_live is not None and t_boot is not None:
                break
            if now - last_print >= 10:
                last_print = now
                log("    %5.0f s: push %s, status %s, folders bootstrapped %d/%d, threads %d,"
                    " fds %d" % (now, counts.get("push", counts.get("error")),
                                 counts.get("status"), logc.count, 2 * n, threads_of(d.pid),
                                 fds_of(d.pid)))
            time.sleep(0.5)
        log("    API first answer after %.2f s" % t_api)
        log("    all push-live:    %s" % ("%.1f s" % t_live if t_live is not None else
                                         "NOT within %d s (push %s)" % (args.timeout,
                                                                        counts.get("push"))))
        log("    all bootstrapped: %s" % ("%.1f s" % t_boot if t_boot is not None else
                                         "NOT within %d s (%d of %d folders)"
                                         % (args.timeout, logc.count, 2 * n)))
        # Settle before the idle window: connections opened for the first
        # syncs are closed after the driver's idle time (imap.so's
        # sync_idle_close, 30 s by default), and the daemon still works
        # (the first deltas) for a minute or more after the last folder is
        # bootstrapped, so wait at least --settle-min, until the
        # descriptor count has not dropped for 15 s and the daemon used
        # under a tenth of a core over the last 15 s (at most
        # --settle-max).
        t_settle = time.monotonic()
        low, low_at = fds_of(d.pid), time.monotonic()
        cpu_marks = [(time.monotonic(), cpu_seconds(d.pid))]
        busy = 1.0
        while time.monotonic() - t_settle < args.settle_max:
            time.sleep(1)
            now_fds = fds_of(d.pid)
            if now_fds < low:
                low, low_at = now_fds, time.monotonic()
            cpu_marks.append((time.monotonic(), cpu_seconds(d.pid)))
            while cpu_marks[-1][0] - cpu_marks[0][0] > 15:
                cpu_marks.pop(0)
            span = cpu_marks[-1][0] - cpu_marks[0][0]
            busy = (cpu_marks[-1][1] - cpu_marks[0][1]) / span if span >= 14 else 1.0
            if time.monotonic() - t_settle >= args.settle_min and \
                    time.monotonic() - low_at >= 15 and busy < 0.1:
                break
        log("    settled after %.0f s more (descriptors %d, %.0f%% of a core over the last"
            " 15 s)" % (time.monotonic() - t_settle, fds_of(d.pid), busy * 100))
        cpu0, w0 = cpu_seconds(d.pid), time.monotonic()
        time.sleep(args.idle)
        idle_cpu = (cpu_seconds(d.pid) - cpu0) / (time.monotonic() - w0) * 100
        rss, threads, fds = rss_kib(d.pid), threads_of(d.pid), fds_of(d.pid)
        peak_rss = max(peak_rss, rss)
        log("    RSS settled %.1f MiB (peak %.1f MiB); fixed %.1f MiB; per account %.1f KiB"
            % (rss / 1024, peak_rss / 1024, fixed[0] / 1024, (rss - fixed[0]) / n))
        log("    threads: peak %d, settled %d (0 accounts: %d)" % (peak_threads, threads,
                                                                  fixed[1]))
        log("    descriptors: peak %d, settled %d (%.2f per account; 0 accounts: %d)"
            % (peak_fds, fds, (fds - fixed[2]) / n, fixed[2]))
        log("    idle CPU over %d s: %.2f%% of a core" % (args.idle, idle_cpu))
        try:
            report_latency(*measure_latency(d, server, n, args.samples))
        except (OSError, RuntimeError, http.client.HTTPException, mptest.ApiError) as exc:
            log("    push latency: not measured (%s: %s)" % (type(exc).__name__, exc))
        try:
            for path, times in api_times(d).items():
                log("    GET %-24s median %6.1f ms   max %6.1f ms"
                    % (path, statistics.median(times), max(times)))
            counts = counts_of(d)
            log("    status %s; push %s" % (counts.get("status"), counts.get("push")))
            fatal = counts.get("status", {}).get("fatal", 0)
            log("    fatal: %d" % fatal)
            if fatal:
                for why, k in sorted(fatal_reasons(d).items(), key=lambda kv: -kv[1]):
                    log("      %6d  %s" % (k, why))
        except (OSError, RuntimeError, http.client.HTTPException, mptest.ApiError) as exc:
            log("    API: no answer (%s: %s); accounts fatal: unknown"
                % (type(exc).__name__, exc))
        spin = os.path.getsize(d.log_path)
        log("    daemon log: %.1f MB; load: %s" % (spin / 1e6, os.getloadavg()))
    finally:
        if d is not None:
            try:
                d.stop(timeout=120)
            except AssertionError as exc:
                log("    %s" % exc)
            d.cleanup()
        server.cleanup()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build", default=os.path.join(TOP, "build"))
    p.add_argument("--accounts", default="1000,5000,10000",
                   help="comma-separated numbers of accounts, one run each")
    p.add_argument("--idle", type=int, default=60, help="seconds of idle CPU measurement")
    p.add_argument("--samples", type=int, default=60, help="APPENDs for the push latency")
    p.add_argument("--settle-min", type=int, default=75,
                   help="shortest wait after start-up before the idle window (seconds; "
                        "imap.so closes sync connections after sync_idle_close, 30 s by default)")
    p.add_argument("--settle-max", type=int, default=180,
                   help="longest wait for the descriptor count and CPU to settle before the idle "
                        "window (seconds)")
    p.add_argument("--tls", action="store_true", help="implicit TLS instead of plaintext")
    p.add_argument("--timeout", type=int, default=600,
                   help="seconds to wait for all push-live and bootstrapped")
    p.add_argument("--work-dir", default=None,
                   help="where Dovecot's mail and mailpulsed's state go (default: the "
                        "system's temporary directory)")
    p.add_argument("--connect-rate", type=int, default=None,
                   help="imap.so instance key connect_rate (default: the driver's)")
    p.add_argument("--connect-concurrency", type=int, default=None,
                   help="imap.so instance key connect_concurrency (default: the driver's)")
    p.add_argument("--keep-going", action="store_true",
                   help="go on with the next N when one fails")
    args = p.parse_args()
    try:
        sizes = [int(x) for x in args.accounts.split(",") if x.strip()]
    except ValueError:
        p.error("--accounts: comma-separated integers, e.g. 1000,5000")
    if not sizes or min(sizes) < 1:
        p.error("--accounts: at least one positive number")
    setup_env(args.build)

    def on_term(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)
    signal.signal(signal.SIGTERM, on_term)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:   # Dovecot inherits it
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    import dovecot
    inotify = InotifyLimits()
    log("bench_scale: %s accounts, %s, descriptor limit %d, %d cores, load %s"
        % (args.accounts, "TLS" if args.tls else "plaintext", hard, os.cpu_count(),
           os.getloadavg()))
    try:
        inotify.raise_()
        fixed = fixed_rss(args)
        log("    0 accounts: RSS %.1f MiB, %d threads, %d descriptors"
            % (fixed[0] / 1024, fixed[1], fixed[2]))
        for n in sizes:
            try:
                run_n(args, n, fixed)
            except (RuntimeError, AssertionError, OSError) as exc:
                log("    %d accounts: FAILED: %s" % (n, exc))
                if not args.keep_going:
                    raise
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        sys.exit(130)
    finally:
        import mptest
        for d in list(mptest._daemons):
            d.cleanup()
        dovecot.cleanup_all()
        inotify.restore()


if __name__ == "__main__":
    main()
