// Elementwise family: binary operations with numpy broadcasting (OP: 0 add, 1 sub, 2 mul,
// 3 div), and activations (ACT of the prelude). Four elements per invocation.
//
// binary parameter words: 0 elements   1..6 output dims (rank 6, leading 1s)
//   7..12 strides of a per output dim (0 where a broadcasts)   13..18 strides of b
//   19 act a (f32)   20 act b (f32)   21 same-shape flag (no index arithmetic)
// unary parameter words: 0 elements   1 act a (f32)   2 act b (f32)

override OP: u32 = 0u;

@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;

fn apply_op(x: f32, y: f32) -> f32 {
    switch OP {
        case 1u: { return x - y; }
        case 2u: { return x * y; }
        case 3u: { return x / y; }
        default: { return x + y; }
    }
}

@compute @workgroup_size(WG)
fn binary(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let t = group_index(wid, nwg) * WG + lid;
    let total = pu(0u);
    let fa = pf(19u);
    let fb = pf(20u);
    let same = pu(21u) != 0u;
    for (var e = 0u; e < 4u; e++) {
        let i = t * 4u + e;
        if (i >= total) {
            return;
        }
        var ia = i;
        var ib = i;
        if (!same) {
            ia = 0u;
            ib = 0u;
            var rem = i;
            for (var d = 6u; d >= 1u; d--) {
                let dim = pu(d);
                let idx = rem % dim;
                rem = rem / dim;
                ia += idx * pu(6u + d);
                ib += idx * pu(12u + d);
            }
        }
        out[i] = act(apply_op(a[ia], b[ib]), fa, fb);
    }
}

@compute @workgroup_size(WG)
fn unary(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let t = group_index(wid, nwg) * WG + lid;
    let total = pu(0u);
    let fa = pf(1u);
    let fb = pf(2u);
    for (var e = 0u; e < 4u; e++) {
        let i = t * 4u + e;
        if (i >= total) {
            return;
        }
        out[i] = act(a[i], fa, fb);
    }
}
