/*
 * A connect limiter shared by every login of one driver instance: at most
 * `concurrency` connection attempts (DNS, TCP, TLS, authentication) at
 * once, and their starts spaced at least 1/`rate` second apart (no burst:
 * a restart with 10,000 accounts reaches the server as an even stream).
 *
 * Two classes of waiters: urgent ones (a sync worker that needs a login to
 * run a job the scheduler gave it) go before the others (push streams
 * connecting from the connect pool), so sync never starves behind a queue
 * of push logins.
 *
 * Threading: every function may be called from any thread; acquire blocks.
 * Ownership: the struct is the caller's; init/destroy bracket its use.
 */
#ifndef MP_IMAP_LIMIT_H
#define MP_IMAP_LIMIT_H

#include <pthread.h>
#include <stdint.h>

typedef struct imap_limit {
    pthread_mutex_t lock;
    pthread_cond_t cond;      /* CLOCK_MONOTONIC                            */
    uint32_t rate;            /* starts per second; 0: unlimited            */
    uint32_t concurrency;     /* attempts at once; 0: unlimited             */
    uint32_t in_use;
    uint32_t urgent_waiting;
    int64_t next_us;          /* monotonic time the next start may happen   */
    uint64_t granted;         /* starts so far (tests, diagnostics)         */
    uint32_t peak_in_use;
} imap_limit;

void imap_limit_init(imap_limit *l, uint32_t rate, uint32_t concurrency);
void imap_limit_destroy(imap_limit *l);

/* Wait for a start slot; pair with imap_limit_release once the attempt
 * ended (connected or failed). `urgent` nonzero: served before the
 * non-urgent waiters. */
void imap_limit_acquire(imap_limit *l, int urgent);
void imap_limit_release(imap_limit *l);

/* CLOCK_MONOTONIC in microseconds. */
int64_t imap_limit_now_us(void);

#endif
