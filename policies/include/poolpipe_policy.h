/* poolpipe scheduling policies, ABI v2: the host functions a guest may import and the
 * exports the host looks for. See policies/ABI.md. Build a guest with Debian's clang and lld:
 *
 *   clang --target=wasm32 -O2 -nostdlib -Wl,--no-entry -I policies/include -o p.wasm p.c
 *
 * No libc: the guest gets everything it knows from these calls. Times are microseconds
 * (double) on the scheduler's clock; requests are indexed from the head of the queue (0). */
#ifndef POOLPIPE_POLICY_H
#define POOLPIPE_POLICY_H

#define PP_IMPORT(name) __attribute__((import_module("poolpipe"), import_name(#name)))
#define PP_EXPORT(name) __attribute__((export_name(#name)))

/* The queue of the decision in progress (batching policies). */
PP_IMPORT(now) double pp_now(void);
PP_IMPORT(queue_len) int pp_queue_len(void);
PP_IMPORT(arrival) double pp_arrival(int i);
PP_IMPORT(enqueued) double pp_enqueued(int i);
PP_IMPORT(deadline) double pp_deadline(int i);
/* 1 the first time any policy looks at the current head (and marks it looked), else 0. */
PP_IMPORT(first_look) int pp_first_look(void);
/* Lanes: the model's pipelines for a model's queue, one lane for a per-pool stage queue. */
PP_IMPORT(lanes) int pp_lanes(void);
PP_IMPORT(planned_batch) int pp_planned_batch(int lane);
PP_IMPORT(batch_build) double pp_batch_build(int lane);
/* Compute and transfer time from this queue to the end of the pipeline, no waiting. */
PP_IMPORT(latency) double pp_latency(int lane, int batch);
PP_IMPORT(idle_workers) int pp_idle_workers(int lane);
/* Earliest finish of a batch dispatched now, and the waiting on the way (probes are
 * memoised within a decision: asking both costs one probe). */
PP_IMPORT(probe_finish) double pp_probe_finish(int lane, int batch);
PP_IMPORT(probe_wait) double pp_probe_wait(int lane, int batch);
/* ABI v2: requests per second that entered this queue over the last second, and the requests
 * per second a lane sustains with every worker busy on batches of `batch` (0 without a
 * profile for that size). */
PP_IMPORT(arrival_rate) double pp_arrival_rate(void);
PP_IMPORT(throughput) double pp_throughput(int lane, int batch);

/* The decision: call at most one of these per poolpipe_decide; none means idle. */
PP_IMPORT(dispatch) void pp_dispatch(int lane, int batch);
PP_IMPORT(wait_until) void pp_wait_until(double t);
PP_IMPORT(drop_head) void pp_drop_head(int count);

/* The candidates of the choice in progress (reservation policies). */
PP_IMPORT(candidates) int pp_candidates(void);
PP_IMPORT(candidate_worker) int pp_candidate_worker(int i);
PP_IMPORT(candidate_transfer_start) double pp_candidate_transfer_start(int i);
PP_IMPORT(candidate_transfer_end) double pp_candidate_transfer_end(int i);
PP_IMPORT(candidate_start) double pp_candidate_start(int i);
PP_IMPORT(candidate_finish) double pp_candidate_finish(int i);
PP_IMPORT(candidate_same_server) int pp_candidate_same_server(int i);
/* ABI v2: when the candidate's output could have left its server (the uplink slot after its
 * finish for the next stage's input; its finish when no NIC is crossed). */
PP_IMPORT(candidate_output_ready) double pp_candidate_output_ready(int i);

/* A log line (UTF-8, at most 1024 bytes are shown). */
PP_IMPORT(log) void pp_log(const char *text, int len);

/* Exports: every guest defines POOLPIPE_POLICY_ABI_V2 once (a guest of ABI v1, which imports
 * none of arrival_rate, throughput and candidate_output_ready, may keep
 * POOLPIPE_POLICY_ABI_V1); then
 *   PP_EXPORT(init) int init(int config, int len);            optional, 0 = accepted
 *   PP_EXPORT(poolpipe_config_area) int area(int len);         needed to take a configuration
 *   PP_EXPORT(poolpipe_decide) int decide(void);               batching policy, 0 = ok
 *   PP_EXPORT(poolpipe_routing) int routing(void);             0 reserved (default), 1 per pool
 *   PP_EXPORT(poolpipe_choose) int choose(void);               reservation policy: an index */
#define POOLPIPE_POLICY_ABI_V2 \
    PP_EXPORT(poolpipe_policy_abi_v2) int poolpipe_policy_abi_v2(void) { return 1; }
#define POOLPIPE_POLICY_ABI_V1 \
    PP_EXPORT(poolpipe_policy_abi_v1) int poolpipe_policy_abi_v1(void) { return 1; }

/* A configuration area of `size` bytes, and a parser for "key=number" lines in it. */
#define POOLPIPE_CONFIG_AREA(size)                                   \
    static char pp_config[size];                                     \
    PP_EXPORT(poolpipe_config_area) int poolpipe_config_area(int len) { \
        return len <= (int)sizeof pp_config ? (int)(long)pp_config : 0; \
    }

/* The number after "key=" in `text` (len bytes), or `fallback` when the key is absent.
 * Digits, one '.', and an optional leading '-'. */
static inline double pp_config_number(const char *text, int len, const char *key, double fallback) {
    int k = 0;
    while (key[k]) k++;
    for (int i = 0; i + k < len; i++) {
        if ((i == 0 || text[i - 1] == '\n' || text[i - 1] == ' ' || text[i - 1] == ',') && text[i + k] == '=') {
            int same = 1;
            for (int j = 0; j < k; j++) same &= text[i + j] == key[j];
            if (!same) continue;
            int p = i + k + 1;
            double sign = 1, v = 0, scale = 0;
            if (p < len && text[p] == '-') { sign = -1; p++; }
            for (; p < len; p++) {
                char c = text[p];
                if (c == '.' && scale == 0) { scale = 1; continue; }
                if (c < '0' || c > '9') break;
                v = v * 10 + (c - '0');
                if (scale) scale *= 10;
            }
            return sign * (scale ? v / scale : v);
        }
    }
    return fallback;
}

#endif
