// Boundary tensors between pipeline stages travel as fp16, two values packed in each u32
// word (element 2i in the low half, 2i+1 in the high half; an odd count leaves the last high
// half zero). These kernels convert at a stage's edges: `unpack_f16` before the first kernel
// of a stage, `pack_f16` after its last one.
//
// Parameters: word 0 = number of f32 elements n (the tensor at the run's batch).
// One invocation per packed word.

@group(0) @binding(1) var<storage, read> packed_in: array<u32>;
@group(0) @binding(2) var<storage, read_write> unpacked: array<f32>;

@group(0) @binding(3) var<storage, read> floats_in: array<f32>;
@group(0) @binding(4) var<storage, read_write> packed_out: array<u32>;

// Largest finite fp16 value: values beyond it are clamped (pack2x16float is undefined
// outside the fp16 range).
const F16_MAX: f32 = 65504.0;

@compute @workgroup_size(WG)
fn unpack_f16(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let w = group_index(wid, nwg) * WG + lid;
    let n = pu(0u);
    if (2u * w >= n) {
        return;
    }
    let v = unpack2x16float(packed_in[w]);
    unpacked[2u * w] = v.x;
    if (2u * w + 1u < n) {
        unpacked[2u * w + 1u] = v.y;
    }
}

@compute @workgroup_size(WG)
fn pack_f16(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let w = group_index(wid, nwg) * WG + lid;
    let n = pu(0u);
    if (2u * w >= n) {
        return;
    }
    let lo = clamp(floats_in[2u * w], -F16_MAX, F16_MAX);
    var hi = 0.0;
    if (2u * w + 1u < n) {
        hi = clamp(floats_in[2u * w + 1u], -F16_MAX, F16_MAX);
    }
    packed_out[w] = pack2x16float(vec2<f32>(lo, hi));
}

// Element type conversions (Cast). Float tensors are f32 words, integer and bool tensors i32
// words. cast_f2i and cast_i2i write integers wrapped to word 1 bits (2, 4, 8, 16 or 32)
// signed when word 2 is 1, or bools when word 3 is 1 (cast_f2i: floats truncated; a 4- or
// 2-bit target takes 0 for values outside its range, as ONNX's reference does; word 3 = 2
// clamps to the range instead). cast_i2f and cast_f2f round to the narrow float of word 3
// (`narrow_float` modes) with word 4 = 1 to saturate float8 overflow and word 5 the float8e8m0
// rounding (0 nearest, 1 up, 2 down). round16 rounds a float tensor in place the same way
// (mode word 1, saturate word 2, e8m0 rounding word 3: zeros give the rounding of computed
// values, RNE without saturation). Parameter word 0: elements.

@group(0) @binding(5) var<storage, read> cin_f: array<f32>;
@group(0) @binding(6) var<storage, read> cin_i: array<i32>;
@group(0) @binding(7) var<storage, read_write> cout_f: array<f32>;
@group(0) @binding(8) var<storage, read_write> cout_i: array<i32>;
@group(0) @binding(9) var<storage, read_write> inplace: array<f32>;

fn wrap_int(v: i32) -> i32 {
    if (pu(3u) == 1u) {
        return i32(v != 0);
    }
    let bits = pu(1u);
    if (bits >= 32u) {
        return v;
    }
    let shift = 32u - bits;
    if (pu(2u) == 1u) {
        return (v << shift) >> shift;
    }
    return i32(u32(v) & ((1u << bits) - 1u));
}

// NaN tests on the bits: Vulkan drivers may assume comparisons never see NaN (x != x can
// compile to false).
fn is_nan(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

fn f32_nan() -> f32 {
    return bitcast<f32>(0x7fc00000u);
}

fn f32_inf() -> f32 {
    return bitcast<f32>(0x7f800000u);
}

// Special values of a float8/float4 format: 0 IEEE (infinities and NaNs), 1 no infinity
// and one NaN code per sign, 2 "fnuz" (no infinity, no negative zero, one NaN), 3 neither
// infinity nor NaN.
const SP_IEEE: u32 = 0u;
const SP_FN: u32 = 1u;
const SP_FNUZ: u32 = 2u;
const SP_FINITE: u32 = 3u;

// x rounded to a float format of `man` mantissa bits, exponent `bias` and largest finite
// value `maxv`: to nearest, ties to even, with subnormals. Beyond maxv: maxv when saturating
// (always for SP_FINITE), else infinity (SP_IEEE) or NaN. NaN stays NaN (0 in SP_FINITE).
fn mini_float(x: f32, man: i32, bias: i32, maxv: f32, special: u32, saturate: bool) -> f32 {
    if (is_nan(x)) {
        return select(x, 0.0, special == SP_FINITE);
    }
    let neg = (bitcast<u32>(x) >> 31u) == 1u;
    let a = abs(x);
    var r = 0.0;
    var over = bitcast<u32>(a) >= 0x7f800000u;
    if (!over && a > 0.0) {
        // The quantum's exponent: that of a, at least the smallest normal one. Scaling by
        // powers of two is exact, so only round() rounds.
        let e = max(i32((bitcast<u32>(a) >> 23u) & 0xffu) - 127, 1 - bias);
        r = ldexp(round(a * ldexp(1.0, man - e)), e - man);
        over = r > maxv;
    }
    if (over) {
        if (saturate || special == SP_FINITE) {
            r = maxv;
        } else if (special == SP_IEEE) {
            r = f32_inf();
        } else {
            return f32_nan();
        }
    }
    if (r == 0.0 && special == SP_FNUZ) {
        return 0.0;
    }
    return select(r, -r, neg);
}

// x as float8e8m0 (a power of two 2^(e - 127), e in 0..254, 255 NaN) as ONNX converts: the
// exponent of |x| rounded (rmode 0 nearest with ties up, 1 up, 2 down); NaN and infinity
// give NaN; rounding past 2^127 saturates or gives NaN.
fn e8m0(x: f32, saturate: bool, rmode: u32) -> f32 {
    let b = bitcast<u32>(x);
    let e = (b >> 23u) & 0xffu;
    if (e == 0xffu) {
        return f32_nan();
    }
    var up = false;
    if (rmode == 1u) {
        up = (b & 0x7fffffu) != 0u;
    } else if (rmode == 0u) {
        let g = (b & 0x400000u) != 0u;
        let rs = (b & 0x3fffffu) != 0u;
        up = g && (rs || e > 0u);
    }
    var ce = e + u32(up);
    if (up && e == 0xfeu && saturate) {
        ce = 0xfeu;
    }
    if (ce == 0xffu) {
        return f32_nan();
    }
    if (ce == 0u) {
        return bitcast<f32>(0x400000u);
    }
    return bitcast<f32>(ce << 23u);
}

// x rounded to a narrow float type (the engine's round_mode codes): 1 float16 (IEEE
// overflow to infinity), 2 bfloat16, 3 float8e4m3fn, 4 float8e4m3fnuz, 5 float8e5m2,
// 6 float8e5m2fnuz, 7 float8e8m0, 8 float4e2m1; other modes leave x as it is.
fn narrow_float(x: f32, mode: u32, saturate: bool, rmode: u32) -> f32 {
    switch mode {
        case 1u: {
            if (is_nan(x)) {
                return x;
            }
            // Beyond the rounding threshold of the largest fp16 value: infinity, as IEEE.
            if (abs(x) >= 65520.0) {
                return select(f32_inf(), -f32_inf(), x < 0.0);
            }
            return unpack2x16float(pack2x16float(vec2<f32>(x, 0.0))).x;
        }
        case 2u: {
            if (is_nan(x)) {
                return x;
            }
            let b = bitcast<u32>(x);
            let lsb = (b >> 16u) & 1u;
            return bitcast<f32>((b + 0x7fffu + lsb) & 0xffff0000u);
        }
        case 3u: { return mini_float(x, 3, 7, 448.0, SP_FN, saturate); }
        case 4u: { return mini_float(x, 3, 8, 240.0, SP_FNUZ, saturate); }
        case 5u: { return mini_float(x, 2, 15, 57344.0, SP_IEEE, saturate); }
        case 6u: { return mini_float(x, 2, 16, 57344.0, SP_FNUZ, saturate); }
        case 7u: { return e8m0(x, saturate, rmode); }
        case 8u: { return mini_float(x, 1, 1, 6.0, SP_FINITE, saturate); }
        default: { return x; }
    }
}

@compute @workgroup_size(WG)
fn cast_f2i(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * WG + lid;
    if (i >= pu(0u)) {
        return;
    }
    let x = cin_f[i];
    if (pu(3u) == 1u) {
        cout_i[i] = i32(x != 0.0);
        return;
    }
    let bits = pu(1u);
    var lo = 0.0;
    var hi = exp2(f32(bits)) - 1.0;
    if (pu(2u) == 1u || bits >= 32u) {
        lo = -exp2(f32(min(bits, 32u) - 1u));
        hi = -lo - 1.0;
    }
    // The largest f32 below 2^31.
    hi = min(hi, 2147483520.0);
    let t = select(trunc(x), 0.0, is_nan(x));
    if (pu(3u) == 2u) {
        // Saturating, for integers computed as floats: clamped to the type's range (bits,
        // signed; a bool is 1 bit unsigned), so an empty max (-inf) is the type's minimum.
        cout_i[i] = i32(clamp(t, lo, hi));
        return;
    }
    if (bits < 8u) {
        cout_i[i] = select(0, i32(t), t >= lo && t <= hi);
        return;
    }
    cout_i[i] = wrap_int(i32(t));
}

@compute @workgroup_size(WG)
fn cast_i2i(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * WG + lid;
    if (i >= pu(0u)) {
        return;
    }
    cout_i[i] = wrap_int(cin_i[i]);
}

@compute @workgroup_size(WG)
fn cast_i2f(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * WG + lid;
    if (i >= pu(0u)) {
        return;
    }
    cout_f[i] = narrow_float(f32(cin_i[i]), pu(3u), pu(4u) == 1u, pu(5u));
}

@compute @workgroup_size(WG)
fn cast_f2f(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * WG + lid;
    if (i >= pu(0u)) {
        return;
    }
    cout_f[i] = narrow_float(cin_f[i], pu(3u), pu(4u) == 1u, pu(5u));
}

@compute @workgroup_size(WG)
fn round16(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * WG + lid;
    if (i >= pu(0u)) {
        return;
    }
    inplace[i] = narrow_float(inplace[i], pu(1u), pu(2u) == 1u, pu(3u));
}
