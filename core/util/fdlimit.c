/*
 * Descriptor shortage (fdlimit.h). The episode logic keeps a daemon that
 * runs out of descriptors from writing a line per failed attempt: at
 * 10,000 accounts one shortage is met thousands of times a second.
 */
#include "util/fdlimit.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/resource.h>

#include "util/log.h"
#include "util/util.h"

static atomic_uint_fast64_t shortages;
/* Monotonic ms of the last shortage; 0: none yet. */
static atomic_int_fast64_t last_ms;

void mpu_fd_raise_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
        mpu_warn("core", "cannot read the descriptor limit: %s", strerror(errno));
        return;
    }
    rlim_t soft = rl.rlim_cur;
    if (rl.rlim_cur != rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
            mpu_warn("core", "cannot raise the descriptor limit from %llu to %llu: %s",
                     (unsigned long long)soft, (unsigned long long)rl.rlim_max,
                     strerror(errno));
            return;
        }
    }
    mpu_info("core", "descriptor limit: soft %llu (was %llu), hard %llu",
             (unsigned long long)rl.rlim_cur, (unsigned long long)soft,
             (unsigned long long)rl.rlim_max);
}

int mpu_fd_shortage(int err)
{
    return err == EMFILE || err == ENFILE || err == ENOMEM || err == ENOBUFS;
}

void mpu_fd_shortage_note(const char *where, int err)
{
    atomic_fetch_add(&shortages, 1);
    int64_t now = mpu_mono_ms();
    int64_t prev = atomic_exchange(&last_ms, now);
    if (prev != 0 && now - prev < MPU_FD_EPISODE_QUIET_MS)
        return;
    mpu_warn("core",
             "out of file descriptors (%s: %s); affected work is retried with backoff, "
             "further shortages are counted in mailpulse_fd_exhaustion_total and not "
             "logged until none has occurred for %d s",
             where, strerror(err), MPU_FD_EPISODE_QUIET_MS / 1000);
}

uint64_t mpu_fd_shortage_total(void)
{
    return atomic_load(&shortages);
}
