// Row reductions, one workgroup per row with a tree reduction in workgroup memory: reduce
// mean/max over any set of axes (KIND 0 mean, 1 max; also global pooling), softmax along an
// axis, and layer normalisation.
//
// reduce parameter words: 0 rows (outputs)   1 L (elements per row)
//   2..7 kept dims (rank 6, leading 1s)   8..13 input strides of the kept dims
//   14..19 reduced dims (leading 1s)      20..25 input strides of the reduced dims
// softmax parameter words: 0 rows   1 L   2 inner (stride between elements of a row)
// layer_norm parameter words: 0 rows   1 L   2 epsilon (f32)   3 has bias
//   (scale and bias are expanded to L values)

override KIND: u32 = 0u;

@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> scale: array<f32>;
@group(0) @binding(4) var<storage, read> shift: array<f32>;

var<workgroup> red: array<f32, WG>;

fn combine(p: f32, q: f32, is_max: bool) -> f32 {
    return select(p + q, max(p, q), is_max);
}

// Reduces `v` over the workgroup; every invocation gets the result.
fn wg_reduce(v: f32, lid: u32, is_max: bool) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    var s = WG / 2u;
    loop {
        if (s == 0u) {
            break;
        }
        if (lid < s) {
            red[lid] = combine(red[lid], red[lid + s], is_max);
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
    let is_max = KIND == 1u;
    var acc = select(0.0, -3.4028234e38, is_max);
    if (valid) {
        for (var i = lid; i < L; i += WG) {
            var off = base;
            var r = i;
            for (var d = 6u; d >= 1u; d--) {
                off += (r % pu(13u + d)) * pu(19u + d);
                r = r / pu(13u + d);
            }
            acc = combine(acc, x[off], is_max);
        }
    }
    let total = wg_reduce(acc, lid, is_max);
    if (valid && lid == 0u) {
        out[row] = select(total / f32(L), total, is_max);
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
    var m = -3.4028234e38;
    if (valid) {
        for (var i = lid; i < L; i += WG) {
            m = max(m, x[base + i * inner]);
        }
    }
    m = wg_reduce(m, lid, true);
    var s = 0.0;
    if (valid) {
        for (var i = lid; i < L; i += WG) {
            s += exp(x[base + i * inner] - m);
        }
    }
    s = wg_reduce(s, lid, false);
    if (valid) {
        for (var i = lid; i < L; i += WG) {
            out[base + i * inner] = exp(x[base + i * inner] - m) / s;
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
    let mean = wg_reduce(s, lid, false) / f32(L);
    var q = 0.0;
    if (valid) {
        for (var i = lid; i < L; i += WG) {
            let d = x[base + i] - mean;
            q += d * d;
        }
    }
    let inv = inverseSqrt(wg_reduce(q, lid, false) / f32(L) + pf(2u));
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
