/* The default reservation policy as a guest: the candidate with the earliest finish (the first
 * on ties), the same choices as the native one. */
#include "poolpipe_policy.h"

POOLPIPE_POLICY_ABI_V2

PP_EXPORT(poolpipe_choose) int choose(void) {
    int n = pp_candidates();
    int best = 0;
    double best_finish = pp_candidate_finish(0);
    for (int i = 1; i < n; i++) {
        double f = pp_candidate_finish(i);
        if (f < best_finish) {
            best = i;
            best_finish = f;
        }
    }
    return best;
}
