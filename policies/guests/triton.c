/* The triton batching policy as a guest: per-pool dynamic batching with a preferred (planned)
 * batch and a maximum queue delay, the same decisions as the native `triton`.
 * Configuration: "max_queue_delay_us=2000" (default: the plan's batch-build estimate). */
#include "poolpipe_policy.h"
#include "lanes.h"

POOLPIPE_POLICY_ABI_V2
POOLPIPE_CONFIG_AREA(256)

static double max_queue_delay_us = -1;

PP_EXPORT(init) int init(int config, int len) {
    if (len > 0) {
        max_queue_delay_us = pp_config_number((const char *)(long)config, len, "max_queue_delay_us", -1);
    }
    return 0;
}

PP_EXPORT(poolpipe_routing) int routing(void) { return 1; }

PP_EXPORT(poolpipe_decide) int decide(void) {
    int queued = pp_queue_len();
    if (queued == 0 || pp_lanes() == 0) return 0;
    double now = pp_now();
    if (pp_deadline(0) < now) {
        pp_drop_head(1);
        return 0;
    }
    int lane = idle_lane();
    if (lane < 0) return 0;
    int preferred = pp_planned_batch(lane);
    if (preferred < 1) preferred = 1;
    if (queued >= preferred) {
        pp_dispatch(lane, preferred);
        return 0;
    }
    double delay = max_queue_delay_us >= 0 ? max_queue_delay_us : pp_batch_build(lane);
    double due = pp_enqueued(0) + delay;
    if (due <= now) {
        pp_dispatch(lane, queued);
    } else {
        pp_wait_until(due);
    }
    return 0;
}
