// Row reductions, one workgroup per row with a tree reduction in workgroup memory: reduce over
// any set of axes (KIND 0 mean, 1 max, 2 sum, 3 min, 4 prod, 5 L1, 6 L2, 7 log-sum,
// 8 log-sum-exp, 9 sum of squares; also global pooling), arg-max/arg-min along an axis,
// softmax along an axis (KIND 0 softmax, 1 log-softmax, 2 hardmax), and layer normalisation.
//
// reduce parameter words: 0 rows (outputs)   1 L (elements per row)
//   2..7 kept dims (rank 6, leading 1s)   8..13 input strides of the kept dims
//   14..19 reduced dims (leading 1s)      20..25 input strides of the reduced dims
// arg_reduce parameter words: 0 rows   1 L   2 inner (stride between elements of a row)
//   3 select the last index on ties   (KIND 0 arg-max, 1 arg-min; i32 output)
// softmax parameter words: 0 rows   1 L   2 inner (stride between elements of a row)
// layer_norm parameter words: 0 rows   1 L   2 epsilon (f32)   3 has bias
//   (scale and bias are expanded to L values)

override KIND: u32 = 0u;

@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> scale: array<f32>;
@group(0) @binding(4) var<storage, read> shift: array<f32>;
@group(0) @binding(5) var<storage, read_write> out_i: array<i32>;

var<workgroup> red: array<f32, WG>;
var<workgroup> red_i: array<u32, WG>;

const NEG_INF: u32 = 0xff800000u;
const POS_INF: u32 = 0x7f800000u;

// Combining modes: 0 sum, 1 max, 2 min, 3 product.
fn combine(p: f32, q: f32, mode: u32) -> f32 {
    switch mode {
        case 1u: { return max(p, q); }
        case 2u: { return min(p, q); }
        case 3u: { return p * q; }
        default: { return p + q; }
    }
}

// Reduces `v` over the workgroup; every invocation gets the result.
fn wg_reduce(v: f32, lid: u32, mode: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    var s = WG / 2u;
    loop {
        if (s == 0u) {
            break;
        }
        if (lid < s) {
            red[lid] = combine(red[lid], red[lid + s], mode);
        }
        workgroupBarrier();
        s = s / 2u;
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

fn row_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return group_index(wid, nwg);
}

// How each KIND of `reduce` combines, starts and transforms its elements.
fn kind_mode() -> u32 {
    switch KIND {
        case 1u: { return 1u; }
        case 3u: { return 2u; }
        case 4u: { return 3u; }
        default: { return 0u; }
    }
}

fn kind_init() -> f32 {
    switch KIND {
        case 1u: { return bitcast<f32>(NEG_INF); }
        case 3u: { return bitcast<f32>(POS_INF); }
        case 4u: { return 1.0; }
        default: { return 0.0; }
    }
}

fn kind_pre(v: f32) -> f32 {
    switch KIND {
        case 5u: { return abs(v); }
        case 6u, 9u: { return v * v; }
        default: { return v; }
    }
}

// The element of the row at `base` that is the i-th of the reduced axes (sizes at params
// 14.., strides at 20..).
fn reduced_offset(base: u32, i: u32) -> u32 {
    var off = base;
    var r = i;
    for (var d = 6u; d >= 1u; d--) {
        off += (r % pu(13u + d)) * pu(19u + d);
        r = r / pu(13u + d);
    }
    return off;
}

@compute @workgroup_size(WG)
fn reduce(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let row = row_index(wid, nwg);
    let rows = pu(0u);
    let valid = row < rows;
    let L = pu(1u);
    var base = 0u;
    var rem = row;
    for (var d = 6u; d >= 1u; d--) {
        base += (rem % pu(1u + d)) * pu(7u + d);
        rem = rem / pu(1u + d);
    }
    // Log-sum-exp takes the maximum first (KIND 8), everything else one pass.
    var m = 0.0;
    if (KIND == 8u) {
        var mx = bitcast<f32>(NEG_INF);
        if (valid) {
            for (var i = lid; i < L; i += WG) {
                mx = max(mx, x[reduced_offset(base, i)]);
            }
        }
        m = wg_reduce(mx, lid, 1u);
        if (m == bitcast<f32>(NEG_INF)) {
            m = 0.0;
        }
    }
    let mode = kind_mode();
    var acc = kind_init();
    if (valid) {
        for (var i = lid; i < L; i += WG) {
            var v = kind_pre(x[reduced_offset(base, i)]);
            if (KIND == 8u) {
                v = exp(v - m);
            }
            acc = combine(acc, v, mode);
        }
    }
    let total = wg_reduce(acc, lid, mode);
    if (valid && lid == 0u) {
        var res = total;
        switch KIND {
            case 0u: { res = total / f32(L); }
            case 6u: { res = sqrt(total); }
            case 7u: { res = log(total); }
            case 8u: { res = m + log(total); }
            default: {}
        }
        out[row] = res;
    }
}

@compute @workgroup_size(WG)
fn arg_reduce(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let row = row_index(wid, nwg);
    let valid = row < pu(0u);
    let L = pu(1u);
    let inner = pu(2u);
    let last = pu(3u) != 0u;
    let base = (row / inner) * L * inner + row % inner;
    let want_max = KIND == 0u;
    var best = select(bitcast<f32>(NEG_INF), bitcast<f32>(POS_INF), !want_max);
    var bi = 0xffffffffu;
    if (valid) {
        for (var i = lid; i < L; i += WG) {
            let v = x[base + i * inner];
            let better = select((v < best), (v > best), want_max);
            if (better || bi == 0xffffffffu || (last && v == best)) {
                best = v;
                bi = i;
            }
        }
    }
    red[lid] = best;
    red_i[lid] = bi;
    workgroupBarrier();
    var s = WG / 2u;
    loop {
        if (s == 0u) {
            break;
        }
        if (lid < s) {
            let pv = red[lid];
            let pi2 = red_i[lid];
            let qv = red[lid + s];
            let qi = red_i[lid + s];
            var take_q = false;
            if (qi != 0xffffffffu) {
                if (pi2 == 0xffffffffu) {
                    take_q = true;
                } else if (qv == pv) {
                    take_q = select((qi < pi2), (qi > pi2), last);
                } else {
                    take_q = select((qv < pv), (qv > pv), want_max);
                }
            }
            if (take_q) {
                red[lid] = qv;
                red_i[lid] = qi;
            }
        }
        workgroupBarrier();
        s = s / 2u;
    }
    if (valid && lid == 0u) {
        out_i[row] = i32(red_i[0]);
    }
}

@compute @workgroup_size(WG)
fn softmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let row = row_index(wid, nwg);
    let valid = row < pu(0u);
    let L = pu(1u);
    let inner = pu(2u);
    let base = (row / inner) * L * inner + row % inner;
    var m = bitcast<f32>(NEG_INF);
    if (valid) {
        for (var i = lid; i < L; i += WG) {
            m = max(m, x[base + i * inner]);
        }
    }
    m = wg_reduce(m, lid, 1u);
    if (KIND == 2u) {
        // Hardmax: 1 at the first maximum.
        var first = f32(L);
        if (valid) {
            for (var i = lid; i < L; i += WG) {
                if (x[base + i * inner] == m) {
                    first = min(first, f32(i));
                }
            }
        }
        first = wg_reduce(first, lid, 2u);
        if (valid) {
            for (var i = lid; i < L; i += WG) {
                out[base + i * inner] = select(0.0, 1.0, f32(i) == first);
            }
        }
        return;
    }
    var s = 0.0;
    if (valid) {
        for (var i = lid; i < L; i += WG) {
            s += exp(x[base + i * inner] - m);
        }
    }
    s = wg_reduce(s, lid, 0u);
    if (valid) {
        for (var i = lid; i < L; i += WG) {
            let d = x[base + i * inner] - m;
            out[base + i * inner] = select(exp(d) / s, d - log(s), KIND == 1u);
        }
    }
}

@compute @workgroup_size(WG)
fn layer_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let row = row_index(wid, nwg);
    let valid = row < pu(0u);
    let L = pu(1u);
    let base = row * L;
    var s = 0.0;
    if (valid) {
        for (var i = lid; i < L; i += WG) {
            s += x[base + i];
        }
    }
    let mean = wg_reduce(s, lid, 0u) / f32(L);
    var q = 0.0;
    if (valid) {
        for (var i = lid; i < L; i += WG) {
            let d = x[base + i] - mean;
            q += d * d;
        }
    }
    let inv = inverseSqrt(wg_reduce(q, lid, 0u) / f32(L) + pf(2u));
    let has_bias = pu(3u) != 0u;
    if (valid) {
        for (var i = lid; i < L; i += WG) {
            var v = (x[base + i] - mean) * inv * scale[i];
            if (has_bias) {
                v += shift[i];
            }
            out[base + i] = v;
        }
    }
}
