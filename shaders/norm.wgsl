// Per-channel normalisation: batch normalisation as a kernel (when it could not be folded
// into a convolution: y = x * scale[c] + shift[c], scale and shift precomputed) and local
// response normalisation across channels.
//
// batch_norm parameter words: 0 elements   1 C   2 inner (elements per channel and sample)
// lrn parameter words: 0 elements   1 C   2 inner   3 size   4 alpha (f32)   5 beta (f32)
//   6 bias (f32)

@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> scale: array<f32>;
@group(0) @binding(4) var<storage, read> shift: array<f32>;

@compute @workgroup_size(WG)
fn batch_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * WG + lid;
    if (i >= pu(0u)) {
        return;
    }
    let c = (i / pu(2u)) % pu(1u);
    out[i] = x[i] * scale[c] + shift[c];
}

@compute @workgroup_size(WG)
fn lrn(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * WG + lid;
    if (i >= pu(0u)) {
        return;
    }
    let C = i32(pu(1u));
    let inner = pu(2u);
    let size = i32(pu(3u));
    let c = i32((i / inner) % u32(C));
    let c0 = max(c - (size - 1) / 2, 0);
    let c1 = min(c + size / 2, C - 1);
    let base = i - u32(c) * inner;
    var s = 0.0;
    for (var k = c0; k <= c1; k++) {
        let v = x[base + u32(k) * inner];
        s += v * v;
    }
    out[i] = x[i] / pow(pf(6u) + pf(4u) / f32(size) * s, pf(5u));
}
