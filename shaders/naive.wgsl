// Baselines for `poolpipe bench kernels`: one invocation per output element, no tiling, no
// vector loads. Never used to serve; they exist so that benchmarks measure the real kernels
// against them in the same run.
//
// naive_conv2d: parameter words as conv.wgsl (0..22), weights unpacked [M][CG][KH][KW].
// naive_matmul: 0 M  1 N  2 K  3 SAM  4 SAK  5 SBK  6 SBN  7 invocations; B unpacked.

@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read> w: array<f32>;

@compute @workgroup_size(WG)
fn naive_conv2d(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let t = group_index(wid, nwg) * WG + lid;
    if (t >= pu(20u)) {
        return;
    }
    let C = pu(1u);
    let H = i32(pu(2u));
    let W = i32(pu(3u));
    let M = pu(4u);
    let OH = pu(5u);
    let OW = pu(6u);
    let KH = pu(7u);
    let KW = pu(8u);
    let CG = pu(16u);
    let MG = pu(17u);
    let ox = t % OW;
    let oy = (t / OW) % OH;
    let m = (t / (OW * OH)) % M;
    let n = t / (OW * OH * M);
    let g = m / MG;
    var acc = 0.0;
    for (var ci = 0u; ci < CG; ci++) {
        for (var ky = 0u; ky < KH; ky++) {
            for (var kx = 0u; kx < KW; kx++) {
                let iy = i32(oy * pu(9u) + ky * pu(13u)) - pi(11u);
                let ix = i32(ox * pu(10u) + kx * pu(14u)) - pi(12u);
                if (iy >= 0 && iy < H && ix >= 0 && ix < W) {
                    let xv = x[((n * C + g * CG + ci) * u32(H) + u32(iy)) * u32(W) + u32(ix)];
                    acc += xv * w[((m * CG + ci) * KH + ky) * KW + kx];
                }
            }
        }
    }
    out[t] = act(acc + bias[m], pf(21u), pf(22u));
}

@compute @workgroup_size(WG)
fn naive_matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let t = group_index(wid, nwg) * WG + lid;
    if (t >= pu(7u)) {
        return;
    }
    let N = pu(1u);
    let m = t / N;
    let n = t % N;
    var acc = 0.0;
    for (var k = 0u; k < pu(2u); k++) {
        acc += x[m * pu(3u) + k * pu(4u)] * w[k * pu(5u) + n * pu(6u)];
    }
    out[t] = act(acc + bias[n], 0.0, 0.0);
}
