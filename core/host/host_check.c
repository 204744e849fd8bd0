/*
 * The collector behind host->check_report (ABI 1.2): what a driver's
 * `check` slot found, one result per name, for an admin to read through
 * the API and `mailpulsectl check`.
 *
 * Why it is bounded and cleaned here rather than where it is shown: the
 * detail is often a provider's own error text relayed by the driver, and
 * it travels on into JSON (which must be UTF-8) and onto terminals (where
 * an escape sequence would act). A driver with a bug (a report per
 * message, a megabyte of HTML as detail) must not grow the daemon's
 * memory either: the record lives until the next check.
 */
#include "host/host_private.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

struct mp_check {
    pthread_mutex_t lock;
    mphost_check_result items[MPHOST_CHECK_MAX];
    size_t n;
    size_t dropped;
};

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when the bytes
 * there are not one (overlong forms, surrogates and code points above
 * U+10FFFF included). Sets *cp_r. `avail` bytes may be read. */
static size_t utf8_seq(const unsigned char *s, size_t avail, uint32_t *cp_r)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t cp, min;
    if (c < 0x80) {
        *cp_r = c;
        return 1;
    } else if (c >= 0xC2 && c <= 0xDF) {
        n = 2, cp = c & 0x1F, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3, cp = c & 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4, cp = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (avail < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    *cp_r = cp;
    return n;
}

/* A sanitized copy of `s` of at most `max` bytes (see host.h); "" for
 * NULL. Output never ends inside a character: a replacement that does not
 * fit ends the copy. */
static char *sanitize(const char *s, size_t max)
{
    static const char replacement[] = "\xEF\xBF\xBD"; /* U+FFFD */
    if (s == NULL)
        return mpu_strdup("");
    /* Every input byte yields at least one output byte: max + 4 bytes of
     * input are all the loop can consume (a whole sequence at the end). */
    size_t in_len = strnlen(s, max + 4);
    char *out = mpu_malloc(max + 1);
    size_t o = 0;
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < in_len) {
        uint32_t cp = 0;
        size_t n = utf8_seq(p + i, in_len - i, &cp);
        const char *put;
        size_t put_len;
        char one;
        if (n == 0) {
            put = replacement;
            put_len = sizeof replacement - 1;
            n = 1;
        } else if (cp == '\t' || cp == '\n' || cp == '\r') {
            one = ' ';
            put = &one;
            put_len = 1;
        } else if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F)) {
            one = '?';
            put = &one;
            put_len = 1;
        } else {
            put = (const char *)p + i;
            put_len = n;
        }
        if (o + put_len > max)
            break;
        memcpy(out + o, put, put_len);
        o += put_len;
        i += n;
    }
    out[o] = '\0';
    return out;
}

char *mphost_check_clean(const char *s, size_t max)
{
    return sanitize(s, max);
}

mp_check *mphost_check_new(void)
{
    mp_check *chk = mpu_calloc(1, sizeof *chk);
    pthread_mutex_init(&chk->lock, NULL);
    return chk;
}

static void result_clear(mphost_check_result *r)
{
    mpu_freep(&r->name);
    mpu_freep(&r->detail);
}

void mphost_check_results_free(mphost_check_result **list, size_t n)
{
    if (*list == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        result_clear(&(*list)[i]);
    mpu_freep(list);
}

void mphost_check_free(mp_check **chk)
{
    if (*chk == NULL)
        return;
    for (size_t i = 0; i < (*chk)->n; i++)
        result_clear(&(*chk)->items[i]);
    pthread_mutex_destroy(&(*chk)->lock);
    mpu_freep(chk);
}

size_t mphost_check_count(const mp_check *chk)
{
    return chk->n;
}

const mphost_check_result *mphost_check_at(const mp_check *chk, size_t i)
{
    return i < chk->n ? &chk->items[i] : NULL;
}

size_t mphost_check_dropped(const mp_check *chk)
{
    return chk->dropped;
}

mphost_check_result *mphost_check_take(mp_check *chk, size_t *n_r)
{
    pthread_mutex_lock(&chk->lock);
    size_t n = chk->n;
    mphost_check_result *list = NULL;
    if (n > 0) {
        list = mpu_calloc(n, sizeof *list);
        memcpy(list, chk->items, n * sizeof *list);
        memset(chk->items, 0, n * sizeof *list);
    }
    chk->n = 0;
    pthread_mutex_unlock(&chk->lock);
    *n_r = n;
    return list;
}

const char *mphost_check_outcome_name(mp_check_outcome outcome)
{
    switch (outcome) {
    case MP_CHECK_OK:
        return "ok";
    case MP_CHECK_WARN:
        return "warn";
    case MP_CHECK_FAIL:
        return "fail";
    case MP_CHECK_SKIP:
        return "skip";
    }
    return NULL;
}

const char *mphost_check_state_name(mphost_check_state state)
{
    switch (state) {
    case MPHOST_CHECK_NONE:
        return "none";
    case MPHOST_CHECK_PENDING:
        return "pending";
    case MPHOST_CHECK_RUNNING:
        return "running";
    case MPHOST_CHECK_DONE:
        return "done";
    case MPHOST_CHECK_ERROR:
        return "error";
    }
    return "none";
}

void mphost_check_report(mp_check *chk, const char *name, mp_check_outcome outcome,
                         const char *detail)
{
    if (chk == NULL || name == NULL || name[0] == '\0')
        return;
    char *clean_name = sanitize(name, MPHOST_CHECK_NAME_MAX);
    char *clean_detail;
    if (mphost_check_outcome_name(outcome) != NULL) {
        clean_detail = sanitize(detail, MPHOST_CHECK_DETAIL_MAX);
    } else {
        /* Say so rather than guess what the driver meant. */
        char *raw = mpu_asprintf("driver reported unknown outcome %d: %s", (int)outcome,
                                 detail != NULL ? detail : "");
        clean_detail = sanitize(raw, MPHOST_CHECK_DETAIL_MAX);
        free(raw);
        outcome = MP_CHECK_FAIL;
    }
    pthread_mutex_lock(&chk->lock);
    mphost_check_result *slot = NULL;
    for (size_t i = 0; i < chk->n; i++)
        if (strcmp(chk->items[i].name, clean_name) == 0)
            slot = &chk->items[i];
    if (slot != NULL) {
        result_clear(slot);
    } else if (chk->n < MPHOST_CHECK_MAX) {
        slot = &chk->items[chk->n++];
    } else {
        chk->dropped++;
        pthread_mutex_unlock(&chk->lock);
        free(clean_name);
        free(clean_detail);
        return;
    }
    slot->name = clean_name;
    slot->outcome = outcome;
    slot->detail = clean_detail;
    pthread_mutex_unlock(&chk->lock);
}

void mphost_check_record_clear(mphost_check_record *rec)
{
    mphost_check_results_free(&rec->results, rec->n_results);
    free(rec->error);
    memset(rec, 0, sizeof *rec);
}
