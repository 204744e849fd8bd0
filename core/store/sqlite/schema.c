/*
 * The SQLite schema: its migrations from the first release on (migrate.c
 * applies them). PRAGMA user_version records the version reached.
 * Released migrations are never edited: a schema change is a new entry
 * appended at the end, here and in pg/schema.c.
 */
#include "store/store-private.h"

static const char *const migrations[] = {
    /* 1: initial schema */
    "CREATE TABLE accounts ("
    "  id TEXT PRIMARY KEY NOT NULL,"
    "  instance TEXT NOT NULL,"
    "  status TEXT NOT NULL DEFAULT 'ok',"
    "  last_error TEXT,"
    "  push_state TEXT NOT NULL DEFAULT 'off',"
    "  profile_json TEXT,"
    "  created_ms INTEGER NOT NULL,"
    "  last_sync_ms INTEGER NOT NULL DEFAULT 0,"
    "  last_push_ms INTEGER NOT NULL DEFAULT 0,"
    "  status_seq INTEGER NOT NULL DEFAULT 0"
    ");"
    "CREATE TABLE folders ("
    "  account TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,"
    "  name TEXT NOT NULL,"
    "  role INTEGER NOT NULL DEFAULT 0,"
    "  cursor TEXT,"
    "  backfill_pos TEXT,"
    "  bootstrapped INTEGER NOT NULL DEFAULT 0,"
    "  backfill_done INTEGER NOT NULL DEFAULT 0,"
    "  backfill_requested INTEGER NOT NULL DEFAULT 0,"
    "  synced_count INTEGER NOT NULL DEFAULT 0,"
    "  resets INTEGER NOT NULL DEFAULT 0,"
    "  last_sync_ms INTEGER NOT NULL DEFAULT 0,"
    "  last_error TEXT,"
    "  PRIMARY KEY (account, name)"
    ") WITHOUT ROWID;"
    "CREATE TABLE messages ("
    "  rowid INTEGER PRIMARY KEY,"
    "  id TEXT NOT NULL UNIQUE,"
    "  account TEXT NOT NULL,"
    "  provider_id TEXT NOT NULL,"
    "  folder TEXT NOT NULL,"
    "  ref TEXT,"
    "  uid INTEGER NOT NULL DEFAULT 0,"
    "  message_id TEXT,"
    "  subject TEXT,"
    "  from_addr TEXT,"
    "  to_addr TEXT,"
    "  date INTEGER NOT NULL DEFAULT 0,"
    "  size INTEGER NOT NULL DEFAULT -1,"
    "  thread_id TEXT,"
    "  flags TEXT,"
    "  deleted INTEGER NOT NULL DEFAULT 0,"
    "  version INTEGER NOT NULL DEFAULT 1,"
    "  indexed_ms INTEGER NOT NULL,"
    "  UNIQUE (account, provider_id)"
    ");"
    "CREATE INDEX messages_by_folder ON messages"
    "  (account, folder, deleted, date DESC, id DESC);"
    "CREATE INDEX messages_by_account ON messages"
    "  (account, deleted, date DESC, id DESC);"
    "CREATE TABLE bodies ("
    "  message_id TEXT PRIMARY KEY NOT NULL"
    "    REFERENCES messages(id) ON DELETE CASCADE,"
    "  data BLOB NOT NULL,"
    "  size INTEGER NOT NULL,"
    "  fetched_ms INTEGER NOT NULL,"
    "  expires_ms INTEGER NOT NULL DEFAULT 0"
    ");"
    "CREATE INDEX bodies_by_expiry ON bodies (expires_ms);"
    "CREATE TABLE subscriptions ("
    "  account TEXT PRIMARY KEY NOT NULL,"
    "  provider_id TEXT,"
    "  expires_at INTEGER NOT NULL DEFAULT 0,"
    "  cursor_hint TEXT,"
    "  renewed_ms INTEGER NOT NULL DEFAULT 0,"
    "  last_notification_ms INTEGER NOT NULL DEFAULT 0"
    ");"
    "CREATE TABLE push_hints ("
    "  rowid INTEGER PRIMARY KEY,"
    "  account TEXT NOT NULL,"
    "  folder TEXT,"
    "  cursor_hint TEXT,"
    "  received_ms INTEGER NOT NULL"
    ");"
    "CREATE INDEX push_hints_by_account ON push_hints (account);"
    "CREATE TABLE events ("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  type TEXT NOT NULL,"
    "  account TEXT NOT NULL,"
    "  folder TEXT,"
    "  message TEXT,"
    "  time_ms INTEGER NOT NULL,"
    "  idem_key TEXT NOT NULL UNIQUE,"
    "  data_json TEXT"
    ");"
    "CREATE INDEX events_by_account ON events (account, seq);",

    /* 2: drivers walk a folder's stored messages by UID (expunge detection,
     * UIDVALIDITY re-mapping). */
    "CREATE INDEX messages_by_uid ON messages (account, folder, uid);",

    /* outbound webhooks: a delivery cursor per endpoint (last event seq
     * handled) and the events given up on after max_attempts. */
    "CREATE TABLE webhook_cursors ("
    "  endpoint TEXT PRIMARY KEY NOT NULL,"
    "  cursor INTEGER NOT NULL,"
    "  updated_ms INTEGER NOT NULL"
    ") WITHOUT ROWID;"
    "CREATE TABLE webhook_dead_letters ("
    "  endpoint TEXT NOT NULL,"
    "  seq INTEGER NOT NULL,"
    "  attempts INTEGER NOT NULL,"
    "  last_error TEXT,"
    "  failed_ms INTEGER NOT NULL,"
    "  replay INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (endpoint, seq)"
    ") WITHOUT ROWID;",

    /* 4: body metadata without the blob. Columns stored after a body's
     * data sit behind its overflow pages, so counting live bodies (folder
     * and account listings, /metrics) read every stored byte; this index
     * covers those lookups. */
    "CREATE INDEX bodies_meta ON bodies (message_id, expires_ms, size);",

    /* 5: per-folder counts of live messages and of their body rows, kept
     * by the store's writes (commit.c, bodies.c) in the transaction that
     * changes them. Counting them on every status call was linear in the
     * mailbox: 10 ms per 10,000 messages, on the daemon's loop thread.
     * (Triggers on messages and bodies kept them too, but cost a bulk sync
     * 40% more CPU.) A folder row made after its messages counts them. */
    "ALTER TABLE folders ADD COLUMN live_count INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE folders ADD COLUMN body_count INTEGER NOT NULL DEFAULT 0;"
    "UPDATE folders SET"
    "  live_count = (SELECT COUNT(*) FROM messages m WHERE m.account = folders.account"
    "    AND m.folder = folders.name AND m.deleted = 0),"
    "  body_count = (SELECT COUNT(*) FROM messages m JOIN bodies b ON b.message_id = m.id"
    "    WHERE m.account = folders.account AND m.folder = folders.name"
    "    AND m.deleted = 0);"
    "CREATE TRIGGER folders_added AFTER INSERT ON folders BEGIN"
    "  UPDATE folders SET"
    "    live_count = (SELECT COUNT(*) FROM messages m WHERE m.account = NEW.account"
    "      AND m.folder = NEW.name AND m.deleted = 0),"
    "    body_count = (SELECT COUNT(*) FROM messages m JOIN bodies b"
    "      ON b.message_id = m.id WHERE m.account = NEW.account AND m.folder = NEW.name"
    "      AND m.deleted = 0)"
    "  WHERE account = NEW.account AND name = NEW.name;"
    "END;",

    /* 6: store generations and outbox retention (epochs.c, outbox.c). A
     * store from before epochs had no marker: it is taken as stopped
     * cleanly, its events as epoch 1. */
    "CREATE TABLE store_meta ("
    "  key TEXT PRIMARY KEY NOT NULL,"
    "  value INTEGER NOT NULL"
    ") WITHOUT ROWID;"
    "INSERT INTO store_meta (key, value) VALUES ('clean_shutdown', 1),"
    "  ('outbox_horizon', 0);"
    "CREATE TABLE epochs ("
    "  epoch INTEGER PRIMARY KEY,"
    "  first_seq INTEGER NOT NULL,"
    "  started_ms INTEGER NOT NULL"
    ");"
    "INSERT INTO epochs (epoch, first_seq, started_ms) VALUES (1, 1,"
    "  CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));",

    /* 7: a message may be in several folders (Gmail labels; Graph moves
     * under an unchanged id): one membership row per (message, folder)
     * while the message is live, with the UID it has there and a copy of
     * its date for the folder's newest-first index. messages.folder and
     * messages.uid stay as the primary membership (what `folder` in the
     * API and fetch use). The folder counts are counted over memberships
     * from now on; today's one-folder messages become one membership each.
     * Account-level cursors and the drivers' per-account key/value state
     * come with it. Keyed by message (a message id is unique across
     * accounts), with one folder-side index (newest first, for listings):
     * a sync writes two trees per membership. The walk in UID order
     * (mps_messages_each, a rare full compare) sorts instead of keeping a
     * third. No foreign key: commit.c writes memberships with their
     * message, and a key check per row costs the bulk sync time. */
    "CREATE TABLE memberships ("
    "  account TEXT NOT NULL,"
    "  folder TEXT NOT NULL,"
    "  message TEXT NOT NULL,"
    "  uid INTEGER NOT NULL DEFAULT 0,"
    "  date INTEGER NOT NULL DEFAULT 0,"
    "  added_ms INTEGER NOT NULL,"
    "  PRIMARY KEY (message, folder)"
    ") WITHOUT ROWID;"
    "CREATE INDEX memberships_by_date ON memberships"
    "  (account, folder, date DESC, message DESC);"
    "INSERT INTO memberships (account, folder, message, uid, date, added_ms)"
    "  SELECT account, folder, id, uid, date, indexed_ms FROM messages"
    "  WHERE deleted = 0;"
    "DROP INDEX messages_by_folder;"
    "DROP INDEX messages_by_uid;"
    "DROP TRIGGER folders_added;"
    "UPDATE folders SET"
    "  live_count = (SELECT COUNT(*) FROM memberships ms"
    "    WHERE ms.account = folders.account AND ms.folder = folders.name),"
    "  body_count = (SELECT COUNT(*) FROM memberships ms JOIN bodies b"
    "    ON b.message_id = ms.message"
    "    WHERE ms.account = folders.account AND ms.folder = folders.name);"
    "CREATE TRIGGER folders_added AFTER INSERT ON folders BEGIN"
    "  UPDATE folders SET"
    "    live_count = (SELECT COUNT(*) FROM memberships ms"
    "      WHERE ms.account = NEW.account AND ms.folder = NEW.name),"
    "    body_count = (SELECT COUNT(*) FROM memberships ms JOIN bodies b"
    "      ON b.message_id = ms.message"
    "      WHERE ms.account = NEW.account AND ms.folder = NEW.name)"
    "  WHERE account = NEW.account AND name = NEW.name;"
    "END;"
    "CREATE TABLE account_cursors ("
    "  account TEXT PRIMARY KEY NOT NULL,"
    "  cursor TEXT NOT NULL,"
    "  updated_ms INTEGER NOT NULL"
    ") WITHOUT ROWID;"
    "CREATE TABLE driver_state ("
    "  account TEXT NOT NULL,"
    "  key TEXT NOT NULL,"
    "  value TEXT NOT NULL,"
    "  updated_ms INTEGER NOT NULL,"
    "  PRIMARY KEY (account, key)"
    ") WITHOUT ROWID;",

    /* 8: a webhook subscription's verification secret (Graph's
     * clientState), as push_enroll/push_renew returned it, so push_verify
     * can check notifications after a restart. NULL: the driver chose
     * none. Never read by the API. */
    "ALTER TABLE subscriptions ADD COLUMN secret TEXT;",
};

static const struct mps__schema schema = {
    .base = 0,
    .migrations = migrations,
    .n = (int)(sizeof migrations / sizeof migrations[0]),
    .prepare_sql = NULL,
    .read_version_sql = "PRAGMA user_version",
    .write_version_sql = "PRAGMA user_version=",
};

const struct mps__schema *mps__sqlite_schema(void)
{
    return &schema;
}
