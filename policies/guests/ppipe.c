/* The ppipe batching policy as a guest: the same decisions as the native `ppipe` (reservation-
 * based adaptive batching, PPIPE.md, work-conserving at light load). Configuration:
 * "first_look_fraction=0.95, light_load=0.5". */
#include "poolpipe_policy.h"

POOLPIPE_POLICY_ABI_V2
POOLPIPE_CONFIG_AREA(256)

static double first_look_fraction = 0.95;
static double light_load = 0.5;

PP_EXPORT(init) int init(int config, int len) {
    if (len > 0) {
        first_look_fraction = pp_config_number((const char *)(long)config, len, "first_look_fraction", 0.95);
        light_load = pp_config_number((const char *)(long)config, len, "light_load", 0.5);
    }
    return first_look_fraction > 0 && first_look_fraction <= 1 && light_load >= 0 ? 0 : 1;
}

/* The lane with the least waiting at its planned batch size (the first on ties), among the
 * lanes whose pure batch-1 latency still meets the head's deadline when any does. */
static int least_waiting(void) {
    int lanes = pp_lanes();
    double reach = pp_deadline(0) - pp_now();
    int any = 0;
    for (int lane = 0; lane < lanes; lane++) {
        if (pp_latency(lane, 1) <= reach) any = 1;
    }
    int best = -1;
    double best_wait = 0;
    for (int lane = 0; lane < lanes; lane++) {
        if (any && pp_latency(lane, 1) > reach) continue;
        double wait = pp_probe_wait(lane, pp_planned_batch(lane));
        if (best < 0 || wait < best_wait) {
            best = lane;
            best_wait = wait;
        }
    }
    return best < 0 ? 0 : best;
}

/* Whether two full batches wait or more arrives than the lanes serve at their planned sizes. */
static int overloaded(int queued, int planned) {
    if (queued >= 2 * planned) return 1;
    double capacity = 0;
    int lanes = pp_lanes();
    for (int l = 0; l < lanes; l++) {
        int p = pp_planned_batch(l);
        capacity += pp_throughput(l, p < 1 ? 1 : p);
    }
    return pp_arrival_rate() > capacity;
}

PP_EXPORT(poolpipe_decide) int decide(void) {
    int queued = pp_queue_len();
    if (queued == 0 || pp_lanes() == 0) return 0;
    int lane = least_waiting();
    double deadline = pp_deadline(0);
    int planned = pp_planned_batch(lane);
    if (planned < 1) planned = 1;
    while (planned > 1 && pp_now() + pp_latency(lane, planned) > deadline) planned--;
    /* Light load: an idle lane takes what is queued at once when the arrival rate is within
     * light_load of what the lanes sustain at that size. */
    if (queued < planned && light_load > 0 && pp_idle_workers(lane) > 0) {
        double capacity = 0;
        int lanes = pp_lanes();
        for (int l = 0; l < lanes; l++) {
            int p = pp_planned_batch(l);
            if (p < 1) p = 1;
            capacity += pp_throughput(l, queued < p ? queued : p);
        }
        if (pp_arrival_rate() <= light_load * capacity && pp_probe_finish(lane, queued) <= deadline) {
            pp_dispatch(lane, queued);
            return 0;
        }
    }
    int lowest = 1;
    if (pp_first_look()) {
        lowest = (int)__builtin_ceil(first_look_fraction * (double)planned);
        if (lowest < 1) lowest = 1;
        if (lowest > planned) lowest = planned;
    }
    int fit = 0;
    for (int b = planned; b >= lowest; b--) {
        if (pp_probe_finish(lane, b) <= deadline) {
            fit = b;
            break;
        }
    }
    /* Overload: two full batches wait, or more arrives than the lanes serve at their planned
     * sizes. A head that only a smaller batch, or another lane, could serve in time is then
     * dropped: shrinking batches would cost every request behind it throughput. */
    if (fit == 0) {
        /* Another lane may still serve the head in time (the least waiting one at its planned
         * size need not be the one that can): the first in lane order, with the largest batch
         * that meets the deadline up to its planned size and what is queued. */
        int lanes = pp_lanes();
        for (int l = 0; l < lanes && !overloaded(queued, planned); l++) {
            if (l == lane || pp_probe_finish(l, 1) > deadline) continue;
            int top = pp_planned_batch(l);
            if (top < 1) top = 1;
            if (top > queued) top = queued;
            int b = top;
            while (b > 1 && pp_probe_finish(l, b) > deadline) b--;
            pp_dispatch(l, b);
            return 0;
        }
        pp_drop_head(1);
        return 0;
    }
    if (fit < planned && overloaded(queued, planned)) {
        pp_drop_head(1);
        return 0;
    }
    if (queued >= fit) {
        pp_dispatch(lane, fit);
        return 0;
    }
    /* Fewer requests than fit: wait for one more while a batch of queued + 1 still fits. */
    double slack = deadline - pp_probe_finish(lane, queued + 1);
    double now = pp_now();
    if (slack > 0) {
        pp_wait_until(now + slack);
    } else {
        pp_dispatch(lane, queued);
    }
    return 0;
}
