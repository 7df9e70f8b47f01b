// Elementwise family: binary operations with numpy broadcasting, functions of one value, float
// classification, and selection. Float tensors are f32 words, integer and bool tensors i32
// words (bool: 0 or 1), so one kernel serves every integer type.
//
// OP codes: 0 add, 1 sub, 2 mul, 3 div, 4 pow, 5 mod (Python: sign of the divisor), 6 fmod
// (C: sign of the dividend), 7 max, 8 min, 9 prelu (a if a >= 0 else a * b), 10 equal,
// 11 less, 12 less or equal, 13 greater, 14 greater or equal, 15 and, 16 or, 17 xor,
// 18 bitwise and, 19 bitwise or, 20 bitwise xor, 21 shift right, 22 shift left (integers).
//
// binary (f32 -> f32), compare (f32 -> i32: OP 10..14), binary_int (i32 -> i32: every OP;
// integer division truncates toward zero, division by zero gives 0) parameter words:
//   0 elements   1..6 output dims (rank 6, leading 1s)   7..12 strides of a per output dim
//   (0 where a broadcasts)   13..18 strides of b   19 act a (f32)   20 act b (f32)
//   21 same-shape flag (no index arithmetic)
//   binary_int only: 22 width of the operands' type in bits (8, 16, 32, 64: shifts at or
//   past it, or below 0, give the sign fill alone)   23 signed type (1) or unsigned (0)
//   24 bits the result wraps to (8 or 16: a narrow type's two's-complement wrap; 0: none)
// unary (f32, ACT of the prelude) parameter words: 0 elements   1 act a (f32)   2 act b (f32)
// unary_int (i32; MODE 0 abs, 1 neg, 2 sign, 3 relu, 4 clip [word 1, word 2], 5 logical not,
//   6 bitwise not) parameter words: 0 elements   1 min (i32)   2 max (i32)   3 bits the result
//   wraps to (8 or 16; 0: none)   4 signed type (1) or unsigned (0)
// classify (f32 -> i32; MODE 0 is-nan, 1 is-inf with word 1 = detect +inf, word 2 = detect
//   -inf) parameter words: 0 elements   1, 2 flags
// select (cond i32, x and y any 32-bit words) parameter words: 0 elements   1..6 output dims
//   7..12 strides of cond   13..18 strides of x   19..24 strides of y

override OP: u32 = 0u;
override MODE: u32 = 0u;

@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> out_i: array<i32>;
@group(0) @binding(5) var<storage, read> a_i: array<i32>;
@group(0) @binding(6) var<storage, read> b_i: array<i32>;
@group(0) @binding(7) var<storage, read_write> out_u: array<u32>;
@group(0) @binding(8) var<storage, read> cond: array<i32>;
@group(0) @binding(9) var<storage, read> x_u: array<u32>;
@group(0) @binding(10) var<storage, read> y_u: array<u32>;

// pow as C defines it for the cases ONNX models meet: x^0 = 1, 0^y = 0 or infinity, a
// negative base with an integral exponent, NaN for a negative base otherwise.
fn pow_c(x: f32, y: f32) -> f32 {
    if (y == 0.0) {
        return 1.0;
    }
    if (x == 0.0) {
        return select(bitcast<f32>(0x7f800000u), 0.0, y > 0.0);
    }
    let r = pow(abs(x), y);
    if (x > 0.0) {
        return r;
    }
    if (y != floor(y)) {
        return bitcast<f32>(0x7fc00000u);
    }
    let odd = abs(y - 2.0 * floor(y * 0.5)) == 1.0;
    return select(r, -r, odd);
}

// C fmod: x - y * trunc(x / y), and x itself for a finite x over an infinite y.
fn fmod_c(x: f32, y: f32) -> f32 {
    let inf = bitcast<f32>(0x7f800000u);
    if (abs(y) == inf && abs(x) != inf) {
        return x;
    }
    return x - y * trunc(x / y);
}

fn apply_op(x: f32, y: f32) -> f32 {
    switch OP {
        case 1u: { return x - y; }
        case 2u: { return x * y; }
        case 3u: { return x / y; }
        case 4u: { return pow_c(x, y); }
        case 5u: {
            let r = fmod_c(x, y);
            return select(r, r + y, r != 0.0 && ((r < 0.0) != (y < 0.0)));
        }
        case 6u: { return fmod_c(x, y); }
        case 7u: { return select(max(x, y), x + y, x != x || y != y); }
        case 8u: { return select(min(x, y), x + y, x != x || y != y); }
        case 9u: { return select(x, x * y, x < 0.0); }
        default: { return x + y; }
    }
}

fn compare_op(x: f32, y: f32) -> bool {
    switch OP {
        case 11u: { return x < y; }
        case 12u: { return x <= y; }
        case 13u: { return x > y; }
        case 14u: { return x >= y; }
        default: { return x == y; }
    }
}

fn int_pow(x: i32, y: i32) -> i32 {
    if (y < 0) {
        return select(select(0, select(-1, 1, (y & 1) == 0), x == -1), 1, x == 1);
    }
    var r = 1;
    var base = x;
    var e = u32(y);
    for (var k = 0u; k < 32u && e != 0u; k++) {
        if ((e & 1u) != 0u) {
            r = r * base;
        }
        base = base * base;
        e = e >> 1u;
    }
    return r;
}

// A value wrapped into a narrow integer type of `bits` bits (8 or 16; 0 or 32: unchanged).
fn wrap_int(x: i32, bits: u32, signed: bool) -> i32 {
    if (bits == 0u || bits >= 32u) {
        return x;
    }
    let sh = 32u - bits;
    if (signed) {
        return (x << sh) >> sh;
    }
    return bitcast<i32>(bitcast<u32>(x) & ((1u << bits) - 1u));
}

// x shifted by y bits in a type `width` bits wide (values held in i32 words; 64-bit types
// hold values that fit 32 bits). A shift below 0 or at least the width gives the sign fill.
fn shift_int(x: i32, y: i32, left: bool) -> i32 {
    let width = pu(22u);
    let signed = pu(23u) != 0u;
    if (y < 0 || u32(y) >= width) {
        return select(0, -1, !left && signed && x < 0);
    }
    let s = u32(y);
    if (left) {
        return select(x << s, 0, s >= 32u);
    }
    if (signed) {
        return x >> min(s, 31u);
    }
    return select(bitcast<i32>(bitcast<u32>(x) >> s), 0, s >= 32u);
}

fn int_op(x: i32, y: i32) -> i32 {
    switch OP {
        case 1u: { return x - y; }
        case 2u: { return x * y; }
        case 3u: { return select(x / y, 0, y == 0); }
        case 4u: { return int_pow(x, y); }
        case 5u: {
            if (y == 0) {
                return 0;
            }
            let r = x % y;
            return select(r, r + y, r != 0 && ((r < 0) != (y < 0)));
        }
        case 6u: { return select(x % y, 0, y == 0); }
        case 7u: { return max(x, y); }
        case 8u: { return min(x, y); }
        case 9u: { return select(x, x * y, x < 0); }
        case 10u: { return i32(x == y); }
        case 11u: { return i32(x < y); }
        case 12u: { return i32(x <= y); }
        case 13u: { return i32(x > y); }
        case 14u: { return i32(x >= y); }
        case 15u: { return i32(x != 0 && y != 0); }
        case 16u: { return i32(x != 0 || y != 0); }
        case 17u: { return i32((x != 0) != (y != 0)); }
        case 18u: { return x & y; }
        case 19u: { return x | y; }
        case 20u: { return x ^ y; }
        case 21u: { return shift_int(x, y, false); }
        case 22u: { return shift_int(x, y, true); }
        default: { return x + y; }
    }
}

// Flat indices of a and b for output element i (broadcast strides in words 7..18).
fn operands(i: u32) -> vec2<u32> {
    if (pu(21u) != 0u) {
        return vec2<u32>(i, i);
    }
    var ia = 0u;
    var ib = 0u;
    var rem = i;
    for (var d = 6u; d >= 1u; d--) {
        let dim = pu(d);
        let idx = rem % dim;
        rem = rem / dim;
        ia += idx * pu(6u + d);
        ib += idx * pu(12u + d);
    }
    return vec2<u32>(ia, ib);
}

@compute @workgroup_size(WG)
fn binary(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let t = group_index(wid, nwg) * WG + lid;
    let total = pu(0u);
    let fa = pf(19u);
    let fb = pf(20u);
    for (var e = 0u; e < 4u; e++) {
        let i = t * 4u + e;
        if (i >= total) {
            return;
        }
        let ix = operands(i);
        out[i] = act(apply_op(a[ix.x], b[ix.y]), fa, fb);
    }
}

@compute @workgroup_size(WG)
fn compare(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let t = group_index(wid, nwg) * WG + lid;
    let total = pu(0u);
    for (var e = 0u; e < 4u; e++) {
        let i = t * 4u + e;
        if (i >= total) {
            return;
        }
        let ix = operands(i);
        out_i[i] = i32(compare_op(a[ix.x], b[ix.y]));
    }
}

@compute @workgroup_size(WG)
fn binary_int(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let t = group_index(wid, nwg) * WG + lid;
    let total = pu(0u);
    let wrap_bits = pu(24u);
    let signed = pu(23u) != 0u;
    for (var e = 0u; e < 4u; e++) {
        let i = t * 4u + e;
        if (i >= total) {
            return;
        }
        let ix = operands(i);
        out_i[i] = wrap_int(int_op(a_i[ix.x], b_i[ix.y]), wrap_bits, signed);
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

@compute @workgroup_size(WG)
fn unary_int(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * WG + lid;
    if (i >= pu(0u)) {
        return;
    }
    let x = a_i[i];
    var r = x;
    switch MODE {
        case 0u: { r = abs(x); }
        case 1u: { r = -x; }
        case 2u: { r = sign(x); }
        case 3u: { r = max(x, 0); }
        case 4u: { r = clamp(x, pi(1u), pi(2u)); }
        case 5u: { r = i32(x == 0); }
        case 6u: { r = ~x; }
        default: {}
    }
    out_i[i] = wrap_int(r, pu(3u), pu(4u) != 0u);
}

@compute @workgroup_size(WG)
fn classify(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * WG + lid;
    if (i >= pu(0u)) {
        return;
    }
    let bits = bitcast<u32>(a[i]);
    let exp_all = (bits & 0x7f800000u) == 0x7f800000u;
    let man = bits & 0x007fffffu;
    var r = false;
    if (MODE == 0u) {
        r = exp_all && man != 0u;
    } else {
        let inf = exp_all && man == 0u;
        let neg = (bits & 0x80000000u) != 0u;
        r = inf && ((!neg && pu(1u) != 0u) || (neg && pu(2u) != 0u));
    }
    out_i[i] = i32(r);
}

@compute @workgroup_size(WG)
fn select_words(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * WG + lid;
    if (i >= pu(0u)) {
        return;
    }
    var ic = 0u;
    var ix = 0u;
    var iy = 0u;
    var rem = i;
    for (var d = 6u; d >= 1u; d--) {
        let dim = pu(d);
        let idx = rem % dim;
        rem = rem / dim;
        ic += idx * pu(6u + d);
        ix += idx * pu(12u + d);
        iy += idx * pu(18u + d);
    }
    out_u[i] = select(y_u[iy], x_u[ix], cond[ic] != 0);
}
