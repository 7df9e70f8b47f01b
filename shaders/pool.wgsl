// Pooling family: max (KIND 0) and average (KIND 1) pooling over windows of [N, C, H, W], with
// padding, dilation, ceil mode and count_include_pad. One output per invocation: pooling
// reads each input a few times at most, so tiling buys little here. Global pooling is a
// reduction (reduce.wgsl).
//
// Parameter words: 0 outputs   1 C   2 H   3 W   4 OH   5 OW   6 KH   7 KW   8 SH   9 SW
//   10 PT   11 PL   12 PB   13 PR   14 DH   15 DW   16 count_include_pad

override KIND: u32 = 0u;

@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;

@compute @workgroup_size(WG)
fn pool2d(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let t = group_index(wid, nwg) * WG + lid;
    if (t >= pu(0u)) {
        return;
    }
    let H = i32(pu(2u));
    let W = i32(pu(3u));
    let OH = pu(4u);
    let OW = pu(5u);
    let KH = i32(pu(6u));
    let KW = i32(pu(7u));
    let DH = i32(pu(14u));
    let DW = i32(pu(15u));
    let ox = t % OW;
    let oy = (t / OW) % OH;
    let nc = t / (OW * OH);
    let hs = i32(oy * pu(8u)) - pi(10u);
    let ws = i32(ox * pu(9u)) - pi(11u);
    let base = nc * u32(H * W);
    if (KIND == 0u) {
        var m = -3.4028234e38;
        for (var ky = 0; ky < KH; ky++) {
            let iy = hs + ky * DH;
            if (iy < 0 || iy >= H) {
                continue;
            }
            for (var kx = 0; kx < KW; kx++) {
                let ix = ws + kx * DW;
                if (ix >= 0 && ix < W) {
                    m = max(m, x[base + u32(iy * W + ix)]);
                }
            }
        }
        out[t] = m;
    } else {
        // The window's taps, cut at the end of the padding (PyTorch's rule): the taps there
        // are the count_include_pad divisor, those inside the input the other one.
        var sum = 0.0;
        var inside = 0;
        var in_pad = 0;
        for (var ky = 0; ky < KH; ky++) {
            let iy = hs + ky * DH;
            if (iy >= H + pi(12u)) {
                break;
            }
            for (var kx = 0; kx < KW; kx++) {
                let ix = ws + kx * DW;
                if (ix >= W + pi(13u)) {
                    break;
                }
                in_pad += 1;
                if (iy >= 0 && iy < H && ix >= 0 && ix < W) {
                    sum += x[base + u32(iy * W + ix)];
                    inside += 1;
                }
            }
        }
        let count = select(inside, in_pad, pu(16u) != 0u);
        out[t] = select(0.0, sum / f32(count), count > 0);
    }
}
