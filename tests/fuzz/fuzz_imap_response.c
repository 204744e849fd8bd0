/* libFuzzer target: the IMAP response parser. The input is cut into
 * responses with imap_response_length (as a connection does), each one is
 * parsed, ENVELOPEs found in FETCH data are decoded, and atoms are tried
 * as UID sets, dates and modified UTF-7 names. The bounded forms a
 * connection uses are checked against the unbounded ones: the text limit
 * only ever refuses (-2) what is otherwise accepted, and a parse within a
 * small memory limit either gives the same result or says it is over;
 * strict modified UTF-7 decoding round-trips exactly. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "client/imapc.h"
#include "fuzz_target.h"

/* Small, so the limit is actually met by fuzzed input. */
#define FUZZ_MAX_TEXT 2048
#define FUZZ_MAX_MEMORY ((size_t)64 * 1024)

static void touch(const imap_token *t, int depth)
{
    if (t->str != NULL && t->type != IMAP_T_STRING)
        (void)strlen(t->str);
    if (t->type == IMAP_T_STRING && t->len > 0)
        (void)t->str[t->len - 1];
    if (t->type == IMAP_T_ATOM && depth < 2) {
        uint32_t *uids = NULL;
        size_t n = 0;
        if (t->len < 64 && imap_uidset_parse(t->str, &uids, &n) == 0) {
            char *s = imap_uidset_format(uids, n);
            free(s);
        }
        free(uids);
        uint64_t v;
        (void)imap_token_u64(t, &v);
        const char *why = NULL;
        char *name = imap_mutf7_decode_why(t->str, &why);
        FUZZ_ASSERT((name == NULL) == (why != NULL));
        if (name != NULL) {
            char *again = imap_mutf7_encode(name);
            FUZZ_ASSERT(again != NULL && strcmp(again, t->str) == 0);
            for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++)
                FUZZ_ASSERT(*p >= 0x20 && *p != 0x7f);
            free(again);
        }
        free(name);
    }
    for (size_t i = 0; i < t->n_items; i++)
        touch(&t->items[i], depth + 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    imap_arena *arena = imap_arena_new();
    size_t off = 0;
    while (off < size) {
        long n = imap_response_length(buf + off, size - off, 1 << 20);
        FUZZ_ASSERT(n <= (long)(size - off)); /* never beyond what was received */
        long bounded = imapc_response_length(buf + off, size - off, FUZZ_MAX_TEXT, 1 << 20);
        FUZZ_ASSERT(bounded == -2 || bounded == n);
        /* Incomplete or hopeless: still parse the rest once, since the
         * parser must be safe on any bytes. */
        size_t len = n > 0 ? (size_t)n : size - off;
        char *copy = malloc(len > 0 ? len : 1);
        memcpy(copy, buf + off, len);
        imap_response r;
        char *err = NULL;
        int over = 0;
        imap_arena_reset(arena);
        int limited = imapc_parse_limited(copy, len, arena, FUZZ_MAX_MEMORY, &over, &r, &err);
        FUZZ_ASSERT(limited == 0 || err != NULL);
        FUZZ_ASSERT(limited < 0 || !over);
        free(err);
        err = NULL;
        imap_arena_reset(arena);
        int full = imap_parse_response(copy, len, arena, &r, &err);
        FUZZ_ASSERT(limited < 0 || full == 0); /* a limit never accepts more */
        FUZZ_ASSERT(!(limited < 0 && !over) || full < 0); /* nor hides syntax */
        if (full == 0) {
            FUZZ_ASSERT(r.kind != IMAP_R_TAGGED || r.tag != NULL);
            for (size_t i = 0; i < r.n_args; i++)
                touch(&r.args[i], 0);
            for (size_t i = 0; i < r.n_code_args; i++)
                touch(&r.code_args[i], 0);
            if (r.text != NULL) {
                (void)imap_parse_rfc5322_date(r.text);
                char *d = imap_mutf7_decode(r.text);
                if (d != NULL) {
                    char *e = imap_mutf7_encode(d);
                    free(e);
                }
                free(d);
            }
            const imap_token *env = imap_fetch_item(&r, "ENVELOPE");
            imap_envelope e;
            if (env != NULL && imap_envelope_parse(env, arena, &e) == 0 && e.date != NULL)
                (void)imap_parse_rfc5322_date(e.date);
            const imap_token *idate = imap_fetch_item(&r, "INTERNALDATE");
            if (idate != NULL && idate->type == IMAP_T_STRING)
                (void)imap_parse_internaldate(idate->str);
            (void)imap_fetch_item(&r, "BODY[]");
        } else {
            FUZZ_ASSERT(err != NULL); /* a refusal always says why */
            free(err);
        }
        free(copy);
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    imap_arena_free(&arena);
    return 0;
}
