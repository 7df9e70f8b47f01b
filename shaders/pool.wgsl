// Pooling family: max (KIND 0), average (KIND 1) and Lp (KIND 2) pooling over windows of up
// to 3 spatial axes (1-D and 2-D sweeps have leading unit axes), with padding, dilation, ceil
// mode and count_include_pad; max pooling with the indices of the maxima; max unpooling.
// One output per invocation: pooling reads each input a few times at most, so tiling buys
// little here. Global pooling is a reduction (reduce.wgsl).
//
// Parameter words (pool, max_pool_indices):
//   0 outputs   1 p (f32, Lp pooling)   2..4 input (D, H, W)   5..7 output (D, H, W)
//   8..10 kernel (D, H, W)   11..13 stride   14..16 pad at the begin   17..19 pad at the end
//  20..22 dilation   23 count_include_pad   24 column-major indices

override KIND: u32 = 0u;

@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> indices: array<i32>;
@group(0) @binding(4) var<storage, read> unpool_at: array<i32>;

// |v|^p of Lp pooling (exact for p = 1 and 2) and its inverse.
fn lp_power(v: f32, p: f32) -> f32 {
    let a = abs(v);
    if (p == 1.0) {
        return a;
    }
    if (p == 2.0) {
        return a * a;
    }
    return select(pow(a, p), 0.0, a == 0.0);
}

fn lp_root(s: f32, p: f32) -> f32 {
    if (p == 1.0) {
        return s;
    }
    if (p == 2.0) {
        return sqrt(s);
    }
    return select(pow(s, 1.0 / p), 0.0, s == 0.0);
}

// The pooled value of one output and, for max pooling, the flat position of the maximum in
// its plane (-1 when no tap lies in the input).
struct Pooled {
    value: f32,
    at: i32,
}

fn pool_window(t: u32) -> Pooled {
    let inp = vec3<i32>(i32(pu(2u)), i32(pu(3u)), i32(pu(4u)));
    let o3 = vec3<u32>(pu(5u), pu(6u), pu(7u));
    let k = vec3<i32>(i32(pu(8u)), i32(pu(9u)), i32(pu(10u)));
    let s = vec3<u32>(pu(11u), pu(12u), pu(13u));
    let pb = vec3<i32>(pi(14u), pi(15u), pi(16u));
    let end = inp + vec3<i32>(pi(17u), pi(18u), pi(19u));
    let d = vec3<i32>(i32(pu(20u)), i32(pu(21u)), i32(pu(22u)));
    let ox = t % o3.z;
    var r = t / o3.z;
    let oy = r % o3.y;
    r = r / o3.y;
    let oz = r % o3.x;
    let plane = r / o3.x;
    let start = vec3<i32>(vec3<u32>(oz, oy, ox) * s) - pb;
    let base = plane * u32(inp.x * inp.y * inp.z);
    var m = -3.4028234e38;
    var at = -1;
    var sum = 0.0;
    var inside = 0;
    var in_pad = 0;
    // Taps past the end padding are cut (PyTorch's rule for the average's divisors).
    for (var kz = 0; kz < k.x; kz++) {
        let z = start.x + kz * d.x;
        if (z >= end.x) {
            break;
        }
        for (var ky = 0; ky < k.y; ky++) {
            let y = start.y + ky * d.y;
            if (y >= end.y) {
                break;
            }
            for (var kx = 0; kx < k.z; kx++) {
                let xx = start.z + kx * d.z;
                if (xx >= end.z) {
                    break;
                }
                in_pad += 1;
                if (z >= 0 && z < inp.x && y >= 0 && y < inp.y && xx >= 0 && xx < inp.z) {
                    let flat = (z * inp.y + y) * inp.z + xx;
                    let v = x[base + u32(flat)];
                    if (KIND == 0u) {
                        if (at < 0 || v > m) {
                            m = v;
                            at = flat;
                        }
                    } else if (KIND == 1u) {
                        sum += v;
                        inside += 1;
                    } else {
                        sum += lp_power(v, pf(1u));
                    }
                }
            }
        }
    }
    if (KIND == 0u) {
        return Pooled(m, at);
    }
    if (KIND == 1u) {
        let count = select(inside, in_pad, pu(23u) != 0u);
        return Pooled(select(0.0, sum / f32(count), count > 0), -1);
    }
    return Pooled(lp_root(sum, pf(1u)), -1);
}

@compute @workgroup_size(WG)
fn pool(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let t = group_index(wid, nwg) * WG + lid;
    if (t >= pu(0u)) {
        return;
    }
    out[t] = pool_window(t).value;
}

// Max pooling that also writes the index of each maximum: (n*C + c) * plane plus its
// position in the plane, flattened row-major or (word 24) column-major; -1 without one.
@compute @workgroup_size(WG)
fn max_pool_indices(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let t = group_index(wid, nwg) * WG + lid;
    if (t >= pu(0u)) {
        return;
    }
    let r = pool_window(t);
    out[t] = r.value;
    if (r.at < 0) {
        indices[t] = -1;
        return;
    }
    let D = pu(2u);
    let H = pu(3u);
    let W = pu(4u);
    let plane = t / (pu(5u) * pu(6u) * pu(7u));
    var within = u32(r.at);
    if (pu(24u) != 0u) {
        let xx = within % W;
        let y = (within / W) % H;
        let z = within / (W * H);
        within = z + y * D + xx * D * H;
    }
    indices[t] = i32(plane * D * H * W + within);
}

// Max unpooling, pass 1: zeros over the whole output. Word 0: outputs.
@compute @workgroup_size(WG)
fn unpool_clear(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let t = group_index(wid, nwg) * WG + lid;
    if (t >= pu(0u)) {
        return;
    }
    out[t] = 0.0;
}

// Max unpooling, pass 2: input t goes to its index in the default output, placed at the start
// of every axis of the full output; indices outside the default output are skipped.
//
// Parameter words: 0 inputs   1 default output's elements   2..6 default output (N, C, D, H,
//   W)   7..9 full output (D, H, W)   (the batch and channels are the same)
@compute @workgroup_size(WG)
fn unpool_scatter(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let t = group_index(wid, nwg) * WG + lid;
    if (t >= pu(0u)) {
        return;
    }
    let i = unpool_at[t];
    if (i < 0 || u32(i) >= pu(1u)) {
        return;
    }
    let D = pu(4u);
    let H = pu(5u);
    let W = pu(6u);
    let u = u32(i);
    let xx = u % W;
    var r = u / W;
    let y = r % H;
    r = r / H;
    let z = r % D;
    let nc = r / D;
    out[((nc * pu(7u) + z) * pu(8u) + y) * pu(9u) + xx] = x[t];
}
