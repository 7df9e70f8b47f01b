// Row reductions, one workgroup per row with a tree reduction in workgroup memory: reduce over
// any set of axes (KIND 0 mean, 1 max, 2 sum, 3 min, 4 prod, 5 L1, 6 L2, 7 log-sum,
// 8 log-sum-exp, 9 sum of squares; also global pooling), arg-max/arg-min along an axis,
// softmax along an axis (KIND 0 softmax, 1 log-softmax, 2 hardmax), layer normalisation,
// cumulative sums and products (a workgroup scan per row), and TopK (each element's rank in
// its row by comparison with every other element of the row).
//
// reduce parameter words: 0 rows (outputs)   1 L (elements per row)
//   2..7 kept dims (rank 6, leading 1s)   8..13 input strides of the kept dims
//   14..19 reduced dims (leading 1s)      20..25 input strides of the reduced dims
// arg_reduce parameter words: 0 rows   1 L   2 inner (stride between elements of a row)
//   3 select the last index on ties   (KIND 0 arg-max, 1 arg-min; i32 output)
// softmax parameter words: 0 rows   1 L   2 inner (stride between elements of a row)
// layer_norm parameter words: 0 rows   1 L   2 epsilon (f32)   3 has bias
//   (scale and bias are expanded to L values)
// cumulative parameter words: 0 rows   1 L   2 inner (stride between elements of a row)
//   3 exclusive   4 reverse   5 integer words (i32, wrapped to word 6 bits, signed when word
//   7 is 1; else f32)   (KIND 0 sum, 1 product; words in xw, out to outw)
// top_k parameter words: 0 rows   1 L   2 inner   3 k   4 workgroups per row   5 integer words
//   6 largest   (values in xw, out to outw; i32 indices to out_i)

override KIND: u32 = 0u;

@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> scale: array<f32>;
@group(0) @binding(4) var<storage, read> shift: array<f32>;
@group(0) @binding(5) var<storage, read_write> out_i: array<i32>;
@group(0) @binding(6) var<storage, read> xw: array<u32>;
@group(0) @binding(7) var<storage, read_write> outw: array<u32>;

var<workgroup> red: array<f32, WG>;
var<workgroup> red_i: array<u32, WG>;
var<workgroup> words: array<u32, WG>;

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

// Cumulative sum (KIND 0) or product (KIND 1) of two words: i32 (word 5) or f32.
fn scan_combine(a: u32, b: u32) -> u32 {
    if (pu(5u) != 0u) {
        let p = bitcast<i32>(a);
        let q = bitcast<i32>(b);
        return bitcast<u32>(select(p + q, p * q, KIND == 1u));
    }
    let p = bitcast<f32>(a);
    let q = bitcast<f32>(b);
    return bitcast<u32>(select(p + q, p * q, KIND == 1u));
}

fn scan_identity() -> u32 {
    if (KIND == 0u) {
        return 0u;
    }
    return select(bitcast<u32>(1.0), 1u, pu(5u) != 0u);
}

// Integer words wrapped to their type's bits (words 6 and 7).
fn scan_wrap(v: u32) -> u32 {
    let bits = pu(6u);
    if (pu(5u) == 0u || bits >= 32u) {
        return v;
    }
    let shift = 32u - bits;
    if (pu(7u) == 1u) {
        return bitcast<u32>((bitcast<i32>(v) << shift) >> shift);
    }
    return v & ((1u << bits) - 1u);
}

// One workgroup per row: each invocation combines a contiguous chunk of the row, a scan of
// the chunk totals in workgroup memory gives each chunk its start, then each chunk is
// written. Reverse rows are scanned from their end.
@compute @workgroup_size(WG)
fn cumulative(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let row = row_index(wid, nwg);
    let valid = row < pu(0u);
    let L = pu(1u);
    let inner = pu(2u);
    let exclusive = pu(3u) != 0u;
    let reverse = pu(4u) != 0u;
    let base = (row / inner) * L * inner + row % inner;
    let chunk = (L + WG - 1u) / WG;
    let first = min(lid * chunk, L);
    let last = min(first + chunk, L);
    var total = scan_identity();
    if (valid) {
        for (var q = first; q < last; q++) {
            let j = select(q, L - 1u - q, reverse);
            total = scan_combine(total, xw[base + j * inner]);
        }
    }
    words[lid] = total;
    workgroupBarrier();
    for (var off = 1u; off < WG; off *= 2u) {
        var v = words[lid];
        if (lid >= off) {
            v = scan_combine(words[lid - off], v);
        }
        workgroupBarrier();
        words[lid] = v;
        workgroupBarrier();
    }
    var acc = scan_identity();
    if (lid > 0u) {
        acc = words[lid - 1u];
    }
    if (valid) {
        for (var q = first; q < last; q++) {
            let e = base + select(q, L - 1u - q, reverse) * inner;
            let next = scan_combine(acc, xw[e]);
            outw[e] = scan_wrap(select(next, acc, exclusive));
            acc = next;
        }
    }
}

// An unsigned key ordered as TopK orders values: i32 words (word 5) by value; f32 words by
// value with -0 equal to +0 and every NaN equal and larger than +infinity.
fn topk_key(w: u32) -> u32 {
    if (pu(5u) != 0u) {
        return w ^ 0x80000000u;
    }
    var b = w;
    if ((b & 0x7fffffffu) > POS_INF) {
        b = 0x7fffffffu;
    }
    if (b == 0x80000000u) {
        b = 0u;
    }
    return select(b ^ 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

// Each invocation takes one element of a row (rows are split over `word 4` workgroups) and
// counts the elements that come before it (larger, or smaller, or equal at a lower index),
// reading the row in tiles through workgroup memory; an element whose rank is below k
// writes itself and its index at that rank.
@compute @workgroup_size(WG)
fn top_k(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let g = group_index(wid, nwg);
    let chunks = pu(4u);
    let row = g / chunks;
    let valid_row = row < pu(0u);
    let L = pu(1u);
    let inner = pu(2u);
    let k = pu(3u);
    let largest = pu(6u) != 0u;
    let base = (row / inner) * L * inner + row % inner;
    let p = (g % chunks) * WG + lid;
    let mine = valid_row && p < L;
    var word = 0u;
    var key = 0u;
    if (mine) {
        word = xw[base + p * inner];
        key = topk_key(word);
    }
    var rank = 0u;
    for (var start = 0u; start < L; start += WG) {
        let j = start + lid;
        var kj = 0u;
        if (valid_row && j < L) {
            kj = topk_key(xw[base + j * inner]);
        }
        words[lid] = kj;
        workgroupBarrier();
        let n = min(WG, L - start);
        for (var q = 0u; q < n; q++) {
            let kq = words[q];
            let before = select((kq < key), (kq > key), largest) || (kq == key && start + q < p);
            rank += select(0u, 1u, before);
        }
        workgroupBarrier();
    }
    if (mine && rank < k) {
        let o = ((row / inner) * k + rank) * inner + row % inner;
        outw[o] = word;
        out_i[o] = i32(p);
    }
}
