// Indexing family: gathers (along an axis, of single elements, by index tuples), scatters
// (of elements along an axis, of slices by index tuples, of a KV-cache update), one-hot
// encoding, triangular masks and sequence reversal. Values move as 32-bit words, so every
// element type is served; indices are i32 words (negative ones count from the end). The
// device cannot raise an error: a gather index outside its axis reads the nearest valid
// element, a scatter index outside skips its update (the CPU reference refuses both).
//
// Scatters start from a copy of the data (a strided copy before them) and combine updates
// by KIND: 0 replace, 1 add, 2 multiply, 3 maximum, 4 minimum; words as f32 unless
// parameter word 60 says integers (i32, wrapped to word 61 bits, signed when word 62 is 1).
// Updates that may hit the same element run in one invocation in update order, so
// reductions are deterministic and follow ONNX's order; only positions that cannot collide
// run in parallel.
//
// gather           0 elements of the output   1 axis length   2 inner (elements after the
//                  axis)   3 indices count
// gather_elements  0 elements   1..6 output dims (rank 6, leading 1s)   7..12 data strides
//                  (leading 0s)   13 the axis (0..5 in rank-6 terms)   14 axis length
// gather_nd        0 elements   1 slice size   2 tuple length k (<= 16)   3 tuples per batch
//                  4 data elements per batch   8..23 data dims indexed   24..39 their strides
// scatter_elements 0 lines (update positions off the axis)   1..6 update dims (rank 6)
//                  7..12 data strides   13 the axis   14 data axis length
//                  (one invocation per line, serial along the axis)
// scatter_nd       0 invocations   1 slice size   2 k   3 tuples   5 targets cannot collide
//                  8..23 data dims indexed   24..39 their strides   (word 5: one invocation
//                  per updated element; else one per slice element, serial over the tuples)
// tensor_scatter   0 elements   1 cache length M   2 update length   3 inner   4 elements per
//                  batch   5 circular   6 write indices given (aux)
// one_hot          0 elements   1 depth   2 inner (index elements after the new axis)
//                  3 indices are f32 words (truncated toward zero)   (data = [off, on])
// trilu            0 elements   1 rows   2 columns   3 k (i32)   4 upper
// reverse_sequence 0 elements   1 time length   2 time stride   3 batch length
//                  4 batch stride   (aux = sequence lengths)

override KIND: u32 = 0u;

@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@group(0) @binding(2) var<storage, read> data: array<u32>;
@group(0) @binding(3) var<storage, read> indices: array<i32>;
@group(0) @binding(4) var<storage, read> updates: array<u32>;
@group(0) @binding(5) var<storage, read> aux: array<i32>;

// An index into an axis of `len`, negative ones counting from the end, clamped into it.
fn clamp_index(i: i32, len: i32) -> u32 {
    let j = select(i, i + len, i < 0);
    return u32(clamp(j, 0, len - 1));
}

// An index into an axis of `len`, negative ones counting from the end; -1 when outside.
fn checked_index(i: i32, len: i32) -> i32 {
    let j = select(i, i + len, i < 0);
    return select(-1, j, (j >= 0) && (j < len));
}

fn wrap_bits(v: i32) -> i32 {
    let bits = pu(61u);
    if (bits >= 32u) {
        return v;
    }
    let shift = 32u - bits;
    if (pu(62u) == 1u) {
        return (v << shift) >> shift;
    }
    return i32(u32(v) & ((1u << bits) - 1u));
}

// The value at a scatter's target combined with an update, by KIND.
fn combine(old: u32, upd: u32) -> u32 {
    if (KIND == 0u) {
        return upd;
    }
    if (pu(60u) != 0u) {
        let a = bitcast<i32>(old);
        let b = bitcast<i32>(upd);
        var r = b;
        switch KIND {
            case 1u: { r = a + b; }
            case 2u: { r = a * b; }
            case 3u: { r = max(a, b); }
            default: { r = min(a, b); }
        }
        return bitcast<u32>(wrap_bits(r));
    }
    let a = bitcast<f32>(old);
    let b = bitcast<f32>(upd);
    var r = b;
    switch KIND {
        case 1u: { r = a + b; }
        case 2u: { r = a * b; }
        case 3u: { r = select(a, b, (b > a)); }
        default: { r = select(a, b, (b < a)); }
    }
    return bitcast<u32>(r);
}

fn thread_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return group_index(wid, nwg) * WG + lid;
}

@compute @workgroup_size(WG)
fn gather(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let t = thread_index(wid, nwg, lid);
    if (t >= pu(0u)) {
        return;
    }
    let len = i32(pu(1u));
    let inner = pu(2u);
    let n_idx = pu(3u);
    let i = t % inner;
    let k = (t / inner) % n_idx;
    let o = t / (inner * n_idx);
    let j = clamp_index(indices[k], len);
    out[t] = data[(o * u32(len) + j) * inner + i];
}

@compute @workgroup_size(WG)
fn gather_elements(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let t = thread_index(wid, nwg, lid);
    if (t >= pu(0u)) {
        return;
    }
    let axis = pu(13u);
    var rem = t;
    var off = 0u;
    for (var d = 6u; d >= 1u; d--) {
        var c = rem % pu(d);
        rem = rem / pu(d);
        if (d - 1u == axis) {
            c = clamp_index(indices[t], i32(pu(14u)));
        }
        off += c * pu(6u + d);
    }
    out[t] = data[off];
}

// The data offset of index tuple q of gather_nd/scatter_nd, without the batch; -1 when an
// index is outside its dimension (clamped instead when `clamped`).
fn tuple_offset(q: u32, clamped: bool) -> i32 {
    let k = pu(2u);
    var off = 0u;
    for (var u = 0u; u < k; u++) {
        let len = i32(pu(8u + u));
        let i = indices[q * k + u];
        var j = 0u;
        if (clamped) {
            j = clamp_index(i, len);
        } else {
            let c = checked_index(i, len);
            if (c < 0) {
                return -1;
            }
            j = u32(c);
        }
        off += j * pu(24u + u);
    }
    return i32(off);
}

@compute @workgroup_size(WG)
fn gather_nd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let t = thread_index(wid, nwg, lid);
    if (t >= pu(0u)) {
        return;
    }
    let slice = pu(1u);
    let s = t % slice;
    let q = t / slice;
    let base = (q / pu(3u)) * pu(4u);
    out[t] = data[base + u32(tuple_offset(q, true)) + s];
}

@compute @workgroup_size(WG)
fn scatter_elements(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let line = thread_index(wid, nwg, lid);
    if (line >= pu(0u)) {
        return;
    }
    let axis = pu(13u);
    var rem = line;
    var ubase = 0u;
    var dbase = 0u;
    var ustride = 1u;
    var ustride_axis = 0u;
    for (var d = 6u; d >= 1u; d--) {
        let dim = pu(d);
        if (d - 1u == axis) {
            ustride_axis = ustride;
        } else {
            let c = rem % dim;
            rem = rem / dim;
            ubase += c * ustride;
            dbase += c * pu(6u + d);
        }
        ustride *= dim;
    }
    let count = pu(1u + axis);
    let len = i32(pu(14u));
    let dstride = pu(7u + axis);
    for (var j = 0u; j < count; j++) {
        let u = ubase + j * ustride_axis;
        let ix = checked_index(indices[u], len);
        if (ix < 0) {
            continue;
        }
        let o = dbase + u32(ix) * dstride;
        out[o] = combine(out[o], updates[u]);
    }
}

@compute @workgroup_size(WG)
fn scatter_nd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let t = thread_index(wid, nwg, lid);
    if (t >= pu(0u)) {
        return;
    }
    let slice = pu(1u);
    if (pu(5u) != 0u) {
        let off = tuple_offset(t / slice, false);
        if (off >= 0) {
            let o = u32(off) + t % slice;
            out[o] = combine(out[o], updates[t]);
        }
        return;
    }
    for (var q = 0u; q < pu(3u); q++) {
        let off = tuple_offset(q, false);
        if (off < 0) {
            continue;
        }
        let o = u32(off) + t;
        out[o] = combine(out[o], updates[q * slice + t]);
    }
}

@compute @workgroup_size(WG)
fn tensor_scatter(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let t = thread_index(wid, nwg, lid);
    if (t >= pu(0u)) {
        return;
    }
    let m = pu(1u);
    let count = pu(2u);
    let inner = pu(3u);
    let i = t % inner;
    let c = (t / inner) % m;
    let p = t / (inner * m);
    var w = 0;
    if (pu(6u) != 0u) {
        w = aux[t / pu(4u)];
    }
    var s = i32(c) - w;
    if (pu(5u) != 0u) {
        s = s % i32(m);
        s = select(s, s + i32(m), s < 0);
    }
    if (s >= 0 && s < i32(count)) {
        out[t] = updates[(p * count + u32(s)) * inner + i];
    } else {
        out[t] = data[t];
    }
}

@compute @workgroup_size(WG)
fn one_hot(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let t = thread_index(wid, nwg, lid);
    if (t >= pu(0u)) {
        return;
    }
    let depth = pu(1u);
    let inner = pu(2u);
    let i = t % inner;
    let d = (t / inner) % depth;
    let o = t / (inner * depth);
    var ix = indices[o * inner + i];
    if (pu(3u) != 0u) {
        let f = bitcast<f32>(ix);
        // NaN and values beyond the i32 range match no class.
        ix = select(-2147483647, i32(f), (abs(f) < 2.0e9));
    }
    ix = select(ix, ix + i32(depth), ix < 0);
    out[t] = data[select(0u, 1u, ix == i32(d))];
}

@compute @workgroup_size(WG)
fn trilu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let t = thread_index(wid, nwg, lid);
    if (t >= pu(0u)) {
        return;
    }
    let cols = pu(2u);
    let j = i32(t % cols);
    let i = i32((t / cols) % pu(1u));
    let k = pi(3u);
    let keep = select((j - i <= k), (j - i >= k), pu(4u) != 0u);
    out[t] = select(0u, data[t], keep);
}

@compute @workgroup_size(WG)
fn reverse_sequence(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let t = thread_index(wid, nwg, lid);
    if (t >= pu(0u)) {
        return;
    }
    let time = i32(pu(1u));
    let ts = pu(2u);
    let tt = i32((t / ts) % u32(time));
    let b = (t / pu(4u)) % pu(3u);
    let len = clamp(aux[b], 0, time);
    var src = t;
    if (tt < len) {
        src = u32(i32(t) + (len - 1 - 2 * tt) * i32(ts));
    }
    out[t] = data[src];
}
