//! Indexing: gathers along an axis with computed (or constant) indices.

use super::{Check, In, Infer, Op, check_axis};

pub(super) fn infer(op: &Op, ins: &[In]) -> Infer {
    let c = Check { ins };
    let Op::Gather { axis } = op else { unreachable!("index family") };
    c.arity(2, 2)?;
    if !c.dtype(1).is_int() {
        return Err(format!("indices must be integers, they are {}", c.dtype(1)));
    }
    check_axis(*axis, c.rank(0))?;
    let d = c.shape(0);
    if d[*axis] == 0 && !ins[1].shape.contains(&0) {
        return Err(format!("axis {axis} of the data is empty; no index is valid"));
    }
    if let Some(k) = ins[1].konst {
        let n = d[*axis] as i64;
        if let Some(bad) = k.to_i64s().into_iter().find(|&i| i < -n || i >= n) {
            return Err(format!("index {bad} is out of range for axis {axis} of length {n}"));
        }
    }
    let mut out = d[..*axis].to_vec();
    out.extend_from_slice(c.shape(1));
    out.extend_from_slice(&d[axis + 1..]);
    Ok(vec![(c.dtype(0), out)])
}
