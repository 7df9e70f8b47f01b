#!/usr/bin/env python3
"""The planner's outside oracle: PPipe's compact MILP solved by HiGHS (scipy.optimize.milp).

Reads the pipeline configurations the planner enumerated (`poolpipe plan --columns FILE`:
every SLO-feasible configuration of every model, before any pruning) and solves the same
formulation as planner/src/milp.rs, independently of the planner's pruning and search:

  maximise z
  z * w_m <= sum_c X_c                        for every model m
  X_c <= vgpu_rps_{c,d} * n_{c,d}             for every configuration c, partition d
  sum_{c of m, d on class g} n_{c,d} / k_{c,d} <= P_{m,d,g}   for every pool
  sum_{m,d} P_{m,d,g} <= N_g                  for every class g
  n integer; P integer unless every partition of the pool is a whole GPU (k = 1)

Prints one JSON object: objective, proven gap, status, seconds.

Usage: planner_oracle.py COLUMNS.json [--time-limit S] [--gap G]
"""

import argparse
import json
import sys
import time

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_matrix


def solve(spec, time_limit, gap):
    classes = spec["classes"]
    counts = [c["count"] for c in classes]
    cost, lo, hi, integ = [], [], [], []

    def var(c, low, high, integer):
        cost.append(c)
        lo.append(low)
        hi.append(high)
        integ.append(1 if integer else 0)
        return len(cost) - 1

    rows, cols, vals, rlo, rhi = [], [], [], [], []

    def row(terms, low, high):
        r = len(rlo)
        for v, a in terms:
            rows.append(r)
            cols.append(v)
            vals.append(a)
        rlo.append(low)
        rhi.append(high)

    z = var(-1.0, 0.0, np.inf, False)  # milp minimises
    pools = {}
    for mi, m in enumerate(spec["models"]):
        total = [(z, m["weight"])]
        for col in m["columns"]:
            x = var(0.0, 0.0, np.inf, False)
            total.append((x, -1.0))
            for d, p in enumerate(col["parts"]):
                n = var(0.0, 0.0, counts[p["class"]] * p["share"], True)
                row([(x, 1.0), (n, -p["vgpu_rps"])], -np.inf, 0.0)
                key = (mi, d, p["class"])
                terms, whole = pools.get(key, ([], True))
                terms.append((n, 1.0 / p["share"]))
                pools[key] = (terms, whole and p["share"] == 1)
        row(total, -np.inf, 0.0)
    per_class = [[] for _ in classes]
    for (mi, d, g), (terms, whole) in sorted(pools.items()):
        p = var(0.0, 0.0, counts[g], not whole)
        row(terms + [(p, -1.0)], -np.inf, 0.0)
        per_class[g].append((p, 1.0))
    for g, terms in enumerate(per_class):
        if terms:
            row(terms, -np.inf, counts[g])
    a = coo_matrix((vals, (rows, cols)), shape=(len(rlo), len(cost))).tocsr()
    t0 = time.time()
    res = milp(
        c=np.array(cost),
        constraints=LinearConstraint(a, np.array(rlo), np.array(rhi)),
        integrality=np.array(integ),
        bounds=Bounds(np.array(lo), np.array(hi)),
        options={"time_limit": time_limit, "mip_rel_gap": gap, "disp": False},
    )
    seconds = time.time() - t0
    objective = -res.fun if res.x is not None else None
    bound = -res.mip_dual_bound if getattr(res, "mip_dual_bound", None) is not None else None
    proven = None
    if objective and bound is not None:
        proven = max(0.0, (bound - objective) / objective)
    return {
        "objective": objective,
        "bound": bound,
        "gap": proven,
        "optimal": res.status == 0,
        "status": res.message,
        "seconds": seconds,
        "variables": len(cost),
        "rows": len(rlo),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("columns", help="the JSON written by `poolpipe plan --columns FILE`")
    ap.add_argument("--time-limit", type=float, default=120.0, help="seconds (default 120)")
    ap.add_argument("--gap", type=float, default=1e-6, help="relative gap to stop at (default 1e-6)")
    a = ap.parse_args()
    try:
        with open(a.columns) as f:
            spec = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f"planner_oracle: reading {a.columns}: {e}")
    print(json.dumps(solve(spec, a.time_limit, a.gap)))


if __name__ == "__main__":
    main()
