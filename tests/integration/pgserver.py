"""A private PostgreSQL server for tests (python3 standard library only).

`PgServer` runs initdb and pg_ctl in a temporary directory as an
unprivileged user (as root: the `postgres` system user through runuser;
initdb refuses root), with trust authentication, no TCP (the socket is in
the directory) and fsync off (tests only: a crash of the machine may
corrupt it). It starts in well under a second and is removed by stop().

`url(db)` is the store location of a database on it; `create_db()` makes
a fresh one.

As a program it wraps a command: `pgserver.py --run CMD ARGS...` starts a
server, runs CMD with MP_TEST_PG_URL set to the URL of its `postgres`
database (a test makes its own databases from it, `create_database`;
mptest.Daemon does so for every daemon, which runs an integration test on
the PostgreSQL store unchanged), stops the server and exits with CMD's
status. Without the PostgreSQL binaries it prints why
and exits 77 (ctest's SKIP_RETURN_CODE), unless MP_REQUIRE_PG=1 (CI),
where that is a failure.
"""

import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time

SKIP = 77
PORT = 5432  # only names the socket file inside our own directory
USER = "mp"


def bin_dir():
    """The PostgreSQL server binaries (Debian keeps them per version), or
    None."""
    override = os.environ.get("MP_PG_BIN")
    if override:
        return override if os.path.exists(os.path.join(override, "initdb")) else None
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[-3]) if p.split("/")[-3].isdigit() else 0)
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


class PgServer:
    def __init__(self, durable=False):
        """durable: fsync and synchronous_commit on, as in production (the
        store then needs no new event epoch after an unclean stop); else
        both off, which is faster."""
        self.durable = durable
        self.bin = bin_dir()
        if self.bin is None:
            raise FileNotFoundError("PostgreSQL server binaries (initdb, pg_ctl) not found: "
                                    "apt-get install postgresql-15")
        self.dir = tempfile.mkdtemp(prefix="mp-pg-")
        os.chmod(self.dir, 0o755)
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "server.log")
        self.runas = None
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise FileNotFoundError("running as root needs the 'postgres' user "
                                        "(package postgresql-15) to run initdb")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self.runas = "postgres"
        self.started = False
        self._n = 0

    def _run(self, args, **kw):
        if self.runas:
            args = ["runuser", "-u", self.runas, "--"] + args
        return subprocess.run(args, check=True, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, **kw)

    def start(self):
        try:
            self._run([os.path.join(self.bin, "initdb"), "-D", self.data, "-A", "trust",
                       "-U", USER, "--no-sync", "-E", "UTF8", "--locale=C"])
            opts = ("-k %s -p %d -c listen_addresses='' -c max_connections=200"
                    % (self.dir, PORT))
            if not self.durable:
                opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            self._run([os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-l", self.log,
                       "-w", "-t", "30", "-o", opts, "start"])
        except subprocess.CalledProcessError as exc:
            log = ""
            if os.path.exists(self.log):
                with open(self.log, errors="replace") as f:
                    log = f.read()
            self.stop()
            raise RuntimeError("PostgreSQL did not start: %s\n%s\n%s" %
                               (exc, exc.stdout.decode(errors="replace"), log))
        self.started = True
        return self

    def url(self, db="postgres"):
        return "postgresql:///%s?host=%s&port=%d&user=%s" % (db, self.dir, PORT, USER)

    def psql(self, sql, db="postgres"):
        """Run SQL through psql; returns its output (unaligned, no headers)."""
        out = subprocess.run([os.path.join(self.bin, "psql"), "-X", "-q", "-A", "-t",
                              "-v", "ON_ERROR_STOP=1", "-h", self.dir, "-p", str(PORT),
                              "-U", USER, "-d", db, "-c", sql],
                             check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        return out.stdout.decode()

    def rows(self, sql, db="postgres"):
        """The rows psql prints for `sql`, each a list of its fields."""
        return [line.split("|") for line in self.psql(sql, db=db).splitlines()
                if line.strip()]

    def lease_owners(self, db):
        """account -> node name, for unexpired leases of live nodes (the
        cluster's tables, store/lease.h)."""
        rows = self.rows("SELECT l.account, n.name FROM mp_lease l JOIN mp_node n "
                         "ON n.owner = l.owner WHERE l.expires_at > now() "
                         "AND n.expires_at > now()", db=db)
        return {a: n for a, n in rows}

    def create_db(self, prefix="mpt"):
        self._n += 1
        name = "%s_%d_%d" % (prefix, os.getpid(), self._n)
        self.psql("CREATE DATABASE %s" % name)
        return name

    def stop(self):
        if self.started:
            try:
                self._run([os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-m",
                           "immediate", "-w", "stop"])
            except subprocess.CalledProcessError:
                pass
            self.started = False
        shutil.rmtree(self.dir, ignore_errors=True)


_created = [0]


def create_database(url, prefix="mpd"):
    """A fresh database on the server of `url` (a URL from PgServer.url,
    e.g. MP_TEST_PG_URL); returns its URL."""
    _created[0] += 1
    name = "%s_%d_%d" % ("".join(c if c.isalnum() else "_" for c in prefix).lower(),
                         os.getpid(), _created[0])
    subprocess.run([os.path.join(bin_dir(), "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                    url, "-c", "CREATE DATABASE %s" % name],
                   check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head, _, query = url.partition("?")
    base = head[:head.rindex("/") + 1]
    return base + name + ("?" + query if query else "")


def main(argv):
    if len(argv) < 3 or argv[1] != "--run":
        print("usage: pgserver.py --run COMMAND [ARGS...]", file=sys.stderr)
        return 2
    try:
        server = PgServer()
    except FileNotFoundError as exc:
        if os.environ.get("MP_REQUIRE_PG") == "1":
            print("FAIL: %s (MP_REQUIRE_PG=1)" % exc, file=sys.stderr)
            return 1
        print("SKIP: %s" % exc)
        return SKIP
    try:
        t0 = time.monotonic()
        server.start()
        print("pgserver: PostgreSQL in %s, started in %.2f s" %
              (server.dir, time.monotonic() - t0), flush=True)
        env = dict(os.environ, MP_TEST_PG_URL=server.url())
        return subprocess.call(argv[2:], env=env)
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
