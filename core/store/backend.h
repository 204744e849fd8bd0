/*
 * Private to core/store: what a backend provides beside the seam of db.h,
 * for the pool (pool.h). Two backends are linked in: SQLite
 * (core/store/sqlite/) and PostgreSQL (core/store/pg/); mps_open chooses by
 * location (db.c), and store.h's and pool.h's callers do not change.
 */
#ifndef MP_STORE_BACKEND_H
#define MP_STORE_BACKEND_H

#include "store/store.h"

/* Housekeeping the backend runs on a thread of its own beside the
 * connections (SQLite: WAL checkpoints, so their fsyncs stall no writer;
 * PostgreSQL: none, its server does it). start opens what it needs at
 * `location` and never fails: without its thread (logged) connections do
 * the work themselves. adopt hands it a connection that writes; stop runs
 * it a last time and ends its thread; free follows once every adopted
 * connection is closed. adopt, stop and free accept what start returned,
 * whatever happened there. */
/* How a message names the store at `location`: the SQLite path, or "the
 * PostgreSQL store" (its URL may hold a password). */
const char *mps__location_name(const char *location);

typedef struct mps__housekeeper mps__housekeeper;
mps__housekeeper *mps__housekeeper_start(const char *location);
void mps__housekeeper_adopt(mps__housekeeper *h, mps_store *s);
void mps__housekeeper_stop(mps__housekeeper *h);
void mps__housekeeper_free(mps__housekeeper *h);

#endif
