/* A reservation policy that keeps consecutive stages of a batch on one server when that does
 * not delay the batch: among the candidates on the previous stage's server, the one whose
 * output is ready earliest wins if it is ready no later than the earliest candidate overall
 * (plus "slack_us", default 0); otherwise the earliest overall. Such a hop needs no NIC time, which
 * leaves the links to other batches. */
#include "poolpipe_policy.h"

POOLPIPE_POLICY_ABI_V2
POOLPIPE_CONFIG_AREA(128)

static double slack_us = 0;

PP_EXPORT(init) int init(int config, int len) {
    if (len > 0) slack_us = pp_config_number((const char *)(long)config, len, "slack_us", 0);
    return slack_us >= 0 ? 0 : 1;
}

PP_EXPORT(poolpipe_choose) int choose(void) {
    int n = pp_candidates();
    int best = 0, local = -1;
    double best_finish = pp_candidate_output_ready(0), local_finish = 0;
    for (int i = 0; i < n; i++) {
        double f = pp_candidate_output_ready(i);
        if (f < best_finish) {
            best = i;
            best_finish = f;
        }
        if (pp_candidate_same_server(i) && (local < 0 || f < local_finish)) {
            local = i;
            local_finish = f;
        }
    }
    return local >= 0 && local_finish <= best_finish + slack_us ? local : best;
}
