"""The daemon on the PostgreSQL store (store.backend = "postgresql") against a
real Dovecot, end to end: bootstrap and backfill, new mail, a flag change,
an expunge, a raw body cached in the database, and a restart that keeps
everything and adds no event. The store's tables are checked through psql
beside the API (bodies in bytea, one event per idempotency key, no SQLite
file in state_dir), and the URL's password never reaches the log.

A private PostgreSQL is started for the run (pgserver.py). Skipped (77)
only without the PostgreSQL binaries; MP_REQUIRE_PG=1 (CI) fails then."""

import os
import sys
import time
import unittest

import dovecot
import mptest
import pgserver

ACCOUNT = "alice"
GENERATED = {"INBOX": 60, "Archive": 25}
BOOTSTRAP_MAX = 20
PASSWORD = "pg-url-secret-5b1e"  # trust auth ignores it; the log must never show it


def real_flags(flags):
    return set(flags) - {"\\Recent"}


class PgStoreSync(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = pgserver.PgServer().start()
        cls.db = cls.pg.create_db("mpd")
        cls.server = dovecot.Dovecot(profile="full", name="dovecot-pg")
        cls.generated = {}
        for i, (folder, count) in enumerate(GENERATED.items()):
            cls.generated[folder] = cls.server.generate(folder, count,
                                                        start_date=1700000000 + i * 100000)
        cls.uidvalidity = {f: cls.server.uidvalidity(f) for f in GENERATED}
        cls.d = mptest.Daemon(name="pg-store", driver_dir=dovecot.imap_driver_dir(),
                              settings={"backfill": {"mode": "progressive",
                                                     "bootstrap_max": BOOTSTRAP_MAX,
                                                     "batch_size": 10},
                                        "schedule": {"backfill_interval": 1,
                                                     "bootstrap_interval": 1}})
        url = cls.pg.url(cls.db).replace("postgresql://", "postgresql://mp:%s@" % PASSWORD)
        url_file = cls.d.path("pg.url")
        with open(url_file, "w") as f:
            f.write(url + "\n")
        os.chmod(url_file, 0o600)
        cls.d.settings["store"] = {"backend": "postgresql", "url_file": url_file}
        cls.d.write_conf()
        acct = dovecot.imap_account(cls.d, cls.server, ACCOUNT, poll_interval=2)
        dovecot.add_imap_instance(cls.d, "mail", [acct])
        cls.d.start()

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        cls.server.stop()
        cls.pg.stop()

    # ---- helpers ----

    def sql(self, query):
        return self.pg.psql(query, db=self.db).strip()

    def events(self, after=0, types=None):
        return self.d.events(after=after, types=types, accounts=[ACCOUNT])

    def mid(self, folder, uid):
        return dovecot.public_id(ACCOUNT, folder, self.uidvalidity[folder], uid)

    def server_map(self, folder):
        return {v["message_id"]: uid for uid, v in self.server.listing(folder).items()}

    def wait_loaded(self):
        def complete():
            folders = {f["name"]: f for f in self.d.account(ACCOUNT)["folders"]}
            ok = all(n in folders and folders[n]["bootstrapped"] and
                     folders[n]["messages"] == self.server.status(n)["MESSAGES"] and
                     folders[n]["backfill"]["status"] in ("done", "off")
                     for n in GENERATED)
            return ok and folders
        return mptest.wait_until(complete, 120, message="bootstrap + backfill of every folder")

    def wait_event(self, after, etype, message_id, timeout=60):
        last = [time.monotonic()]

        def found():
            if time.monotonic() - last[0] > 5:
                last[0] = time.monotonic()
                self.d.sync(ACCOUNT)
            return [e for e in self.events(after=after, types=[etype])
                    if e["json"]["message"] == message_id]
        return mptest.wait_until(found, timeout, interval=0.2,
                                 message="%s for %s" % (etype, message_id))

    def check_store_tables(self):
        """The database agrees with the API: every event once, messages and
        memberships as listed."""
        n_events = int(self.sql("SELECT COUNT(*) FROM events"))
        n_keys = int(self.sql("SELECT COUNT(DISTINCT idem_key) FROM events"))
        self.assertEqual(n_events, n_keys)
        self.assertEqual(int(self.sql("SELECT COALESCE(MAX(seq), 0) FROM events")),
                         self.d.last_seq())
        live = int(self.sql("SELECT COUNT(*) FROM messages WHERE deleted = 0"))
        total = sum(self.server.status(f)["MESSAGES"] for f in GENERATED)
        self.assertEqual(live, total)
        self.assertFalse(os.path.exists(os.path.join(self.d.state_dir, "mailpulse.db")),
                         "an SQLite store was created beside the PostgreSQL one")

    # ---- tests ----

    def test_1_bootstrap_and_backfill(self):
        d = self.d
        folders = self.wait_loaded()
        for name, count in GENERATED.items():
            self.assertEqual(folders[name]["messages"], count, folders[name])
        events = self.events(types=["message.synced", "message.new"])
        self.assertEqual([e for e in events if e["type"] == "message.new"], [],
                         "history must arrive as message.synced")
        expected = set()
        for folder, msgs in self.generated.items():
            uids = self.server_map(folder)
            expected |= {self.mid(folder, uids[m.message_id]) for m in msgs}
        self.assertEqual({e["json"]["message"] for e in events}, expected)
        self.assertEqual(len(events), len(expected), "one synced event per message")
        listed = {m["id"] for m in d.all_messages(ACCOUNT, limit=50)}
        self.assertEqual(listed, expected)
        self.assertEqual(self.sql("SELECT version FROM store_version"),
                         str(8))
        self.check_store_tables()

    def test_2_new_flag_expunge(self):
        d, server = self.d, self.server
        self.wait_loaded()
        seq0 = d.last_seq()
        msg = dovecot.make_message(7000, int(time.time()) - 5, tag="pg-new",
                                   subject="New on PostgreSQL \u00e9t\u00e9")
        uid = server.append("INBOX", msg)
        mid = self.mid("INBOX", uid)
        self.assertEqual(len(self.wait_event(seq0, "message.new", mid)), 1)
        stored = d.get("/v1/messages/" + mid)
        self.assertEqual(stored["subject"], msg.subject)
        self.assertEqual(stored["size"], msg.size)

        seq1 = d.last_seq()
        server.store_flags("INBOX", [uid], ["\\Flagged"])
        self.wait_event(seq1, "message.updated", mid, timeout=90)
        mptest.wait_until(lambda: "\\Flagged" in real_flags(d.get("/v1/messages/" + mid)
                                                            ["flags"]),
                          30, message="flag in the store")

        seq2 = d.last_seq()
        gone_uid = self.server_map("Archive")[self.generated["Archive"][2].message_id]
        gone = self.mid("Archive", gone_uid)
        server.expunge("Archive", [gone_uid])
        self.assertEqual(len(self.wait_event(seq2, "message.deleted", gone, timeout=90)), 1)
        self.assertEqual(d.request("GET", "/v1/messages/" + gone)[0], 404)
        mptest.wait_until(lambda: not d.account(ACCOUNT)["sync"]["running"], 60,
                          message="sync idle")
        self.wait_loaded()
        self.check_store_tables()

    def test_3_raw_body_in_the_database(self):
        d, server = self.d, self.server
        self.wait_loaded()
        uids = self.server_map("INBOX")
        m = self.generated["INBOX"][5]
        mid = self.mid("INBOX", uids[m.message_id])
        status, _, body = d.request("GET", "/v1/messages/%s/raw" % mid)
        self.assertEqual(status, 200, body[:300])
        self.assertEqual(body, m.raw)
        stored = self.sql("SELECT encode(data, 'hex') FROM bodies WHERE message_id = '%s'"
                          % mid)
        self.assertEqual(bytes.fromhex(stored), m.raw, "the body cached as bytea")

    def test_4_restart_keeps_everything(self):
        d = self.d
        self.wait_loaded()
        mptest.wait_until(lambda: not d.account(ACCOUNT)["sync"]["running"], 60,
                          message="sync idle")
        seq = d.last_seq()
        before = {m["id"]: m["flags"] for m in d.all_messages(ACCOUNT, limit=50)}
        d.restart()
        d.sync(ACCOUNT)
        time.sleep(3)
        mptest.wait_until(lambda: not d.account(ACCOUNT)["sync"]["running"], 60,
                          message="sync idle after restart")
        after = {m["id"]: m["flags"] for m in d.all_messages(ACCOUNT, limit=50)}
        self.assertEqual(after, before)
        self.assertEqual([e for e in self.events(after=seq)
                          if e["type"].startswith("message.")], [],
                         "a restart re-emits nothing")
        self.check_store_tables()
        self.assertNotIn(PASSWORD, d.log_text(), "the store URL's password was logged")


if __name__ == "__main__":
    if pgserver.bin_dir() is None:
        if os.environ.get("MP_REQUIRE_PG") == "1":
            sys.exit("PostgreSQL binaries not found and MP_REQUIRE_PG=1")
        print("SKIP: PostgreSQL server binaries not found (apt-get install postgresql-15)")
        sys.exit(77)
    mptest.main()
