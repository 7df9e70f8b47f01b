// Matrix products: batched GEMM with a register tile of 4 rows x 4 columns per invocation,
// B read as vec4 from a packed layout, alpha/bias/beta and activation fused into the
// write-back; and `pack_b`, which writes an activation B into that packed layout.
//
// matmul parameter words:
//   0 M   1 N   2 K   3 NQ (ceil(N/4))   4 SAM (A stride of a row)   5 SAK (A stride along K)
//   6 output matrices (product of the batch dims)   7 BD1   8 BD2   9 BD3 (batch dims 1..3;
//   dim 0 is the rest)   10..13 A offset per batch dim   14..17 B offset per batch dim (vec4s)
//  18 alpha (f32)   19 beta (f32)   20 has bias   21 bias stride of a row   22 bias stride of a
//   column   23..26 bias offset per batch dim   27 act a (f32)   28 act b (f32)
//  29 invocations   30 MQ (ceil(M/4))   31 NS (row stride of the output)   32 n0 (first
//   output column: products with a large constant B run as column chunks)
// Output: row-major [matrices][M][NS], columns n0..n0+N written. Packed B: vec4 index b_off + k*NQ + nq holds columns
// nq*4 + 0..3 (zero beyond N) of row k.
//
// pack_b parameter words:
//   0 K   1 N   2 NQ   3 source stride along K   4 source stride along N
//   5 source stride between matrices   6 vec4s to write

@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(7) var<storage, read_write> packed: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let t = group_index(wid, nwg) * WG + lid;
    if (t >= pu(29u)) {
        return;
    }
    let M = pu(0u);
    let N = pu(1u);
    let K = pu(2u);
    let NQ = pu(3u);
    let SAM = pu(4u);
    let SAK = pu(5u);
    let MQ = pu(30u);

    let nq = t % NQ;
    var r = t / NQ;
    let mq = r % MQ;
    let bt = r / MQ;
    // batch index -> per-dimension indices (dim 3 innermost)
    let i3 = bt % pu(9u);
    let i2 = (bt / pu(9u)) % pu(8u);
    let i1 = (bt / (pu(9u) * pu(8u))) % pu(7u);
    let i0 = bt / (pu(9u) * pu(8u) * pu(7u));
    let a_off = i0 * pu(10u) + i1 * pu(11u) + i2 * pu(12u) + i3 * pu(13u);
    let b_off = i0 * pu(14u) + i1 * pu(15u) + i2 * pu(16u) + i3 * pu(17u);

    var ar: array<u32, 4>;
    for (var i = 0u; i < 4u; i++) {
        ar[i] = a_off + min(mq * 4u + i, M - 1u) * SAM;
    }
    var acc: array<vec4<f32>, 4>;
    var bi = b_off + nq;
    var ak = 0u;
    for (var k = 0u; k < K; k++) {
        let bv = b4[bi];
        bi += NQ;
        acc[0] += a[ar[0] + ak] * bv;
        acc[1] += a[ar[1] + ak] * bv;
        acc[2] += a[ar[2] + ak] * bv;
        acc[3] += a[ar[3] + ak] * bv;
        ak += SAK;
    }

    let alpha = pf(18u);
    let beta = pf(19u);
    let has_bias = pu(20u) != 0u;
    let c_off = i0 * pu(23u) + i1 * pu(24u) + i2 * pu(25u) + i3 * pu(26u);
    let NS = pu(31u);
    let n0 = pu(32u);
    let aa = pf(27u);
    let ab = pf(28u);
    for (var i = 0u; i < 4u; i++) {
        let m = mq * 4u + i;
        if (m >= M) {
            break;
        }
        for (var j = 0u; j < 4u; j++) {
            let n = nq * 4u + j;
            if (n < N) {
                var v = alpha * acc[i][j];
                if (has_bias) {
                    v += beta * bias[c_off + m * pu(21u) + (n0 + n) * pu(22u)];
                }
                out[(bt * M + m) * NS + n0 + n] = act(v, aa, ab);
            }
        }
    }
}

@compute @workgroup_size(WG)
fn pack_b(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let t = group_index(wid, nwg) * WG + lid;
    if (t >= pu(6u)) {
        return;
    }
    let K = pu(0u);
    let N = pu(1u);
    let NQ = pu(2u);
    let nq = t % NQ;
    let k = (t / NQ) % K;
    let mat = t / (NQ * K);
    let base = mat * pu(5u) + k * pu(3u);
    var v = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        let n = nq * 4u + j;
        if (n < N) {
            v[j] = a[base + n * pu(4u)];
        }
    }
    packed[t] = v;
}
