/* Unit tests of the IMAP protocol client: the response parser on every
 * response kind and on hostile input, decoding helpers, and connections
 * against a scripted in-process server (plain, STARTTLS and implicit TLS
 * with a throwaway CA). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "imap_client.h"

/* ---- parser ---- */

typedef struct parsed {
    imap_arena *arena;
    imap_response r;
} parsed;

static int parse(parsed *p, const char *s, size_t len)
{
    if (p->arena == NULL)
        p->arena = imap_arena_new();
    imap_arena_reset(p->arena);
    char *err = NULL;
    int ret = imap_parse_response(s, len, p->arena, &p->r, &err);
    if (ret < 0)
        assert_non_null(err);
    free(err);
    return ret;
}

#define PARSE_OK(p, s) assert_int_equal(parse((p), (s), sizeof(s) - 1), 0)
#define PARSE_BAD(p, s) assert_int_equal(parse((p), (s), sizeof(s) - 1), -1)

static uint64_t u64(const imap_token *t)
{
    uint64_t v = 0;
    assert_int_equal(imap_token_u64(t, &v), 0);
    return v;
}

static void test_parse_status(void **state)
{
    (void)state;
    parsed p = {0};
    PARSE_OK(&p, "A12 OK [READ-WRITE] SELECT completed\r\n");
    assert_int_equal(p.r.kind, IMAP_R_TAGGED);
    assert_string_equal(p.r.tag, "A12");
    assert_int_equal(p.r.status, IMAP_OK);
    assert_string_equal(p.r.code, "READ-WRITE");
    assert_int_equal(p.r.n_code_args, 0);
    assert_string_equal(p.r.text, "SELECT completed");

    PARSE_OK(&p, "a1 no Mailbox doesn't exist\r\n");
    assert_int_equal(p.r.status, IMAP_NO);
    assert_null(p.r.code);
    assert_string_equal(p.r.text, "Mailbox doesn't exist");

    PARSE_OK(&p, "A3 BAD\r\n");
    assert_int_equal(p.r.status, IMAP_BAD);
    assert_string_equal(p.r.text, "");

    PARSE_OK(&p, "* OK [UIDVALIDITY 3857529045] UIDs valid\r\n");
    assert_int_equal(p.r.kind, IMAP_R_UNTAGGED);
    assert_int_equal(p.r.status, IMAP_OK);
    assert_string_equal(p.r.keyword, "OK");
    assert_string_equal(p.r.code, "UIDVALIDITY");
    assert_int_equal(p.r.n_code_args, 1);
    assert_int_equal(u64(&p.r.code_args[0]), 3857529045u);

    PARSE_OK(&p, "* OK [HIGHESTMODSEQ 9223372036854775807] Highest\r\n");
    assert_string_equal(p.r.code, "HIGHESTMODSEQ");
    assert_true(u64(&p.r.code_args[0]) == 9223372036854775807ULL);

    PARSE_OK(&p, "* OK [NOMODSEQ] Sorry\r\n");
    assert_string_equal(p.r.code, "NOMODSEQ");
    PARSE_OK(&p, "* OK [CLOSED] Previous mailbox closed.\r\n");
    assert_string_equal(p.r.code, "CLOSED");
    PARSE_OK(&p, "* OK [UIDNEXT 4392] Predicted next UID\r\n");
    assert_int_equal(u64(&p.r.code_args[0]), 4392);

    PARSE_OK(&p, "* OK [PERMANENTFLAGS (\\Answered \\Seen $Forwarded \\*)] Flags permitted.\r\n");
    assert_string_equal(p.r.code, "PERMANENTFLAGS");
    assert_int_equal(p.r.n_code_args, 1);
    assert_int_equal(p.r.code_args[0].type, IMAP_T_LIST);
    assert_int_equal(p.r.code_args[0].n_items, 4);
    assert_string_equal(p.r.code_args[0].items[3].str, "\\*");
    assert_string_equal(p.r.text, "Flags permitted.");

    PARSE_OK(&p, "A5 OK [APPENDUID 38505 3955] APPEND completed\r\n");
    assert_string_equal(p.r.code, "APPENDUID");
    assert_int_equal(p.r.n_code_args, 2);
    assert_int_equal(u64(&p.r.code_args[1]), 3955);
    PARSE_OK(&p, "A6 OK [COPYUID 38505 304,319:320 3956:3958] Done\r\n");
    assert_string_equal(p.r.code, "COPYUID");
    assert_int_equal(p.r.n_code_args, 3);
    assert_string_equal(p.r.code_args[1].str, "304,319:320");
    PARSE_OK(&p, "A7 NO [LIMIT] Too many\r\n");
    assert_string_equal(p.r.code, "LIMIT");

    PARSE_OK(&p, "* OK [CAPABILITY IMAP4rev1 SASL-IR LITERAL+ AUTH=PLAIN] Dovecot ready.\r\n");
    assert_string_equal(p.r.code, "CAPABILITY");
    assert_int_equal(p.r.n_code_args, 4);
    assert_string_equal(p.r.code_args[2].str, "LITERAL+");
    assert_string_equal(p.r.text, "Dovecot ready.");

    PARSE_OK(&p, "* BYE Logging out\r\n");
    assert_int_equal(p.r.status, IMAP_BYE);
    PARSE_OK(&p, "* PREAUTH [CAPABILITY IMAP4rev1] Logged in as x\r\n");
    assert_int_equal(p.r.status, IMAP_PREAUTH);

    /* A code that does not parse stays in the text. */
    PARSE_OK(&p, "* OK [ALERT unterminated\r\n");
    assert_null(p.r.code);
    assert_string_equal(p.r.text, "[ALERT unterminated");

    PARSE_OK(&p, "+ OK\r\n");
    assert_int_equal(p.r.kind, IMAP_R_CONTINUATION);
    assert_string_equal(p.r.text, "OK");
    PARSE_OK(&p, "+\r\n");
    assert_string_equal(p.r.text, "");
    PARSE_OK(&p, "+ eyJzdGF0dXMiOiI0MDEifQ==\r\n");
    assert_string_equal(p.r.text, "eyJzdGF0dXMiOiI0MDEifQ==");
    imap_arena_free(&p.arena);
    assert_null(p.arena);
}

static void test_parse_untagged_data(void **state)
{
    (void)state;
    parsed p = {0};
    PARSE_OK(&p, "* 23 EXISTS\r\n");
    assert_true(p.r.has_number);
    assert_int_equal(p.r.number, 23);
    assert_string_equal(p.r.keyword, "EXISTS");
    assert_int_equal(p.r.status, IMAP_NONE);
    PARSE_OK(&p, "* 4294967295 expunge\r\n");
    assert_int_equal(p.r.number, 4294967295u);
    assert_string_equal(p.r.keyword, "EXPUNGE");
    PARSE_BAD(&p, "* 4294967296 EXPUNGE\r\n");

    PARSE_OK(&p, "* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent Items\"\r\n");
    assert_string_equal(p.r.keyword, "LIST");
    assert_int_equal(p.r.n_args, 3);
    assert_int_equal(p.r.args[0].n_items, 2);
    assert_string_equal(p.r.args[0].items[1].str, "\\Sent");
    assert_int_equal(p.r.args[1].type, IMAP_T_STRING);
    assert_string_equal(p.r.args[1].str, "/");
    assert_string_equal(p.r.args[2].str, "Sent Items");
    PARSE_OK(&p, "* LIST (\\Noselect) NIL \"\"\r\n");
    assert_int_equal(p.r.args[1].type, IMAP_T_NIL);
    assert_int_equal(p.r.args[2].len, 0);
    PARSE_OK(&p, "* LIST () \".\" {11}\r\nfoo \"bar\"\\x\r\n");
    assert_int_equal(p.r.args[2].type, IMAP_T_STRING);
    assert_string_equal(p.r.args[2].str, "foo \"bar\"\\x");

    PARSE_OK(&p, "* STATUS \"a \\\"b\\\\\" (MESSAGES 231 UIDNEXT 44292 HIGHESTMODSEQ 7)\r\n");
    assert_string_equal(p.r.args[0].str, "a \"b\\");
    assert_int_equal(p.r.args[1].n_items, 6);
    assert_int_equal(u64(&p.r.args[1].items[3]), 44292);

    PARSE_OK(&p, "* SEARCH 2 3 6 (MODSEQ 917162500)\r\n");
    assert_string_equal(p.r.keyword, "SEARCH");
    assert_int_equal(p.r.n_args, 4);
    PARSE_OK(&p, "* SEARCH\r\n");
    assert_int_equal(p.r.n_args, 0);

    PARSE_OK(&p, "* ESEARCH (TAG \"A282\") UID MIN 2 MAX 47 COUNT 3 ALL 2,10:11,47\r\n");
    assert_string_equal(p.r.keyword, "ESEARCH");
    assert_int_equal(p.r.n_args, 10);
    assert_int_equal(p.r.args[0].type, IMAP_T_LIST);
    assert_string_equal(p.r.args[0].items[1].str, "A282");
    assert_true(imap_token_is(&p.r.args[1], "uid"));
    assert_string_equal(p.r.args[9].str, "2,10:11,47");

    PARSE_OK(&p, "* VANISHED (EARLIER) 41,43:116,118,120:211\r\n");
    assert_string_equal(p.r.keyword, "VANISHED");
    assert_true(imap_token_is(&p.r.args[0].items[0], "EARLIER"));
    assert_string_equal(p.r.args[1].str, "41,43:116,118,120:211");

    PARSE_OK(&p, "* ENABLED CONDSTORE QRESYNC\r\n");
    assert_int_equal(p.r.n_args, 2);
    PARSE_OK(&p, "* CAPABILITY IMAP4rev1 IDLE X-GM-EXT-1\r\n");
    assert_string_equal(p.r.keyword, "CAPABILITY");
    assert_int_equal(p.r.n_args, 3);
    PARSE_OK(&p, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Junk)\r\n");
    assert_int_equal(p.r.args[0].n_items, 6);
    PARSE_OK(&p, "* ID (\"name\" \"Dovecot\" \"version\" NIL)\r\n");
    assert_int_equal(p.r.args[0].n_items, 4);
    assert_int_equal(p.r.args[0].items[3].type, IMAP_T_NIL);
    PARSE_OK(&p, "* ID NIL\r\n");
    assert_int_equal(p.r.args[0].type, IMAP_T_NIL);
    imap_arena_free(&p.arena);
}

static void test_parse_fetch(void **state)
{
    (void)state;
    parsed p = {0};
    static const char f1[] =
        "* 12 FETCH (UID 5 FLAGS (\\Seen $Label1) MODSEQ (12345678901234) "
        "RFC822.SIZE 44827 INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" "
        "BODY[] {12}\r\nHello\r\nWorld X-GM-MSGID 1278455344230334865 "
        "X-GM-LABELS (\\Inbox \"My label\") BODY[HEADER.FIELDS (SUBJECT FROM)] {9}\r\n"
        "Subject:  BINARY[1] ~{3}\r\na\0b BODY[1.2]<0> \"part\")\r\n";
    assert_int_equal(parse(&p, f1, sizeof f1 - 1), 0);
    assert_string_equal(p.r.keyword, "FETCH");
    assert_int_equal(p.r.number, 12);
    assert_int_equal(u64(imap_fetch_item(&p.r, "uid")), 5);
    const imap_token *fl = imap_fetch_item(&p.r, "FLAGS");
    assert_non_null(fl);
    assert_int_equal(fl->n_items, 2);
    const imap_token *ms = imap_fetch_item(&p.r, "MODSEQ");
    assert_true(u64(&ms->items[0]) == 12345678901234ULL);
    const imap_token *body = imap_fetch_item(&p.r, "BODY[]");
    assert_non_null(body);
    assert_int_equal(body->type, IMAP_T_STRING);
    assert_int_equal(body->len, 12);
    assert_memory_equal(body->str, "Hello\r\nWorld", 12);
    assert_true(u64(imap_fetch_item(&p.r, "X-GM-MSGID")) == 1278455344230334865ULL);
    assert_string_equal(imap_fetch_item(&p.r, "X-GM-LABELS")->items[1].str, "My label");
    const imap_token *hf = imap_fetch_item(&p.r, "body[header.fields (subject from)]");
    assert_non_null(hf);
    assert_string_equal(hf->str, "Subject: ");
    const imap_token *bin = imap_fetch_item(&p.r, "BINARY[1]");
    assert_non_null(bin);
    assert_int_equal(bin->len, 3);
    assert_memory_equal(bin->str, "a\0b", 3);
    /* A section with an origin matches the bare name and itself. */
    assert_string_equal(imap_fetch_item(&p.r, "BODY[1.2]")->str, "part");
    assert_string_equal(imap_fetch_item(&p.r, "BODY[1.2]<0>")->str, "part");
    assert_null(imap_fetch_item(&p.r, "BODY[1.2]<5>"));
    assert_null(imap_fetch_item(&p.r, "ENVELOPE"));
    const imap_token *sec = &p.r.args[0].items[10];
    assert_int_equal(sec->type, IMAP_T_SECTION);
    assert_string_equal(sec->str, "BODY[]");

    /* Nested BODYSTRUCTURE with adjacent lists. */
    static const char bs[] =
        "* 3 FETCH (BODYSTRUCTURE (((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL "
        "\"7bit\" 10 1)(\"text\" \"html\" NIL NIL NIL \"7bit\" 20 1) \"alternative\")"
        "(\"application\" \"pdf\" (\"name\" \"a.pdf\") NIL NIL \"base64\" 400) \"mixed\") UID 9)\r\n";
    assert_int_equal(parse(&p, bs, sizeof bs - 1), 0);
    const imap_token *b = imap_fetch_item(&p.r, "BODYSTRUCTURE");
    assert_non_null(b);
    assert_int_equal(b->n_items, 3);
    assert_int_equal(b->items[0].n_items, 3);
    assert_string_equal(b->items[0].items[1].items[1].str, "html");
    assert_string_equal(b->items[2].str, "mixed");
    assert_int_equal(u64(imap_fetch_item(&p.r, "UID")), 9);
    imap_arena_free(&p.arena);
}

static void test_parse_malformed(void **state)
{
    (void)state;
    parsed p = {0};
    PARSE_BAD(&p, "* LIST () \"/\" \"unterminated\r\n");
    PARSE_BAD(&p, "* LIST () \"/\" \"unterminated");
    PARSE_BAD(&p, "* 1 FETCH (BODY[] {abc}\r\nxyz)\r\n");
    PARSE_BAD(&p, "* 1 FETCH (BODY[] {}\r\n)\r\n");
    PARSE_BAD(&p, "* 1 FETCH (BODY[] {99999999999}\r\n)\r\n");
    PARSE_BAD(&p, "* 1 FETCH (BODY[] {10}\r\nshort)\r\n");
    PARSE_BAD(&p, "* 1 FETCH (BODY[] {3} x\r\nabc)\r\n");
    PARSE_BAD(&p, "* 1 FETCH (FLAGS (\\Seen)\r\n");
    PARSE_BAD(&p, "* 1 FETCH (FLAGS (\\Seen)))\r\n");
    PARSE_BAD(&p, "* 1 FETCH (UID 5)");
    PARSE_BAD(&p, "* 1 FETCH (BODY[HEADER\r\n");
    PARSE_BAD(&p, "* 1 FETCH (BODY[]<x> NIL)\r\n");
    PARSE_BAD(&p, "A1 MAYBE fine\r\n");
    PARSE_BAD(&p, "A1 BYE\r\n");
    PARSE_BAD(&p, "*\r\n");
    PARSE_BAD(&p, "");
    PARSE_BAD(&p, "* 1 FETCH (UID 5) trailing\r\nmore");
    static const char nul_atom[] = "* CAPABILITY IMAP4\0rev1\r\n";
    assert_int_equal(parse(&p, nul_atom, sizeof nul_atom - 1), -1);
    static const char nul_quoted[] = "* LIST () \"/\" \"a\0b\"\r\n";
    assert_int_equal(parse(&p, nul_quoted, sizeof nul_quoted - 1), -1);

    char deep[300];
    size_t n = 0;
    n += (size_t)snprintf(deep, sizeof deep, "* X ");
    for (int i = 0; i < 65; i++)
        deep[n++] = '(';
    for (int i = 0; i < 65; i++)
        deep[n++] = ')';
    deep[n++] = '\r';
    deep[n++] = '\n';
    assert_int_equal(parse(&p, deep, n), -1);
    /* 64 levels are fine. */
    n = (size_t)snprintf(deep, sizeof deep, "* X ");
    for (int i = 0; i < 64; i++)
        deep[n++] = '(';
    for (int i = 0; i < 64; i++)
        deep[n++] = ')';
    deep[n++] = '\r';
    deep[n++] = '\n';
    assert_int_equal(parse(&p, deep, n), 0);

    /* A literal claiming more than the buffer never reads past it: the
     * data lives in a heap block of exactly this size (ASan checks). */
    static const char lit[] = "* 1 FETCH (BODY[] {5}\r\nab";
    char *heap = malloc(sizeof lit - 1);
    memcpy(heap, lit, sizeof lit - 1);
    assert_int_equal(parse(&p, heap, sizeof lit - 1), -1);
    free(heap);
    imap_arena_free(&p.arena);
}

static void test_response_length(void **state)
{
    (void)state;
    static const char stream[] =
        "* 3 EXISTS\r\n"
        "* 1 FETCH (UID 4 BODY[] {5}\r\nab\r\nc BODY[TEXT] {0}\r\n FLAGS ())\r\n"
        "+ go\r\n"
        "A1 OK done\r\n";
    size_t total = sizeof stream - 1;
    size_t ends[] = {12, 12 + 63, 12 + 63 + 6, total};
    assert_int_equal(imap_response_length(stream, total, 1 << 20), 12);
    assert_int_equal(imap_response_length(stream + 12, total - 12, 1 << 20), 63);
    /* Every prefix: 0 until the first response is complete. */
    size_t start = 0;
    for (size_t k = 0; k < 4; k++) {
        for (size_t cut = start; cut <= total; cut++) {
            long n = imap_response_length(stream + start, cut - start, 1 << 20);
            if (cut < ends[k])
                assert_int_equal(n, 0);
            else
                assert_int_equal(n, (long)(ends[k] - start));
        }
        start = ends[k];
    }
    assert_int_equal(imap_response_length("* OK x", 6, 5), -1);
    assert_int_equal(imap_response_length("* OK x\r\n", 8, 7), -1);
    assert_int_equal(imap_response_length("* 1 FETCH (BODY[] {100}\r\n", 25, 64), -1);
    assert_int_equal(imap_response_length("* 1 FETCH (BODY[] {99999999999}\r\n", 33, 1 << 30),
                     -1);
    assert_int_equal(imap_response_length("* 1 FETCH (B ~{3}\r\nab", 21, 1 << 20), 0);
    assert_int_equal(imap_response_length("* 1 FETCH (B ~{3}\r\nabc)\r\n", 25, 1 << 20), 25);
}

static void test_envelope(void **state)
{
    (void)state;
    parsed p = {0};
    static const char env[] =
        "* 1 FETCH (ENVELOPE (\"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\" "
        "\"=?UTF-8?B?RW50d8O8cmZl?= =?ISO-8859-1?Q?f=FCr_Sie?= and =?utf-8?q?caf=C3=A9?=\" "
        "((\"=?windows-1252?Q?=93Terry=94_Gray?=\" NIL \"gray\" \"cac.washington.edu\")) "
        "NIL NIL "
        "((NIL NIL \"imap\" \"cac.washington.edu\")(\"=?ISO-8859-15?Q?J=F6rg_=A4?=\" NIL \"j\" \"x.de\")"
        "(\"Group\" NIL \"undisclosed\" NIL)(NIL NIL NIL NIL)) "
        "NIL NIL \"<parent@x>\" \"<B27397-0100000@cac.washington.edu>\"))\r\n";
    assert_int_equal(parse(&p, env, sizeof env - 1), 0);
    imap_envelope e;
    assert_int_equal(imap_envelope_parse(imap_fetch_item(&p.r, "ENVELOPE"), p.arena, &e), 0);
    assert_string_equal(e.date, "Wed, 17 Jul 1996 02:23:25 -0700 (PDT)");
    assert_string_equal(e.subject, "Entw\xc3\xbcrfef\xc3\xbcr Sie and caf\xc3\xa9");
    assert_string_equal(e.from, "\xe2\x80\x9cTerry\xe2\x80\x9d Gray <gray@cac.washington.edu>");
    assert_string_equal(e.to, "imap@cac.washington.edu, J\xc3\xb6rg \xe2\x82\xac <j@x.de>");
    assert_string_equal(e.message_id, "B27397-0100000@cac.washington.edu");
    assert_string_equal(e.in_reply_to, "parent@x");

    static const char env2[] =
        "* 2 FETCH (ENVELOPE (NIL \"plain =?bogus?X?abc?= {x}\" NIL NIL NIL NIL NIL NIL NIL NIL))\r\n";
    assert_int_equal(parse(&p, env2, sizeof env2 - 1), 0);
    assert_int_equal(imap_envelope_parse(imap_fetch_item(&p.r, "ENVELOPE"), p.arena, &e), 0);
    assert_null(e.date);
    assert_string_equal(e.subject, "plain =?bogus?X?abc?= {x}");
    assert_null(e.from);
    assert_null(e.message_id);

    PARSE_OK(&p, "* 2 FETCH (ENVELOPE (NIL NIL))\r\n");
    assert_int_equal(imap_envelope_parse(imap_fetch_item(&p.r, "ENVELOPE"), p.arena, &e), -1);
    imap_arena_free(&p.arena);
}

static void test_dates(void **state)
{
    (void)state;
    assert_int_equal(imap_parse_internaldate("17-Jul-1996 02:44:25 -0700"), 837596665);
    assert_int_equal(imap_parse_internaldate(" 7-Jul-1996 02:44:25 +0000"), 836707465);
    assert_int_equal(imap_parse_internaldate("17-Jux-1996 02:44:25 -0700"), -1);
    assert_int_equal(imap_parse_internaldate("17-Jul-1996 02:44:25"), -1);
    assert_int_equal(imap_parse_internaldate(""), -1);
    assert_int_equal(imap_parse_rfc5322_date("Wed, 17 Jul 1996 02:44:25 -0700"), 837596665);
    assert_int_equal(imap_parse_rfc5322_date("17 Jul 1996 09:44:25 GMT"), 837596665);
    assert_int_equal(imap_parse_rfc5322_date("Wed, 17 Jul 96 02:44:25 PDT"), 837596665);
    assert_int_equal(imap_parse_rfc5322_date("Wed , 17 Jul 1996 02:44 -0700 (PDT)"), 837596640);
    assert_int_equal(imap_parse_rfc5322_date("(c) Wed, 17 Jul 1996 09:44:25 +0000 (UTC)"),
                     837596665);
    assert_int_equal(imap_parse_rfc5322_date("Thu, 1 Jan 2026 00:00:00 +0100"), 1767222000);
    assert_int_equal(imap_parse_rfc5322_date("1 Jan 05 00:00:00 Z"), 1104537600);
    assert_int_equal(imap_parse_rfc5322_date("not a date"), -1);
    assert_int_equal(imap_parse_rfc5322_date("32 Jan 2026 00:00:00 +0000"), -1);
    assert_int_equal(imap_parse_rfc5322_date(NULL), -1);
}

static void mutf7_roundtrip(const char *utf8, const char *expect)
{
    char *enc = imap_mutf7_encode(utf8);
    assert_non_null(enc);
    assert_string_equal(enc, expect);
    char *dec = imap_mutf7_decode(enc);
    assert_non_null(dec);
    assert_string_equal(dec, utf8);
    free(enc);
    free(dec);
}

static void test_mutf7(void **state)
{
    (void)state;
    mutf7_roundtrip("INBOX", "INBOX");
    mutf7_roundtrip("Entw\xc3\xbcrfe", "Entw&APw-rfe");
    mutf7_roundtrip("\xe5\x8f\xb0\xe5\x8c\x97", "&U,BTFw-");
    mutf7_roundtrip("&", "&-");
    mutf7_roundtrip("Tom & Jerry", "Tom &- Jerry");
    mutf7_roundtrip("~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
                    "~peter/mail/&U,BTFw-/&ZeVnLIqe-");
    mutf7_roundtrip("\xf0\x9f\x98\x80 smile", "&2D3eAA- smile");
    mutf7_roundtrip("", "");
    assert_null(imap_mutf7_encode("bad \xc3"));
    assert_null(imap_mutf7_encode("overlong \xc0\xaf"));
    assert_null(imap_mutf7_decode("&U,BTFw"));
    assert_null(imap_mutf7_decode("&A-"));
    assert_null(imap_mutf7_decode("&2D3-"));
    assert_null(imap_mutf7_decode("raw \xc3\xbc"));
    assert_null(imap_mutf7_decode("&U=BTFw-"));
    assert_null(imap_mutf7_decode(NULL));

    /* Names that would merge with another folder or hide characters:
     * "Foo&AAA-bar" decoded to "Foo" (NUL), "&AEE-" to "A". */
    static const struct {
        const char *name;
        const char *why;
    } refused[] = {
        {"Foo&AAA-bar", "a NUL character"},
        {"&AAE-", "a control character"},
        {"a&AAoA,A-", "a control character"},
        {"&AH8-", "a control character"},
        {"&AIA-", "a control character"},
        {"&AJ8-", "a control character"},
        {"&AEE-", "an ASCII character in base64"},
        {"&ACY-", "an ASCII character in base64"},
        {"&APw-&APw-", "two adjacent base64 runs"},
        {"&APx-", "a bad base64 run"},
        {"&APwA-", "a bad base64 run"},
        {"&2D0-", "an unpaired surrogate"},
        {"&3gA-", "an unpaired surrogate"},
        {"tab\there", "a control character"},
        {"&APw", "an unterminated base64 run"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        const char *why = NULL;
        char *d = imap_mutf7_decode_why(refused[i].name, &why);
        if (d != NULL || why == NULL || strcmp(why, refused[i].why) != 0)
            print_error("%s: %s (%s)\n", refused[i].name, d != NULL ? d : "NULL",
                        why != NULL ? why : "no reason");
        assert_null(d);
        assert_string_equal(why, refused[i].why);
    }
    /* What they would have collided with still decodes. */
    mutf7_roundtrip("\xc3\xbc\xc3\xbc", "&APwA,A-");
    mutf7_roundtrip("\xc2\xa0nbsp", "&AKA-nbsp");
    const char *why = "x";
    char *d = imap_mutf7_decode_why("A &- B", &why);
    assert_string_equal(d, "A & B");
    assert_null(why);
    free(d);
}

static void test_uidset(void **state)
{
    (void)state;
    uint32_t *u = NULL;
    size_t n = 0;
    assert_int_equal(imap_uidset_parse("1:5,7,12:9,3", &u, &n), 0);
    assert_int_equal(n, 10);
    uint32_t expect[] = {1, 2, 3, 4, 5, 7, 9, 10, 11, 12};
    assert_memory_equal(u, expect, sizeof expect);
    char *s = imap_uidset_format(u, n);
    assert_string_equal(s, "1:5,7,9:12");
    free(s);
    free(u);
    assert_int_equal(imap_uidset_parse("4294967295", &u, &n), 0);
    assert_int_equal(u[0], 4294967295u);
    free(u);
    assert_int_equal(imap_uidset_parse("", &u, &n), -1);
    assert_int_equal(imap_uidset_parse("1,", &u, &n), -1);
    assert_int_equal(imap_uidset_parse("0:3", &u, &n), -1);
    assert_int_equal(imap_uidset_parse("1:*", &u, &n), -1);
    assert_int_equal(imap_uidset_parse("4294967296", &u, &n), -1);
    assert_int_equal(imap_uidset_parse("1:4294967295", &u, &n), -1);
    assert_null(u);
    s = imap_uidset_format(NULL, 0);
    assert_string_equal(s, "");
    free(s);
    uint32_t one[] = {42};
    s = imap_uidset_format(one, 1);
    assert_string_equal(s, "42");
    free(s);
}

/* ---- scripted server ---- */

#include "imap_script_server.h"

typedef struct seen {
    int exists;
    int expunge;
    uint32_t uidvalidity;
    int cont;
    char order[64];
} seen;

static int on_untagged(const imap_response *r, void *arg)
{
    seen *sn = arg;
    if (r->kind == IMAP_R_CONTINUATION)
        sn->cont++;
    if (r->has_number && strlen(sn->order) + 2 < sizeof sn->order) {
        size_t n = strlen(sn->order);
        sn->order[n] = r->keyword[0];
        sn->order[n + 1] = (char)('0' + r->number % 10);
        sn->order[n + 2] = '\0';
    }
    if (r->keyword != NULL && strcmp(r->keyword, "EXISTS") == 0)
        sn->exists = (int)r->number;
    if (r->keyword != NULL && strcmp(r->keyword, "EXPUNGE") == 0)
        sn->expunge = (int)r->number;
    if (r->code != NULL && strcmp(r->code, "UIDVALIDITY") == 0) {
        uint64_t v;
        if (imap_token_u64(&r->code_args[0], &v) == 0)
            sn->uidvalidity = (uint32_t)v;
    }
    return 0;
}

static void test_conn_sasl_ir_pipelining(void **state)
{
    (void)state;
    static const char *const script[] = {
        "S:* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN AUTH=XOAUTH2 ID ENABLE QRESYNC "
        "CONDSTORE LITERAL+ IDLE] Dovecot ready.",
        "C:A1 AUTHENTICATE PLAIN AHVzZXIAc2VjcmV0",
        "S:A1 OK [CAPABILITY IMAP4rev1 ID ENABLE QRESYNC CONDSTORE IDLE UIDPLUS LITERAL+] Logged in",
        "C:A2 ID (\"name\" \"mailpulse\")",
        "S:* ID (\"name\" \"Dovecot\")",
        "S:A2 OK ID completed.",
        "C:A3 ENABLE QRESYNC",
        "S:* ENABLED QRESYNC",
        "S:A3 OK Enabled.",
        "C:A4 SELECT Entw&APw-rfe",
        "C:A5 NOOP",
        "C:A6 SEARCH SUBJECT {5+}",
        "C:caf\xc3\xa9",
        "S:* 3 EXISTS",
        "S:A5 OK noop done",
        "S:* OK [UIDVALIDITY 7] UIDs valid",
        "S:A4 OK [READ-WRITE] Select completed.",
        "S:* SEARCH 2",
        "S:A6 OK Search completed.",
        NULL,
    };
    server s = {0};
    server_start(&s, script);
    imap_conn_opts o = plain_opts(&s);
    o.client_id = "mailpulse";
    o.enable = 1;
    imap_conn *c = NULL;
    char *err = NULL;
    imap_auth_answer auth;
    int open_r = imap_conn_open(&o, &c, &auth, &err);
    if (open_r != 0)
        print_error("open: %s (server: %s)\n", err, s.error);
    assert_int_equal(open_r, 0);
    assert_null(err);
    assert_int_equal(auth.refused, 0);
    const imap_caps *caps = imap_conn_caps(c);
    assert_string_equal(caps->greeting, "Dovecot ready.");
    assert_string_equal(caps->auth_mechs, "PLAIN XOAUTH2");
    assert_true(caps->bits & IMAP_CAP_UIDPLUS);
    assert_true(caps->bits & IMAP_CAP_LITERAL_PLUS);
    assert_false(caps->bits & IMAP_CAP_MOVE);
    assert_true(imap_conn_enabled(c) & IMAP_CAP_QRESYNC);
    assert_true(imap_conn_fd(c) >= 0);

    char t1[16], t2[16], t3[16];
    assert_int_equal(imap_send(c, t1, &err, "SELECT %m", "Entw\xc3\xbcrfe"), 0);
    assert_int_equal(imap_send(c, t2, &err, "NOOP"), 0);
    assert_int_equal(imap_send(c, t3, &err, "SEARCH SUBJECT %s", "caf\xc3\xa9"), 0);
    assert_string_equal(t1, "A4");
    seen sn = {0};
    imap_status st = IMAP_NONE;
    char *text = NULL;
    int wr = imap_wait(c, t1, on_untagged, &sn, &st, &text, &err);
    if (wr != 0)
        print_error("wait: %s (server: %s)\n", err, s.error);
    assert_int_equal(wr, 0);
    assert_int_equal(st, IMAP_OK);
    assert_string_equal(text, "[READ-WRITE] Select completed.");
    free(text);
    assert_int_equal(sn.exists, 3);
    assert_int_equal(sn.uidvalidity, 7);
    /* A5 completed first: its result was kept. */
    assert_int_equal(imap_wait(c, t2, NULL, NULL, &st, &text, &err), 0);
    assert_int_equal(st, IMAP_OK);
    assert_string_equal(text, "noop done");
    free(text);
    assert_int_equal(imap_wait(c, t3, NULL, NULL, &st, NULL, &err), 0);
    imap_conn_close(&c);
    assert_null(c);
    imap_conn_close(&c);
    server_join(&s);
    assert_string_equal(s.error, "");
}

/* ID and ENABLE share one round trip, and with defer_settle the caller's
 * first command joins them: the server reads all three before it answers
 * any (a client waiting in between would stall the script until its
 * timeout). imap_conn_settle then collects the answers; ENABLED counts. */
static void test_conn_defer_settle(void **state)
{
    (void)state;
    static const char *const script[] = {
        "S:* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN ID ENABLE LIST-STATUS] ready",
        "C:A1 AUTHENTICATE PLAIN AHVzZXIAc2VjcmV0",
        "S:A1 OK [CAPABILITY IMAP4rev1 ID ENABLE QRESYNC CONDSTORE LIST-STATUS] in",
        "C:A2 ID (\"name\" \"mailpulse\")",
        "C:A3 ENABLE QRESYNC",
        "C:A4 LIST \"\" \"*\"",
        "S:* ID NIL",
        "S:A2 OK ID done",
        "S:* ENABLED QRESYNC",
        "S:A3 OK enabled",
        "S:* LIST () \"/\" INBOX",
        "S:A4 OK listed",
        NULL,
    };
    server s = {0};
    server_start(&s, script);
    imap_conn_opts o = plain_opts(&s);
    o.client_id = "mailpulse";
    o.enable = 1;
    o.defer_settle = 1;
    imap_conn *c = NULL;
    char *err = NULL;
    int open_r = imap_conn_open(&o, &c, NULL, &err);
    if (open_r != 0)
        print_error("open: %s (server: %s)\n", err, s.error);
    assert_int_equal(open_r, 0);
    char tag[16];
    assert_int_equal(imap_send(c, tag, &err, "LIST \"\" \"*\""), 0);
    assert_int_equal(imap_conn_settle(c, &err), 0);
    assert_true(imap_conn_enabled(c) & IMAP_CAP_QRESYNC);
    assert_int_equal(imap_conn_settle(c, &err), 0); /* nothing pending: at once */
    imap_status st = IMAP_NONE;
    assert_int_equal(imap_wait(c, tag, NULL, NULL, &st, NULL, &err), 0);
    assert_int_equal(st, IMAP_OK);
    assert_null(err);
    imap_conn_abort(&c);
    server_join(&s);
    assert_string_equal(s.error, "");
}

static void test_conn_login_sync_literal(void **state)
{
    (void)state;
    static const char *const script[] = {
        "S:* OK ready",
        "C:A1 CAPABILITY",
        "S:* CAPABILITY IMAP4rev1 AUTH=PLAIN",
        "S:A1 OK done",
        "C:A2 LOGIN user {5}",
        "S:* OK [ALERT] untagged while waiting",
        "S:+ OK",
        "C:p\xc3\xa4ss",
        "S:A2 OK Logged in",
        "C:A3 CAPABILITY",
        "S:* CAPABILITY IMAP4rev1 IDLE MOVE",
        "S:A3 OK done",
        "C:A4 LIST \"\" \"a \\\"q\\\"\"",
        "S:* LIST () \"/\" x",
        "S:A4 OK",
        "C:A5 SELECT \"a b\"",
        "S:A5 NO [NONEXISTENT] Mailbox doesn't exist: a b",
        NULL,
    };
    server s = {0};
    server_start(&s, script);
    imap_conn_opts o = plain_opts(&s);
    o.auth = IMAP_AUTH_LOGIN;
    o.secret = "p\xc3\xa4ss";
    imap_conn *c = NULL;
    char *err = NULL;
    assert_int_equal(imap_conn_open(&o, &c, NULL, &err), 0);
    assert_true(imap_conn_caps(c)->bits & IMAP_CAP_MOVE);
    assert_string_equal(imap_conn_caps(c)->raw, "IMAP4rev1 IDLE MOVE");
    assert_int_equal(imap_run(c, NULL, NULL, NULL, &err, "LIST %s %s", "", "a \"q\""), 0);
    assert_int_equal(imap_run(c, NULL, NULL, NULL, &err, "SELECT %m", "a b"), -1);
    assert_string_equal(err, "SELECT failed: NO [NONEXISTENT] Mailbox doesn't exist: a b");
    free(err);
    imap_conn_close(&c);
    server_join(&s);
    assert_string_equal(s.error, "");
}

static void test_conn_auth_failures(void **state)
{
    (void)state;
    static const char *const no_script[] = {
        "S:* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] ready",
        "C:A1 AUTHENTICATE PLAIN AHVzZXIAc2VjcmV0",
        "S:A1 NO [AUTHENTICATIONFAILED] Authentication failed.",
        NULL,
    };
    server s = {0};
    server_start(&s, no_script);
    imap_conn_opts o = plain_opts(&s);
    imap_conn *c = NULL;
    char *err = NULL;
    imap_auth_answer auth;
    assert_int_equal(imap_conn_open(&o, &c, &auth, &err), -1);
    assert_null(c);
    assert_int_equal(auth.refused, 1);
    assert_non_null(strstr(err, "AUTHENTICATIONFAILED"));
    assert_null(strstr(err, "secret"));
    free(err);
    err = NULL;
    server_join(&s);
    assert_string_equal(s.error, "");

    /* XOAUTH2 without SASL-IR: JSON error challenge, empty answer, NO. */
    static const char *const xo_script[] = {
        "S:* OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2] ready",
        "C:A1 AUTHENTICATE XOAUTH2",
        "S:+ ",
        "C:dXNlcj11c2VyAWF1dGg9QmVhcmVyIHNlY3JldAEB",
        "S:+ eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiQmVhcmVyIn0=",
        "C:",
        "S:A1 NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)",
        NULL,
    };
    memset(&s, 0, sizeof s);
    server_start(&s, xo_script);
    o = plain_opts(&s);
    o.auth = IMAP_AUTH_XOAUTH2;
    assert_int_equal(imap_conn_open(&o, &c, &auth, &err), -1);
    assert_int_equal(auth.refused, 1);
    assert_null(strstr(err, "secret"));
    free(err);
    err = NULL;
    server_join(&s);
    assert_string_equal(s.error, "");

    /* LOGINDISABLED: LOGIN is never sent. */
    static const char *const ld_script[] = {
        "S:* OK [CAPABILITY IMAP4rev1 LOGINDISABLED] ready",
        "E",
        NULL,
    };
    memset(&s, 0, sizeof s);
    server_start(&s, ld_script);
    o = plain_opts(&s);
    o.auth = IMAP_AUTH_LOGIN;
    assert_int_equal(imap_conn_open(&o, &c, &auth, &err), -1);
    assert_int_equal(auth.refused, 0);
    assert_non_null(strstr(err, "LOGINDISABLED"));
    free(err);
    err = NULL;
    server_join(&s);
    assert_string_equal(s.error, "");

    /* OAUTHBEARER with SASL-IR (RFC 7628 message). */
    static const char *const ob_script[] = {
        "S:* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=OAUTHBEARER] ready",
        "C:A1 AUTHENTICATE OAUTHBEARER bixhPXVzZXIsAWhvc3Q9MTI3LjAuMC4xAXBvcnQ9*",
        "S:+ eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIn0=",
        "C:AQ==",
        "S:A1 NO [AUTHENTICATIONFAILED] nope",
        NULL,
    };
    memset(&s, 0, sizeof s);
    server_start(&s, ob_script);
    o = plain_opts(&s);
    o.auth = IMAP_AUTH_OAUTHBEARER;
    assert_int_equal(imap_conn_open(&o, &c, &auth, &err), -1);
    assert_int_equal(auth.refused, 1);
    free(err);
    err = NULL;
    server_join(&s);
    assert_string_equal(s.error, "");

    /* Greeting BYE. */
    static const char *const bye_script[] = {"S:* BYE Too many connections", NULL};
    memset(&s, 0, sizeof s);
    server_start(&s, bye_script);
    o = plain_opts(&s);
    assert_int_equal(imap_conn_open(&o, &c, &auth, &err), -1);
    assert_non_null(strstr(err, "Too many connections"));
    free(err);
    server_join(&s);
}

/* A macro, not an array: scripts are static initializers, and C only
 * allows constants there (clang enforces it). */
#define LOGIN_OK                                                                    \
    "S:* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN IDLE] ready",                  \
        "C:A1 AUTHENTICATE PLAIN AHVzZXIAc2VjcmV0",                                 \
        "S:A1 OK [CAPABILITY IMAP4rev1 IDLE] Logged in"

static void test_conn_bye_and_timeout(void **state)
{
    (void)state;
    static const char *const bye_script[] = {
        LOGIN_OK,
        "C:A2 NOOP",
        "S:* BYE Server shutting down",
        NULL,
    };
    server s = {0};
    server_start(&s, bye_script);
    imap_conn_opts o = plain_opts(&s);
    imap_conn *c = NULL;
    char *err = NULL;
    assert_int_equal(imap_conn_open(&o, &c, NULL, &err), 0);
    imap_status st;
    assert_int_equal(imap_run(c, NULL, NULL, &st, &err, "NOOP"), -1);
    assert_non_null(strstr(err, "BYE Server shutting down"));
    free(err);
    err = NULL;
    imap_conn_close(&c);
    server_join(&s);
    assert_string_equal(s.error, "");

    static const char *const silent_script[] = {
        LOGIN_OK,
        "C:A2 NOOP",
        "P:1000",
        NULL,
    };
    memset(&s, 0, sizeof s);
    server_start(&s, silent_script);
    o = plain_opts(&s);
    o.timeout_ms = 200;
    assert_int_equal(imap_conn_open(&o, &c, NULL, &err), 0);
    assert_int_equal(imap_run(c, NULL, NULL, &st, &err, "NOOP"), -1);
    assert_non_null(strstr(err, "timed out after 200 ms waiting for the response to A2"));
    free(err);
    imap_conn_abort(&c);
    imap_conn_abort(&c);
    server_join(&s);
}

static void test_conn_nonblocking_pump(void **state)
{
    (void)state;
    static const char *const script[] = {
        LOGIN_OK,
        "C:A2 IDLE",
        "S:+ idling",
        "R:* 3 EX",
        "P:30",
        "R:ISTS\r",
        "P:30",
        "R:\n* 2 EXPUNGE\r\n* 4 EXI",
        "P:30",
        "R:STS\r\n",
        "C:DONE",
        "S:A2 OK Idle completed.",
        NULL,
    };
    server s = {0};
    server_start(&s, script);
    imap_conn_opts o = plain_opts(&s);
    imap_conn *c = NULL;
    char *err = NULL;
    assert_int_equal(imap_conn_open(&o, &c, NULL, &err), 0);
    assert_int_equal(imap_conn_set_nonblocking(c), 0);
    assert_int_equal(imap_conn_write(c, "A2 IDLE\r\n", 9, &err), 0);
    assert_false(imap_conn_want_write(c));
    seen sn = {0};
    int rounds = 0;
    while (sn.exists != 4 && rounds++ < 100) {
        struct pollfd pfd = {.fd = imap_conn_fd(c), .events = POLLIN};
        assert_true(poll(&pfd, 1, 5000) > 0);
        int pr = imap_conn_pump(c, on_untagged, &sn, &err);
        if (pr != 1)
            print_error("pump: %d %s\n", pr, err);
        assert_int_equal(pr, 1);
    }
    assert_int_equal(sn.cont, 1);
    assert_string_equal(sn.order, "E3E2E4");
    assert_int_equal(sn.expunge, 2);
    assert_int_equal(sn.exists, 4);
    assert_int_equal(imap_conn_write(c, "DONE\r\n", 6, &err), 0);
    /* The server closes after its last line: pump reports 0 eventually. */
    int r = 1;
    while (r == 1) {
        struct pollfd pfd = {.fd = imap_conn_fd(c), .events = POLLIN};
        assert_true(poll(&pfd, 1, 5000) > 0);
        r = imap_conn_pump(c, on_untagged, &sn, &err);
    }
    assert_int_equal(r, 0);
    imap_conn_close(&c);
    server_join(&s);
    assert_string_equal(s.error, "");
}

/* ---- limits against hostile servers ---- */

/* "<prefix><unit x n><suffix>" allocated. */
static char *repeat(const char *prefix, const char *unit, size_t n, const char *suffix)
{
    size_t pl = strlen(prefix), ul = strlen(unit), sl = strlen(suffix);
    char *s = malloc(pl + ul * n + sl + 1);
    memcpy(s, prefix, pl);
    for (size_t i = 0; i < n; i++)
        memcpy(s + pl + i * ul, unit, ul);
    memcpy(s + pl + ul * n, suffix, sl + 1);
    return s;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Log in, send `cmd` (as the format of imap_send) and wait for it: the
 * wait must fail with `expect` in the error. */
static void budget_case(const char *const *script, const char *cmd, const char *expect)
{
    server s = {0};
    server_start(&s, script);
    imap_conn_opts o = plain_opts(&s);
    o.max_memory = (size_t)1 << 20;
    imap_conn *c = NULL;
    char *err = NULL;
    assert_int_equal(imap_conn_open(&o, &c, NULL, &err), 0);
    char tag[16];
    imap_status st;
    int r = imap_send(c, tag, &err, cmd, "caf\xc3\xa9");
    if (r == 0)
        r = imap_wait(c, tag, NULL, NULL, &st, NULL, &err);
    if (r != -1 || err == NULL || strstr(err, expect) == NULL)
        print_error("%s: r=%d err=%s\n", cmd, r, err != NULL ? err : "(none)");
    assert_int_equal(r, -1);
    assert_non_null(strstr(err, expect));
    free(err);
    imap_conn_abort(&c);
    server_join(&s);
}

static void test_conn_memory_budget(void **state)
{
    (void)state;
    /* A line that never ends: refused once its text passes a quarter of
     * the budget (256 KiB here), not at 65 MB. */
    char *endless = repeat("R:* CAPABILITY ", "X", 300000, "");
    const char *const s1[] = {LOGIN_OK, "C:A2 CAPABILITY", endless, "P:2000", NULL};
    budget_case(s1, "CAPABILITY", "server response exceeds 1 MiB");
    budget_case(s1, "CAPABILITY", "text outside literals");
    free(endless);

    /* 120 KB of two-byte atoms: a short line, but 60,000 parsed items
     * (about 3.5 MB) are more than the budget. */
    char *items = repeat("S:* CAPABILITY", " A", 60000, "");
    const char *const s2[] = {LOGIN_OK, "C:A2 CAPABILITY", items, "S:A2 OK done", NULL};
    budget_case(s2, "CAPABILITY", "server response exceeds 1 MiB");
    free(items);

    /* Responses read ahead while waiting for a continuation are held:
     * 30 x 40 KB is more than the budget. */
    char *big = repeat("S:* OK ", "y", 40000, "");
    const char *s3[40] = {LOGIN_OK, "C:A2 SEARCH SUBJECT {5}"};
    size_t k = 4;
    for (int i = 0; i < 30; i++)
        s3[k++] = big;
    s3[k++] = "P:2000";
    s3[k] = NULL;
    budget_case(s3, "SEARCH SUBJECT %s", "held while waiting for a continuation");
    free(big);

    /* The same amount in separate responses is fine: nothing is held. */
    server s = {0};
    char *ok_big = repeat("S:* OK ", "z", 200000, "");
    const char *const s4[] = {LOGIN_OK, "C:A2 NOOP", ok_big, ok_big, ok_big, ok_big, ok_big,
                              ok_big, "S:A2 OK done", NULL};
    server_start(&s, s4);
    imap_conn_opts o = plain_opts(&s);
    o.max_memory = (size_t)1 << 20;
    imap_conn *c = NULL;
    char *err = NULL;
    assert_int_equal(imap_conn_open(&o, &c, NULL, &err), 0);
    imap_status st;
    assert_int_equal(imap_run(c, NULL, NULL, &st, &err, "NOOP"), 0);
    assert_int_equal(st, IMAP_OK);
    imap_conn_close(&c);
    server_join(&s);
    free(ok_big);

    /* Completions read before their wait keep 4 KiB of text; tags never
     * sent are not kept at all. */
    char *long_ok = repeat("S:A3 OK ", "w", 200000, "");
    char *invented = repeat("S:A77 OK ", "v", 200000, "");
    const char *const s5[] = {LOGIN_OK, "C:A2 NOOP", "C:A3 NOOP", long_ok, invented,
                              "S:Z1 OK stray", "S:A2 OK done", NULL};
    memset(&s, 0, sizeof s);
    server_start(&s, s5);
    o = plain_opts(&s);
    o.max_memory = (size_t)1 << 20;
    assert_int_equal(imap_conn_open(&o, &c, NULL, &err), 0);
    char t2[16], t3[16];
    assert_int_equal(imap_send(c, t2, &err, "NOOP"), 0);
    assert_int_equal(imap_send(c, t3, &err, "NOOP"), 0);
    assert_int_equal(imap_wait(c, t2, NULL, NULL, &st, NULL, &err), 0);
    char *text = NULL;
    assert_int_equal(imap_wait(c, t3, NULL, NULL, &st, &text, &err), 0);
    assert_int_equal(strlen(text), 4096);
    free(text);
    imap_conn_close(&c);
    server_join(&s);
    free(long_ok);
    free(invented);

    /* A long capability list: 16 KiB of it kept for the profile, every
     * atom still counted for the capability bits. */
    char *caps = repeat("S:* CAPABILITY IMAP4rev1", " XXXXXXXXX", 5000, " MOVE");
    const char *const s6[] = {LOGIN_OK, "C:A2 CAPABILITY", caps, "S:A2 OK done", NULL};
    memset(&s, 0, sizeof s);
    server_start(&s, s6);
    o = plain_opts(&s);
    assert_int_equal(imap_conn_open(&o, &c, NULL, &err), 0);
    assert_int_equal(imap_run(c, NULL, NULL, &st, &err, "CAPABILITY"), 0);
    assert_true(imap_conn_caps(c)->bits & IMAP_CAP_MOVE);
    assert_true(strlen(imap_conn_caps(c)->raw) < 16 * 1024);
    imap_conn_close(&c);
    server_join(&s);
    free(caps);
}

static void test_conn_deadline(void **state)
{
    (void)state;
    /* One byte every 100 ms keeps the idle timeout (2 s) happy forever;
     * the deadline (600 ms) ends it. */
    const char *trickle[64] = {LOGIN_OK, "C:A2 NOOP"};
    script_trickle(trickle, 64, 4, 25);
    server s = {0};
    server_start(&s, trickle);
    imap_conn_opts o = plain_opts(&s);
    o.timeout_ms = 2000;
    o.deadline_ms = 600;
    imap_conn *c = NULL;
    char *err = NULL;
    assert_int_equal(imap_conn_open(&o, &c, NULL, &err), 0);
    imap_status st;
    int64_t t0 = mono_ms();
    assert_int_equal(imap_run(c, NULL, NULL, &st, &err, "NOOP"), -1);
    int64_t took = mono_ms() - t0;
    assert_non_null(strstr(err, "deadline waiting for the response to A2"));
    assert_true(took >= 500 && took < 1500);
    free(err);
    err = NULL;
    imap_conn_abort(&c);
    server_join(&s);

    /* A greeting trickled the same way. */
    const char *greet[64];
    script_trickle(greet, 64, 0, 25);
    memset(&s, 0, sizeof s);
    server_start(&s, greet);
    o = plain_opts(&s);
    o.timeout_ms = 2000;
    o.deadline_ms = 600;
    t0 = mono_ms();
    assert_int_equal(imap_conn_open(&o, &c, NULL, &err), -1);
    assert_true(mono_ms() - t0 < 1500);
    assert_non_null(strstr(err, "deadline waiting for the server greeting"));
    free(err);
    err = NULL;
    server_join(&s);

    /* A TLS handshake the server never answers. */
    static const char *const mute[] = {"P:2500", NULL};
    memset(&s, 0, sizeof s);
    server_start(&s, mute);
    o = plain_opts(&s);
    o.tls = IMAP_TLS_IMPLICIT;
    o.timeout_ms = 2000;
    o.deadline_ms = 400;
    t0 = mono_ms();
    assert_int_equal(imap_conn_open(&o, &c, NULL, &err), -1);
    assert_true(mono_ms() - t0 < 1500);
    assert_non_null(strstr(err, "deadline waiting for the TLS handshake"));
    free(err);
    server_join(&s);
}

static void test_conn_auth_answer_codes(void **state)
{
    (void)state;
    static const struct {
        const char *answer;
        imap_status status;
        const char *code;
    } cases[] = {
        {"S:A1 NO [UNAVAILABLE] Temporary authentication failure. [host:2026-12-06]", IMAP_NO,
         "UNAVAILABLE"},
        {"S:A1 NO [AUTHENTICATIONFAILED] Authentication failed.", IMAP_NO,
         "AUTHENTICATIONFAILED"},
        {"S:A1 NO Login failed", IMAP_NO, ""},
        {"S:A1 BAD [SERVERBUG] oops", IMAP_BAD, "SERVERBUG"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *const script[] = {
            "S:* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] ready",
            "C:A1 AUTHENTICATE PLAIN AHVzZXIAc2VjcmV0",
            cases[i].answer,
            NULL,
        };
        server s = {0};
        server_start(&s, script);
        imap_conn_opts o = plain_opts(&s);
        imap_conn *c = NULL;
        char *err = NULL;
        imap_auth_answer auth;
        assert_int_equal(imap_conn_open(&o, &c, &auth, &err), -1);
        assert_int_equal(auth.refused, 1);
        assert_int_equal(auth.status, cases[i].status);
        assert_string_equal(auth.code, cases[i].code);
        free(err);
        server_join(&s);
    }
}

/* ---- TLS ---- */

static char tls_dir[64];

static int run_cmd(const char *cmd)
{
    char full[2048];
    snprintf(full, sizeof full, "cd %s && %s >/dev/null 2>&1", tls_dir, cmd);
    return system(full);
}

static int tls_setup(void **state)
{
    (void)state;
    snprintf(tls_dir, sizeof tls_dir, "/tmp/mp-imap-tls-XXXXXX");
    if (mkdtemp(tls_dir) == NULL)
        return -1;
    FILE *f = NULL;
    char path[128];
    snprintf(path, sizeof path, "%s/ext.cnf", tls_dir);
    f = fopen(path, "w");
    if (f == NULL)
        return -1;
    fputs("subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n", f);
    fclose(f);
    if (run_cmd("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
                "-keyout ca.key -out ca.pem -days 2 -subj /CN=mailpulse-test-ca "
                "-addext basicConstraints=critical,CA:TRUE "
                "-addext keyUsage=critical,keyCertSign,cRLSign") != 0 ||
        run_cmd("openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
                "-keyout srv.key -out srv.csr -subj /CN=localhost") != 0 ||
        run_cmd("openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
                "-out srv.pem -days 2 -extfile ext.cnf") != 0)
        return -1;
    return 0;
}

static int tls_teardown(void **state)
{
    (void)state;
    run_cmd("rm -f ca.key ca.pem ca.srl srv.key srv.csr srv.pem ext.cnf");
    rmdir(tls_dir);
    return 0;
}

static SSL_CTX *server_ctx(void)
{
    char cert[128], key[128];
    snprintf(cert, sizeof cert, "%s/srv.pem", tls_dir);
    snprintf(key, sizeof key, "%s/srv.key", tls_dir);
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(ctx);
    assert_int_equal(SSL_CTX_use_certificate_file(ctx, cert, SSL_FILETYPE_PEM), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM), 1);
    return ctx;
}

static void test_tls_implicit(void **state)
{
    (void)state;
    char ca[128];
    snprintf(ca, sizeof ca, "%s/ca.pem", tls_dir);
    static const char *const script[] = {
        LOGIN_OK,
        "C:A2 NOOP",
        "S:* 7 EXISTS",
        "S:A2 OK NOOP completed.",
        NULL,
    };
    server s = {.implicit_tls = 1, .tls_ctx = server_ctx()};
    server_start(&s, script);
    imap_conn_opts o = plain_opts(&s);
    o.host = "localhost";
    o.tls = IMAP_TLS_IMPLICIT;
    o.ca_file = ca;
    imap_conn *c = NULL;
    char *err = NULL;
    assert_int_equal(imap_conn_open(&o, &c, NULL, &err), 0);
    seen sn = {0};
    assert_int_equal(imap_run(c, on_untagged, &sn, NULL, &err, "NOOP"), 0);
    assert_int_equal(sn.exists, 7);
    imap_conn_close(&c);
    server_join(&s);
    assert_string_equal(s.error, "");

    /* The certificate names only localhost. */
    static const char *const none[] = {NULL};
    s.script = none;
    server_start(&s, none);
    o.port = s.port;
    o.host = "127.0.0.1";
    assert_int_equal(imap_conn_open(&o, &c, NULL, &err), -1);
    assert_non_null(strstr(err, "certificate verification failed for 127.0.0.1"));
    assert_non_null(strstr(err, "mismatch"));
    free(err);
    err = NULL;
    server_join(&s);

    /* Without the test CA the chain is untrusted. */
    server_start(&s, none);
    o.port = s.port;
    o.host = "localhost";
    o.ca_file = NULL;
    assert_int_equal(imap_conn_open(&o, &c, NULL, &err), -1);
    assert_non_null(strstr(err, "certificate verification failed for localhost"));
    assert_non_null(strstr(err, "local issuer"));
    free(err);
    server_join(&s);
    SSL_CTX_free(s.tls_ctx);
}

/* One connection with the test CA's file, then the same again (from the
 * shared context); then the file holds another CA, and the next connection
 * must see that, not the context built from the old content. */
static void test_tls_context_follows_ca_file(void **state)
{
    (void)state;
    char ca[128];
    snprintf(ca, sizeof ca, "%s/trust.pem", tls_dir);
    assert_int_equal(run_cmd("cp ca.pem trust.pem"), 0);
    assert_int_equal(run_cmd("openssl req -x509 -newkey ec -pkeyopt "
                             "ec_paramgen_curve:prime256v1 -nodes -keyout other.key "
                             "-out other.pem -days 2 -subj /CN=another-ca"),
                     0);
    static const char *const script[] = {LOGIN_OK, NULL};
    static const char *const none[] = {NULL};
    server s = {.implicit_tls = 1, .tls_ctx = server_ctx()};
    imap_conn_opts o;
    imap_conn *c = NULL;
    char *err = NULL;
    for (int round = 0; round < 3; round++) {
        if (round == 2)
            assert_int_equal(run_cmd("cp other.pem trust.pem"), 0);
        memset(s.error, 0, sizeof s.error);
        server_start(&s, round < 2 ? script : none);
        o = plain_opts(&s);
        o.host = "localhost";
        o.tls = IMAP_TLS_IMPLICIT;
        o.ca_file = ca;
        int rc = imap_conn_open(&o, &c, NULL, &err);
        if (round < 2) {
            if (rc != 0)
                print_error("round %d: %s\n", round, err);
            assert_int_equal(rc, 0);
            imap_conn_close(&c);
        } else {
            assert_int_equal(rc, -1);
            assert_non_null(strstr(err, "certificate verification failed for localhost"));
            free(err);
            err = NULL;
        }
        server_join(&s);
    }
    SSL_CTX_free(s.tls_ctx);
    run_cmd("rm -f trust.pem other.pem other.key");
}

static void test_tls_starttls(void **state)
{
    (void)state;
    char ca[128];
    snprintf(ca, sizeof ca, "%s/ca.pem", tls_dir);
    static const char *const script[] = {
        "S:* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] ready",
        "C:A1 STARTTLS",
        "S:A1 OK Begin TLS negotiation now.",
        "T",
        "C:A2 CAPABILITY",
        "S:* CAPABILITY IMAP4rev1 AUTH=PLAIN",
        "S:A2 OK done",
        "C:A3 AUTHENTICATE PLAIN",
        "S:+ ",
        "C:AHVzZXIAc2VjcmV0",
        "S:A3 OK Logged in",
        "C:A4 CAPABILITY",
        "S:* CAPABILITY IMAP4rev1 IDLE",
        "S:A4 OK done",
        NULL,
    };
    server s = {.tls_ctx = server_ctx()};
    server_start(&s, script);
    imap_conn_opts o = plain_opts(&s);
    o.host = "localhost";
    o.tls = IMAP_TLS_STARTTLS;
    o.ca_file = ca;
    imap_conn *c = NULL;
    char *err = NULL;
    assert_int_equal(imap_conn_open(&o, &c, NULL, &err), 0);
    assert_true(imap_conn_caps(c)->bits & IMAP_CAP_IDLE);
    imap_conn_close(&c);
    server_join(&s);
    assert_string_equal(s.error, "");

    /* STARTTLS not offered: never continue in plaintext. */
    static const char *const no_tls[] = {
        "S:* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready",
        "E",
        NULL,
    };
    memset(s.error, 0, sizeof s.error);
    server_start(&s, no_tls);
    o.port = s.port;
    assert_int_equal(imap_conn_open(&o, &c, NULL, &err), -1);
    assert_non_null(strstr(err, "does not offer STARTTLS"));
    free(err);
    err = NULL;
    server_join(&s);
    assert_string_equal(s.error, "");

    /* STARTTLS refused. */
    static const char *const refused[] = {
        "S:* OK [CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN] ready",
        "C:A1 STARTTLS",
        "S:A1 BAD not now",
        "E",
        NULL,
    };
    server_start(&s, refused);
    o.port = s.port;
    assert_int_equal(imap_conn_open(&o, &c, NULL, &err), -1);
    assert_non_null(strstr(err, "STARTTLS failed"));
    free(err);
    server_join(&s);
    assert_string_equal(s.error, "");
    SSL_CTX_free(s.tls_ctx);
}

int main(void)
{
    /* The scripted server may write to a client that already gave up. */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_status),
        cmocka_unit_test(test_parse_untagged_data),
        cmocka_unit_test(test_parse_fetch),
        cmocka_unit_test(test_parse_malformed),
        cmocka_unit_test(test_response_length),
        cmocka_unit_test(test_envelope),
        cmocka_unit_test(test_dates),
        cmocka_unit_test(test_mutf7),
        cmocka_unit_test(test_uidset),
        cmocka_unit_test(test_conn_sasl_ir_pipelining),
        cmocka_unit_test(test_conn_defer_settle),
        cmocka_unit_test(test_conn_login_sync_literal),
        cmocka_unit_test(test_conn_auth_failures),
        cmocka_unit_test(test_conn_bye_and_timeout),
        cmocka_unit_test(test_conn_nonblocking_pump),
        cmocka_unit_test(test_conn_memory_budget),
        cmocka_unit_test(test_conn_deadline),
        cmocka_unit_test(test_conn_auth_answer_codes),
        cmocka_unit_test_setup_teardown(test_tls_implicit, tls_setup, tls_teardown),
        cmocka_unit_test_setup_teardown(test_tls_starttls, tls_setup, tls_teardown),
        cmocka_unit_test_setup_teardown(test_tls_context_follows_ca_file, tls_setup,
                                        tls_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
