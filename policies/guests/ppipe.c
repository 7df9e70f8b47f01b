/* The ppipe batching policy as a guest: the same decisions as the native `ppipe` (reservation-
 * based adaptive batching, PPIPE.md). Configuration: "first_look_fraction=0.95". */
#include "poolpipe_policy.h"

POOLPIPE_POLICY_ABI_V1
POOLPIPE_CONFIG_AREA(256)

static double first_look_fraction = 0.95;

PP_EXPORT(init) int init(int config, int len) {
    if (len > 0) {
        first_look_fraction = pp_config_number((const char *)(long)config, len, "first_look_fraction", 0.95);
    }
    return first_look_fraction > 0 && first_look_fraction <= 1 ? 0 : 1;
}

/* The lane with the least waiting at its planned batch size (the first on ties). */
static int least_waiting(void) {
    int best = 0;
    double best_wait = __builtin_inf();
    int lanes = pp_lanes();
    for (int lane = 0; lane < lanes; lane++) {
        double wait = pp_probe_wait(lane, pp_planned_batch(lane));
        if (wait < best_wait) {
            best = lane;
            best_wait = wait;
        }
    }
    return best;
}

PP_EXPORT(poolpipe_decide) int decide(void) {
    int queued = pp_queue_len();
    if (queued == 0 || pp_lanes() == 0) return 0;
    int lane = least_waiting();
    int planned = pp_planned_batch(lane);
    if (planned < 1) planned = 1;
    double deadline = pp_deadline(0);
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
    if (fit == 0) {
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
