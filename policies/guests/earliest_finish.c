/* The default reservation policy as a guest: the candidate whose output is ready to move on
 * earliest, then the earliest finish, then the first; the same choices as the native one. */
#include "poolpipe_policy.h"

POOLPIPE_POLICY_ABI_V2

PP_EXPORT(poolpipe_choose) int choose(void) {
    int n = pp_candidates();
    int best = 0;
    double best_ready = pp_candidate_output_ready(0), best_finish = pp_candidate_finish(0);
    for (int i = 1; i < n; i++) {
        double r = pp_candidate_output_ready(i), f = pp_candidate_finish(i);
        if (r < best_ready || (r == best_ready && f < best_finish)) {
            best = i;
            best_ready = r;
            best_finish = f;
        }
    }
    return best;
}
