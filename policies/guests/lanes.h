/* Shared by the per-pool guests: the lane with an idle worker whose probe at the planned size
 * finishes first, or -1. */
static int idle_lane(void) {
    int best = -1;
    double best_finish = 0;
    int lanes = pp_lanes();
    for (int lane = 0; lane < lanes; lane++) {
        if (pp_idle_workers(lane) == 0) continue;
        double finish = pp_probe_finish(lane, pp_planned_batch(lane));
        if (best < 0 || finish < best_finish) {
            best = lane;
            best_finish = finish;
        }
    }
    return best;
}
