#!/usr/bin/env python3
"""The packaging pass's install test (tests/packaging/pass.sh, as root):
the packages built by packaging/build-debs.sh, installed and used the way
an administrator would, then purged.

1. `apt-get install ./*.deb` (every package, -dbgsym included); the
   mailpulse system user, its state directory, the conffile, the empty
   plugins.d and the enabled unit are there; the virtual ABI package is
   provided.
2. `mailpulsed --check-config` on the shipped default, as the mailpulse user.
3. An IMAP instance against a private Dovecot (tests/integration/dovecot.py)
   in /etc/mailpulse/plugins.d, its password in an owner-only file; the
   installed daemon runs as the mailpulse user with the shipped
   /etc/mailpulse/mailpulsed.conf (TCP listener off, the unix socket only);
   the installed mailpulsectl, as the mailpulse user and with no socket
   option (it finds the socket through the installed config), sees the
   account bootstrap every message, a new message arrive by push and a
   raw body byte-equal to Dovecot's.
4. sdk/examples/hello, as shipped in /usr/share/doc/mailpulse-driver-dev,
   built out of tree with `pkg-config mailpulse-driver` only, installed to
   its `driverdir`, enabled in plugins.d and loaded by a reload (SIGHUP) of
   the running daemon; its account syncs.
5. `apt-get purge` of every package; comparing file system listings taken
   before the install and after the purge, nothing is left but the files
   the test created as the administrator (dpkg keeps those, and the
   directories holding them) and the mailpulse user (Debian policy keeps
   system users). Then the test removes its own files.

Usage: installed.py DEBS_DIR
"""

import glob
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import dovecot  # noqa: E402  the integration tests' private Dovecot
import mptest  # noqa: E402  render_instance (plugins.d YAML)

USER = "mailpulse"
ETC = "/etc/mailpulse"
CONF = ETC + "/mailpulsed.conf"
PLUGINS = ETC + "/plugins.d"
STATE = "/var/lib/mailpulse"
SOCKET = STATE + "/mailpulsed.sock"
DAEMON = "/usr/sbin/mailpulsed"
CTL = "/usr/bin/mailpulsectl"
GENERATED = 25
TIMEOUT = 60

# Watched for leftovers; package databases and caches are not.
WATCHED = ("/etc", "/usr", "/var/lib", "/var/log", "/opt", "/srv")
IGNORED = ("/var/lib/dpkg", "/var/lib/apt", "/var/log/apt", "/var/log/dpkg.log",
           "/var/log/journal")
# Written by systemd-sysusers when it adds the user (backups, lock), which
# policy keeps along with the user.
ACCOUNT_FILES = {"/etc/passwd-", "/etc/group-", "/etc/shadow-", "/etc/gshadow-",
                 "/etc/.pwd.lock"}

T0 = time.monotonic()


def say(text):
    print("[%5.1fs] %s" % (time.monotonic() - T0, text), flush=True)


def fail(text):
    raise SystemExit("FAIL: " + text)


def run(args, user=None, check=True, text=True, **kw):
    """Run a command (as `user` with its own group only, when given) and
    return its CompletedProcess; a failure shows the command's output."""
    extra = {}
    if user:
        pw = pwd.getpwnam(user)
        extra = dict(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[],
                     env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": pw.pw_dir,
                          "LANG": "C.UTF-8"}, cwd="/")
    extra.update(kw)
    p = subprocess.run(args, capture_output=True, text=text, **extra)
    if check and p.returncode != 0:
        fail("%s exited %d\n--- stdout\n%s--- stderr\n%s"
             % (" ".join(args), p.returncode, p.stdout, p.stderr))
    return p


def apt(*args):
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    # Waits for the dpkg lock: other jobs on the machine may be installing.
    return run(["apt-get", "-y", "-q", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=300"]
               + list(args), env=env)


def wait_until(what, predicate, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.3)
    fail("timed out after %d s waiting for %s" % (timeout, what))


def listing():
    """Every path under WATCHED (not following links), as a set."""
    out = set()
    for root in WATCHED:
        for top, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if os.path.join(top, d) not in IGNORED]
            for name in dirs + files:
                path = os.path.join(top, name)
                if path not in IGNORED:
                    out.add(path)
    return out


def installed(pkg):
    p = run(["dpkg-query", "-W", "-f", "${db:Status-Status}", pkg], check=False)
    return p.returncode == 0 and p.stdout.strip() not in ("", "not-installed")


def owned_by_a_package(path):
    return run(["dpkg-query", "-S", path], check=False).returncode == 0


def ctl(*args):
    """The installed mailpulsectl as the mailpulse user: no -s, no -c, so
    it reads the installed config to find the socket."""
    return run([CTL, "--json"] + list(args), user=USER)


def ctl_json(*args):
    import json
    return json.loads(ctl(*args).stdout)


class Admin:
    """Files the test creates as the administrator would; they are what a
    purge must leave behind."""

    def __init__(self):
        self.paths = []

    def write(self, path, data, mode=0o644, owner=None):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
        os.chmod(path, mode)
        if owner:
            pw = pwd.getpwnam(owner)
            os.chown(path, pw.pw_uid, pw.pw_gid)
        if path not in self.paths:
            self.paths.append(path)
        return path

    def mkdir(self, path, mode, group=None):
        os.makedirs(path, exist_ok=True)
        os.chmod(path, mode)
        if group:
            os.chown(path, 0, pwd.getpwnam(group).pw_gid)
        if path not in self.paths:
            self.paths.append(path)

    def remove(self):
        for path in reversed(self.paths):
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            elif os.path.lexists(path):
                os.unlink(path)


def start_daemon(log_path):
    pw = pwd.getpwnam(USER)
    log = open(log_path, "w")
    proc = subprocess.Popen([DAEMON, "-c", CONF], user=pw.pw_uid, group=pw.pw_gid,
                            extra_groups=[], stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, cwd="/",
                            env={"PATH": "/usr/sbin:/usr/bin", "HOME": pw.pw_dir})

    def up():
        if proc.poll() is not None:
            fail("mailpulsed exited %d at start:\n%s" % (proc.returncode, open(log_path).read()))
        if not os.path.exists(SOCKET):
            return False
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(SOCKET)
                return True
            except OSError:
                return False
    wait_until("the daemon's socket %s" % SOCKET, up)
    return proc


def folder(account, name):
    for f in ctl_json("account", account)["folders"]:
        if f["name"] == name:
            return f
    return None


def message_ids(account, folder_name):
    body = ctl_json("messages", account, "--folder", folder_name, "--limit", "200")
    return {m["message_id"].strip("<>"): m["id"] for m in body["messages"] if m["message_id"]}


def check_installed(packages, driverdir):
    for pkg in packages:
        if not installed(pkg):
            fail("%s is not installed" % pkg)
    pw = pwd.getpwnam(USER)
    if pw.pw_uid >= 1000 or pw.pw_dir != STATE or "nologin" not in pw.pw_shell:
        fail("user %s: uid %d, home %s, shell %s (want a system user, home %s, nologin)"
             % (USER, pw.pw_uid, pw.pw_dir, pw.pw_shell, STATE))
    st = os.stat(STATE)
    if st.st_uid != pw.pw_uid or stat.S_IMODE(st.st_mode) != 0o750:
        fail("%s: owner uid %d mode %o (want %s, 0750: tmpfiles.d)"
             % (STATE, st.st_uid, stat.S_IMODE(st.st_mode), USER))
    if os.listdir(PLUGINS):
        fail("%s is not empty after the install: %s" % (PLUGINS, os.listdir(PLUGINS)))
    conffiles = run(["dpkg-query", "-W", "-f", "${Conffiles}", "mailpulsed"]).stdout
    if CONF not in conffiles:
        fail("%s is not a conffile of mailpulsed: %r" % (CONF, conffiles))
    provides = run(["dpkg-query", "-W", "-f", "${Provides}", "mailpulsed"]).stdout
    if not provides.startswith("mailpulse-driver-abi-1 (= "):
        fail("mailpulsed provides %r, not the versioned mailpulse-driver-abi-1" % provides)
    wants = "/etc/systemd/system/multi-user.target.wants/mailpulsed.service"
    if not os.path.islink(wants):
        fail("%s missing: the unit was not enabled at install" % wants)
    # The file trigger that restarts a running daemon when a driver package
    # is installed or upgraded (its effect needs a booted systemd).
    interest = "%s mailpulsed/noawait" % driverdir
    with open("/var/lib/dpkg/triggers/File") as f:
        if interest not in f.read().splitlines():
            fail("dpkg has no file trigger %r" % interest)
    for so in ("imap.so", "gmail.so", "graph.so", "emailengine.so"):
        if not os.path.isfile(os.path.join(driverdir, so)):
            fail("%s not in %s" % (so, driverdir))
    say("installed: %s; %s provides %s; user %s (uid %d); %s 0750"
        % (", ".join(packages), "mailpulsed", provides, USER, pw.pw_uid, STATE))


def header_abi():
    """MP_ABI_MAJOR and MP_ABI_MINOR of the installed SDK header."""
    nums = {}
    with open("/usr/include/mailpulse/driver.h") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[0] == "#define" and parts[1] in (
                    "MP_ABI_MAJOR", "MP_ABI_MINOR"):
                nums[parts[1]] = int(parts[2])
    return nums["MP_ABI_MAJOR"], nums["MP_ABI_MINOR"]


def fake_driver_deb(work, name, depends):
    """A minimal driver package (no files) with the given Depends."""
    root = os.path.join(work, name)
    os.makedirs(os.path.join(root, "DEBIAN"))
    with open(os.path.join(root, "DEBIAN", "control"), "w") as f:
        f.write("Package: %s\nVersion: 1.0\nArchitecture: all\nMaintainer: test <t@t>\n"
                "Depends: %s\nDescription: ABI test driver\n" % (name, depends))
    deb = root + ".deb"
    run(["dpkg-deb", "--root-owner-group", "-b", root, deb])
    return deb


def check_abi_relations(debs, packages):
    """The versioned virtual package, from the header, and what apt makes
    of it against the installed mailpulsed: a driver built for an older or
    the same minor installs, one for a newer minor or another major
    does not."""
    major, minor = header_abi()
    virtual = "mailpulse-driver-abi-%d" % major
    provides = run(["dpkg-query", "-W", "-f", "${Provides}", "mailpulsed"]).stdout.strip()
    if provides != "%s (= %d)" % (virtual, minor):
        fail("mailpulsed provides %r, want '%s (= %d)' (driver.h)" % (provides, virtual, minor))
    for deb, pkg in zip(debs, packages):
        if pkg.startswith("mailpulse-driver-") and pkg not in ("mailpulse-driver-dev",) \
                and not pkg.endswith("-dbgsym"):
            depends = run(["dpkg-deb", "-f", deb, "Depends"]).stdout
            if "%s (>= %d)" % (virtual, minor) not in depends:
                fail("%s depends on %r: no '%s (>= %d)'" % (pkg, depends, virtual, minor))
    cases = [("older minor", "%s (>= %d)" % (virtual, max(minor - 1, 0)), True),
             ("same minor", "%s (>= %d)" % (virtual, minor), True),
             ("newer minor", "%s (>= %d)" % (virtual, minor + 1), False),
             ("next major", "mailpulse-driver-abi-%d (>= 0)" % (major + 1), False)]
    with tempfile.TemporaryDirectory(prefix="pkgtest-abi-") as work:
        for what, depends, ok in cases:
            deb = fake_driver_deb(work, "mailpulse-driver-abitest", depends)
            p = run(["apt-get", "install", "-s", "-q", deb], check=False)
            if (p.returncode == 0) != ok:
                fail("apt-get install -s of a driver for the %s (Depends: %s) %s:\n%s%s"
                     % (what, depends, "failed" if ok else "succeeded", p.stdout, p.stderr))
            os.unlink(deb)
            shutil.rmtree(os.path.join(work, "mailpulse-driver-abitest"))
    say("ABI %d.%d: mailpulsed provides %s; apt accepts drivers for minor <= %d, refuses "
        "a newer minor and another major" % (major, minor, provides, minor))


def configure_imap(admin, server):
    """An IMAP instance in plugins.d, as the administrator writes it."""
    ca = admin.write(ETC + "/pkgtest-ca.pem", open(server.ca.pem).read())
    admin.mkdir(ETC + "/secrets", 0o750, group=USER)
    secret = admin.write(ETC + "/secrets/alice.password", server.users["alice"], mode=0o600,
                         owner=USER)
    acct = {"id": "alice", "host": "localhost", "port": server.imaps_port, "tls": "implicit",
            "username": "alice", "password_file": secret, "ca_file": ca,
            "folders": ["INBOX"]}
    admin.write(PLUGINS + "/pkgtest.yaml", mptest.render_instance("imap", [acct]))


def use_imap(server, generated):
    def inbox_full():
        f = folder("alice", "INBOX")
        return f if f and f["messages"] == GENERATED else None
    f = wait_until("alice's INBOX to hold %d messages" % GENERATED, inbox_full)
    ids = message_ids("alice", "INBOX")
    missing = [m.message_id for m in generated if m.message_id not in ids]
    if missing:
        fail("messages missing from the listing: %s" % missing[:5])
    say("mailpulsectl: alice's INBOX bootstrapped, %d messages" % f["messages"])

    # A body through the installed driver, byte for byte.
    first = generated[0]
    raw = run([CTL, "show", ids[first.message_id]], user=USER, text=False).stdout
    if raw.replace(b"\r\n", b"\n") != first.raw.replace(b"\r\n", b"\n"):
        fail("mailpulsectl show %s: %d bytes differ from Dovecot's %d"
             % (ids[first.message_id], len(raw), len(first.raw)))
    say("mailpulsectl show: the raw message equals Dovecot's (%d bytes)" % len(raw))

    # New mail by push (IDLE/NOTIFY through the installed imap.so).
    new = dovecot.make_message(9001, int(time.time()), tag="pkgtest-push")
    server.append("INBOX", new)
    wait_until("the appended message in the listing",
               lambda: new.message_id in message_ids("alice", "INBOX"))
    say("mailpulsectl: a message appended to INBOX arrived")


def use_sdk_example(admin, daemon):
    driverdir = run(["pkg-config", "--variable=driverdir", "mailpulse-driver"]).stdout.strip()
    cflags = run(["pkg-config", "--cflags", "mailpulse-driver"]).stdout.split()
    shipped = "/usr/share/doc/mailpulse-driver-dev/examples/hello/hello.c"
    with tempfile.TemporaryDirectory(prefix="pkgtest-hello-") as work:
        src = os.path.join(work, "hello.c")
        shutil.copy(shipped, src)
        out = os.path.join(work, "hello.so")
        run(["cc"] + cflags + ["-std=c17", "-Wall", "-Wextra", "-Werror", "-O2", "-fPIC",
                               "-fvisibility=hidden", "-shared", "-Wl,-z,defs", "-o", out,
                               src])
        dest = os.path.join(driverdir, "hello.so")
        run(["install", "-m", "0644", out, dest])
        admin.paths.append(dest)
    say("hello.so built out of tree with pkg-config only, installed to %s" % driverdir)
    admin.write(PLUGINS + "/hello.yaml", mptest.render_instance(
        "hello", [{"id": "demo", "greeting": "Hi from the package test", "messages": 5}]))
    daemon.send_signal(signal.SIGHUP)

    def demo_synced():
        accounts = {a["id"]: a for a in ctl_json("accounts")["accounts"]}
        if "demo" not in accounts:
            return None
        f = folder("demo", "INBOX")
        return f if f and f["messages"] == 5 else None
    wait_until("the hello driver's account to sync 5 messages", demo_synced)
    status = ctl("status").stdout
    if '"hello"' not in status or '"imap"' not in status:
        fail("mailpulsectl status does not list both drivers:\n%s" % status)
    say("reload: the daemon loaded hello.so; account demo synced 5 messages")


def main():
    if len(sys.argv) != 2:
        raise SystemExit("usage: installed.py DEBS_DIR")
    if os.geteuid() != 0:
        raise SystemExit("installed.py installs packages: run it as root")
    debs = sorted(glob.glob(os.path.join(os.path.abspath(sys.argv[1]), "*.deb")))
    if not debs:
        fail("no .deb files in %s (run packaging/build-debs.sh)" % sys.argv[1])
    packages = [run(["dpkg-deb", "-f", d, "Package"]).stdout.strip() for d in debs]
    for name in ("mailpulsed", "mailpulse-driver-imap", "mailpulse-driver-dev"):
        if name not in packages:
            fail("%s is not among the built packages %s" % (name, packages))

    stale = [p for p in packages if installed(p)]
    if stale:
        say("purging packages left by an earlier run: %s" % ", ".join(stale))
        apt("purge", *stale)
    for path in (ETC, STATE):
        if os.path.exists(path):
            fail("%s exists before the install (left by a source install or an earlier "
                 "run); remove it so the purge check means something" % path)

    before = listing()
    say("listing before the install: %d paths" % len(before))
    admin = Admin()
    server = daemon = None
    log_path = tempfile.mktemp(prefix="pkgtest-mailpulsed-", suffix=".log")
    purged = False
    try:
        apt("install", *debs)
        if os.path.isdir("/run/systemd/system"):
            # A booted systemd started the unit at install; this test runs
            # its own daemon on the same state directory.
            run(["systemctl", "stop", "mailpulsed.service"])
        driverdir = run(["pkg-config", "--variable=driverdir", "mailpulse-driver"]).stdout.strip()
        check_installed(packages, driverdir)
        check_abi_relations(debs, packages)

        # The installed unit as systemd reads it: ExecStart= binaries and
        # Documentation= man pages resolve, and its exposure score.
        unit = "/lib/systemd/system/mailpulsed.service"
        run(["systemd-analyze", "verify", unit])
        score = run(["systemd-analyze", "security", "--offline=true", "--no-pager",
                     unit]).stdout.strip().splitlines()[-1]
        say("systemd-analyze verify: ok; security: %s" % score.strip("→ "))

        p = run([DAEMON, "-c", CONF, "--check-config"], user=USER)
        say("mailpulsed --check-config on the shipped default: %s"
            % (p.stdout + p.stderr).strip())

        # The shipped config, edited as an admin would: no TCP listener (the
        # unix socket is enough here, and port 8025 may be taken).
        text = open(CONF).read()
        listen = '  listen = "127.0.0.1:8025";\n'
        if listen not in text:
            fail("%s has no line %r to edit" % (CONF, listen.strip()))
        with open(CONF, "w") as f:
            f.write(text.replace(listen, '  listen = "";\n'))

        server = dovecot.Dovecot(profile="full", name="pkgtest-dovecot")
        generated = server.generate("INBOX", GENERATED)
        server.index("INBOX")
        configure_imap(admin, server)
        daemon = start_daemon(log_path)
        say("mailpulsed runs as %s (pid %d) with %s" % (USER, daemon.pid, CONF))
        use_imap(server, generated)
        use_sdk_example(admin, daemon)

        daemon.send_signal(signal.SIGTERM)
        rc = daemon.wait(timeout=TIMEOUT)
        daemon = None
        if rc != 0:
            fail("mailpulsed exited %d on SIGTERM:\n%s" % (rc, open(log_path).read()))
        say("mailpulsed stopped cleanly on SIGTERM")

        apt("purge", *packages)
        purged = True
        left = [p for p in packages if installed(p)]
        if left:
            fail("still installed after the purge: %s" % left)
        after = listing()
        new = sorted(after - before)
        expected = set()
        for path in admin.paths:
            expected.add(path)
            d = os.path.dirname(path)
            while d not in before and d != "/":
                expected.add(d)
                d = os.path.dirname(d)
        unexpected = [p for p in new if p not in expected and p not in ACCOUNT_FILES
                      and not owned_by_a_package(p)]
        if unexpected:
            fail("left behind by the purge:\n  " + "\n  ".join(unexpected))
        lost = [p for p in admin.paths if not os.path.lexists(p)]
        if lost:
            fail("the purge removed the administrator's files: %s" % lost)
        if os.path.exists(STATE):
            fail("%s survived the purge" % STATE)
        pwd.getpwnam(USER)  # policy: the system user stays
        say("purged: nothing left but the administrator's %d files (and their directories) "
            "and the %s user" % (len(admin.paths), USER))
    except BaseException:
        if os.path.exists(log_path):
            sys.stderr.write("--- mailpulsed log\n" + open(log_path).read())
        if server:
            sys.stderr.write("--- dovecot log\n" + server.log_text()[-4000:])
        raise
    finally:
        if daemon and daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        if server:
            server.cleanup()
        if not purged:
            left = [p for p in packages if installed(p)]
            if left:
                apt("purge", *left)
        admin.remove()
        for path in (ETC, STATE):
            shutil.rmtree(path, ignore_errors=True)
        if os.path.exists(log_path):
            os.unlink(log_path)
    say("packaging install test passed")


if __name__ == "__main__":
    main()
