/* graph.so as the daemon loads it, against the mock host and a scripted
 * Graph: folders with children and well-known roles, bootstrap (newest N
 * and the filtered id-only delta baseline), delta with a removal resolved
 * into a move (one update, never a delete plus a new) or a delete, flag
 * updates, NEW only for mail received after the folder was connected,
 * sparse-metadata repair, 410 as a resync, backfill with the coverage walk
 * and the switch to the unfiltered delta, the HTTP layer (401 retried once,
 * 429 Retry-After closing the mailbox's budget, 403), $value, and the
 * configuration refusals. The OAuth2 slots are the test's own (the token
 * service has its own tests): a token per call, a count of rejections, the
 * parameters the driver described. */
#include <dlfcn.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "graph_fstate.h"
#include "graph_json.h"
#include "http_script_server.h"
#include "mock_host.h"

static mp_host host;
static const mp_host *mock_table;
static unsigned tokens_issued, tokens_rejected;
static mp_oauth_grant last_grant;
static char last_scope[128], last_token_url[256];
static char *last_pos;
static int last_done;

static mp_status t_oauth_setup(mp_account *acct, const mp_oauth_params *p, mp_error *err)
{
    (void)acct;
    (void)err;
    last_grant = p->grant;
    snprintf(last_scope, sizeof last_scope, "%s", p->scope ? p->scope : "");
    snprintf(last_token_url, sizeof last_token_url, "%s", p->token_url ? p->token_url : "");
    return MP_OK;
}

static mp_status t_oauth_token(mp_account *acct, char **token_r, mp_error *err)
{
    (void)acct;
    (void)err;
    char buf[32];
    snprintf(buf, sizeof buf, "tok-%u", ++tokens_issued);
    *token_r = strdup(buf);
    return MP_OK;
}

static void t_free_secret(char **s)
{
    free(*s);
    *s = NULL;
}

static void t_oauth_reject(mp_account *acct, const char *token)
{
    (void)acct;
    (void)token;
    tokens_rejected++;
}

/* The mock ignores backfill positions: record them here. */
static mp_status t_batch_commit(mp_batch *batch, const char *cursor, const char *pos,
                                int done, mp_error *err)
{
    free(last_pos);
    last_pos = pos != NULL ? strdup(pos) : NULL;
    last_done = done;
    return mock_table->batch_commit(batch, cursor, pos, done, err);
}

typedef struct fx {
    mpt_mock *m;
    void *dl;
    const mp_driver *drv;
    mp_account *acct;
    void *inst_state, *acct_state;
    mpt_http_server *srv;
    char *base; /* the scripted server's /v1.0 */
    mpt_http_step *script; /* the steps with "@BASE@" replaced by base */
    char **bodies;
    size_t n_steps;
} fx;

/* Links in answers are absolute: the copy of the script the server runs
 * gets the server's own URL put in once it listens (it reads a step's
 * body only when answering). */
static void patch_script(fx *f)
{
    f->bodies = calloc(f->n_steps + 1, sizeof *f->bodies);
    assert_non_null(f->bodies);
    for (size_t i = 0; i < f->n_steps; i++) {
        const char *b = f->script[i].body;
        if (b == NULL || strstr(b, "@BASE@") == NULL)
            continue;
        size_t cap = strlen(b) + 8 * strlen(f->base) + 1, len = 0;
        char *nb = malloc(cap);
        assert_non_null(nb);
        const char *p = b, *at;
        while ((at = strstr(p, "@BASE@")) != NULL) {
            len += (size_t)snprintf(nb + len, cap - len, "%.*s%s", (int)(at - p), p, f->base);
            p = at + 6;
        }
        snprintf(nb + len, cap - len, "%s", p);
        f->bodies[i] = nb;
        f->script[i].body = nb;
    }
}

static void load(fx *f)
{
    f->dl = dlopen(MP_TEST_BUILD_DIR "/drivers/graph.so", RTLD_NOW | RTLD_LOCAL);
    assert_non_null(f->dl);
    f->drv = dlsym(f->dl, MP_DRIVER_SYMBOL);
    assert_non_null(f->drv);
}

static void new_mock(fx *f)
{
    tokens_issued = tokens_rejected = 0;
    f->m = mpt_mock_new();
    mock_table = mpt_mock_host(f->m);
    host = *mock_table;
    host.oauth_setup = t_oauth_setup;
    host.oauth_token = t_oauth_token;
    host.oauth_reject = t_oauth_reject;
    host.free_secret = t_free_secret;
    host.batch_commit = t_batch_commit;
    mpt_mock_declare(f->m, f->drv->instance_keys);
    mpt_mock_declare(f->m, f->drv->account_keys);
    mpt_mock_config_set(f->m, "tenant", "contoso.example");
    mpt_mock_config_set(f->m, "client_id", "cid");
    mpt_mock_config_set(f->m, "client_secret_file", "/nonexistent/secret");
    mpt_mock_config_set(f->m, "user", "a@x.org");
}

/* Start the scripted server, load the driver, open account "o". */
static void setup_with(fx *f, const mpt_http_step *steps, size_t n)
{
    memset(f, 0, sizeof *f);
    f->n_steps = n;
    f->script = calloc(n + 1, sizeof *f->script);
    assert_non_null(f->script);
    if (n > 0)
        memcpy(f->script, steps, n * sizeof *steps);
    f->srv = mpt_http_server_start(f->script, n, NULL);
    assert_non_null(f->srv);
    f->base = mpt_http_server_url(f->srv, "/v1.0");
    patch_script(f);
    load(f);
    new_mock(f);
    char *login = mpt_http_server_url(f->srv, "/login");
    mpt_mock_config_set(f->m, "api_url", f->base);
    mpt_mock_config_set(f->m, "login_url", login);
    free(login);
    mp_error err;
    memset(&err, 0, sizeof err);
    assert_int_equal(f->drv->init(&host, mpt_mock_instance(f->m), mpt_mock_config(f->m),
                                  &f->inst_state, &err),
                     MP_OK);
    mpt_mock_set_instance_state(f->m, f->inst_state);
    f->acct = mpt_mock_account(f->m, "o");
    assert_int_equal(f->drv->account_open(f->acct, mpt_mock_config(f->m), &f->acct_state, &err),
                     MP_OK);
    mpt_mock_set_account_state(f->acct, f->acct_state);
    assert_int_equal(mpt_mock_http_limit(f->acct), 4);
}

static void teardown_fx(fx *f)
{
    if (mpt_http_server_mismatches(f->srv) != 0)
        fail_msg("script mismatch: %s", mpt_http_server_first_mismatch(f->srv));
    f->drv->account_close(f->acct, &f->acct_state);
    f->drv->deinit(mpt_mock_instance(f->m), &f->inst_state);
    mpt_http_server_stop(&f->srv);
    mpt_mock_free(&f->m);
    dlclose(f->dl);
    free(f->base);
    for (size_t i = 0; i < f->n_steps; i++)
        free(f->bodies[i]);
    free(f->bodies);
    free(f->script);
    free(last_pos);
    last_pos = NULL;
}

static void seen(fx *f, size_t i, const char *method, const char *uri, const char *header)
{
    mpt_http_seen s;
    assert_int_equal(mpt_http_server_seen(f->srv, i, &s), 0);
    assert_string_equal(s.method, method);
    if (uri != NULL)
        assert_string_equal(s.uri, uri);
    if (header != NULL && strstr(s.headers, header) == NULL)
        fail_msg("request %zu lacks header %s:\n%s", i, header, s.headers);
    mpt_http_seen_clear(&s);
}

#define U "/v1.0/users/a%40x.org"
#define PREFER "Prefer: IdType=\"ImmutableId\""
#define MSG(id, folder, when, read, subj)                                                     \
    "{\"id\":\"" id "\",\"subject\":\"" subj "\",\"receivedDateTime\":\"" when "\","          \
    "\"from\":{\"emailAddress\":{\"name\":\"Ann\",\"address\":\"ann@x.org\"}},"                \
    "\"toRecipients\":[],\"isRead\":" read ",\"isDraft\":false,"                               \
    "\"flag\":{\"flagStatus\":\"notFlagged\"},\"parentFolderId\":\"" folder "\"}"
#define PART(i, status, body) "{\"id\":\"" #i "\",\"status\":" #status ",\"body\":" body "}"
#define LIST_Q "$select=" GRAPH_SELECT "&$orderby=receivedDateTime%20desc&$top=2"

/* 2026-12-07T11:00:00Z: the mock's clock when the folder is connected. */
#define T_CONNECT 1796641200000LL

static const mpt_http_step sync_steps[] = {
    /* list_folders: the well-known ids, then the tree */
    {.method = "GET", .path = U "/mailFolders/inbox", .query = "$select=id",
     .header = "Authorization: Bearer tok-1", .body = "{\"id\":\"F-in\"}"},
    {.path = U "/mailFolders/sentitems", .body = "{\"id\":\"F-sent\"}"},
    {.path = U "/mailFolders/drafts", .status = 404,
     .body = "{\"error\":{\"code\":\"ErrorItemNotFound\"}}"},
    {.path = U "/mailFolders/deleteditems", .body = "{\"id\":\"F-del\"}"},
    {.path = U "/mailFolders/junkemail", .status = 404},
    {.path = U "/mailFolders/archive", .body = "{\"id\":\"F-arch\"}"},
    {.path = U "/mailFolders", .query = "$top=100",
     .body = "{\"value\":[{\"id\":\"F-arch\",\"displayName\":\"Archive\",\"childFolderCount\":0},"
             "{\"id\":\"F-in\",\"displayName\":\"Inbox\",\"childFolderCount\":1}],"
             "\"@odata.nextLink\":\"@BASE@/users/a%40x.org/mailFolders?$top=100&$skip=2\"}"},
    {.path = U "/mailFolders/F-in/childFolders", .query = "$top=100",
     .body = "{\"value\":[{\"id\":\"F-work\",\"displayName\":\"Work\",\"childFolderCount\":0}]}"},
    {.path = U "/mailFolders", .query = "$top=100&$skip=2",
     .body = "{\"value\":[{\"id\":\"F-sent\",\"displayName\":\"Sent Items\"}]}"},
    {.path = U "/mailFolders/F-sent/childFolders", .body = "{\"value\":[]}"},
    /* bootstrap Inbox, newest 2 */
    {.path = U "/mailFolders/F-in/messages", .query = LIST_Q,
     .body = "{\"value\":[" MSG("m1", "F-in", "2026-12-07T10:00:00Z", "false", "one") ","
             MSG("m2", "F-in", "2026-12-07T09:00:00Z", "true", "two") "],"
             "\"@odata.nextLink\":\"@BASE@/users/a%40x.org/mailFolders/F-in/messages?$skip=2\"}"},
    {.path = U "/mailFolders/F-in/messages/delta",
     .query = "$select=id&$filter=receivedDateTime%20ge%202026-12-07T09:00:00Z",
     .header = "Prefer: IdType=\"ImmutableId\", odata.maxpagesize=200",
     .body = "{\"value\":[{\"id\":\"m1\"},{\"id\":\"m2\"},{\"id\":\"m3\"}],"
             "\"@odata.deltaLink\":\"@BASE@/users/a%40x.org/mailFolders/F-in/messages/"
             "delta?$deltatoken=D1\"}"},
    {.method = "POST", .path = "/v1.0/$batch", .body_contains = "messages/m3?$select=",
     .header = "Content-Type: application/json",
     .body = "{\"responses\":[" PART(0, 200, MSG("m3", "F-in", "2026-12-07T10:30:00Z", "false",
                                                 "three")) "]}"},
    /* delta: m1 read, m2 moved to Archive, m3 deleted, m4 new (sparse) */
    {.path = U "/mailFolders/F-in/messages/delta", .query = "$deltatoken=D1",
     .body = "{\"value\":[{\"id\":\"m1\"},{\"id\":\"m2\",\"@removed\":{\"reason\":\"deleted\"}},"
             "{\"id\":\"m3\",\"@removed\":{\"reason\":\"deleted\"}},{\"id\":\"m4\"}],"
             "\"@odata.nextLink\":\"@BASE@/users/a%40x.org/mailFolders/F-in/messages/"
             "delta?$skiptoken=S1\"}"},
    {.method = "POST", .path = "/v1.0/$batch",
     .body = "{\"responses\":["
             PART(3, 200, "{\"id\":\"m4\",\"receivedDateTime\":\"2026-12-07T11:30:00Z\","
                          "\"isRead\":false,\"parentFolderId\":\"F-in\"}") ","
             PART(2, 404, "{\"error\":{\"code\":\"ErrorItemNotFound\"}}") ","
             PART(0, 200, MSG("m1", "F-in", "2026-12-07T10:00:00Z", "true", "one")) ","
             PART(1, 200, MSG("m2", "F-arch", "2026-12-07T09:00:00Z", "true", "two")) "]}"},
    {.path = U "/mailFolders/F-in/messages/delta", .query = "$skiptoken=S1",
     .body = "{\"value\":[],\"@odata.deltaLink\":\"@BASE@/users/a%40x.org/mailFolders/F-in/"
             "messages/delta?$deltatoken=D2\"}"},
    /* 16 minutes later: nothing changed, m4 is due for its repair */
    {.path = U "/mailFolders/F-in/messages/delta", .query = "$deltatoken=D2",
     .body = "{\"value\":[],\"@odata.deltaLink\":\"@BASE@/users/a%40x.org/mailFolders/F-in/"
             "messages/delta?$deltatoken=D3\"}"},
    {.method = "POST", .path = "/v1.0/$batch", .body_contains = "messages/m4?$select=",
     .body = "{\"responses\":[" PART(0, 200, MSG("m4", "F-in", "2026-12-07T11:30:00Z", "false",
                                                 "four")) "]}"},
    /* the state expired at Graph */
    {.path = U "/mailFolders/F-in/messages/delta", .query = "$deltatoken=D3", .status = 410,
     .body = "{\"error\":{\"code\":\"SyncStateNotFound\",\"message\":\"The sync state generation"
             " is not found.\"}}"},
};


static void test_folders_bootstrap_delta(void **state)
{
    (void)state;
    fx f;
    setup_with(&f, sync_steps, sizeof sync_steps / sizeof sync_steps[0]);
    /* app auth: client credentials, .default, the tenant's token URL */
    assert_int_equal(last_grant, MP_OAUTH_CLIENT_CREDENTIALS);
    assert_string_equal(last_scope, "https://graph.microsoft.com/.default");
    assert_non_null(strstr(last_token_url, "/login/contoso.example/oauth2/v2.0/token"));
    mp_error err;
    memset(&err, 0, sizeof err);
    assert_int_equal(f.drv->list_folders(f.acct, mpt_mock_folder_sink(f.m), &err), MP_OK);
    static const struct {
        const char *name;
        mp_folder_role role;
    } want[] = {{"Archive", MP_ROLE_ARCHIVE}, {"Inbox", MP_ROLE_INBOX},
                {"Inbox/Work", MP_ROLE_NONE}, {"Sent Items", MP_ROLE_SENT}};
    assert_int_equal(mpt_mock_folder_count(f.m), 4);
    for (size_t i = 0; i < 4; i++) {
        mp_folder_role role;
        assert_string_equal(mpt_mock_folder_at(f.m, i, &role), want[i].name);
        assert_int_equal(role, want[i].role);
    }
    assert_non_null(mpt_mock_state(f.m, f.acct, "wellknown"));
    assert_non_null(strstr(mpt_mock_push_state(f.m, f.acct), "no public_url"));
    for (size_t i = 0; i < 10; i++)
        seen(&f, i, "GET", NULL, PREFER);

    /* bootstrap: the newest two listed, the baseline from the older one's
     * date, m3 (arrived meanwhile) read with $batch */
    mpt_mock_set_now(f.m, T_CONNECT);
    mp_batch *b = mpt_mock_batch(f.m, f.acct, "Inbox");
    assert_int_equal(f.drv->bootstrap(f.acct, "Inbox", 2, b, &err), MP_OK);
    assert_int_equal(mpt_mock_change_count(f.m), 3);
    const char *ids[] = {"m1", "m2", "m3"};
    for (size_t i = 0; i < 3; i++) {
        const mpt_mock_change *c = mpt_mock_change_at(f.m, i);
        assert_string_equal(c->id, ids[i]);
        assert_int_equal(c->kind, MP_CHANGE_SYNCED);
        assert_string_equal(c->folders, "=Inbox");
    }
    assert_string_equal(mpt_mock_change_at(f.m, 0)->flags, "");
    assert_string_equal(mpt_mock_change_at(f.m, 1)->flags, "\\Seen");
    char want_cursor[256];
    snprintf(want_cursor, sizeof want_cursor,
             "%s/users/a%%40x.org/mailFolders/F-in/messages/delta?$deltatoken=D1", f.base);
    assert_string_equal(mpt_mock_cursor(f.m, f.acct, "Inbox"), want_cursor);
    /* backfill continues below 09:00, where m2 was already loaded */
    assert_non_null(last_pos);
    assert_non_null(strstr(last_pos, "\"before\":1796634000"));
    assert_non_null(strstr(last_pos, "\"m2\""));
    assert_false(last_done);

    /* delta: one page of ids, read back with one $batch answered out of
     * order; Archive is synced, so the move enters it. (The coverage walk
     * has its own test: here the folder needs none.) */
    char key[64];
    graph_fstate_key("Inbox", key, sizeof key);
    assert_non_null(strstr(mpt_mock_state(f.m, f.acct, key), "\"since\":1796639400000"));
    mpt_mock_state_set(f.m, f.acct, key, "{\"since\":1796639400000,\"cover\":4}");
    mpt_mock_cursor_set(f.m, f.acct, "Archive", "x");
    assert_int_equal(f.drv->delta(f.acct, "Inbox", want_cursor, b, &err), MP_OK);
    assert_int_equal(mpt_mock_change_count(f.m), 7);
    const mpt_mock_change *c = mpt_mock_change_at(f.m, 3);
    assert_string_equal(c->id, "m1");
    assert_int_equal(c->kind, MP_CHANGE_SYNCED); /* old mail: an update, not new */
    assert_string_equal(c->flags, "\\Seen");
    c = mpt_mock_change_at(f.m, 4);
    assert_string_equal(c->id, "m2");
    assert_int_equal(c->kind, MP_CHANGE_UPDATED); /* a move: never delete + new */
    assert_string_equal(c->folders, "+Archive -Inbox");
    c = mpt_mock_change_at(f.m, 5);
    assert_string_equal(c->id, "m3");
    assert_int_equal(c->kind, MP_CHANGE_DELETED);
    c = mpt_mock_change_at(f.m, 6);
    assert_string_equal(c->id, "m4");
    assert_int_equal(c->kind, MP_CHANGE_NEW); /* received after the folder was connected */
    assert_null(c->subject);                  /* sparse: stored with what is known */
    snprintf(want_cursor, sizeof want_cursor,
             "%s/users/a%%40x.org/mailFolders/F-in/messages/delta?$deltatoken=D2", f.base);
    assert_string_equal(mpt_mock_cursor(f.m, f.acct, "Inbox"), want_cursor);
    assert_non_null(strstr(mpt_mock_state(f.m, f.acct, key), "\"m4\""));
    /* the batch asked for the ids in page order with immutable ids */
    mpt_http_seen s;
    assert_int_equal(mpt_http_server_seen(f.srv, 14, &s), 0);
    assert_non_null(strstr(s.body, "\"Prefer\":\"IdType=\\\"ImmutableId\\\"\""));
    assert_true(strstr(s.body, "messages/m1?") < strstr(s.body, "messages/m4?"));
    mpt_http_seen_clear(&s);

    /* repair: due after 15 minutes, completed, emitted SYNCED, dropped */
    mpt_mock_set_now(f.m, T_CONNECT + 16 * 60 * 1000);
    assert_int_equal(f.drv->delta(f.acct, "Inbox", want_cursor, b, &err), MP_OK);
    assert_int_equal(mpt_mock_change_count(f.m), 8);
    c = mpt_mock_change_at(f.m, 7);
    assert_string_equal(c->id, "m4");
    assert_int_equal(c->kind, MP_CHANGE_SYNCED);
    assert_string_equal(c->subject, "four");
    assert_null(strstr(mpt_mock_state(f.m, f.acct, key), "\"m4\""));

    /* 410 SyncStateNotFound: a resync, nothing emitted */
    snprintf(want_cursor, sizeof want_cursor,
             "%s/users/a%%40x.org/mailFolders/F-in/messages/delta?$deltatoken=D3", f.base);
    memset(&err, 0, sizeof err);
    assert_int_equal(f.drv->delta(f.acct, "Inbox", want_cursor, b, &err), MP_RESYNC);
    assert_non_null(strstr(err.text, "SyncStateNotFound"));
    assert_int_equal(mpt_mock_change_count(f.m), 8);
    /* a cursor that is not under api_url is never followed (the token
     * would go with it) */
    memset(&err, 0, sizeof err);
    assert_int_equal(f.drv->delta(f.acct, "Inbox", "https://elsewhere.example/v1.0/x", b, &err),
                     MP_RESYNC);
    assert_int_equal(mpt_http_server_count(f.srv), sizeof sync_steps / sizeof sync_steps[0]);
    assert_int_equal(tokens_rejected, 0);
    teardown_fx(&f);
}

#define WALK_Q "$select=id,isRead,isDraft,flag"
static const mpt_http_step backfill_steps[] = {
    {.path = U "/mailFolders/inbox", .body = "{\"id\":\"F-in\"}"},
    {.path = U "/mailFolders/sentitems", .status = 404},
    {.path = U "/mailFolders/drafts", .status = 404},
    {.path = U "/mailFolders/deleteditems", .status = 404},
    {.path = U "/mailFolders/junkemail", .status = 404},
    {.path = U "/mailFolders/archive", .status = 404},
    {.path = U "/mailFolders", .body = "{\"value\":[{\"id\":\"F-in\",\"displayName\":\"Inbox\","
                                       "\"childFolderCount\":0}]}"},
    /* below 09:00:00 inclusive; m2 was loaded at that second already */
    {.path = U "/mailFolders/F-in/messages",
     .query = "$select=" GRAPH_SELECT "&$filter=receivedDateTime%20lt%202026-12-07T09:00:01Z"
              "&$orderby=receivedDateTime%20desc&$top=5",
     .body = "{\"value\":[" MSG("m2", "F-in", "2026-12-07T09:00:00Z", "true", "two") ","
             MSG("m5", "F-in", "2026-12-07T09:00:00Z", "true", "five") "],"
             "\"@odata.nextLink\":\"@BASE@/users/a%40x.org/mailFolders/F-in/messages?page=2\"}"},
    {.path = U "/mailFolders/F-in/messages", .query = "page=2",
     .body = "{\"value\":[" MSG("m6", "F-in", "2026-12-06T08:00:00Z", "false", "six") "]}"},
    /* the coverage walk: the unfiltered id-only delta, page by page */
    {.path = U "/mailFolders/F-in/messages/delta", .query = WALK_Q,
     .body = "{\"value\":[{\"id\":\"m1\",\"isRead\":true,\"isDraft\":false,\"flag\":{"
             "\"flagStatus\":\"flagged\"}},{\"id\":\"m6\"}],\"@odata.nextLink\":\"@BASE@/users/"
             "a%40x.org/mailFolders/F-in/messages/delta?$skiptoken=W1\"}"},
    {.path = U "/mailFolders/F-in/messages/delta", .query = "$skiptoken=W1",
     .body = "{\"value\":[{\"id\":\"m5\"}],\"@odata.deltaLink\":\"@BASE@/users/a%40x.org/"
             "mailFolders/F-in/messages/delta?$deltatoken=FULL\"}"},
    /* the next delta: the filtered round, then the switch; the walk's link
     * expired meanwhile: the walk starts over, the folder is not reset */
    {.path = U "/mailFolders/F-in/messages/delta", .query = "$deltatoken=D9",
     .body = "{\"value\":[],\"@odata.deltaLink\":\"@BASE@/users/a%40x.org/mailFolders/F-in/"
             "messages/delta?$deltatoken=D10\"}"},
    {.path = U "/mailFolders/F-in/messages/delta", .query = "$deltatoken=FULL", .status = 410,
     .body = "{\"error\":{\"code\":\"resyncRequired\"}}"},
    /* the delta after: its round, the walk again (one page), the switch */
    {.path = U "/mailFolders/F-in/messages/delta", .query = "$deltatoken=D10",
     .body = "{\"value\":[],\"@odata.deltaLink\":\"@BASE@/users/a%40x.org/mailFolders/F-in/"
             "messages/delta?$deltatoken=D11\"}"},
    {.path = U "/mailFolders/F-in/messages/delta", .query = WALK_Q,
     .body = "{\"value\":[],\"@odata.deltaLink\":\"@BASE@/users/a%40x.org/mailFolders/F-in/"
             "messages/delta?$deltatoken=FULL1\"}"},
    {.path = U "/mailFolders/F-in/messages/delta", .query = "$deltatoken=FULL1",
     .body = "{\"value\":[{\"id\":\"m6\"}],\"@odata.deltaLink\":\"@BASE@/users/a%40x.org/"
             "mailFolders/F-in/messages/delta?$deltatoken=FULL2\"}"},
    /* an old message's flag changed: an update, not new mail */
    {.method = "POST", .path = "/v1.0/$batch",
     .body = "{\"responses\":[" PART(0, 200, MSG("m6", "F-in", "2026-12-06T08:00:00Z", "true",
                                                 "six")) "]}"},
    /* covered: the stored messages are checked once; m5 was hard-deleted
     * while the walk ran, which no delta round reports */
    {.method = "POST", .path = "/v1.0/$batch", .body_contains = "messages/m5?",
     .body = "{\"responses\":[" PART(0, 404, "{\"error\":{\"code\":\"ErrorItemNotFound\"}}")
             "," PART(1, 200, MSG("m6", "F-in", "2026-12-06T08:00:00Z", "true", "six")) "]}"},
};

static void test_backfill_and_coverage(void **state)
{
    (void)state;
    fx f;
    setup_with(&f, backfill_steps, sizeof backfill_steps / sizeof backfill_steps[0]);
    mp_error err;
    memset(&err, 0, sizeof err);
    mpt_mock_set_now(f.m, T_CONNECT);
    mp_batch *b = mpt_mock_batch(f.m, f.acct, "Inbox");
    mp_status st = f.drv->list_folders(f.acct, mpt_mock_folder_sink(f.m), &err);
    if (st != MP_OK)
        fail_msg("list_folders: %s", err.text);
    st = f.drv->backfill(f.acct, "Inbox", "{\"before\":1796634000,\"seen\":[\"m2\"]}", 5, b,
                         &err);
    if (st != MP_OK)
        fail_msg("backfill: %d %s (%s)", st, err.text, mpt_http_server_first_mismatch(f.srv));
    /* m2 not twice; m5 (same second) and m6 loaded */
    assert_int_equal(mpt_mock_change_count(f.m), 3);
    assert_string_equal(mpt_mock_change_at(f.m, 0)->id, "m5");
    assert_string_equal(mpt_mock_change_at(f.m, 1)->id, "m6");
    assert_int_equal(mpt_mock_change_at(f.m, 1)->kind, MP_CHANGE_SYNCED);
    /* the walk applies the flags it lists to what is stored */
    const mpt_mock_change *w = mpt_mock_change_at(f.m, 2);
    assert_string_equal(w->id, "m1");
    assert_int_equal(w->kind, MP_CHANGE_UPDATED);
    assert_string_equal(w->flags, "\\Seen \\Flagged");
    assert_null(w->folders);
    /* listed to the end and walked: done */
    assert_true(last_done);
    assert_null(last_pos);
    char key[64];
    graph_fstate_key("Inbox", key, sizeof key);
    assert_non_null(strstr(mpt_mock_state(f.m, f.acct, key), "FULL"));

    char cursor[256];
    snprintf(cursor, sizeof cursor,
             "%s/users/a%%40x.org/mailFolders/F-in/messages/delta?$deltatoken=D9", f.base);
    assert_int_equal(f.drv->delta(f.acct, "Inbox", cursor, b, &err), MP_OK);
    snprintf(cursor, sizeof cursor,
             "%s/users/a%%40x.org/mailFolders/F-in/messages/delta?$deltatoken=D10", f.base);
    assert_string_equal(mpt_mock_cursor(f.m, f.acct, "Inbox"), cursor);
    assert_non_null(strstr(mpt_mock_state(f.m, f.acct, key), "\"cover\":0"));
    assert_int_equal(f.drv->delta(f.acct, "Inbox", cursor, b, &err), MP_OK);
    snprintf(cursor, sizeof cursor,
             "%s/users/a%%40x.org/mailFolders/F-in/messages/delta?$deltatoken=FULL2", f.base);
    assert_string_equal(mpt_mock_cursor(f.m, f.acct, "Inbox"), cursor);
    assert_int_equal(mpt_mock_change_count(f.m), 5);
    const mpt_mock_change *c = mpt_mock_change_at(f.m, 3);
    assert_string_equal(c->id, "m6");
    assert_int_equal(c->kind, MP_CHANGE_SYNCED);
    assert_string_equal(c->flags, "\\Seen");
    c = mpt_mock_change_at(f.m, 4);
    assert_string_equal(c->id, "m5");
    assert_int_equal(c->kind, MP_CHANGE_DELETED);
    assert_non_null(strstr(mpt_mock_state(f.m, f.acct, key), "\"checked\":true"));
    assert_non_null(strstr(mpt_mock_state(f.m, f.acct, key), "\"cover\":3"));
    assert_null(strstr(mpt_mock_state(f.m, f.acct, key), "FULL"));
    teardown_fx(&f);
}

static const mpt_http_step http_steps[] = {
    /* an expired token: dropped, a new one works */
    {.path = U "/messages/m%2F1/$value", .header = "Authorization: Bearer tok-1", .status = 401,
     .body = "{\"error\":{\"code\":\"InvalidAuthenticationToken\"}}"},
    {.path = U "/messages/m%2F1/$value", .header = "Authorization: Bearer tok-2",
     .headers = "Content-Type: text/plain\r\n", .body = "Subject: hi\r\n\r\nbody\r\n"},
    /* throttled: Retry-After closes the mailbox's budget */
    {.path = U "/messages/m7/$value", .status = 429, .headers = "Retry-After: 30\r\n",
     .body = "{\"error\":{\"code\":\"ApplicationThrottled\",\"message\":\"Application is over"
             " its MailboxConcurrency limit.\"}}"},
    {.path = U "/messages/m7/$value", .body = "x"},
    /* gone */
    {.path = U "/messages/m9/$value", .status = 404,
     .body = "{\"error\":{\"code\":\"ErrorItemNotFound\"}}"},
    /* 503 without Retry-After: our own backoff */
    {.path = U "/messages/m8/$value", .status = 503},
    /* a missing permission */
    {.path = U "/messages/m6/$value", .status = 403,
     .body = "{\"error\":{\"code\":\"ErrorAccessDenied\",\"message\":\"Access is denied.\"}}"},
    /* a malformed id: this message is skipped, the account goes on */
    {.path = U "/messages/bad/$value", .status = 400,
     .body = "{\"error\":{\"code\":\"ErrorInvalidIdMalformed\"}}"},
    /* refused twice: reauth */
    {.path = U "/messages/m5/$value", .status = 401},
    {.path = U "/messages/m5/$value", .status = 401},
};

static void test_http_layer(void **state)
{
    (void)state;
    fx f;
    setup_with(&f, http_steps, sizeof http_steps / sizeof http_steps[0]);
    const int64_t t0 = 1800000000000LL;
    mpt_mock_set_now(f.m, t0);
    mp_error err;
    memset(&err, 0, sizeof err);
    mp_raw raw = {0};
    mp_message_ref ref = {.folder = "Inbox", .id = "m/1"};
    assert_int_equal(f.drv->fetch(f.acct, &ref, &raw, &err), MP_OK);
    assert_int_equal(tokens_rejected, 1);
    assert_int_equal(raw.len, 21);
    assert_memory_equal(raw.data, "Subject: hi\r\n\r\nbody\r\n", 21);
    host.free(raw.data);
    seen(&f, 1, "GET", U "/messages/m%2F1/$value", PREFER);

    ref.id = "m7";
    memset(&err, 0, sizeof err);
    assert_int_equal(f.drv->fetch(f.acct, &ref, &raw, &err), MP_RETRY);
    assert_int_equal(err.retry_after_ms, 30000);
    assert_non_null(strstr(err.text, "ApplicationThrottled"));
    /* inside the window: nothing is sent */
    mpt_mock_set_now(f.m, t0 + 29000);
    memset(&err, 0, sizeof err);
    assert_int_equal(f.drv->fetch(f.acct, &ref, &raw, &err), MP_RETRY);
    assert_int_equal(mpt_http_server_count(f.srv), 3);
    mpt_mock_set_now(f.m, t0 + 31000);
    memset(&err, 0, sizeof err);
    assert_int_equal(f.drv->fetch(f.acct, &ref, &raw, &err), MP_OK);
    host.free(raw.data);

    ref.id = "m9";
    assert_int_equal(f.drv->fetch(f.acct, &ref, &raw, &err), MP_SKIP);
    ref.id = "m8";
    memset(&err, 0, sizeof err);
    assert_int_equal(f.drv->fetch(f.acct, &ref, &raw, &err), MP_RETRY);
    assert_int_equal(err.retry_after_ms, 2000);
    mpt_mock_set_now(f.m, t0 + 40000);
    ref.id = "m6";
    memset(&err, 0, sizeof err);
    assert_int_equal(f.drv->fetch(f.acct, &ref, &raw, &err), MP_FATAL);
    assert_non_null(strstr(err.text, "Mail.Read"));
    assert_null(strstr(err.text, "tok-"));
    ref.id = "bad";
    memset(&err, 0, sizeof err);
    assert_int_equal(f.drv->fetch(f.acct, &ref, &raw, &err), MP_SKIP);
    assert_non_null(strstr(err.text, "ErrorInvalidIdMalformed"));
    ref.id = "m5";
    memset(&err, 0, sizeof err);
    assert_int_equal(f.drv->fetch(f.acct, &ref, &raw, &err), MP_REAUTH);
    assert_int_equal(mpt_http_server_count(f.srv), sizeof http_steps / sizeof http_steps[0]);
    teardown_fx(&f);
}

static void test_config_refusals(void **state)
{
    (void)state;
    static const struct {
        const char *key, *value, *expect;
    } inst_cases[] = {
        {"tenant", "../evil", "tenant"},
        {"auth", "password", "app or delegated"},
        {"client_secret_file", "", "client_secret_file: required with auth: app"},
        {"api_url", "http://graph.microsoft.com/v1.0", "loopback"},
        {"login_url", "ftp://127.0.0.1/", "https"},
        {"public_url", "http://example.com", "loopback"},
        {"subscription_minutes", "20000", "subscription_minutes"},
    };
    for (size_t i = 0; i < sizeof inst_cases / sizeof inst_cases[0]; i++) {
        fx f;
        memset(&f, 0, sizeof f);
        load(&f);
        new_mock(&f);
        mpt_mock_config_set(f.m, inst_cases[i].key, inst_cases[i].value);
        void *st = NULL;
        mp_error err;
        memset(&err, 0, sizeof err);
        assert_int_equal(
            f.drv->init(&host, mpt_mock_instance(f.m), mpt_mock_config(f.m), &st, &err),
            MP_FATAL);
        assert_null(st);
        if (strstr(err.text, inst_cases[i].expect) == NULL)
            fail_msg("%s=%s: \"%s\" lacks \"%s\"", inst_cases[i].key, inst_cases[i].value,
                     err.text, inst_cases[i].expect);
        mpt_mock_free(&f.m);
        dlclose(f.dl);
    }
    /* accounts: the refresh token belongs to delegated mode only */
    static const struct {
        const char *auth, *rt, *user, *expect;
    } acct_cases[] = {
        {"delegated", NULL, "a@x.org", "refresh_token_file: required with auth: delegated"},
        {"app", "/nonexistent/rt", "a@x.org", "refresh_token_file: not used with auth: app"},
        {"app", NULL, "a/b", "user"},
        {"delegated", "/nonexistent/rt", "a@x.org", NULL},
    };
    for (size_t i = 0; i < sizeof acct_cases / sizeof acct_cases[0]; i++) {
        fx f;
        memset(&f, 0, sizeof f);
        load(&f);
        new_mock(&f);
        mpt_mock_config_set(f.m, "auth", acct_cases[i].auth);
        if (acct_cases[i].rt != NULL)
            mpt_mock_config_set(f.m, "refresh_token_file", acct_cases[i].rt);
        mpt_mock_config_set(f.m, "user", acct_cases[i].user);
        void *ist = NULL, *ast = NULL;
        mp_error err;
        memset(&err, 0, sizeof err);
        assert_int_equal(
            f.drv->init(&host, mpt_mock_instance(f.m), mpt_mock_config(f.m), &ist, &err),
            MP_OK);
        mpt_mock_set_instance_state(f.m, ist);
        mp_account *acct = mpt_mock_account(f.m, "o");
        mp_status st = f.drv->account_open(acct, mpt_mock_config(f.m), &ast, &err);
        if (acct_cases[i].expect != NULL) {
            assert_int_equal(st, MP_FATAL);
            assert_null(ast);
            if (strstr(err.text, acct_cases[i].expect) == NULL)
                fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err.text, acct_cases[i].expect);
        } else {
            assert_int_equal(st, MP_OK);
            assert_int_equal(last_grant, MP_OAUTH_REFRESH_TOKEN);
            assert_string_equal(last_scope,
                                "offline_access https://graph.microsoft.com/Mail.Read");
            f.drv->account_close(acct, &ast);
            assert_null(ast);
        }
        f.drv->deinit(mpt_mock_instance(f.m), &ist);
        mpt_mock_free(&f.m);
        dlclose(f.dl);
    }
}

static const mpt_http_step slot_steps[] = {
    {.path = U "/mailFolders/inbox", .body = "{\"id\":\"F-in\"}"},
    {.path = U "/mailFolders/sentitems", .status = 404},
    {.path = U "/mailFolders/drafts", .status = 404},
    {.path = U "/mailFolders/deleteditems", .status = 404},
    {.path = U "/mailFolders/junkemail", .status = 404},
    {.path = U "/mailFolders/archive", .status = 404},
    {.path = U "/mailFolders", .body = "{\"value\":[{\"id\":\"F-in\",\"displayName\":\"Inbox\","
                                       "\"childFolderCount\":0}]}"},
    {.path = U "/mailFolders/F-in/messages/delta", .query = "$deltatoken=D1",
     .body = "{\"value\":[{\"id\":\"m1\"},{\"id\":\"m2\"},{\"id\":\"m3\"},{\"id\":\"m4\"}],"
             "\"@odata.deltaLink\":\"@BASE@/users/a%40x.org/mailFolders/F-in/messages/"
             "delta?$deltatoken=D2\"}"},
    /* a $batch of 4 parts: Outlook runs them at once, 4 of the mailbox's 4 */
    {.method = "POST", .path = "/v1.0/$batch", .delay_ms = 400,
     .body = "{\"responses\":[" PART(0, 404, "{}") "," PART(1, 404, "{}") "," PART(2, 404, "{}")
             "," PART(3, 404, "{}") "]}"},
    {.path = U "/messages/m7/$value", .body = "x"},
};

typedef struct reader_arg {
    fx *f;
    mp_status st;
} reader_arg;

/* A reader opening a message while the sync's $batch is in flight. */
static void *reader(void *p)
{
    reader_arg *r = p;
    assert_int_equal(mpt_http_server_wait_count(r->f->srv, 9, 10000), 0);
    mp_raw raw = {0};
    mp_message_ref ref = {.folder = "Inbox", .id = "m7"};
    mp_error err;
    memset(&err, 0, sizeof err);
    r->st = r->f->drv->fetch(r->f->acct, &ref, &raw, &err);
    if (r->st == MP_OK)
        host.free(raw.data);
    return NULL;
}

static void test_batch_holds_the_mailbox(void **state)
{
    (void)state;
    fx f;
    setup_with(&f, slot_steps, sizeof slot_steps / sizeof slot_steps[0]);
    mp_error err;
    memset(&err, 0, sizeof err);
    assert_int_equal(f.drv->list_folders(f.acct, mpt_mock_folder_sink(f.m), &err), MP_OK);
    char key[64];
    graph_fstate_key("Inbox", key, sizeof key);
    mpt_mock_state_set(f.m, f.acct, key, "{\"since\":1,\"cover\":4}");
    char cursor[256];
    snprintf(cursor, sizeof cursor,
             "%s/users/a%%40x.org/mailFolders/F-in/messages/delta?$deltatoken=D1", f.base);
    reader_arg r = {.f = &f, .st = MP_FATAL};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, reader, &r), 0);
    mp_batch *b = mpt_mock_batch(f.m, f.acct, "Inbox");
    assert_int_equal(f.drv->delta(f.acct, "Inbox", cursor, b, &err), MP_OK);
    pthread_join(t, NULL);
    assert_int_equal(r.st, MP_OK);
    /* the fetch waited for the $batch: never a fifth request at Outlook */
    assert_int_equal(mpt_http_server_max_in_flight(f.srv), 1);
    assert_int_equal(mpt_mock_change_count(f.m), 4); /* all four gone */
    assert_int_equal(mpt_mock_change_at(f.m, 0)->kind, MP_CHANGE_DELETED);
    teardown_fx(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_folders_bootstrap_delta),
        cmocka_unit_test(test_backfill_and_coverage),
        cmocka_unit_test(test_http_layer),
        cmocka_unit_test(test_batch_holds_the_mailbox),
        cmocka_unit_test(test_config_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
