// Data movement: strided copies (transpose, slice, concat, split, expand are all one; a
// stride of 0 repeats), padding (MODE 0 constant, 1 reflect, 2 edge, 3 wrap) and spatial
// resize (nearest, bilinear). Copies and padding move 32-bit words, so they serve every
// element type; resize is f32.
//
// strided_copy parameter words: 0 elements   1..6 region dims (rank 6, leading 1s)
//   7..12 source strides (i32)   13..18 destination strides (i32)   19 source offset
//   20 destination offset
// pad parameter words: 0 elements   1..6 output dims   7..12 input dims   13..18 padding
//   before each dim   19..24 input strides   25 fill value (the element's 32 bits)
// resize parameter words: 0 elements   1 H   2 W   3 OH   4 OW   5 linear
//   6 nearest rounding (0 round-prefer-floor, 1 round-prefer-ceil, 2 floor, 3 ceil)
//   7 coordinate mode (0 half_pixel, 1 pytorch_half_pixel, 2 align_corners, 3 asymmetric,
//   4 tf_half_pixel_for_nn, 5 half_pixel_symmetric)   8 scale h (f32)   9 scale w (f32)

override MODE: u32 = 0u;

@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<u32>;
@group(0) @binding(3) var<storage, read_write> out_f: array<f32>;
@group(0) @binding(4) var<storage, read> x_f: array<f32>;

@compute @workgroup_size(WG)
fn strided_copy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let t = group_index(wid, nwg) * WG + lid;
    if (t >= pu(0u)) {
        return;
    }
    var src = pi(19u);
    var dst = pi(20u);
    var rem = t;
    for (var d = 6u; d >= 1u; d--) {
        let idx = i32(rem % pu(d));
        rem = rem / pu(d);
        src += idx * pi(6u + d);
        dst += idx * pi(12u + d);
    }
    out[u32(dst)] = x[u32(src)];
}

@compute @workgroup_size(WG)
fn pad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
    let t = group_index(wid, nwg) * WG + lid;
    if (t >= pu(0u)) {
        return;
    }
    var src = 0u;
    var inside = true;
    var rem = t;
    for (var d = 6u; d >= 1u; d--) {
        let o = i32(rem % pu(d));
        rem = rem / pu(d);
        let n = i32(pu(6u + d));
        var i = o - i32(pu(12u + d));
        if (i < 0 || i >= n) {
            if (MODE == 1u) {
                // reflect (pads are smaller than the dim, so one bounce suffices)
                i = select(2 * (n - 1) - i, -i, i < 0);
            } else if (MODE == 3u) {
                i = ((i % n) + n) % n;
            } else if (MODE == 2u) {
                i = clamp(i, 0, n - 1);
            } else {
                inside = false;
                i = 0;
            }
        }
        src += u32(i) * pu(18u + d);
    }
    out[t] = select(pu(25u), x[src], inside);
}

fn source_coord(o: u32, in_len: u32, out_len: u32, scale: f32) -> f32 {
    let xo = f32(o);
    switch pu(7u) {
        case 1u: {
            return select(0.0, (xo + 0.5) / scale - 0.5, out_len > 1u);
        }
        case 2u: {
            // The resized length in floating point (scale * input length), as ONNX defines it.
            return select(0.0, xo * f32(in_len - 1u) / (scale * f32(in_len) - 1.0), out_len > 1u);
        }
        case 3u: {
            return xo / scale;
        }
        case 4u: {
            return (xo + 0.5) / scale;
        }
        case 5u: {
            let adjustment = f32(out_len) / (scale * f32(in_len));
            let center = f32(in_len) / 2.0;
            return center * (1.0 - adjustment) + (xo + 0.5) / scale - 0.5;
        }
        default: {
            return (xo + 0.5) / scale - 0.5;
        }
    }
}

fn nearest(c: f32, in_len: u32) -> u32 {
    var r: f32;
    switch pu(6u) {
        case 1u: { r = floor(c + 0.5); }
        case 2u: { r = floor(c); }
        case 3u: { r = ceil(c); }
        default: { r = ceil(c - 0.5); }
    }
    return u32(clamp(i32(r), 0, i32(in_len) - 1));
}

@compute @workgroup_size(WG)
fn resize(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let t = group_index(wid, nwg) * WG + lid;
    if (t >= pu(0u)) {
        return;
    }
    let H = pu(1u);
    let W = pu(2u);
    let OH = pu(3u);
    let OW = pu(4u);
    let ox = t % OW;
    let oy = (t / OW) % OH;
    let nc = t / (OW * OH);
    let base = nc * H * W;
    let cy = source_coord(oy, H, OH, pf(8u));
    let cx = source_coord(ox, W, OW, pf(9u));
    if (pu(5u) == 0u) {
        out_f[t] = x_f[base + nearest(cy, H) * W + nearest(cx, W)];
        return;
    }
    let y = clamp(cy, 0.0, f32(H - 1u));
    let xx = clamp(cx, 0.0, f32(W - 1u));
    let y0 = u32(floor(y));
    let x0 = u32(floor(xx));
    let y1 = min(y0 + 1u, H - 1u);
    let x1 = min(x0 + 1u, W - 1u);
    let fy = y - f32(y0);
    let fx = xx - f32(x0);
    let top = mix(x_f[base + y0 * W + x0], x_f[base + y0 * W + x1], fx);
    let bot = mix(x_f[base + y1 * W + x0], x_f[base + y1 * W + x1], fx);
    out_f[t] = mix(top, bot, fy);
}
