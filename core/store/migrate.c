/*
 * Applying a backend's schema migrations (struct mps__schema: SQLite's in
 * sqlite/schema.c, PostgreSQL's in pg/schema.c). Each migration runs in its
 * own write transaction together with the version bump, so a crash leaves
 * the schema at a whole version, and two connections (or two nodes) that
 * open a store at once migrate it once.
 */
#include "store/store-private.h"

#include <stdio.h>
#include <stdlib.h>

#include "util/util.h"

static int read_version(mps_store *s, int *version_r, char **error_r)
{
    mps__stmt *st;
    if (mps__prepare(s, s->ops->schema()->read_version_sql, &st, error_r) < 0)
        return -1;
    int rc = mps__step(st);
    if (rc != MPS__ROW) {
        mps__finish(s, st);
        return mps__fail(s, error_r, "store: read schema version");
    }
    *version_r = mps__col_int(st, 0);
    mps__finish(s, st);
    return 0;
}

static int apply_next(mps_store *s, int *done_r, char **error_r)
{
    /* Re-read the version under the write lock: another connection may
     * have migrated since we looked. */
    const struct mps__schema *sc = s->ops->schema();
    const int last = sc->base + sc->n;
    if (mps__begin(s, error_r) < 0)
        return -1;
    if (sc->prepare_sql != NULL && mps__exec(s, sc->prepare_sql, error_r) < 0)
        goto fail;
    int version;
    if (read_version(s, &version, error_r) < 0)
        goto fail;
    if (version > last) {
        mps__error(error_r,
                   "store: schema version %d is newer than this build supports (%d)",
                   version, last);
        goto fail;
    }
    if (version == last) {
        mps__rollback(s);
        *done_r = 1;
        return 0;
    }
    /* A PostgreSQL store starts at the schema of version base + 1. */
    int from = version < sc->base ? sc->base : version;
    char *err = NULL;
    if (mps__exec(s, sc->migrations[from - sc->base], &err) < 0) {
        mps__error(error_r, "migration %d: %s", from + 1, err);
        free(err);
        goto fail;
    }
    char bump[96];
    snprintf(bump, sizeof bump, "%s%d", sc->write_version_sql, from + 1);
    if (mps__exec(s, bump, error_r) < 0)
        goto fail;
    *done_r = 0;
    return mps__commit(s, error_r);
fail:
    mps__rollback(s);
    return -1;
}

int mps__migrate(mps_store *s, char **error_r)
{
    int done = 0;
    while (!done) {
        if (apply_next(s, &done, error_r) < 0)
            return -1;
    }
    return 0;
}

int mps_schema_version(mps_store *s)
{
    int version = -1;
    char *err = NULL;
    if (read_version(s, &version, &err) < 0) {
        free(err);
        return -1;
    }
    return version;
}
