/* Unit tests of the subscription host slots (core/host/host_subscription.c):
 * the in-memory index behind subscription_get and subscription_lookup. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "host/host_private.h"
#include "util/util.h"

#define SECRET_A "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define SECRET_B "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"

typedef struct fixture {
    mp_instance graph, other;
    struct mp_account alice, bob, carol;
    struct mp_account *graph_accounts[2], *other_accounts[1];
    const mp_host *host;
} fixture;

static void account_init(fixture *f, struct mp_account *a, const char *id, mp_instance *inst)
{
    a->id = (char *)id;
    a->inst = inst;
}

static int setup(void **state)
{
    fixture *f = mpu_calloc(1, sizeof *f);
    f->graph.name = "graph";
    f->other.name = "other";
    account_init(f, &f->alice, "alice", &f->graph);
    account_init(f, &f->bob, "bob", &f->graph);
    account_init(f, &f->carol, "carol", &f->other);
    f->graph_accounts[0] = &f->alice;
    f->graph_accounts[1] = &f->bob;
    f->graph.accounts = f->graph_accounts;
    f->graph.n_accounts = 2;
    f->other_accounts[0] = &f->carol;
    f->other.accounts = f->other_accounts;
    f->other.n_accounts = 1;
    f->host = mphost_table();
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    mphost_call_end();
    mphost_subs_free(&f->graph);
    mphost_subs_free(&f->other);
    assert_null(f->graph.subs);
    assert_null(f->other.subs);
    free(f);
    return 0;
}

static void test_slots_offered(void **state)
{
    fixture *f = *state;
    assert_true(MP_HOST_HAS(f->host, subscription_get));
    assert_true(MP_HOST_HAS(f->host, subscription_lookup));
}

static void test_lookup_by_id(void **state)
{
    fixture *f = *state;
    const mp_host *h = f->host;
    mphost_subs_put(&f->alice, "sub-alice", 1900000000, "hint-a", SECRET_A);
    mphost_subs_put(&f->bob, "sub-bob", 0, NULL, SECRET_B);

    mp_account *acct = NULL;
    mp_subscription sub;
    mp_error err = {0, ""};
    assert_int_equal(h->subscription_lookup(&f->graph, "sub-bob", &acct, &sub, &err), MP_OK);
    assert_ptr_equal(acct, &f->bob);
    assert_string_equal(sub.provider_id, "sub-bob");
    assert_int_equal(sub.expires_at, 0);
    assert_null(sub.cursor_hint);
    assert_string_equal(sub.secret, SECRET_B);

    assert_int_equal(h->subscription_lookup(&f->graph, "sub-alice", &acct, &sub, &err), MP_OK);
    assert_ptr_equal(acct, &f->alice);
    assert_int_equal(sub.expires_at, 1900000000);
    assert_string_equal(sub.cursor_hint, "hint-a");
    assert_string_equal(sub.secret, SECRET_A);
    /* Copies: the driver holds them while the index changes. */
    const char *held = sub.secret;
    mphost_subs_put(&f->alice, "sub-alice", 1900000000, "hint-a", SECRET_B);
    assert_string_equal(held, SECRET_A);
    mphost_call_end();

    assert_int_equal(h->subscription_get(&f->alice, &sub, &err), MP_OK);
    assert_string_equal(sub.provider_id, "sub-alice");
    assert_string_equal(sub.secret, SECRET_B);
    mphost_call_end();
}

static void test_unknown_id_skips(void **state)
{
    fixture *f = *state;
    const mp_host *h = f->host;
    mp_account *acct = &f->alice;
    mp_subscription sub;
    memset(&sub, 0xff, sizeof sub);
    mp_error err = {0, ""};
    /* Nothing indexed yet. */
    assert_int_equal(h->subscription_lookup(&f->graph, "sub-alice", &acct, &sub, &err),
                     MP_SKIP);
    assert_null(acct);
    assert_null(sub.secret);
    assert_int_equal(h->subscription_get(&f->alice, &sub, &err), MP_SKIP);
    assert_null(sub.provider_id);

    mphost_subs_put(&f->alice, "sub-alice", 0, NULL, SECRET_A);
    assert_int_equal(h->subscription_lookup(&f->graph, "sub-nobody", &acct, &sub, &err),
                     MP_SKIP);
    assert_null(acct);
    assert_int_equal(h->subscription_lookup(&f->graph, NULL, &acct, &sub, &err), MP_SKIP);
    assert_int_equal(h->subscription_lookup(&f->graph, "", &acct, &sub, &err), MP_SKIP);
    /* A prefix is not the id. */
    assert_int_equal(h->subscription_lookup(&f->graph, "sub-alic", &acct, &sub, &err),
                     MP_SKIP);
    assert_int_equal(h->subscription_get(&f->bob, &sub, &err), MP_SKIP);
    /* Nothing of the secret in the reason. */
    assert_null(strstr(err.text, SECRET_A));
}

static void test_other_instance_not_found(void **state)
{
    fixture *f = *state;
    const mp_host *h = f->host;
    mphost_subs_put(&f->carol, "sub-carol", 0, NULL, SECRET_A);
    mp_account *acct = NULL;
    mp_subscription sub;
    mp_error err = {0, ""};
    assert_int_equal(h->subscription_lookup(&f->graph, "sub-carol", &acct, &sub, &err),
                     MP_SKIP);
    assert_null(acct);
    assert_null(sub.secret);
    assert_int_equal(h->subscription_lookup(&f->other, "sub-carol", &acct, &sub, &err),
                     MP_OK);
    assert_ptr_equal(acct, &f->carol);

    /* The same id at two instances: each finds its own account. */
    mphost_subs_put(&f->bob, "sub-carol", 0, NULL, SECRET_B);
    assert_int_equal(h->subscription_lookup(&f->graph, "sub-carol", &acct, &sub, &err),
                     MP_OK);
    assert_ptr_equal(acct, &f->bob);
    assert_string_equal(sub.secret, SECRET_B);
    assert_int_equal(h->subscription_lookup(&f->other, "sub-carol", &acct, &sub, &err),
                     MP_OK);
    assert_ptr_equal(acct, &f->carol);
    assert_string_equal(sub.secret, SECRET_A);
}

static void test_renewal_keeps_secret(void **state)
{
    fixture *f = *state;
    const mp_host *h = f->host;
    mp_subscription sub;
    mp_error err = {0, ""};
    mphost_subs_put(&f->alice, "sub-1", 100, "h1", SECRET_A);
    /* Renewed without a new secret: the one indexed stays. */
    mphost_subs_put(&f->alice, "sub-1", 200, NULL, NULL);
    assert_int_equal(h->subscription_get(&f->alice, &sub, &err), MP_OK);
    assert_int_equal(sub.expires_at, 200);
    assert_null(sub.cursor_hint);
    assert_string_equal(sub.secret, SECRET_A);
    /* A subscription put without a secret at first has none. */
    mphost_subs_put(&f->bob, "sub-2", 0, NULL, NULL);
    assert_int_equal(h->subscription_get(&f->bob, &sub, &err), MP_OK);
    assert_null(sub.secret);
    mphost_call_end();
}

static void test_forget_and_removed(void **state)
{
    fixture *f = *state;
    const mp_host *h = f->host;
    mp_account *acct = NULL;
    mp_subscription sub;
    mp_error err = {0, ""};
    mphost_subs_put(&f->alice, "sub-alice", 0, NULL, SECRET_A);
    mphost_subs_put(&f->bob, "sub-bob", 0, NULL, SECRET_B);
    mphost_subs_forget(&f->graph, "alice");
    assert_int_equal(h->subscription_lookup(&f->graph, "sub-alice", &acct, &sub, &err),
                     MP_SKIP);
    assert_int_equal(h->subscription_get(&f->alice, &sub, &err), MP_SKIP);
    assert_int_equal(h->subscription_lookup(&f->graph, "sub-bob", &acct, &sub, &err), MP_OK);
    mphost_subs_forget(&f->graph, "alice"); /* twice: nothing */

    /* A retired account is not found, and a late put of a job that
     * outlived it does not bring it back. */
    atomic_store(&f->bob.removed, 1);
    assert_int_equal(h->subscription_lookup(&f->graph, "sub-bob", &acct, &sub, &err),
                     MP_SKIP);
    mphost_subs_forget(&f->graph, "bob");
    mphost_subs_put(&f->bob, "sub-bob-2", 0, NULL, SECRET_B);
    atomic_store(&f->bob.removed, 0);
    assert_int_equal(h->subscription_get(&f->bob, &sub, &err), MP_SKIP);
    assert_int_equal(h->subscription_lookup(&f->graph, "sub-bob-2", &acct, &sub, &err),
                     MP_SKIP);
}

typedef struct racer {
    fixture *f;
    int n;
} racer;

static void *put_many(void *arg)
{
    racer *r = arg;
    for (int i = 0; i < r->n; i++)
        mphost_subs_put(&r->f->alice, "sub-alice", i, NULL, (i & 1) ? SECRET_A : SECRET_B);
    return NULL;
}

/* Upkeep puts from a worker while push_verify looks up on the loop: every
 * answer is a whole entry (run under TSan in the sanitizer build). */
static void test_concurrent_put_and_lookup(void **state)
{
    fixture *f = *state;
    const mp_host *h = f->host;
    mphost_subs_put(&f->alice, "sub-alice", 0, NULL, SECRET_A);
    racer r = {f, 2000};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, put_many, &r), 0);
    for (int i = 0; i < 2000; i++) {
        mp_account *acct = NULL;
        mp_subscription sub;
        mp_error err = {0, ""};
        assert_int_equal(h->subscription_lookup(&f->graph, "sub-alice", &acct, &sub, &err),
                         MP_OK);
        assert_true(strcmp(sub.secret, SECRET_A) == 0 || strcmp(sub.secret, SECRET_B) == 0);
        mphost_call_end();
    }
    pthread_join(t, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_slots_offered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lookup_by_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_id_skips, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_instance_not_found, setup, teardown),
        cmocka_unit_test_setup_teardown(test_renewal_keeps_secret, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forget_and_removed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_put_and_lookup, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
