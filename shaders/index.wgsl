// Indexing family: gathers along an axis with computed or constant indices. Values move as
// 32-bit words, so every element type is served; indices are i32 words (negative ones count
// from the end; an index outside the axis reads its nearest valid element, the device having
// no way to raise an error: the CPU reference refuses it).
//
// gather parameter words: 0 elements of the output   1 axis length   2 inner (elements after
//   the axis)   3 indices count

@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@group(0) @binding(2) var<storage, read> data: array<u32>;
@group(0) @binding(3) var<storage, read> indices: array<i32>;

@compute @workgroup_size(WG)
fn gather(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let t = group_index(wid, nwg) * WG + lid;
    if (t >= pu(0u)) {
        return;
    }
    let len = i32(pu(1u));
    let inner = pu(2u);
    let n_idx = pu(3u);
    let i = t % inner;
    let k = (t / inner) % n_idx;
    let o = t / (inner * n_idx);
    var j = indices[k];
    j = select(j, j + len, j < 0);
    j = clamp(j, 0, len - 1);
    out[t] = data[(o * u32(len) + u32(j)) * inner + i];
}
