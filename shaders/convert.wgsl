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
