// Data movement: strided copies (transpose, slice, concat, split, expand are all one; a
// stride of 0 repeats) and padding (MODE 0 constant, 1 reflect, 2 edge, 3 wrap). Both move
// 32-bit words, so they serve every element type.
//
// strided_copy parameter words: 0 elements   1..6 region dims (rank 6, leading 1s)
//   7..12 source strides (i32)   13..18 destination strides (i32)   19 source offset
//   20 destination offset
// pad parameter words: 0 elements   1..6 output dims   7..12 input dims   13..18 padding
//   before each dim   19..24 input strides   25 fill value (the element's 32 bits)

override MODE: u32 = 0u;

@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<u32>;

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
