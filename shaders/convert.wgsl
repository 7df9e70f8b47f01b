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
// words. cast_f2i and cast_i2i write integers wrapped to word 1 bits (8, 16 or 32) signed when
// word 2 is 1, or bools when word 3 is 1; cast_i2f and cast_f2f round to fp16 (word 3 = 1) or
// bfloat16 (word 3 = 2). round16 rounds a float tensor in place the same way (word 1).
// Parameter word 0: elements.

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

fn round_half(x: f32, mode: u32) -> f32 {
    if (x != x) {
        return x;
    }
    if (mode == 1u) {
        // Beyond the rounding threshold of the largest fp16 value: infinity, as IEEE.
        if (abs(x) >= 65520.0) {
            return select(bitcast<f32>(0x7f800000u), bitcast<f32>(0xff800000u), x < 0.0);
        }
        return unpack2x16float(pack2x16float(vec2<f32>(x, 0.0))).x;
    }
    if (mode == 2u) {
        let b = bitcast<u32>(x);
        let lsb = (b >> 16u) & 1u;
        return bitcast<f32>((b + 0x7fffu + lsb) & 0xffff0000u);
    }
    return x;
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
    if (pu(3u) == 2u) {
        // Saturating, for integers computed as floats: clamped to the type's range (bits,
        // signed; a bool is 1 bit unsigned), so an empty max (-inf) is the type's minimum.
        let bits = pu(1u);
        var lo = 0.0;
        var hi = exp2(f32(bits)) - 1.0;
        if (pu(2u) == 1u || bits >= 32u) {
            lo = -exp2(f32(min(bits, 32u) - 1u));
            hi = -lo - 1.0;
        }
        // The largest f32 below 2^31.
        hi = min(hi, 2147483520.0);
        cout_i[i] = i32(clamp(select(trunc(x), 0.0, x != x), lo, hi));
        return;
    }
    cout_i[i] = wrap_int(select(i32(trunc(x)), 0, x != x));
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
    cout_f[i] = round_half(f32(cin_i[i]), pu(3u));
}

@compute @workgroup_size(WG)
fn cast_f2f(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * WG + lid;
    if (i >= pu(0u)) {
        return;
    }
    cout_f[i] = round_half(cin_f[i], pu(3u));
}

@compute @workgroup_size(WG)
fn round16(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * WG + lid;
    if (i >= pu(0u)) {
        return;
    }
    inplace[i] = round_half(inplace[i], pu(1u));
}
