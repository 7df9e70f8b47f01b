/* The reactive batching policy as a guest: per-pool batching without reservations, the same
 * decisions as the native `reactive`. */
#include "poolpipe_policy.h"
#include "lanes.h"

POOLPIPE_POLICY_ABI_V2

PP_EXPORT(poolpipe_routing) int routing(void) { return 1; }

PP_EXPORT(poolpipe_decide) int decide(void) {
    int queued = pp_queue_len();
    int lanes = pp_lanes();
    if (queued == 0 || lanes == 0) return 0;
    double fastest = __builtin_inf();
    for (int l = 0; l < lanes; l++) {
        double v = pp_latency(l, 1);
        if (v < fastest) fastest = v;
    }
    if (pp_now() + fastest > pp_deadline(0)) {
        pp_drop_head(1);
        return 0;
    }
    int lane = idle_lane();
    if (lane < 0) return 0;
    int planned = pp_planned_batch(lane);
    if (planned < 1) planned = 1;
    pp_dispatch(lane, queued < planned ? queued : planned);
    return 0;
}
