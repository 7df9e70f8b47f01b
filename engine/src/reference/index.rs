//! Reference indexing.

use super::{OpResult, check_axis};
use crate::ops::Op;
use crate::tensor::Tensor;

pub(super) fn eval(op: &Op, ins: &[&Tensor]) -> OpResult<Vec<Tensor>> {
    let Op::Gather { axis } = op else { unreachable!("index family") };
    Ok(vec![gather(ins[0], ins[1], *axis)?])
}

/// out[outer, idx..., inner] = data[outer, indices[idx...], inner] (negative indices count
/// from the end).
fn gather(data: &Tensor, indices: &Tensor, axis: usize) -> OpResult<Tensor> {
    let s = data.shape();
    check_axis(axis, s.len())?;
    if !indices.dtype().is_int() {
        return Err(format!("indices must be integers, they are {}", indices.dtype()));
    }
    let (outer, len, inner): (usize, usize, usize) =
        (s[..axis].iter().product(), s[axis], s[axis + 1..].iter().product());
    let idx = indices.to_i64s();
    let mut norm = Vec::with_capacity(idx.len());
    for &i in &idx {
        let j = if i < 0 { i + len as i64 } else { i };
        if j < 0 || j >= len as i64 {
            return Err(format!("index {i} is out of range for axis {axis} of length {len}"));
        }
        norm.push(j as usize);
    }
    let mut src = Vec::with_capacity(outer * norm.len() * inner);
    for o in 0..outer {
        for &j in &norm {
            for i in 0..inner {
                src.push(Some((o * len + j) * inner + i));
            }
        }
    }
    let mut shape = s[..axis].to_vec();
    shape.extend_from_slice(indices.shape());
    shape.extend_from_slice(&s[axis + 1..]);
    data.gather(shape, &src, 0.0).map_err(|e| e.to_string())
}
