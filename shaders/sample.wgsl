// Resampling and sampling at computed coordinates: resize (one resampled axis per pass, its
// taps and weights read from a table computed at lowering), grid sampling and region of
// interest pooling. Values are f32 except in resample_nearest, which moves 32-bit words (so
// nearest resizing serves every element type).
//
// resample parameter words: 0 elements of the output   1 input length of the axis
//   2 output length of the axis   3 inner (elements after the axis)   4 taps per position
//   table: per output position 1 + 2 * taps words: a constant term (f32), then per tap the
//   input index (i32; -1: no tap) and its weight (f32)
// resample_nearest parameter words: 0..3 as resample   4 fill word (the bits of the
//   extrapolation value)   table: per output position the input index (i32; -1: the fill)
// grid_sample parameter words: 0 elements   1 C   2 r (spatial axes, 1..3)   3..5 input
//   spatial lengths (r of them)   6 output positions per plane   7 padding (0 zeros,
//   1 border, 2 reflection)   8 align_corners   9 elements of an input plane
//   MODE: 0 nearest (halfway to even), 1 linear, 2 cubic (a = -0.75)
// roi_align parameter words: 0 elements   1 C   2 H   3 W   4 output height
//   5 output width   6 sampling ratio (0: adaptive)   7 spatial scale (f32)   8 half_pixel
//   9 N (batch indices are clamped to it)
//   MODE: 0 average, 1 maximum. Adaptive sampling takes at most MAX_SAMPLES per axis.

override MODE: u32 = 0u;

const MAX_SAMPLES: u32 = 1024u;

@group(0) @binding(1) var<storage, read_write> out_f: array<f32>;
@group(0) @binding(2) var<storage, read> x_f: array<f32>;
@group(0) @binding(3) var<storage, read> table: array<u32>;
@group(0) @binding(4) var<storage, read_write> out_w: array<u32>;
@group(0) @binding(5) var<storage, read> x_w: array<u32>;
@group(0) @binding(6) var<storage, read> grid: array<f32>;
@group(0) @binding(7) var<storage, read> rois: array<f32>;
@group(0) @binding(8) var<storage, read> batch_index: array<i32>;

@compute @workgroup_size(WG)
fn resample(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let t = group_index(wid, nwg) * WG + lid;
    if (t >= pu(0u)) {
        return;
    }
    let in_len = pu(1u);
    let out_len = pu(2u);
    let inner = pu(3u);
    let taps = pu(4u);
    let i = t % inner;
    let j = (t / inner) % out_len;
    let o = t / (inner * out_len);
    let row = j * (1u + 2u * taps);
    var acc = bitcast<f32>(table[row]);
    for (var k = 0u; k < taps; k++) {
        let src = bitcast<i32>(table[row + 1u + 2u * k]);
        if (src >= 0) {
            let s = min(u32(src), in_len - 1u);
            acc += bitcast<f32>(table[row + 2u + 2u * k]) * x_f[(o * in_len + s) * inner + i];
        }
    }
    out_f[t] = acc;
}

@compute @workgroup_size(WG)
fn resample_nearest(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let t = group_index(wid, nwg) * WG + lid;
    if (t >= pu(0u)) {
        return;
    }
    let in_len = pu(1u);
    let out_len = pu(2u);
    let inner = pu(3u);
    let i = t % inner;
    let j = (t / inner) % out_len;
    let o = t / (inner * out_len);
    let src = bitcast<i32>(table[j]);
    if (src < 0) {
        out_w[t] = pu(4u);
        return;
    }
    out_w[t] = x_w[(o * in_len + min(u32(src), in_len - 1u)) * inner + i];
}

// x mirrored at lo and hi until it lies between them.
fn reflect_into(x: f32, lo: f32, hi: f32) -> f32 {
    let range = hi - lo;
    if (range <= 0.0) {
        return lo;
    }
    if (x < lo) {
        let dx = lo - x;
        let flips = floor(dx / range);
        let rest = dx - flips * range;
        return select(hi - rest, lo + rest, flips - 2.0 * floor(flips / 2.0) == 0.0);
    }
    if (x > hi) {
        let dx = x - hi;
        let flips = floor(dx / range);
        let rest = dx - flips * range;
        return select(lo + rest, hi - rest, flips - 2.0 * floor(flips / 2.0) == 0.0);
    }
    return x;
}

// The extent of an axis of len elements: outer edges of the end elements, or their centres.
fn grid_lo() -> f32 {
    return select(-0.5, 0.0, pu(8u) == 1u);
}

fn grid_hi(len: u32) -> f32 {
    return select(f32(len) - 0.5, f32(len) - 1.0, pu(8u) == 1u);
}

// The input coordinate of normalised position v on an axis of len elements, after rounding
// (nearest) and reflection into the input (reflection padding; border padding clamps the
// taps, not the coordinate).
fn grid_coord(v: f32, len: u32) -> f32 {
    let l = f32(len);
    var x: f32;
    if (pu(8u) == 1u) {
        x = (v + 1.0) / 2.0 * (l - 1.0);
    } else {
        x = ((v + 1.0) * l - 1.0) / 2.0;
    }
    if (MODE == 0u) {
        x = round(x);
    }
    if (pu(7u) == 2u) {
        x = reflect_into(x, grid_lo(), grid_hi(len));
    }
    return x;
}

// The element read at integer position i of an axis of len elements; -1 for zeros.
fn grid_element(i: i32, len: u32) -> i32 {
    let n = i32(len);
    if (i >= 0 && i < n) {
        return i;
    }
    switch pu(7u) {
        case 1u: {
            return clamp(i, 0, n - 1);
        }
        case 2u: {
            return clamp(i32(trunc(reflect_into(f32(i), grid_lo(), grid_hi(len)))), 0, n - 1);
        }
        default: {
            return -1;
        }
    }
}

// Keys' cubic convolution kernel (a = -0.75) at distance d.
fn cubic_weight(d: f32) -> f32 {
    let a = -0.75;
    let x = abs(d);
    if (x <= 1.0) {
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    }
    if (x < 2.0) {
        return ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a;
    }
    return 0.0;
}

@compute @workgroup_size(WG)
fn grid_sample(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let t = group_index(wid, nwg) * WG + lid;
    if (t >= pu(0u)) {
        return;
    }
    let channels = pu(1u);
    let r = pu(2u);
    let positions = pu(6u);
    let p = t % positions;
    let plane_index = t / positions;
    let n = plane_index / channels;
    var first: array<i32, 3>;
    var weights: array<vec4<f32>, 3>;
    let g = (n * positions + p) * r;
    for (var a = 0u; a < r; a++) {
        // The grid holds the last axis's coordinate first.
        let x = grid_coord(grid[g + r - 1u - a], pu(3u + a));
        let f = floor(x);
        let frac = x - f;
        if (MODE == 0u) {
            first[a] = i32(x);
            weights[a] = vec4<f32>(1.0, 0.0, 0.0, 0.0);
        } else if (MODE == 1u) {
            first[a] = i32(f);
            weights[a] = vec4<f32>(1.0 - frac, frac, 0.0, 0.0);
        } else {
            first[a] = i32(f) - 1;
            weights[a] = vec4<f32>(cubic_weight(frac + 1.0), cubic_weight(frac), cubic_weight(1.0 - frac),
                                   cubic_weight(2.0 - frac));
        }
    }
    let taps = select(select(4u, 2u, MODE == 1u), 1u, MODE == 0u);
    var combinations = 1u;
    for (var a = 0u; a < r; a++) {
        combinations *= taps;
    }
    let base = plane_index * pu(9u);
    var acc = 0.0;
    for (var c = 0u; c < combinations; c++) {
        var rem = c;
        var w = 1.0;
        var offset = 0u;
        var inside = true;
        for (var a = 0u; a < r; a++) {
            let k = rem % taps;
            rem = rem / taps;
            let len = pu(3u + a);
            let e = grid_element(first[a] + i32(k), len);
            inside = inside && e >= 0;
            offset = offset * len + u32(max(e, 0));
            w *= weights[a][k];
        }
        if (inside) {
            acc += w * x_f[base + offset];
        }
    }
    out_f[t] = acc;
}

@compute @workgroup_size(WG)
fn roi_align(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let t = group_index(wid, nwg) * WG + lid;
    if (t >= pu(0u)) {
        return;
    }
    let channels = pu(1u);
    let h = pu(2u);
    let w = pu(3u);
    let oh = pu(4u);
    let ow = pu(5u);
    let px = t % ow;
    let py = (t / ow) % oh;
    let c = (t / (ow * oh)) % channels;
    let k = t / (ow * oh * channels);
    let b = u32(clamp(batch_index[k], 0, i32(pu(9u)) - 1));
    let half_pixel = pu(8u) == 1u;
    let scale = pf(7u);
    let shift = select(0.0, 0.5, half_pixel);
    let x1 = rois[k * 4u] * scale - shift;
    let y1 = rois[k * 4u + 1u] * scale - shift;
    let x2 = rois[k * 4u + 2u] * scale - shift;
    let y2 = rois[k * 4u + 3u] * scale - shift;
    var rh = y2 - y1;
    var rw = x2 - x1;
    if (!half_pixel) {
        // Malformed regions count as 1x1.
        rh = max(rh, 1.0);
        rw = max(rw, 1.0);
    }
    let bin_h = rh / f32(oh);
    let bin_w = rw / f32(ow);
    var sy = pu(6u);
    var sx = pu(6u);
    if (sy == 0u) {
        sy = min(u32(max(ceil(rh / f32(oh)), 0.0)), MAX_SAMPLES);
        sx = min(u32(max(ceil(rw / f32(ow)), 0.0)), MAX_SAMPLES);
    }
    let plane = (b * channels + c) * h * w;
    let fh = f32(h);
    let fw = f32(w);
    var acc = 0.0;
    var seen = false;
    for (var iy = 0u; iy < sy; iy++) {
        let yy = y1 + f32(py) * bin_h + (f32(iy) + 0.5) * bin_h / f32(sy);
        for (var ix = 0u; ix < sx; ix++) {
            let xx = x1 + f32(px) * bin_w + (f32(ix) + 0.5) * bin_w / f32(sx);
            // Bilinear corners; a sample more than one element outside has zero weights.
            var v = vec4<f32>(0.0);
            if (!(yy < -1.0 || yy > fh || xx < -1.0 || xx > fw)) {
                var y = max(yy, 0.0);
                var x = max(xx, 0.0);
                var y0 = u32(y);
                var x0 = u32(x);
                var y1i = y0 + 1u;
                var x1i = x0 + 1u;
                if (y0 >= h - 1u) {
                    y0 = h - 1u;
                    y1i = y0;
                    y = f32(y0);
                }
                if (x0 >= w - 1u) {
                    x0 = w - 1u;
                    x1i = x0;
                    x = f32(x0);
                }
                let ly = y - f32(y0);
                let lx = x - f32(x0);
                let hy = 1.0 - ly;
                let hx = 1.0 - lx;
                v = vec4<f32>(hy * hx * x_f[plane + y0 * w + x0], hy * lx * x_f[plane + y0 * w + x1i],
                              ly * hx * x_f[plane + y1i * w + x0], ly * lx * x_f[plane + y1i * w + x1i]);
            } else {
                v = 0.0 * vec4<f32>(x_f[plane]);
            }
            if (MODE == 1u) {
                let m = max(max(v.x, v.y), max(v.z, v.w));
                acc = select(max(acc, m), m, !seen);
                seen = true;
            } else {
                acc += v.x + v.y + v.z + v.w;
            }
        }
    }
    if (MODE == 1u) {
        out_f[t] = acc;
    } else {
        out_f[t] = acc / f32(max(sy * sx, 1u));
    }
}
