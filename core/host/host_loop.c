/* Timers and fd watches for push streams. Every object is linked into its
 * account's list (or the host's global list) so closing an account frees
 * whatever its driver left armed: a driver bug must not leave a callback
 * pointing into an unloaded .so. */
#include "host/host_private.h"

#include <stdlib.h>

#include <event2/event.h>

#include "util/util.h"

struct mp_hostobj {
    struct mp_hostobj *next, **pprev;
    struct event *ev;
    int is_timer;
    mp_timer_cb timer_cb;
    mp_watch_cb watch_cb;
    void *arg;
    int fd;
};

static struct mp_hostobj **objs_of(mp_account *acct)
{
    return acct != NULL ? &acct->loop_objs : NULL;
}

static void link_obj(struct mp_hostobj **head, struct mp_hostobj *o)
{
    o->next = *head;
    if (o->next != NULL)
        o->next->pprev = &o->next;
    o->pprev = head;
    *head = o;
}

static void unlink_free(struct mp_hostobj *o)
{
    if (o->pprev != NULL) {
        *o->pprev = o->next;
        if (o->next != NULL)
            o->next->pprev = o->pprev;
    }
    if (o->ev != NULL)
        event_free(o->ev);
    free(o);
}

void mphost_release_loop_objs(struct mp_hostobj **list)
{
    while (*list != NULL)
        unlink_free(*list);
}

/* Timers and watches without an account (instance-level): the timer_add
 * and watch_fd slots carry no instance, so these hang off the host. */
static struct event_base *global_base;
static struct mp_hostobj *global_objs;

void mphost_set_global_base(struct event_base *base)
{
    global_base = base;
}

void mphost_release_global_objs(void)
{
    mphost_release_loop_objs(&global_objs);
}

static struct event_base *base_of(mp_account *acct)
{
    return acct != NULL ? mphost_env_of(acct)->base : global_base;
}

static void timer_fired(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct mp_hostobj *o = arg;
    o->timer_cb(o->arg);
}

mp_timer *mphost_timer_add(mp_account *acct, uint32_t after_ms, mp_timer_cb cb, void *arg)
{
    struct mp_hostobj *o = mpu_calloc(1, sizeof *o);
    o->is_timer = 1;
    o->timer_cb = cb;
    o->arg = arg;
    o->ev = evtimer_new(base_of(acct), timer_fired, o);
    struct timeval tv = {after_ms / 1000, (after_ms % 1000) * 1000};
    evtimer_add(o->ev, &tv);
    struct mp_hostobj **head = objs_of(acct);
    link_obj(head != NULL ? head : &global_objs, o);
    return (mp_timer *)o;
}

void mphost_timer_cancel(mp_timer **timer)
{
    if (timer == NULL || *timer == NULL)
        return;
    unlink_free((struct mp_hostobj *)*timer);
    *timer = NULL;
}

static void watch_fired(evutil_socket_t fd, short what, void *arg)
{
    struct mp_hostobj *o = arg;
    unsigned events = 0;
    if (what & EV_READ)
        events |= MP_FD_READ;
    if (what & EV_WRITE)
        events |= MP_FD_WRITE;
    o->watch_cb((int)fd, events, o->arg);
}

static short ev_flags(unsigned events)
{
    short f = EV_PERSIST;
    if (events & MP_FD_READ)
        f |= EV_READ;
    if (events & MP_FD_WRITE)
        f |= EV_WRITE;
    return f;
}

mp_watch *mphost_watch_fd(mp_account *acct, int fd, unsigned events, mp_watch_cb cb,
                       void *arg)
{
    struct mp_hostobj *o = mpu_calloc(1, sizeof *o);
    o->watch_cb = cb;
    o->arg = arg;
    o->fd = fd;
    o->ev = event_new(base_of(acct), fd, ev_flags(events), watch_fired, o);
    if (events != 0)
        event_add(o->ev, NULL);
    struct mp_hostobj **head = objs_of(acct);
    link_obj(head != NULL ? head : &global_objs, o);
    return (mp_watch *)o;
}

void mphost_watch_update(mp_watch *watch, unsigned events)
{
    struct mp_hostobj *o = (struct mp_hostobj *)watch;
    if (o == NULL)
        return;
    struct event_base *base = event_get_base(o->ev);
    event_del(o->ev);
    event_assign(o->ev, base, o->fd, ev_flags(events), watch_fired, o);
    if (events != 0)
        event_add(o->ev, NULL);
}

void mphost_watch_cancel(mp_watch **watch)
{
    if (watch == NULL || *watch == NULL)
        return;
    unlink_free((struct mp_hostobj *)*watch);
    *watch = NULL;
}
