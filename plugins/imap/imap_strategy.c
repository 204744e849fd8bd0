/* Pure helpers of the sync: formats, choices and set arithmetic. Nothing
 * here calls the host or the network, so unit tests include this file. */
#include "imap_strategy.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static void imap_out_of_memory(void)
{
    static const char msg[] = "imap driver: out of memory\n";
    (void)!write(2, msg, sizeof msg - 1);
    abort();
}

void *imap_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL)
        imap_out_of_memory();
    return p;
}

void *imap_xrealloc(void *ptr, size_t n, size_t size)
{
    if (size != 0 && n > SIZE_MAX / size)
        imap_out_of_memory();
    size_t bytes = n * size;
    void *p = realloc(ptr, bytes != 0 ? bytes : 1);
    if (p == NULL)
        imap_out_of_memory();
    return p;
}

char *imap_xstrdup(const char *s)
{
    if (s == NULL)
        return NULL;
    char *p = strdup(s);
    if (p == NULL)
        imap_out_of_memory();
    return p;
}

char *imap_xasprintf(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, fmt);
    int rc = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (rc < 0)
        imap_out_of_memory();
    return s;
}

/* ---- numbers ---- */

/* Parse decimal digits in [s, end) only (no sign, no spaces). */
static int parse_u64_span(const char *s, const char *end, uint64_t max, uint64_t *value_r)
{
    if (s == end)
        return -1;
    uint64_t v = 0;
    for (const char *p = s; p < end; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        unsigned d = (unsigned)(*p - '0');
        if (v > (max - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *value_r = v;
    return 0;
}

/* Split "v1:a:b[:c]" into exactly n numeric fields. */
static int parse_v1(const char *s, size_t n, uint64_t *fields, const uint64_t *max)
{
    if (s == NULL || strncmp(s, "v1:", 3) != 0)
        return -1;
    const char *p = s + 3;
    for (size_t i = 0; i < n; i++) {
        const char *end = strchr(p, ':');
        if (i + 1 < n) {
            if (end == NULL)
                return -1;
        } else {
            if (end != NULL)
                return -1;
            end = p + strlen(p);
        }
        if (parse_u64_span(p, end, max[i], &fields[i]) < 0)
            return -1;
        p = end + 1;
    }
    return 0;
}

int imap_cursor_parse(const char *s, imap_cursor *cursor_r)
{
    uint64_t f[3] = {0};
    static const uint64_t max[3] = {UINT32_MAX, UINT32_MAX, UINT64_MAX};
    if (parse_v1(s, 3, f, max) < 0 || f[0] == 0)
        return -1;
    cursor_r->uidvalidity = (uint32_t)f[0];
    cursor_r->uidnext = (uint32_t)f[1];
    cursor_r->modseq = f[2];
    return 0;
}

char *imap_cursor_format(const imap_cursor *c)
{
    return imap_xasprintf("v1:%" PRIu32 ":%" PRIu32 ":%" PRIu64, c->uidvalidity,
                          c->uidnext, c->modseq);
}

int imap_pos_parse(const char *s, uint32_t *uidvalidity_r, uint32_t *lowest_r)
{
    uint64_t f[2] = {0};
    static const uint64_t max[2] = {UINT32_MAX, UINT32_MAX};
    if (parse_v1(s, 2, f, max) < 0 || f[0] == 0)
        return -1;
    *uidvalidity_r = (uint32_t)f[0];
    *lowest_r = (uint32_t)f[1];
    return 0;
}

char *imap_pos_format(uint32_t uidvalidity, uint32_t lowest)
{
    return imap_xasprintf("v1:%" PRIu32 ":%" PRIu32, uidvalidity, lowest);
}

char *imap_id_format(const char *folder, uint32_t uidvalidity, uint32_t uid)
{
    return imap_xasprintf("%s;%" PRIu32 ";%" PRIu32, folder, uidvalidity, uid);
}

int imap_id_parse(const char *id, char **folder_r, uint32_t *uidvalidity_r,
                  uint32_t *uid_r)
{
    if (id == NULL)
        return -1;
    const char *last = strrchr(id, ';');
    if (last == NULL || last == id)
        return -1;
    const char *mid = last - 1;
    while (mid > id && *mid != ';')
        mid--;
    if (*mid != ';' || mid == id)
        return -1;
    uint64_t uv = 0, uid = 0;
    if (parse_u64_span(mid + 1, last, UINT32_MAX, &uv) < 0 ||
        parse_u64_span(last + 1, last + 1 + strlen(last + 1), UINT32_MAX, &uid) < 0 ||
        uv == 0 || uid == 0)
        return -1;
    if (folder_r != NULL) {
        char *folder = imap_xcalloc(1, (size_t)(mid - id) + 1);
        memcpy(folder, id, (size_t)(mid - id));
        *folder_r = folder;
    }
    *uidvalidity_r = (uint32_t)uv;
    *uid_r = (uint32_t)uid;
    return 0;
}

/* ---- strategy ---- */

/* Mirrors IMAP_CAP_* of imap_client.h without including it, so this file
 * stays free of the client. */
#define CAP_IDLE (1u << 0)
#define CAP_CONDSTORE (1u << 1)
#define CAP_QRESYNC (1u << 2)
#define CAP_NOTIFY (1u << 10)

imap_strategy imap_strategy_choose(uint32_t caps, uint32_t enabled)
{
    if ((caps & CAP_QRESYNC) && (enabled & CAP_QRESYNC))
        return IMAP_STRATEGY_QRESYNC;
    if (caps & (CAP_CONDSTORE | CAP_QRESYNC))
        return IMAP_STRATEGY_CONDSTORE;
    return IMAP_STRATEGY_PLAIN;
}

const char *imap_strategy_name(imap_strategy s)
{
    switch (s) {
    case IMAP_STRATEGY_QRESYNC:
        return "qresync";
    case IMAP_STRATEGY_CONDSTORE:
        return "condstore";
    default:
        return "plain";
    }
}

/* push_mode values of imap_driver.h: 0 auto, 1 idle, 2 notify, 3 off. */
imap_push_kind imap_push_choose(int push_mode, uint32_t caps)
{
    switch (push_mode) {
    case 0:
        if (caps & CAP_NOTIFY)
            return IMAP_PUSHK_NOTIFY;
        return (caps & CAP_IDLE) ? IMAP_PUSHK_IDLE : IMAP_PUSHK_POLL;
    case 1:
        return (caps & CAP_IDLE) ? IMAP_PUSHK_IDLE : IMAP_PUSHK_POLL;
    case 2:
        if (caps & CAP_NOTIFY)
            return IMAP_PUSHK_NOTIFY;
        return (caps & CAP_IDLE) ? IMAP_PUSHK_IDLE : IMAP_PUSHK_POLL;
    default:
        return IMAP_PUSHK_POLL;
    }
}

const char *imap_push_name(imap_push_kind k)
{
    switch (k) {
    case IMAP_PUSHK_NOTIFY:
        return "notify";
    case IMAP_PUSHK_IDLE:
        return "idle";
    default:
        return "poll";
    }
}

int imap_scan_due(int64_t last_ms, int64_t now_ms, int64_t interval_ms)
{
    if (last_ms <= 0)
        return 1;
    /* A clock moved backwards must not postpone the scan forever. */
    if (now_ms < last_ms)
        return 1;
    return now_ms - last_ms >= interval_ms;
}

/* ---- folders ---- */

/* Does the space-separated attribute list hold `attr` (case-insensitive)? */
static int has_attr(const char *attrs, const char *attr)
{
    if (attrs == NULL)
        return 0;
    size_t alen = strlen(attr);
    const char *p = attrs;
    while (*p != '\0') {
        while (*p == ' ')
            p++;
        const char *end = p;
        while (*end != '\0' && *end != ' ')
            end++;
        if ((size_t)(end - p) == alen && strncasecmp(p, attr, alen) == 0)
            return 1;
        p = end;
    }
    return 0;
}

mp_folder_role imap_folder_role(const char *attrs, const char *name)
{
    static const struct {
        const char *attr;
        mp_folder_role role;
    } by_attr[] = {
        {"\\Inbox", MP_ROLE_INBOX},   {"\\Sent", MP_ROLE_SENT},
        {"\\Drafts", MP_ROLE_DRAFTS}, {"\\Junk", MP_ROLE_JUNK},
        {"\\Trash", MP_ROLE_TRASH},   {"\\Archive", MP_ROLE_ARCHIVE},
        {"\\All", MP_ROLE_ALL},       {"\\Flagged", MP_ROLE_FLAGGED},
    };
    static const struct {
        const char *name;
        mp_folder_role role;
    } by_name[] = {
        {"Sent", MP_ROLE_SENT},          {"Sent Items", MP_ROLE_SENT},
        {"Sent Messages", MP_ROLE_SENT}, {"Drafts", MP_ROLE_DRAFTS},
        {"Junk", MP_ROLE_JUNK},          {"Spam", MP_ROLE_JUNK},
        {"Trash", MP_ROLE_TRASH},        {"Deleted Items", MP_ROLE_TRASH},
        {"Archive", MP_ROLE_ARCHIVE},
    };
    if (name != NULL && strcasecmp(name, "INBOX") == 0)
        return MP_ROLE_INBOX;
    for (size_t i = 0; i < sizeof by_attr / sizeof by_attr[0]; i++)
        if (has_attr(attrs, by_attr[i].attr))
            return by_attr[i].role;
    if (name != NULL)
        for (size_t i = 0; i < sizeof by_name / sizeof by_name[0]; i++)
            if (strcasecmp(name, by_name[i].name) == 0)
                return by_name[i].role;
    return MP_ROLE_NONE;
}

int imap_folder_selectable(const char *attrs)
{
    return !has_attr(attrs, "\\Noselect") && !has_attr(attrs, "\\NonExistent");
}

/* ---- flags ---- */

static int cmp_strp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

char *imap_flags_join(const char *const *words, size_t n)
{
    const char **sorted = imap_xcalloc(n, sizeof *sorted);
    size_t m = 0, total = 1;
    for (size_t i = 0; i < n; i++) {
        if (words[i] == NULL || words[i][0] == '\0' ||
            strcasecmp(words[i], "\\Recent") == 0)
            continue;
        sorted[m++] = words[i];
        total += strlen(words[i]) + 1;
    }
    qsort(sorted, m, sizeof *sorted, cmp_strp);
    char *out = imap_xcalloc(1, total);
    size_t len = 0;
    for (size_t i = 0; i < m; i++) {
        if (i > 0 && strcmp(sorted[i], sorted[i - 1]) == 0)
            continue;
        if (len > 0)
            out[len++] = ' ';
        size_t wl = strlen(sorted[i]);
        memcpy(out + len, sorted[i], wl);
        len += wl;
    }
    out[len] = '\0';
    free(sorted);
    return out;
}

/* Normalize a space-separated flag string through imap_flags_join. */
static char *flags_normalize(const char *s)
{
    char *copy = imap_xstrdup(s != NULL ? s : "");
    size_t n = 0, cap = 8;
    const char **words = imap_xcalloc(cap, sizeof *words);
    char *save = NULL;
    for (char *w = strtok_r(copy, " \t\r\n", &save); w != NULL;
         w = strtok_r(NULL, " \t\r\n", &save)) {
        if (n == cap) {
            cap *= 2;
            words = imap_xrealloc(words, cap, sizeof *words);
        }
        words[n++] = w;
    }
    char *out = imap_flags_join(words, n);
    free(words);
    free(copy);
    return out;
}

int imap_flags_equal(const char *a, const char *b)
{
    char *na = flags_normalize(a);
    char *nb = flags_normalize(b);
    int eq = strcmp(na, nb) == 0;
    free(na);
    free(nb);
    return eq;
}

/* ---- UID ranges ---- */

static int cmp_range(const void *a, const void *b)
{
    const imap_range *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

static int parse_seq_number(const char *s, const char *end, uint32_t star, uint32_t *v_r)
{
    if (end - s == 1 && *s == '*') {
        *v_r = star;
        return 0;
    }
    uint64_t v = 0;
    if (parse_u64_span(s, end, UINT32_MAX, &v) < 0 || v == 0)
        return -1;
    *v_r = (uint32_t)v;
    return 0;
}

int imap_ranges_parse(const char *s, uint32_t star_value, imap_range **ranges_r,
                      size_t *n_r)
{
    *ranges_r = NULL;
    *n_r = 0;
    if (s == NULL || *s == '\0')
        return -1;
    size_t cap = 8, n = 0;
    imap_range *r = imap_xcalloc(cap, sizeof *r);
    const char *p = s;
    for (;;) {
        const char *end = strchr(p, ',');
        if (end == NULL)
            end = p + strlen(p);
        const char *colon = memchr(p, ':', (size_t)(end - p));
        uint32_t lo = 0, hi = 0;
        if (colon != NULL) {
            if (parse_seq_number(p, colon, star_value, &lo) < 0 ||
                parse_seq_number(colon + 1, end, star_value, &hi) < 0)
                goto bad;
        } else {
            if (parse_seq_number(p, end, star_value, &lo) < 0)
                goto bad;
            hi = lo;
        }
        if (lo > hi) {
            uint32_t t = lo;
            lo = hi;
            hi = t;
        }
        if (n == cap) {
            cap *= 2;
            r = imap_xrealloc(r, cap, sizeof *r);
        }
        r[n].lo = lo;
        r[n].hi = hi;
        n++;
        if (*end == '\0')
            break;
        p = end + 1;
    }
    size_t m = imap_ranges_normalize(r, n);
    *ranges_r = r;
    *n_r = m;
    return 0;
bad:
    free(r);
    return -1;
}

size_t imap_ranges_normalize(imap_range *r, size_t n)
{
    if (n == 0)
        return 0;
    qsort(r, n, sizeof *r, cmp_range);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (m > 0 && (uint64_t)r[i].lo <= (uint64_t)r[m - 1].hi + 1) {
            if (r[i].hi > r[m - 1].hi)
                r[m - 1].hi = r[i].hi;
        } else {
            r[m++] = r[i];
        }
    }
    return m;
}

int imap_ranges_contain(const imap_range *r, size_t n, uint32_t uid)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (uid < r[mid].lo)
            hi = mid;
        else if (uid > r[mid].hi)
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}

uint64_t imap_ranges_count(const imap_range *r, size_t n)
{
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += (uint64_t)r[i].hi - r[i].lo + 1;
    return total;
}

char *imap_uids_format(const uint32_t *uids, size_t n)
{
    size_t cap = n * 24 + 1, len = 0;
    char *out = imap_xcalloc(1, cap);
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j + 1 < n && uids[j + 1] == uids[j] + 1)
            j++;
        int w =
            j > i ? snprintf(out + len, cap - len, "%s%" PRIu32 ":%" PRIu32,
                             len ? "," : "", uids[i], uids[j])
                  : snprintf(out + len, cap - len, "%s%" PRIu32, len ? "," : "", uids[i]);
        len += (size_t)w;
        i = j + 1;
    }
    return out;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

size_t imap_uids_sort_unique(uint32_t *uids, size_t n)
{
    if (n == 0)
        return 0;
    qsort(uids, n, sizeof *uids, cmp_u32);
    size_t m = 1;
    for (size_t i = 1; i < n; i++)
        if (uids[i] != uids[m - 1])
            uids[m++] = uids[i];
    return m;
}

/* ---- UIDVALIDITY re-map ---- */

/* qsort has no context argument; the keys travel in a thread-local. */
static _Thread_local const imap_remap_key *remap_keys;

static int cmp_by_mid(const void *a, const void *b)
{
    const imap_remap_key *x = &remap_keys[*(const size_t *)a];
    const imap_remap_key *y = &remap_keys[*(const size_t *)b];
    int c = strcmp(x->message_id, y->message_id);
    if (c != 0)
        return c;
    return x->uid < y->uid ? -1 : x->uid > y->uid;
}

static int cmp_by_size_date(const void *a, const void *b)
{
    const imap_remap_key *x = &remap_keys[*(const size_t *)a];
    const imap_remap_key *y = &remap_keys[*(const size_t *)b];
    if (x->size != y->size)
        return x->size < y->size ? -1 : 1;
    if (x->date != y->date)
        return x->date < y->date ? -1 : 1;
    return x->uid < y->uid ? -1 : x->uid > y->uid;
}

static int cmp_by_uid(const void *a, const void *b)
{
    const imap_remap_key *x = &remap_keys[*(const size_t *)a];
    const imap_remap_key *y = &remap_keys[*(const size_t *)b];
    return x->uid < y->uid ? -1 : x->uid > y->uid;
}

static int known(int64_t v)
{
    return v > 0;
}

static int compatible(const imap_remap_key *s, const imap_remap_key *v)
{
    if (s->message_id != NULL && v->message_id != NULL) {
        if (strcmp(s->message_id, v->message_id) != 0)
            return 0;
        if (s->size >= 0 && v->size >= 0 && s->size != v->size)
            return 0;
        if (known(s->date) && known(v->date) && s->date != v->date)
            return 0;
        return 1;
    }
    if (s->message_id != NULL || v->message_id != NULL)
        return 0;
    return s->size >= 0 && known(s->date) && s->size == v->size && s->date == v->date;
}

void imap_remap_match(const imap_remap_key *stored, size_t n_stored,
                      const imap_remap_key *server, size_t n_server, long *match_r)
{
    size_t *with_mid = imap_xcalloc(n_server, sizeof *with_mid);
    size_t *without = imap_xcalloc(n_server, sizeof *without);
    unsigned char *used = imap_xcalloc(n_server, 1);
    size_t nw = 0, nn = 0;
    for (size_t i = 0; i < n_server; i++) {
        if (server[i].message_id != NULL)
            with_mid[nw++] = i;
        else
            without[nn++] = i;
    }
    remap_keys = server;
    qsort(with_mid, nw, sizeof *with_mid, cmp_by_mid);
    qsort(without, nn, sizeof *without, cmp_by_size_date);

    /* Stored messages in UID order, so duplicates pair up in order. */
    size_t *order = imap_xcalloc(n_stored, sizeof *order);
    for (size_t i = 0; i < n_stored; i++)
        order[i] = i;
    remap_keys = stored;
    qsort(order, n_stored, sizeof *order, cmp_by_uid);

    for (size_t k = 0; k < n_stored; k++) {
        size_t i = order[k];
        const imap_remap_key *s = &stored[i];
        match_r[i] = -1;
        const size_t *list = s->message_id != NULL ? with_mid : without;
        size_t n = s->message_id != NULL ? nw : nn;
        /* Lower bound of the first candidate with the same primary key. */
        size_t lo = 0, hi = n;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            const imap_remap_key *v = &server[list[mid]];
            int c;
            if (s->message_id != NULL)
                c = strcmp(v->message_id, s->message_id);
            else
                c = v->size != s->size ? (v->size < s->size ? -1 : 1)
                                       : (v->date < s->date ? -1 : v->date > s->date);
            if (c < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        for (size_t j = lo; j < n; j++) {
            const imap_remap_key *v = &server[list[j]];
            if (s->message_id != NULL ? strcmp(v->message_id, s->message_id) != 0
                                      : (v->size != s->size || v->date != s->date))
                break;
            if (!used[list[j]] && compatible(s, v)) {
                used[list[j]] = 1;
                match_r[i] = (long)list[j];
                break;
            }
        }
    }
    remap_keys = NULL;
    free(order);
    free(used);
    free(without);
    free(with_mid);
}
