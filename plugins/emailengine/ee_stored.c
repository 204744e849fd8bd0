/*
 * The folder's messages as the host stores them (host->stored_messages),
 * sorted by id for lookups. EE has no change feed, so the stored set is
 * the delta's baseline: what a listing shows and the store lacks is new,
 * what differs in flags is updated, what the store has and a complete
 * listing lacks is deleted.
 */
#include "ee_driver.h"

#include <stdlib.h>
#include <string.h>

static char *dup_or_null(const char *s)
{
    if (s == NULL)
        return NULL;
    char *d = strdup(s);
    if (d == NULL)
        abort();
    return d;
}

static int collect(const mp_stored_message *m, void *arg)
{
    ee_stored_set *s = arg;
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 256;
        ee_stored *v = realloc(s->v, s->cap * sizeof *v);
        if (v == NULL)
            abort();
        s->v = v;
    }
    ee_stored *e = &s->v[s->n++];
    e->id = dup_or_null(m->id);
    e->flags = dup_or_null(m->flags != NULL ? m->flags : "");
    e->message_id = dup_or_null(m->message_id);
    e->uid = m->uid;
    e->seen = 0;
    return 0;
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp(((const ee_stored *)a)->id, ((const ee_stored *)b)->id);
}

mp_status ee_stored_load(ee_account *a, const char *folder, ee_stored_set *s, mp_error *err)
{
    memset(s, 0, sizeof *s);
    mp_status st = ee_host->stored_messages(a->acct, folder, collect, s, err);
    if (st != MP_OK) {
        ee_stored_clear(s);
        return st;
    }
    if (s->n > 1)
        qsort(s->v, s->n, sizeof *s->v, cmp_id);
    return MP_OK;
}

ee_stored *ee_stored_find(const ee_stored_set *s, const char *id)
{
    if (s->n == 0)
        return NULL;
    ee_stored key = {.id = (char *)id};
    return bsearch(&key, s->v, s->n, sizeof *s->v, cmp_id);
}

void ee_stored_clear(ee_stored_set *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n; i++) {
        free(s->v[i].id);
        free(s->v[i].flags);
        free(s->v[i].message_id);
    }
    free(s->v);
    memset(s, 0, sizeof *s);
}

void ee_change_of(const ee_msg *m, mp_change_kind kind, mp_change *ch)
{
    memset(ch, 0, sizeof *ch);
    ch->kind = kind;
    ch->id = m->id;
    ch->uid = m->uid;
    ch->message_id = m->message_id;
    ch->subject = m->subject;
    ch->from = m->from;
    ch->to = m->to;
    ch->date = m->date;
    ch->size = m->size;
    ch->thread_id = m->thread_id;
    ch->flags = m->flags;
}
