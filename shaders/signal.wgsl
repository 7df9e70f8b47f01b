// Signal processing and small numerical kernels: discrete and short-time Fourier transforms
// (one output bin per invocation; the twiddles e^{2 pi i r / N}, r = k * n mod N reduced
// exactly, come from a table computed in f64: cos, sin pairs at binding 5) and determinants (one matrix per invocation, Gaussian elimination with
// partial pivoting in a scratch copy).
//
// dft: the input viewed as [outer, len, inner, in_parts] (in_parts 1: real, 2: real and
// imaginary), the output as [outer, frames, bins, inner, out_parts]. Bin k of frame f sums
// s over 0..count of window[s] * x[f * step + s] * e^{sign 2 pi i k s / N} (samples past
// the end are zeros), times scale. MODE 1 (the inverse of a one-sided spectrum): output n
// (real) sums s over 0..N of the Hermitian extension Y[s] (x[s] for s < N/2 + 1, else
// conj(x[N - s])) times e^{2 pi i s n / N}, real part, times scale.
//   parameter words: 0 items (outer * frames * bins * inner)   1 len   2 inner   3 in_parts
//   4 frames   5 step   6 count   7 N   8 bins   9 out_parts   10 sign (f32)   11 scale (f32)
//   12 window flag (binding 3 holds the window)
// det parameter words: 0 matrices   1 M
//
// linear_attention: one invocation per (batch, key/value head, value column m) walks the
// sequence with its state column S[:, m] (dk values, kept in the present-state output at
// binding 4, first copied from the past state): decay by exp(g_t) (gated), the value
// beta_t * (v_t[m] - S[:, m] . k_t) (delta) or v_t[m] written as S[:, m] += k_t * value,
// then each query head of the group reads scale * q_t . S[:, m].
//   parameter words: 0 items (B * kv heads * dv)   1 T   2 q heads   3 kv heads   4 dk
//   5 dv   6 decay values per token and head (0: none, 1: per head, dk: per key value)
//   7 beta values per token (0: none, 1: shared by the heads, kv heads: per head)
//   8 scale (f32)

override MODE: u32 = 0u;

@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> win: array<f32>;
@group(0) @binding(4) var<storage, read_write> work: array<f32>;
@group(0) @binding(5) var<storage, read> twiddles: array<f32>;
@group(0) @binding(6) var<storage, read> la_q: array<f32>;
@group(0) @binding(7) var<storage, read> la_k: array<f32>;
@group(0) @binding(8) var<storage, read> la_v: array<f32>;
@group(0) @binding(9) var<storage, read> la_past: array<f32>;
@group(0) @binding(10) var<storage, read> la_decay: array<f32>;
@group(0) @binding(11) var<storage, read> la_beta: array<f32>;

// Complex sample t of line (o, i); zero past the end of the signal.
fn sample(o: u32, t: u32, i: u32) -> vec2<f32> {
    let len = pu(1u);
    if (t >= len) {
        return vec2<f32>(0.0, 0.0);
    }
    let parts = pu(3u);
    let at = ((o * len + t) * pu(2u) + i) * parts;
    return vec2<f32>(x[at], select(0.0, x[at + 1u], parts == 2u));
}

@compute @workgroup_size(WG)
fn dft(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
    let item = group_index(wid, nwg) * WG + lid;
    if (item >= pu(0u)) {
        return;
    }
    let inner = pu(2u);
    let frames = pu(4u);
    let n_big = pu(7u);
    let bins = pu(8u);
    let i = item % inner;
    var rest = item / inner;
    let k = rest % bins;
    rest = rest / bins;
    let f = rest % frames;
    let o = rest / frames;
    let base = f * pu(5u);
    let sign = pf(10u);
    let step_k = k % n_big;
    var re = 0.0;
    var im = 0.0;
    var idx = 0u;
    if (MODE == 1u) {
        let m = n_big / 2u + 1u;
        for (var s = 0u; s < n_big; s++) {
            var y = vec2<f32>(0.0, 0.0);
            if (s < m) {
                y = sample(o, s, i);
            } else {
                y = sample(o, n_big - s, i);
                y.y = -y.y;
            }
            re += y.x * twiddles[2u * idx] - y.y * twiddles[2u * idx + 1u];
            idx += step_k;
            if (idx >= n_big) {
                idx -= n_big;
            }
        }
    } else {
        let count = pu(6u);
        let windowed = pu(12u) != 0u;
        for (var s = 0u; s < count; s++) {
            var z = sample(o, base + s, i);
            if (windowed) {
                z = z * win[s];
            }
            let c = twiddles[2u * idx];
            let sn = sign * twiddles[2u * idx + 1u];
            re += z.x * c - z.y * sn;
            im += z.x * sn + z.y * c;
            idx += step_k;
            if (idx >= n_big) {
                idx -= n_big;
            }
        }
    }
    let scale = pf(11u);
    let out_parts = pu(9u);
    let at = item * out_parts;
    out[at] = re * scale;
    if (out_parts == 2u) {
        out[at + 1u] = im * scale;
    }
}

@compute @workgroup_size(WG)
fn det(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
    let b = group_index(wid, nwg) * WG + lid;
    if (b >= pu(0u)) {
        return;
    }
    let m = pu(1u);
    let base = b * m * m;
    for (var e = 0u; e < m * m; e++) {
        work[base + e] = x[base + e];
    }
    var d = 1.0;
    for (var col = 0u; col < m; col++) {
        var pivot = col;
        var best = abs(work[base + col * m + col]);
        for (var r = col + 1u; r < m; r++) {
            let v = abs(work[base + r * m + col]);
            if (v > best) {
                best = v;
                pivot = r;
            }
        }
        if (best == 0.0) {
            d = 0.0;
            break;
        }
        if (pivot != col) {
            for (var k = 0u; k < m; k++) {
                let t = work[base + pivot * m + k];
                work[base + pivot * m + k] = work[base + col * m + k];
                work[base + col * m + k] = t;
            }
            d = -d;
        }
        let p = work[base + col * m + col];
        d = d * p;
        for (var r = col + 1u; r < m; r++) {
            let factor = work[base + r * m + col] / p;
            for (var k = col; k < m; k++) {
                work[base + r * m + k] -= factor * work[base + col * m + k];
            }
        }
    }
    out[b] = d;
}

@compute @workgroup_size(WG)
fn linear_attention(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let item = group_index(wid, nwg) * WG + lid;
    if (item >= pu(0u)) {
        return;
    }
    let steps = pu(1u);
    let hq = pu(2u);
    let hk = pu(3u);
    let dk = pu(4u);
    let dv = pu(5u);
    let decay_width = pu(6u);
    let beta_width = pu(7u);
    let scale = pf(8u);
    let m = item % dv;
    let h = (item / dv) % hk;
    let b = item / (dv * hk);
    let group = hq / hk;
    // S[d, m] lives at state + d * dv.
    let state = (b * hk + h) * dk * dv + m;
    for (var d = 0u; d < dk; d++) {
        work[state + d * dv] = la_past[state + d * dv];
    }
    for (var t = 0u; t < steps; t++) {
        let row = b * steps + t;
        let key = (row * hk + h) * dk;
        if (decay_width == 1u) {
            let f = exp(la_decay[row * hk + h]);
            for (var d = 0u; d < dk; d++) {
                work[state + d * dv] *= f;
            }
        } else if (decay_width != 0u) {
            for (var d = 0u; d < dk; d++) {
                work[state + d * dv] *= exp(la_decay[key + d]);
            }
        }
        var value = la_v[(row * hk + h) * dv + m];
        if (beta_width != 0u) {
            var retrieved = 0.0;
            for (var d = 0u; d < dk; d++) {
                retrieved += work[state + d * dv] * la_k[key + d];
            }
            var bt = 0.0;
            if (beta_width == 1u) {
                bt = la_beta[row];
            } else {
                bt = la_beta[row * hk + h];
            }
            value = bt * (value - retrieved);
        }
        for (var d = 0u; d < dk; d++) {
            work[state + d * dv] += la_k[key + d] * value;
        }
        for (var g = 0u; g < group; g++) {
            let head = h * group + g;
            let query = (row * hq + head) * dk;
            var o = 0.0;
            for (var d = 0u; d < dk; d++) {
                o += la_q[query + d] * work[state + d * dv];
            }
            out[(row * hq + head) * dv + m] = scale * o;
        }
    }
}
