// Quantisation and the low-precision element types: QuantizeLinear (`quantize`),
// DequantizeLinear (`dequantize`, also of constants packed several values a word),
// DynamicQuantizeLinear (`range_partial` and `dynamic_qparams`, then `quantize`) and
// BitCast (`bit_cast`). Values are 32-bit words as everywhere: f32 for floats, i32 for
// integers; buffers are read and written as u32 words and reinterpreted.
//
// A scale (and zero point) applies to element i per tensor (granularity 0), per index of the
// axis (1), or per block of `block` indices along the axis (2; `blocks` scales along it):
// see `scale_at`.
//
// quantize parameter words: 0 n   1 inner (elements after the axis)   2 len (axis length)
//   3 block   4 blocks   5 granularity   6 has zero point   7 float target (1) or integer (0)
//   8 integer minimum (i32)   9 integer maximum (i32)   10 precision (1 float16, 2 bfloat16,
//   else float32)   11 x holds i32 words   12 the scale holds i32 words
//   Integer targets: round(x / scale) half to even, plus the zero point, clamped (NaN gives
//   the zero point). Float targets: x / scale + zero point in f32, rounded to the type by a
//   `round16` pass of convert.wgsl that follows.
// dequantize parameter words: 0..5 as quantize   6 x: 0 f32 words, 1 i32 words, 2 packed
//   integers, 3 packed float codes   7 bits per packed value (2, 4, 8 or 16)   8 packed
//   integers are signed   9 packed float format (3 float8e4m3fn, 4 float8e4m3fnuz,
//   5 float8e5m2, 6 float8e5m2fnuz, 7 float8e8m0, 8 float4e2m1)   10 zero point: 0 none,
//   1 i32 words, 2 f32 words
//   Packed: value i is bits (i % (32 / bits)) * bits.. of word i / (32 / bits).
//   y = (x - zero point) * scale in f32 (the difference of integers taken in i32).
// range_partial parameter words: 0 n   1 elements per workgroup. Writes min(x, 0) and
//   max(x, 0) of its chunk (NaNs ignored) to partial[2g], partial[2g + 1].
// dynamic_qparams parameter words: 0 partial pairs. One workgroup: the uint8 scale
//   (max - min) / 255 (1 / 255 when both are 0) and zero point round(clamp(-min / scale,
//   0, 255)).
// bit_cast parameter words: 0 n   1 source kind   2 source bits   3 source float format
//   4 target kind   5 target bits   6 target signed   7 target float format. Kinds: 0 f32,
//   1 integer (the low bits of an i32 word; a bool is 0 or 1), 2 float16, 3 bfloat16,
//   4 float8/float4 (format as in dequantize).

@group(0) @binding(1) var<storage, read_write> y: array<u32>;
@group(0) @binding(2) var<storage, read> xin: array<u32>;
@group(0) @binding(3) var<storage, read> scale: array<f32>;
@group(0) @binding(4) var<storage, read> zp: array<u32>;
@group(0) @binding(5) var<storage, read_write> partial: array<f32>;
@group(0) @binding(6) var<storage, read> partial_in: array<f32>;
@group(0) @binding(7) var<storage, read_write> qscale: array<f32>;
@group(0) @binding(8) var<storage, read_write> qzero: array<i32>;

var<workgroup> red_lo: array<f32, WG>;
var<workgroup> red_hi: array<f32, WG>;

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

fn scale_at(i: u32) -> u32 {
    let gran = pu(5u);
    if (gran == 0u) {
        return 0u;
    }
    let inner = pu(1u);
    let len = pu(2u);
    let a = (i / inner) % len;
    if (gran == 1u) {
        return a;
    }
    let outer = i / (len * inner);
    return (outer * pu(4u) + a / pu(3u)) * inner + i % inner;
}

// x rounded to float16 (IEEE overflow to infinity) or bfloat16; other modes keep x.
fn round_precision(x: f32, mode: u32) -> f32 {
    if (is_nan(x)) {
        return x;
    }
    if (mode == 1u) {
        if (abs(x) >= 65520.0) {
            return select(f32_inf(), -f32_inf(), x < 0.0);
        }
        return unpack2x16float(pack2x16float(vec2<f32>(x, 0.0))).x;
    }
    if (mode == 2u) {
        let b = bitcast<u32>(x);
        return bitcast<f32>((b + 0x7fffu + ((b >> 16u) & 1u)) & 0xffff0000u);
    }
    return x;
}

@compute @workgroup_size(WG)
fn quantize(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * WG + lid;
    if (i >= pu(0u)) {
        return;
    }
    let k = scale_at(i);
    let x = select(bitcast<f32>(xin[i]), f32(bitcast<i32>(xin[i])), pu(11u) == 1u);
    let s = select(scale[k], f32(bitcast<i32>(scale[k])), pu(12u) == 1u);
    let p = pu(10u);
    let q = round_precision(round_precision(x, p) / round_precision(s, p), p);
    let has_zp = pu(6u) == 1u;
    if (pu(7u) == 1u) {
        var zf = 0.0;
        if (has_zp) {
            zf = bitcast<f32>(zp[k]);
        }
        y[i] = bitcast<u32>(q + zf);
        return;
    }
    var z = 0;
    if (has_zp) {
        z = bitcast<i32>(zp[k]);
    }
    var r = f32(z);
    if (!is_nan(q)) {
        r = round(q) + f32(z);
    }
    y[i] = bitcast<u32>(i32(clamp(r, f32(pi(8u)), f32(pi(9u)))));
}

// Float formats of 8 bits or fewer (the engine's round_mode codes): mantissa bits, exponent
// bits, bias, and specials (0 IEEE: infinities and NaNs; 1 no infinity, the all-ones code
// NaN; 2 "fnuz": no infinity, no negative zero, the negative-zero code NaN; 3 neither).
struct MiniFormat {
    man: u32,
    ebits: u32,
    bias: i32,
    special: u32,
}

fn mini_format(f: u32) -> MiniFormat {
    switch f {
        case 3u: { return MiniFormat(3u, 4u, 7, 1u); }
        case 4u: { return MiniFormat(3u, 4u, 8, 2u); }
        case 5u: { return MiniFormat(2u, 5u, 15, 0u); }
        case 6u: { return MiniFormat(2u, 5u, 16, 2u); }
        default: { return MiniFormat(1u, 2u, 1, 3u); }
    }
}

// The value of a float8/float4 code (float8e8m0: 2^(c - 127), 255 NaN).
fn decode_float(c: u32, f: u32) -> f32 {
    if (f == 7u) {
        if (c == 0xffu) {
            return f32_nan();
        }
        return select(bitcast<f32>(c << 23u), bitcast<f32>(0x400000u), c == 0u);
    }
    let m = mini_format(f);
    let sbit = 1u << (m.ebits + m.man);
    let neg = (c & sbit) != 0u;
    let e = (c >> m.man) & ((1u << m.ebits) - 1u);
    let man = c & ((1u << m.man) - 1u);
    let top = (1u << m.ebits) - 1u;
    if (m.special == 0u && e == top) {
        if (man != 0u) {
            return f32_nan();
        }
        return select(f32_inf(), -f32_inf(), neg);
    }
    if ((m.special == 1u && e == top && man == (1u << m.man) - 1u) || (m.special == 2u && c == sbit)) {
        return f32_nan();
    }
    var v = 0.0;
    if (e == 0u) {
        v = ldexp(f32(man), 1 - m.bias - i32(m.man));
    } else {
        v = ldexp(f32((1u << m.man) + man), i32(e) - m.bias - i32(m.man));
    }
    return select(v, -v, neg);
}

// The code of a float8/float4 value that the format holds exactly.
fn encode_float(x: f32, f: u32) -> u32 {
    let b = bitcast<u32>(x);
    if (f == 7u) {
        return select((b >> 23u) & 0xffu, 0xffu, is_nan(x));
    }
    let m = mini_format(f);
    let sbit = 1u << (m.ebits + m.man);
    let sign = select(0u, sbit, (b >> 31u) == 1u);
    let top = (1u << m.ebits) - 1u;
    if (is_nan(x)) {
        switch m.special {
            case 0u: { return sign | (top << m.man) | (1u << (m.man - 1u)); }
            case 1u: { return sign | (sbit - 1u); }
            case 2u: { return sbit; }
            default: { return 0u; }
        }
    }
    let a = abs(x);
    if (bitcast<u32>(a) >= 0x7f800000u) {
        return sign | (top << m.man);
    }
    if (a == 0.0) {
        return select(sign, 0u, m.special == 2u);
    }
    let e = max(i32((bitcast<u32>(a) >> 23u) & 0xffu) - 127, 1 - m.bias);
    let mant = u32(a * ldexp(1.0, i32(m.man) - e));
    return sign | ((u32(e + m.bias - 1) << m.man) + mant);
}

// Field i of a buffer packed `bits` a value (bits 2, 4, 8 or 16), the first in the lowest
// bits of each word.
fn packed_field(i: u32, bits: u32) -> u32 {
    let per = 32u / bits;
    return (xin[i / per] >> ((i % per) * bits)) & ((1u << bits) - 1u);
}

fn sign_extend(v: u32, bits: u32) -> i32 {
    if (bits >= 32u) {
        return bitcast<i32>(v);
    }
    return bitcast<i32>(v << (32u - bits)) >> (32u - bits);
}

@compute @workgroup_size(WG)
fn dequantize(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * WG + lid;
    if (i >= pu(0u)) {
        return;
    }
    let k = scale_at(i);
    let mode = pu(6u);
    let zkind = pu(10u);
    var d = 0.0;
    if (mode == 0u || mode == 3u) {
        var xf = bitcast<f32>(xin[i]);
        if (mode == 3u) {
            xf = decode_float(packed_field(i, pu(7u)), pu(9u));
        }
        var zf = 0.0;
        if (zkind == 2u) {
            zf = bitcast<f32>(zp[k]);
        }
        d = xf - zf;
    } else {
        var xi = bitcast<i32>(xin[i]);
        if (mode == 2u) {
            let v = packed_field(i, pu(7u));
            xi = select(bitcast<i32>(v), sign_extend(v, pu(7u)), pu(8u) == 1u);
        }
        var zi = 0;
        if (zkind == 1u) {
            zi = bitcast<i32>(zp[k]);
        }
        d = f32(xi - zi);
    }
    y[i] = bitcast<u32>(d * scale[k]);
}

// Reduces red_lo (min) and red_hi (max) over the workgroup into element 0.
fn reduce_range(lid: u32) {
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            red_lo[lid] = min(red_lo[lid], red_lo[lid + s]);
            red_hi[lid] = max(red_hi[lid], red_hi[lid + s]);
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(WG)
fn range_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let g = group_index(wid, nwg);
    let n = pu(0u);
    let start = g * pu(1u);
    let end = min(start + pu(1u), n);
    var lo = 0.0;
    var hi = 0.0;
    for (var j = start + lid; j < end; j = j + WG) {
        let v = bitcast<f32>(xin[j]);
        if (!is_nan(v)) {
            lo = min(lo, v);
            hi = max(hi, v);
        }
    }
    red_lo[lid] = lo;
    red_hi[lid] = hi;
    reduce_range(lid);
    if (lid == 0u) {
        partial[2u * g] = red_lo[0];
        partial[2u * g + 1u] = red_hi[0];
    }
}

@compute @workgroup_size(WG)
fn dynamic_qparams(@builtin(local_invocation_index) lid: u32) {
    var lo = 0.0;
    var hi = 0.0;
    for (var j = lid; j < pu(0u); j = j + WG) {
        lo = min(lo, partial_in[2u * j]);
        hi = max(hi, partial_in[2u * j + 1u]);
    }
    red_lo[lid] = lo;
    red_hi[lid] = hi;
    reduce_range(lid);
    if (lid == 0u) {
        let l = red_lo[0];
        let h = red_hi[0];
        let s = select(h - l, 1.0, h == l) / 255.0;
        qscale[0] = s;
        qzero[0] = i32(round(clamp(0.0 - l / s, 0.0, 255.0)));
    }
}

@compute @workgroup_size(WG)
fn bit_cast(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * WG + lid;
    if (i >= pu(0u)) {
        return;
    }
    let w = xin[i];
    let f = bitcast<f32>(w);
    let sbits = pu(2u);
    var b = 0u;
    switch pu(1u) {
        case 0u: { b = w; }
        case 2u: {
            if (is_nan(f)) {
                b = ((w >> 16u) & 0x8000u) | 0x7e00u;
            } else if (abs(f) > 65504.0) {
                b = select(0x7c00u, 0xfc00u, f < 0.0);
            } else {
                b = pack2x16float(vec2<f32>(f, 0.0)) & 0xffffu;
            }
        }
        case 3u: { b = w >> 16u; }
        case 4u: { b = encode_float(f, pu(3u)); }
        default: { b = select(w & ((1u << sbits) - 1u), w, sbits >= 32u); }
    }
    var res = b;
    switch pu(4u) {
        case 0u: { res = b; }
        case 2u: { res = bitcast<u32>(unpack2x16float(b).x); }
        case 3u: { res = b << 16u; }
        case 4u: { res = bitcast<u32>(decode_float(b, pu(7u))); }
        default: {
            let tbits = pu(5u);
            if (tbits == 1u) {
                res = u32(b != 0u);
            } else if (pu(6u) == 1u) {
                res = bitcast<u32>(sign_extend(b, tbits));
            }
        }
    }
    y[i] = res;
}
