// Recurrent layers (LSTM, GRU, RNN). The input projection of every step (X W^T, one matmul
// for all steps and directions) runs on matmul.wgsl before these kernels; then `init_state`
// writes the initial states, one cell dispatch per time step (both directions together)
// computes the recurrent products, the gates and the state update, and `finish_state`
// writes Y_h and Y_c. States live in two scratch buffers used in turn: [S][D][N][H], S = 2
// for LSTM (h, then c), 1 otherwise.
//
// Packed recurrent weights (`rw`): vec4 index (d*H + k)*H + j holds R[d][g*H + j][k] in lane
// g (ONNX's gate order: LSTM i, o, f, c; GRU z, r, h; RNN its one gate), 0 in lanes beyond
// the cell's gates: the invocations of neighbouring units read neighbouring vec4s.
//
// Cell parameter words (lstm_cell, gru_reset, gru_cell, rnn_cell):
//   0 invocations (D*N*H)   1 H   2 N   3 D   4 T   5 step   6 has sequence lengths
//   7 has bias   8 has peepholes   9..11 Y strides of a step, a direction, a batch entry
//  12..13 projection row strides of a step and of a batch entry   14..15 direction 0 / 1
//   runs reversed   16 has clip   17 clip (f32)   18 LSTM input_forget / GRU
//   linear_before_reset   19 G (gates)   20 + 3*(d*3 + i): activation i of direction d
//   (code, alpha, beta)   38 KS (slices of k per unit, see CELL_WG)
// The projection `xw` is [rows][D*G*H], row = t*(12) + n*(13). The bias is ONNX's B
// [D][2*G*H] (input biases, then recurrent ones), the peepholes P [D][3*H] (i, o, f).
//
// A batch entry's steps from its length on write zero outputs and carry the states over
// unchanged; a reversed direction at step s works on time step len - 1 - s.

@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read> xw: array<f32>;
@group(0) @binding(3) var<storage, read> rw: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read> peep: array<f32>;
@group(0) @binding(6) var<storage, read> lens: array<i32>;
@group(0) @binding(7) var<storage, read> s_in: array<f32>;
@group(0) @binding(8) var<storage, read_write> s_out: array<f32>;
@group(0) @binding(9) var<storage, read> rh_in: array<f32>;
@group(0) @binding(10) var<storage, read_write> rh_out: array<f32>;
@group(0) @binding(11) var<storage, read> r_src: array<f32>;
@group(0) @binding(12) var<storage, read_write> r_dst: array<vec4<f32>>;
@group(0) @binding(13) var<storage, read> h0: array<f32>;
@group(0) @binding(14) var<storage, read> c0: array<f32>;
@group(0) @binding(15) var<storage, read_write> yh: array<f32>;
@group(0) @binding(16) var<storage, read_write> yc: array<f32>;

// An activation function of a cell: 0 sigmoid, 1 tanh, 2 relu, 3 affine, 4 leaky relu,
// 5 thresholded relu, 6 scaled tanh, 7 hard sigmoid, 8 elu, 9 softsign, 10 softplus.
fn cell_act(code: u32, x: f32, a: f32, b: f32) -> f32 {
    switch code {
        case 0u: { return sigmoid(x); }
        case 1u: { return tanh_c(x); }
        case 2u: { return max(x, 0.0); }
        case 3u: { return a * x + b; }
        case 4u: { return select(a * x, x, x >= 0.0); }
        case 5u: { return select(0.0, x, x > a); }
        case 6u: { return a * tanh_c(b * x); }
        case 7u: { return clamp(a * x + b, 0.0, 1.0); }
        case 8u: { return select(a * (exp(x) - 1.0), x, x > 0.0); }
        case 9u: { return x / (1.0 + abs(x)); }
        case 10u: { return softplus(x); }
        default: { return x; }
    }
}

// Activation `i` of direction `d` applied to a gate's argument (clipped first).
fn gate_act(d: u32, i: u32, x: f32) -> f32 {
    var v = x;
    if (pu(16u) != 0u) {
        let c = pf(17u);
        v = clamp(v, -c, c);
    }
    let w = 20u + 3u * (d * 3u + i);
    return cell_act(pu(w), v, pf(w + 1u), pf(w + 2u));
}

// Where one invocation of a cell works: unit j of batch entry n in direction d, and the
// time step it handles now (`live` false past the entry's sequence length).
struct Unit {
    j: u32,
    n: u32,
    d: u32,
    t: u32,
    live: bool,
}

fn unit_of(u: u32) -> Unit {
    let H = pu(1u);
    let N = pu(2u);
    let T = pu(4u);
    let s = pu(5u);
    var w: Unit;
    w.j = u % H;
    w.n = (u / H) % N;
    w.d = u / (H * N);
    var len = T;
    if (pu(6u) != 0u) {
        len = u32(clamp(lens[w.n], 0, i32(T)));
    }
    w.live = s < len;
    let rev = pu(14u + min(w.d, 1u)) != 0u;
    w.t = select(s, len - 1u - s, rev && w.live);
    return w;
}

// Index of the state of a unit (slot 0: h, 1: c) in the [S][D][N][H] state buffers.
fn state_index(w: Unit, slot: u32, j: u32) -> u32 {
    return ((slot * pu(3u) + w.d) * pu(2u) + w.n) * pu(1u) + j;
}

fn y_index(w: Unit) -> u32 {
    return w.t * pu(9u) + w.d * pu(10u) + w.n * pu(11u) + w.j;
}

// The projection (X W^T) of gate g of the unit, plus the input bias and, when `rec`, the
// recurrent bias.
fn projected(w: Unit, g: u32, rec: bool) -> f32 {
    let H = pu(1u);
    let gh = pu(19u) * H;
    let row = w.t * pu(12u) + w.n * pu(13u);
    var v = xw[row * pu(3u) * gh + w.d * gh + g * H + w.j];
    if (pu(7u) != 0u) {
        let b = w.d * 2u * gh + g * H + w.j;
        v += bias[b];
        if (rec) {
            v += bias[b + gh];
        }
    }
    return v;
}

// The recurrent bias of gate g of the unit.
fn recurrent_bias(w: Unit, g: u32) -> f32 {
    if (pu(7u) == 0u) {
        return 0.0;
    }
    let H = pu(1u);
    let gh = pu(19u) * H;
    return bias[w.d * 2u * gh + gh + g * H + w.j];
}

// Past the end of a sequence: a zero output, the states carried over.
fn carry(w: Unit, slots: u32) {
    y[y_index(w)] = 0.0;
    for (var s = 0u; s < slots; s++) {
        let i = state_index(w, s, w.j);
        s_out[i] = s_in[i];
    }
}

// The cells run in workgroups of CELL_WG invocations: CELL_WG / KS units (word 38: KS, a
// power of two up to 8), each unit's recurrent products split over KS slices of k (k =
// slice, slice + KS, ...) and summed through workgroup memory, so that few batch entries
// still spread over many workgroups and each invocation's loop is H / KS long.
const CELL_WG: u32 = 64u;

var<workgroup> partial: array<vec4<f32>, 64>;

// One invocation of a cell: the unit it works for (`valid` false past the last), and its
// slice of k.
struct Lane {
    u: u32,
    local: u32,
    slice: u32,
    ks: u32,
    valid: bool,
}

fn lane_of(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> Lane {
    var l: Lane;
    l.ks = pu(38u);
    let units = CELL_WG / l.ks;
    l.local = lid % units;
    l.slice = lid / units;
    l.u = group_index(wid, nwg) * units + l.local;
    l.valid = l.u < pu(0u);
    return l;
}

// The sum over the slices of a unit's partial products (after the barrier).
fn slices_sum(l: Lane) -> vec4<f32> {
    let units = CELL_WG / l.ks;
    var v = vec4<f32>(0.0);
    for (var s = 0u; s < l.ks; s++) {
        v += partial[s * units + l.local];
    }
    return v;
}

// Index in `rw` of (direction, k = the lane's first, unit); successive k of the slice are
// ks * H further on.
fn first_r(w: Unit, l: Lane) -> u32 {
    let H = pu(1u);
    return (w.d * H + l.slice) * H + w.j;
}

@compute @workgroup_size(CELL_WG)
fn lstm_cell(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let l = lane_of(wid, nwg, lid);
    let H = pu(1u);
    var w: Unit;
    var acc = vec4<f32>(0.0);
    if (l.valid) {
        w = unit_of(l.u);
        if (w.live) {
            let hb = state_index(w, 0u, 0u);
            var ri = first_r(w, l);
            for (var k = l.slice; k < H; k += l.ks) {
                acc += s_in[hb + k] * rw[ri];
                ri += l.ks * H;
            }
        }
    }
    partial[lid] = acc;
    workgroupBarrier();
    if (!l.valid || l.slice != 0u) {
        return;
    }
    if (!w.live) {
        carry(w, 2u);
        return;
    }
    acc = slices_sum(l) + vec4<f32>(projected(w, 0u, true), projected(w, 1u, true), projected(w, 2u, true),
                                     projected(w, 3u, true));
    let c_prev = s_in[state_index(w, 1u, w.j)];
    var pi = 0.0;
    var po = 0.0;
    var pfg = 0.0;
    if (pu(8u) != 0u) {
        let pb = w.d * 3u * H + w.j;
        pi = peep[pb];
        po = peep[pb + H];
        pfg = peep[pb + 2u * H];
    }
    let ig = gate_act(w.d, 0u, acc.x + pi * c_prev);
    var fg = 1.0 - ig;
    if (pu(18u) == 0u) {
        fg = gate_act(w.d, 0u, acc.z + pfg * c_prev);
    }
    let cand = gate_act(w.d, 1u, acc.w);
    let c = fg * c_prev + ig * cand;
    let og = gate_act(w.d, 0u, acc.y + po * c);
    // h(C) is not clipped: clip bounds the gates' arguments only.
    let a = 20u + 3u * (w.d * 3u + 2u);
    let h = og * cell_act(pu(a), c, pf(a + 1u), pf(a + 2u));
    y[y_index(w)] = h;
    s_out[state_index(w, 0u, w.j)] = h;
    s_out[state_index(w, 1u, w.j)] = c;
}

// GRU without linear_before_reset, first pass: r ⊙ h_prev of every unit (the candidate's
// recurrent product needs it for all units).
@compute @workgroup_size(CELL_WG)
fn gru_reset(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let l = lane_of(wid, nwg, lid);
    let H = pu(1u);
    var w: Unit;
    var acc = 0.0;
    if (l.valid) {
        w = unit_of(l.u);
        if (w.live) {
            let hb = state_index(w, 0u, 0u);
            var ri = first_r(w, l);
            for (var k = l.slice; k < H; k += l.ks) {
                acc += s_in[hb + k] * rw[ri].y;
                ri += l.ks * H;
            }
        }
    }
    partial[lid] = vec4<f32>(acc, 0.0, 0.0, 0.0);
    workgroupBarrier();
    if (!l.valid || l.slice != 0u || !w.live) {
        return;
    }
    let r = gate_act(w.d, 0u, slices_sum(l).x + projected(w, 1u, true));
    let i = state_index(w, 0u, w.j);
    rh_out[i] = r * s_in[i];
}

@compute @workgroup_size(CELL_WG)
fn gru_cell(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let l = lane_of(wid, nwg, lid);
    let H = pu(1u);
    let linear = pu(18u) != 0u;
    var w: Unit;
    // z, r and the candidate's recurrent product (of h, or of r ⊙ h from gru_reset).
    var acc = vec4<f32>(0.0);
    if (l.valid) {
        w = unit_of(l.u);
        if (w.live) {
            let hb = state_index(w, 0u, 0u);
            var ri = first_r(w, l);
            if (linear) {
                for (var k = l.slice; k < H; k += l.ks) {
                    acc += s_in[hb + k] * rw[ri];
                    ri += l.ks * H;
                }
            } else {
                for (var k = l.slice; k < H; k += l.ks) {
                    let v = rw[ri];
                    acc.x += s_in[hb + k] * v.x;
                    acc.z += rh_in[hb + k] * v.z;
                    ri += l.ks * H;
                }
            }
        }
    }
    partial[lid] = acc;
    workgroupBarrier();
    if (!l.valid || l.slice != 0u) {
        return;
    }
    if (!w.live) {
        carry(w, 1u);
        return;
    }
    acc = slices_sum(l);
    let z = gate_act(w.d, 0u, projected(w, 0u, true) + acc.x);
    let i = state_index(w, 0u, w.j);
    var cand = 0.0;
    if (linear) {
        let r = gate_act(w.d, 0u, projected(w, 1u, true) + acc.y);
        cand = gate_act(w.d, 1u, projected(w, 2u, false) + r * (acc.z + recurrent_bias(w, 2u)));
    } else {
        cand = gate_act(w.d, 1u, projected(w, 2u, true) + acc.z);
    }
    let h = (1.0 - z) * cand + z * s_in[i];
    y[y_index(w)] = h;
    s_out[i] = h;
}

@compute @workgroup_size(CELL_WG)
fn rnn_cell(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let l = lane_of(wid, nwg, lid);
    let H = pu(1u);
    var w: Unit;
    var acc = 0.0;
    if (l.valid) {
        w = unit_of(l.u);
        if (w.live) {
            let hb = state_index(w, 0u, 0u);
            var ri = first_r(w, l);
            for (var k = l.slice; k < H; k += l.ks) {
                acc += s_in[hb + k] * rw[ri].x;
                ri += l.ks * H;
            }
        }
    }
    partial[lid] = vec4<f32>(acc, 0.0, 0.0, 0.0);
    workgroupBarrier();
    if (!l.valid || l.slice != 0u) {
        return;
    }
    if (!w.live) {
        carry(w, 1u);
        return;
    }
    let h = gate_act(w.d, 0u, slices_sum(l).x + projected(w, 0u, true));
    let i = state_index(w, 0u, w.j);
    y[y_index(w)] = h;
    s_out[i] = h;
}

// Packs R [D][G*H][H] (from the data) into `rw`'s layout.
// Parameter words: 0 invocations (D*H*H)   1 H   2 G
@compute @workgroup_size(WG)
fn pack_r(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let u = group_index(wid, nwg) * WG + lid;
    if (u >= pu(0u)) {
        return;
    }
    let H = pu(1u);
    let G = pu(2u);
    let j = u % H;
    let k = (u / H) % H;
    let d = u / (H * H);
    var v = vec4<f32>(0.0);
    for (var g = 0u; g < G; g++) {
        v[g] = r_src[((d * G + g) * H + j) * H + k];
    }
    r_dst[u] = v;
}

// The initial states into the state buffer: initial_h (and initial_c) in the model's layout,
// or zeros.
// Parameter words: 0 invocations (S*D*N*H)   1 H   2 N   3 D   4 has initial_h
//   5 has initial_c   6 stride of a direction   7 stride of a batch entry (in h0 and c0)
@compute @workgroup_size(WG)
fn init_state(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let u = group_index(wid, nwg) * WG + lid;
    if (u >= pu(0u)) {
        return;
    }
    let H = pu(1u);
    let N = pu(2u);
    let D = pu(3u);
    let j = u % H;
    let n = (u / H) % N;
    let d = (u / (H * N)) % D;
    let slot = u / (H * N * D);
    let src = d * pu(6u) + n * pu(7u) + j;
    var v = 0.0;
    if (slot == 0u && pu(4u) != 0u) {
        v = h0[src];
    } else if (slot == 1u && pu(5u) != 0u) {
        v = c0[src];
    }
    s_out[u] = v;
}

// Y_h (and Y_c) from the final state buffer, in the model's layout; zeros for a batch entry
// of sequence length 0.
// Parameter words: 0 invocations (D*N*H)   1 H   2 N   3 D   4 T   5 has sequence lengths
//   6 S (state slots)   7 stride of a direction   8 stride of a batch entry (in Y_h, Y_c)
@compute @workgroup_size(WG)
fn finish_state(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let u = group_index(wid, nwg) * WG + lid;
    if (u >= pu(0u)) {
        return;
    }
    let H = pu(1u);
    let N = pu(2u);
    let j = u % H;
    let n = (u / H) % N;
    let d = u / (H * N);
    var keep = true;
    if (pu(5u) != 0u) {
        keep = lens[n] > 0;
    }
    let dst = d * pu(7u) + n * pu(8u) + j;
    yh[dst] = select(0.0, s_in[u], keep);
    if (pu(6u) == 2u) {
        yc[dst] = select(0.0, s_in[u + pu(3u) * N * H], keep);
    }
}
