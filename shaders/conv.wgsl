// Convolution family: implicit-GEMM 2-D convolution (register tile of 4 output channels x 4
// output pixels per invocation, weights packed for vec4 loads), a 1x1 variant that also loads
// the input as vec4, depthwise convolution (4 output pixels per invocation) and transposed
// convolution (implicit GEMM in gather form), for 2-D and 1-D (as 2-D with a unit height)
// sweeps. Bias and activation are fused into the write-back. Below them, direct kernels over
// up to 3 spatial axes (3-D convolution and transposed convolution), Col2Im and deformable
// convolution.
//
// Parameter words (conv2d, conv1x1, conv_transpose, depthwise):
//   0 N      1 C      2 H      3 W      4 M      5 OH     6 OW     7 KH     8 KW
//   9 SH    10 SW    11 PT    12 PL    13 DH    14 DW    15 G     16 CG (C/G)
//  17 MG (M/G)       18 MQ (ceil(MG/4))         19 K (CG*KH*KW)
//  20 invocations    21 act a (f32)    22 act b (f32)
//  23 PQ (ceil(OH*OW/4), pixel quads per image)
//  24 MULT (depthwise: M/C)            25 OWQ (depthwise: ceil(OW/4))
//
// Packed weights w4 (conv2d, conv1x1, conv_transpose): vec4 index (g*K + k)*MQ + mq holds the
// weights of output channels g*MG + mq*4 + 0..3 (zero beyond MG) at reduction index
// k = (ci*KH + ky)*KW + kx, ci counted within the group.

@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> w4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read> wdw: array<f32>;
@group(0) @binding(6) var<storage, read> x4: array<vec4<f32>>;

// Writes a 4-channel x 4-pixel tile: acc[p] holds channels mq*4+0..3 of pixel pq*4+p.
fn store_tile(acc: array<vec4<f32>, 4>, n: u32, g: u32, mq: u32, pq: u32) {
    let M = pu(4u);
    let ohw = pu(5u) * pu(6u);
    let MG = pu(17u);
    let a = pf(21u);
    let b = pf(22u);
    for (var j = 0u; j < 4u; j++) {
        let cg = mq * 4u + j;
        if (cg >= MG) {
            break;
        }
        let ch = g * MG + cg;
        let bv = bias[ch];
        let base = (n * M + ch) * ohw;
        for (var p = 0u; p < 4u; p++) {
            let pix = pq * 4u + p;
            if (pix < ohw) {
                out[base + pix] = act(acc[p][j] + bv, a, b);
            }
        }
    }
}

// Parameters shared by the tiled kernels.
struct Conv {
    C: u32,
    H: u32,
    W: u32,
    OW: u32,
    KH: u32,
    KW: u32,
    SH: u32,
    SW: u32,
    PT: i32,
    PL: i32,
    DH: i32,
    DW: i32,
    CG: u32,
    K: u32,
    MQ: u32,
    ohw: u32,
}

fn conv_params() -> Conv {
    return Conv(pu(1u), pu(2u), pu(3u), pu(6u), pu(7u), pu(8u), pu(9u), pu(10u), pi(11u), pi(12u),
        i32(pu(13u)), i32(pu(14u)), pu(16u), pu(19u), pu(18u), pu(5u) * pu(6u));
}

// The tile of invocation t: image n, group g, channel quad mq, pixel quad pq.
struct Tile {
    n: u32,
    g: u32,
    mq: u32,
    pq: u32,
}

fn tile_of(t: u32, cp: Conv) -> Tile {
    let PQ = pu(23u);
    let G = pu(15u);
    let pq = t % PQ;
    var r = t / PQ;
    let mq = r % cp.MQ;
    r = r / cp.MQ;
    return Tile(r / G, r % G, mq, pq);
}

// Output (row, column) of pixel p of a tile, clamped into the image (masked at write-back).
fn tile_pixel(tl: Tile, p: u32, cp: Conv) -> vec2<i32> {
    let pix = min(tl.pq * 4u + p, cp.ohw - 1u);
    return vec2<i32>(i32(pix / cp.OW), i32(pix % cp.OW));
}

@compute @workgroup_size(WG)
fn conv2d(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let t = group_index(wid, nwg) * WG + lid;
    if (t >= pu(20u)) {
        return;
    }
    let cp = conv_params();
    let tl = tile_of(t, cp);
    var iy0: array<i32, 4>;
    var ix0: array<i32, 4>;
    for (var p = 0u; p < 4u; p++) {
        let o = tile_pixel(tl, p, cp);
        iy0[p] = o.x * i32(cp.SH) - cp.PT;
        ix0[p] = o.y * i32(cp.SW) - cp.PL;
    }
    var acc: array<vec4<f32>, 4>;
    let hw = cp.H * cp.W;
    var xc = (tl.n * cp.C + tl.g * cp.CG) * hw;
    var wi = tl.g * cp.K * cp.MQ + tl.mq;
    for (var ci = 0u; ci < cp.CG; ci++) {
        for (var ky = 0u; ky < cp.KH; ky++) {
            for (var kx = 0u; kx < cp.KW; kx++) {
                let wv = w4[wi];
                wi += cp.MQ;
                for (var p = 0u; p < 4u; p++) {
                    let iy = iy0[p] + i32(ky) * cp.DH;
                    let ix = ix0[p] + i32(kx) * cp.DW;
                    let inside = iy >= 0 && iy < i32(cp.H) && ix >= 0 && ix < i32(cp.W);
                    let xv = x[select(0u, xc + u32(iy) * cp.W + u32(ix), inside)];
                    acc[p] += wv * select(0.0, xv, inside);
                }
            }
        }
        xc += hw;
    }
    store_tile(acc, tl.n, tl.g, tl.mq, tl.pq);
}

// 1x1 convolution, stride 1, no padding, H*W a multiple of 4: a plain GEMM per image where
// both operands are read as vec4.
@compute @workgroup_size(WG)
fn conv1x1(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let t = group_index(wid, nwg) * WG + lid;
    if (t >= pu(20u)) {
        return;
    }
    let cp = conv_params();
    let tl = tile_of(t, cp);
    let PQ = pu(23u);
    var acc: array<vec4<f32>, 4>;
    var xi = (tl.n * cp.C + tl.g * cp.CG) * PQ + tl.pq;
    var wi = tl.g * cp.K * cp.MQ + tl.mq;
    for (var ci = 0u; ci < cp.CG; ci++) {
        let wv = w4[wi];
        let xv = x4[xi];
        acc[0] += wv * xv.x;
        acc[1] += wv * xv.y;
        acc[2] += wv * xv.z;
        acc[3] += wv * xv.w;
        wi += cp.MQ;
        xi += PQ;
    }
    store_tile(acc, tl.n, tl.g, tl.mq, tl.pq);
}

// Transposed convolution as a gather: output pixel (oy, ox) takes input (iy, ix) through tap
// (ky, kx) when oy + PT - ky*DH = iy*SH (same for x). Tiles as conv2d.
@compute @workgroup_size(WG)
fn conv_transpose(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let t = group_index(wid, nwg) * WG + lid;
    if (t >= pu(20u)) {
        return;
    }
    let cp = conv_params();
    let tl = tile_of(t, cp);
    let SH = i32(cp.SH);
    let SW = i32(cp.SW);
    var oy: array<i32, 4>;
    var ox: array<i32, 4>;
    for (var p = 0u; p < 4u; p++) {
        let o = tile_pixel(tl, p, cp);
        oy[p] = o.x + cp.PT;
        ox[p] = o.y + cp.PL;
    }
    var acc: array<vec4<f32>, 4>;
    let hw = cp.H * cp.W;
    var xc = (tl.n * cp.C + tl.g * cp.CG) * hw;
    var wi = tl.g * cp.K * cp.MQ + tl.mq;
    for (var ci = 0u; ci < cp.CG; ci++) {
        for (var ky = 0u; ky < cp.KH; ky++) {
            for (var kx = 0u; kx < cp.KW; kx++) {
                let wv = w4[wi];
                wi += cp.MQ;
                for (var p = 0u; p < 4u; p++) {
                    let ty = oy[p] - i32(ky) * cp.DH;
                    let tx = ox[p] - i32(kx) * cp.DW;
                    let iy = ty / SH;
                    let ix = tx / SW;
                    let inside = ty >= 0 && tx >= 0 && iy * SH == ty && ix * SW == tx && iy < i32(cp.H)
                        && ix < i32(cp.W);
                    let xv = x[select(0u, xc + u32(iy) * cp.W + u32(ix), inside)];
                    acc[p] += wv * select(0.0, xv, inside);
                }
            }
        }
        xc += hw;
    }
    store_tile(acc, tl.n, tl.g, tl.mq, tl.pq);
}

// Depthwise convolution (groups = C, M = C * MULT): an invocation computes 4 consecutive
// output pixels of one row of one channel. Weights wdw: [M][KH][KW].
@compute @workgroup_size(WG)
fn depthwise(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let t = group_index(wid, nwg) * WG + lid;
    if (t >= pu(20u)) {
        return;
    }
    let C = pu(1u);
    let H = pu(2u);
    let W = pu(3u);
    let M = pu(4u);
    let OH = pu(5u);
    let OW = pu(6u);
    let KH = pu(7u);
    let KW = pu(8u);
    let SH = pu(9u);
    let SW = pu(10u);
    let PT = pi(11u);
    let PL = pi(12u);
    let DH = i32(pu(13u));
    let DW = i32(pu(14u));
    let MULT = pu(24u);
    let OWQ = pu(25u);

    let oxq = t % OWQ;
    var r = t / OWQ;
    let oy = r % OH;
    r = r / OH;
    let m = r % M;
    let n = r / M;
    let ci = m / MULT;

    let iy0 = i32(oy * SH) - PT;
    var ix0: array<i32, 4>;
    for (var p = 0u; p < 4u; p++) {
        ix0[p] = i32(min(oxq * 4u + p, OW - 1u) * SW) - PL;
    }
    var acc = vec4<f32>(0.0);
    let xc = (n * C + ci) * H * W;
    var wi = m * KH * KW;
    for (var ky = 0u; ky < KH; ky++) {
        let iy = iy0 + i32(ky) * DH;
        let row_ok = iy >= 0 && iy < i32(H);
        let row = xc + u32(max(iy, 0)) * W;
        for (var kx = 0u; kx < KW; kx++) {
            let wv = wdw[wi];
            wi += 1u;
            var xv = vec4<f32>(0.0);
            for (var p = 0u; p < 4u; p++) {
                let ix = ix0[p] + i32(kx) * DW;
                let inside = row_ok && ix >= 0 && ix < i32(W);
                xv[p] = select(0.0, x[select(0u, row + u32(ix), inside)], inside);
            }
            acc += wv * xv;
        }
    }
    let a = pf(21u);
    let b = pf(22u);
    let bv = bias[m];
    let base = ((n * M + m) * OH + oy) * OW;
    for (var p = 0u; p < 4u; p++) {
        let ox = oxq * 4u + p;
        if (ox < OW) {
            out[base + ox] = act(acc[p] + bv, a, b);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Direct kernels over up to 3 spatial axes (1-D and 2-D sweeps have leading unit axes): one
// output per invocation. They serve 3-D (transposed) convolutions, whose tiled 2-D kernels
// above do not apply.
//
// Parameter words (conv_direct, conv_transpose_direct):
//   0 invocations (outputs)   1 C   2 M   3 CG (C/G)   4 MG (M/G)
//   5..7 input (D, H, W)   8..10 output (D, H, W)   11..13 kernel (D, H, W)
//  14..16 stride   17..19 pad at the begin   20..22 dilation   23 act a (f32)   24 act b (f32)
// Weights wdw unpacked: conv_direct [M][CG][KD][KH][KW], conv_transpose_direct
// [C][MG][KD][KH][KW].

struct Geom3 {
    C: u32,
    M: u32,
    CG: u32,
    MG: u32,
    inp: vec3<i32>,
    outp: vec3<u32>,
    k: vec3<u32>,
    s: vec3<i32>,
    p: vec3<i32>,
    d: vec3<i32>,
}

fn geom3() -> Geom3 {
    return Geom3(pu(1u), pu(2u), pu(3u), pu(4u),
        vec3<i32>(i32(pu(5u)), i32(pu(6u)), i32(pu(7u))),
        vec3<u32>(pu(8u), pu(9u), pu(10u)),
        vec3<u32>(pu(11u), pu(12u), pu(13u)),
        vec3<i32>(i32(pu(14u)), i32(pu(15u)), i32(pu(16u))),
        vec3<i32>(pi(17u), pi(18u), pi(19u)),
        vec3<i32>(i32(pu(20u)), i32(pu(21u)), i32(pu(22u))));
}

// Output t as (image, channel, position).
struct Out3 {
    n: u32,
    m: u32,
    o: vec3<i32>,
}

fn out3(t: u32, gm: Geom3) -> Out3 {
    let x = t % gm.outp.z;
    var r = t / gm.outp.z;
    let y = r % gm.outp.y;
    r = r / gm.outp.y;
    let z = r % gm.outp.x;
    r = r / gm.outp.x;
    return Out3(r / gm.M, r % gm.M, vec3<i32>(i32(z), i32(y), i32(x)));
}

fn inside3(p: vec3<i32>, size: vec3<i32>) -> bool {
    return all(p >= vec3<i32>(0)) && all(p < size);
}

@compute @workgroup_size(WG)
fn conv_direct(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let t = group_index(wid, nwg) * WG + lid;
    if (t >= pu(0u)) {
        return;
    }
    let gm = geom3();
    let o = out3(t, gm);
    let grp = o.m / gm.MG;
    let start = o.o * gm.s - gm.p;
    let isz = u32(gm.inp.x * gm.inp.y * gm.inp.z);
    let ksz = gm.k.x * gm.k.y * gm.k.z;
    var acc = bias[o.m];
    for (var ci = 0u; ci < gm.CG; ci++) {
        let xc = (o.n * gm.C + grp * gm.CG + ci) * isz;
        let wc = (o.m * gm.CG + ci) * ksz;
        for (var kz = 0u; kz < gm.k.x; kz++) {
            for (var ky = 0u; ky < gm.k.y; ky++) {
                for (var kx = 0u; kx < gm.k.z; kx++) {
                    let ip = start + vec3<i32>(i32(kz), i32(ky), i32(kx)) * gm.d;
                    if (inside3(ip, gm.inp)) {
                        let xi = xc + u32((ip.x * gm.inp.y + ip.y) * gm.inp.z + ip.z);
                        acc += x[xi] * wdw[wc + (kz * gm.k.y + ky) * gm.k.z + kx];
                    }
                }
            }
        }
    }
    out[t] = act(acc, pf(23u), pf(24u));
}

// Transposed convolution in gather form: output o takes input i through tap k when
// o + pad - k*d = i*s on every axis.
@compute @workgroup_size(WG)
fn conv_transpose_direct(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
    let t = group_index(wid, nwg) * WG + lid;
    if (t >= pu(0u)) {
        return;
    }
    let gm = geom3();
    let o = out3(t, gm);
    let grp = o.m / gm.MG;
    let mo = o.m % gm.MG;
    let shifted = o.o + gm.p;
    let isz = u32(gm.inp.x * gm.inp.y * gm.inp.z);
    let ksz = gm.k.x * gm.k.y * gm.k.z;
    var acc = bias[o.m];
    for (var ci = 0u; ci < gm.CG; ci++) {
        let c = grp * gm.CG + ci;
        let xc = (o.n * gm.C + c) * isz;
        let wc = (c * gm.MG + mo) * ksz;
        for (var kz = 0u; kz < gm.k.x; kz++) {
            for (var ky = 0u; ky < gm.k.y; ky++) {
                for (var kx = 0u; kx < gm.k.z; kx++) {
                    let tp = shifted - vec3<i32>(i32(kz), i32(ky), i32(kx)) * gm.d;
                    let ip = tp / gm.s;
                    if (all(tp >= vec3<i32>(0)) && all(ip * gm.s == tp) && all(ip < gm.inp)) {
                        let xi = xc + u32((ip.x * gm.inp.y + ip.y) * gm.inp.z + ip.z);
                        acc += x[xi] * wdw[wc + (kz * gm.k.y + ky) * gm.k.z + kx];
                    }
                }
            }
        }
    }
    out[t] = act(acc, pf(23u), pf(24u));
}

// Col2Im: image position p of channel c sums column c*K + k of block b for every tap k
// (row-major over the block) with b*s - pad + k*d = p on every axis.
//
// Parameter words: 0 invocations (image elements)   2..4 image (D, H, W)   5..7 blocks per
//   axis   8..10 block (D, H, W)   11..13 stride   14..16 pad at the begin   17..19 dilation
@compute @workgroup_size(WG)
fn col2im(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let t = group_index(wid, nwg) * WG + lid;
    if (t >= pu(0u)) {
        return;
    }
    let im = vec3<u32>(pu(2u), pu(3u), pu(4u));
    let nb = vec3<i32>(i32(pu(5u)), i32(pu(6u)), i32(pu(7u)));
    let k = vec3<u32>(pu(8u), pu(9u), pu(10u));
    let s = vec3<i32>(i32(pu(11u)), i32(pu(12u)), i32(pu(13u)));
    let p = vec3<i32>(pi(14u), pi(15u), pi(16u));
    let d = vec3<i32>(i32(pu(17u)), i32(pu(18u)), i32(pu(19u)));
    let px = t % im.z;
    var r = t / im.z;
    let py = r % im.y;
    r = r / im.y;
    let pz = r % im.x;
    let nc = r / im.x;
    let shifted = vec3<i32>(i32(pz), i32(py), i32(px)) + p;
    let K = k.x * k.y * k.z;
    let L = u32(nb.x * nb.y * nb.z);
    var acc = 0.0;
    for (var kz = 0u; kz < k.x; kz++) {
        for (var ky = 0u; ky < k.y; ky++) {
            for (var kx = 0u; kx < k.z; kx++) {
                let tp = shifted - vec3<i32>(i32(kz), i32(ky), i32(kx)) * d;
                let b = tp / s;
                if (all(tp >= vec3<i32>(0)) && all(b * s == tp) && all(b < nb)) {
                    let col = nc * K + (kz * k.y + ky) * k.z + kx;
                    acc += x[col * L + u32((b.x * nb.y + b.y) * nb.z + b.z)];
                }
            }
        }
    }
    out[t] = acc;
}

// Deformable 2-D convolution: one output per invocation; every tap samples the input
// bilinearly at its position shifted by the (dy, dx) of its offset group (zero outside the
// image) and is scaled by its mask.
//
// Parameter words: 0 invocations (outputs)   1 C   2 H   3 W   4 M   5 OH   6 OW   7 KH   8 KW
//   9 SH   10 SW   11 PT   12 PL   13 DH   14 DW   15 CG (C/G)   16 MG (M/G)   17 OG (offset
//   groups)   18 has mask
// Weights wdw [M][CG][KH][KW]; offsets [N][OG*KH*KW*2][OH][OW] ((dy, dx) per tap); mask
// [N][OG*KH*KW][OH][OW] (bound to the offsets, and never read, without a mask).
@group(0) @binding(7) var<storage, read> offsets: array<f32>;
@group(0) @binding(8) var<storage, read> mask: array<f32>;

// Bilinear sample of the plane at `base` ([H, W]) at (y, x); neighbours outside read zero.
fn bilinear_zero(base: u32, H: i32, W: i32, y: f32, xx: f32) -> f32 {
    if (!(y > -1.0 && y < f32(H) && xx > -1.0 && xx < f32(W))) {
        return 0.0;
    }
    let y0 = floor(y);
    let x0 = floor(xx);
    let fy = y - y0;
    let fx = xx - x0;
    var v = 0.0;
    for (var dy = 0; dy < 2; dy++) {
        for (var dx = 0; dx < 2; dx++) {
            let yy = i32(y0) + dy;
            let xi = i32(x0) + dx;
            if (yy >= 0 && yy < H && xi >= 0 && xi < W) {
                let wy = select(1.0 - fy, fy, dy == 1);
                let wx = select(1.0 - fx, fx, dx == 1);
                v += wy * wx * x[base + u32(yy * W + xi)];
            }
        }
    }
    return v;
}

@compute @workgroup_size(WG)
fn deform_conv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let t = group_index(wid, nwg) * WG + lid;
    if (t >= pu(0u)) {
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
    let CG = pu(15u);
    let MG = pu(16u);
    let OG = pu(17u);
    let has_mask = pu(18u) != 0u;
    let ox = t % OW;
    var r = t / OW;
    let oy = r % OH;
    r = r / OH;
    let m = r % M;
    let n = r / M;
    let grp = m / MG;
    let plane = OH * OW;
    let pix = oy * OW + ox;
    let taps = KH * KW;
    let y0 = f32(i32(oy * pu(9u)) - pi(11u));
    let x0 = f32(i32(ox * pu(10u)) - pi(12u));
    let DH = f32(pu(13u));
    let DW = f32(pu(14u));
    var acc = bias[m];
    for (var ci = 0u; ci < CG; ci++) {
        let c = grp * CG + ci;
        let og = c / (C / OG);
        let xb = (n * C + c) * u32(H * W);
        for (var ky = 0u; ky < KH; ky++) {
            for (var kx = 0u; kx < KW; kx++) {
                let tap = og * taps + ky * KW + kx;
                let ob = (n * OG * taps * 2u + 2u * tap) * plane + pix;
                let dy = offsets[ob];
                let dx = offsets[ob + plane];
                var k = 1.0;
                if (has_mask) {
                    k = mask[(n * OG * taps + tap) * plane + pix];
                }
                let v = bilinear_zero(xb, H, W, y0 + f32(ky) * DH + dy, x0 + f32(kx) * DW + dx);
                acc += wdw[((m * CG + ci) * KH + ky) * KW + kx] * k * v;
            }
        }
    }
    out[t] = acc;
}
