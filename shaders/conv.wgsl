// Convolution family: implicit-GEMM 2-D convolution (register tile of 4 output channels x 4
// output pixels per invocation, weights packed for vec4 loads), a 1x1 variant that also loads
// the input as vec4, depthwise convolution (4 output pixels per invocation) and transposed
// convolution (implicit GEMM in gather form). Bias and activation are fused into the
// write-back.
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
